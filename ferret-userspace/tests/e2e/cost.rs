//! End-to-end: ferret knows its own cost. A broad pattern stays inside the
//! overhead budget, probes never change what a program computes, and times
//! are reported as if ferret were not there — each checked against what
//! the programs measure of themselves, untraced, in the same test. Needs
//! root; fails loudly without.

use std::{collections::BTreeMap, ffi::OsStr, path::Path, process::Command};

use crate::support::{alone, build, ferret, require_root, run, tempdir};
use ferret::sink::{Row, read_all, read_metadata};
use serde_json::Value;

/// `many`'s report on stderr: the work's wall time as it measured it.
fn work_ns(stderr: &[u8]) -> u64 {
    let text = String::from_utf8_lossy(stderr);
    let line = text
        .lines()
        .find(|l| l.starts_with("work_ns="))
        .unwrap_or_else(|| panic!("no work_ns in {text}"));
    line["work_ns=".len()..]
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

fn ends<'a>(rows: &'a [Row], function: &'a str) -> impl Iterator<Item = &'a Row> {
    rows.iter().filter(move |r| {
        r.kind.as_deref() == Some("SPAN_END") && r.function.as_deref() == Some(function)
    })
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn a_broad_pattern_stays_within_half_again_the_programs_untraced_time() {
    let _alone = alone();
    let program = build("many.c", &[]);
    let args = ["1000000", "alpha", "beta"];
    let untraced = || {
        let output = run({
            let mut c = Command::new(&program);
            c.args(args);
            c
        });
        assert!(output.status.success());
        (output.stdout.clone(), work_ns(&output.stderr))
    };
    let dir = tempdir();
    let out = dir.path().join("many.parquet");
    // A comparison of speeds is only as good as the machine is steady: when
    // the untraced runs before and after differ by more than a third, the
    // round says nothing and is run again.
    let mut rounds = Vec::new();
    let stderr = loop {
        let (expected, before) = untraced();
        let mut cmd = ferret();
        cmd.args(["record", "-s", "*", "-o"])
            .arg(&out)
            .arg("--")
            .arg(&program)
            .args(args);
        let traced = run(cmd);
        let (_, after) = untraced();
        assert!(traced.status.success(), "{traced:?}");
        let stderr = String::from_utf8_lossy(&traced.stderr).into_owned();
        assert_eq!(
            String::from_utf8_lossy(&traced.stdout),
            String::from_utf8_lossy(&expected),
            "the same result traced"
        );
        let took = work_ns(&traced.stderr);
        rounds.push((before, took, after));
        if before.max(after) * 3 <= before.min(after) * 4 {
            let reference = u64::midpoint(before, after);
            assert!(
                took * 2 <= reference * 3,
                "traced {took} ns against {before} and {after} untraced: {stderr}"
            );
            break stderr;
        }
        assert!(
            rounds.len() < 4,
            "the machine never held steady: {rounds:?}"
        );
    };
    // The budget said what it did, and why.
    assert!(
        stderr.contains("to keep within --max-overhead 5%"),
        "{stderr}"
    );
    let meta = read_metadata(&out).unwrap();
    let detached = &meta["ferret.detached_functions"];
    assert!(
        detached.contains("f100 (") && detached.contains("--max-overhead"),
        "{detached}"
    );
    assert!(!detached.contains("slow ("), "{detached}");
    assert_eq!(meta["ferret.max_overhead_percent"], "5");
    // The rarely called slow function stayed traced: every call.
    let rows = read_all(&out).unwrap();
    let slow: Vec<&Row> = ends(&rows, "slow").collect();
    assert_eq!(slow.len(), 10, "the program's own count");
    assert!(slow.iter().all(|r| r.status.as_deref() == Some("ok")));
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn every_function_traced_leaves_a_program_that_reads_its_arguments_unchanged() {
    let _machine = require_root();
    let program = build("many.c", &[]);
    let args = ["2000", "reads", "its", "arguments"];
    let plain = run({
        let mut c = Command::new(&program);
        c.args(args);
        c
    });
    assert!(plain.status.success());
    let dir = tempdir();
    let out = dir.path().join("args.parquet");
    let mut cmd = ferret();
    // No budget: every probe stays, the entry point's included.
    cmd.args([
        "record",
        "-s",
        "*",
        "--max-overhead",
        "0",
        "--max-rate",
        "0",
        "-o",
    ])
    .arg(&out)
    .arg("--")
    .arg(&program)
    .args(args);
    let traced = run(cmd);
    assert!(traced.status.success(), "{traced:?}");
    assert_eq!(
        String::from_utf8_lossy(&traced.stdout),
        String::from_utf8_lossy(&plain.stdout)
    );
    let stderr = String::from_utf8_lossy(&traced.stderr);
    assert!(
        stderr.contains("never returns normally") && stderr.contains("_start"),
        "{stderr}"
    );
    // `_start` was traced by its entry alone: its span never returns.
    let rows = read_all(&out).unwrap();
    let start: Vec<&Row> = ends(&rows, "_start").collect();
    assert_eq!(start.len(), 1);
    assert_ne!(start[0].status.as_deref(), Some("ok"));
    assert_eq!(ends(&rows, "f100").count(), 2000);
}

/// `analyze --format json` by function.
fn analyze(file: &Path, extra: &[&str]) -> BTreeMap<String, Value> {
    let mut args: Vec<&OsStr> = vec![OsStr::new("analyze"), file.as_os_str()];
    args.extend(extra.iter().map(OsStr::new));
    args.extend(["--format", "json", "--top", "0"].map(OsStr::new));
    let output = run({
        let mut c = ferret();
        c.args(args);
        c
    });
    assert!(output.status.success(), "{output:?}");
    let json: Value = serde_json::from_slice(&output.stdout).unwrap();
    json["functions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["function"].as_str().unwrap().to_owned(), f.clone()))
        .collect()
}

fn median_parent_ns(stdout: &[u8]) -> u64 {
    let text = String::from_utf8_lossy(stdout);
    let field = text
        .split_whitespace()
        .find_map(|w| w.strip_prefix("parent_median_ns="))
        .unwrap_or_else(|| panic!("no median in {text}"));
    field.parse().unwrap()
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn a_trivial_getter_reads_nanoseconds_and_its_parent_what_it_takes_untraced() {
    let _alone = alone();
    let program = build("getter.cpp", &[]);
    let untraced = || {
        let output = run({
            let mut c = Command::new(&program);
            c.args(["20", "200"]);
            c
        });
        assert!(output.status.success());
        median_parent_ns(&output.stdout)
    };
    // One round: the untraced runs around a traced one, and what ferret
    // reads. A round is judged against a calibration taken seconds before
    // it; on this shared VM a single-stepped probe's cost moves by a few
    // microseconds within a minute (9.3 to 12.9 µs seen), so a round whose
    // machine changed under it is run again, up to three, each one logged.
    let round = || -> Result<(), String> {
        // Before and after: the machine's speed drifts, so the traced run is
        // judged against both.
        let before = untraced();

        let dir = tempdir();
        let out = dir.path().join("getter.parquet");
        let mut cmd = ferret();
        // The getter's probes cost most of the parent's time: no budget here.
        cmd.args([
            "record",
            "-s",
            "Widget::get*",
            "-s",
            "parent*",
            "--max-overhead",
            "0",
            "--max-rate",
            "0",
            "-o",
        ])
        .arg(&out)
        .arg("--")
        .arg(&program)
        .args(["20", "200"]);
        let traced = run(cmd);
        assert!(traced.status.success(), "{traced:?}");
        let stderr = String::from_utf8_lossy(&traced.stderr);
        assert!(
            stderr.contains("return-instruction probes for 2, uretprobes for 0"),
            "C++ that throws is probed at its returns: {stderr}"
        );
        // Traced, the program itself sees the probes' cost.
        let slowed = median_parent_ns(&traced.stdout);
        let after = untraced();
        let (low, high) = (before.min(after), before.max(after));

        let corrected = analyze(&out, &[]);
        let get = &corrected["Widget::get() const"];
        assert_eq!(get["calls"], 4000);
        let get_p50 = get["p50_ns"].as_u64().unwrap();
        if get_p50 >= 2_000 {
            return Err(format!("a trivial getter reads {get_p50} ns"));
        }
        let parent = &corrected["parent(Widget const&, int)"];
        assert_eq!(parent["calls"], 20);
        let parent_p50 = parent["p50_ns"].as_u64().unwrap();
        if !(parent_p50 * 4 >= low * 3 && parent_p50 * 4 <= high * 5) {
            return Err(format!(
                "parent reads {parent_p50} ns corrected, takes {before} and {after} ns untraced \
                 ({slowed} ns traced, as the program saw it)"
            ));
        }

        // --raw shows what was measured.
        let raw = analyze(&out, &["--raw"]);
        let raw_get = raw["Widget::get() const"]["p50_ns"].as_u64().unwrap();
        assert!(raw_get > 2_000, "measured, the getter reads {raw_get} ns");
        let raw_parent = raw["parent(Widget const&, int)"]["p50_ns"]
            .as_u64()
            .unwrap();
        assert!(raw_parent > parent_p50);
        Ok(())
    };
    let mut failures = Vec::new();
    for attempt in 1..=3 {
        match round() {
            Ok(()) => return,
            Err(e) => {
                eprintln!("round {attempt}: {e}");
                failures.push(e);
            }
        }
    }
    panic!("three rounds out of bounds: {failures:#?}");
}
