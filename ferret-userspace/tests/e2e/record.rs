//! End-to-end: `ferret record` attaches real probes to programs built here
//! and the tests check what lands in the Parquet file against what the
//! programs themselves counted. Needs root (CI has it); fails loudly without.

use std::{
    collections::{BTreeMap, HashMap},
    fmt::Write as _,
    io::{BufRead as _, BufReader},
    process::{Command, Stdio},
};

use crate::support::{KillOnDrop, build, ferret, require_root, run, tempdir};
use ferret::sink::{Row, read_all, read_metadata};

fn ends(rows: &[Row]) -> impl Iterator<Item = &Row> {
    rows.iter()
        .filter(|r| r.kind.as_deref() == Some("SPAN_END"))
}

fn count_by(rows: &[Row], kind: &str, status: Option<&str>) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for r in rows.iter().filter(|r| r.kind.as_deref() == Some(kind)) {
        if status.is_some() && r.status.as_deref() != status {
            continue;
        }
        *counts
            .entry(r.function.clone().unwrap_or_default())
            .or_default() += 1;
    }
    counts
}

/// Parses `name=value` pairs the test programs print.
fn program_counts(stdout: &str) -> HashMap<String, i64> {
    stdout
        .split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .filter_map(|(k, v)| Some((k.to_owned(), v.parse().ok()?)))
        .collect()
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn nested_calls_on_threads_match_the_programs_own_counts() {
    let _machine = require_root();
    let program = build("nested.c", &[]);
    let dir = tempdir();
    let out = dir.path().join("nested.parquet");
    let mut cmd = ferret();
    cmd.args([
        "record", "-s", "outer", "-s", "middle", "-s", "leaf", "-s", "sleeper", "-o",
    ])
    .arg(&out)
    .arg("--")
    .arg(&program)
    .args(["4", "300"]);
    let output = run(cmd);
    assert!(output.status.success(), "ferret failed: {output:?}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let expected = program_counts(&stdout);
    assert_eq!(
        expected["outer"], 1200,
        "program output passed through: {stdout}"
    );

    let rows = read_all(&out).unwrap();
    let ok = count_by(&rows, "SPAN_END", Some("ok"));
    for f in ["outer", "middle", "leaf", "sleeper"] {
        assert_eq!(
            ok.get(f).copied().unwrap_or(0) as i64,
            expected[f],
            "calls of {f}"
        );
    }
    assert_eq!(
        count_by(&rows, "SPAN_START", None),
        count_by(&rows, "SPAN_END", None)
    );

    // Parent, depth and thread of every span.
    let by_id: HashMap<i64, &Row> = ends(&rows).map(|r| (r.span_id.unwrap(), r)).collect();
    let expected_parent = [
        ("leaf", Some("middle"), 2),
        ("middle", Some("outer"), 1),
        ("outer", None, 0),
    ];
    for r in ends(&rows) {
        let function = r.function.as_deref().unwrap();
        let Some(&(_, parent_fn, depth)) = expected_parent.iter().find(|(f, _, _)| *f == function)
        else {
            continue;
        };
        assert_eq!(r.depth, Some(depth), "depth of {function}");
        match (parent_fn, r.parent_span_id) {
            (None, None) => {}
            (Some(pf), Some(pid)) => {
                let parent = by_id[&pid];
                assert_eq!(parent.function.as_deref(), Some(pf), "parent of {function}");
                assert_eq!(parent.tid, r.tid, "parent on the same thread");
                assert!(
                    parent.start_ns <= r.start_ns && r.ts_ns <= parent.ts_ns,
                    "nested in time"
                );
            }
            other => panic!("{function}: unexpected parent {other:?}"),
        }
    }
    let worker_tids: std::collections::HashSet<i32> = ends(&rows)
        .filter(|r| r.function.as_deref() == Some("outer"))
        .map(|r| r.tid.unwrap())
        .collect();
    assert_eq!(worker_tids.len(), 4, "outer ran on four threads");
    let pid = rows.iter().find_map(|r| r.pid).unwrap();
    assert!(
        !worker_tids.contains(&pid),
        "workers are not the main thread"
    );
    assert!(ends(&rows).all(|r| r.thread_name.as_deref() == Some("nested")));

    // The 200 ms sleep, measured.
    let sleep = ends(&rows)
        .find(|r| r.function.as_deref() == Some("sleeper"))
        .unwrap();
    let ms = sleep.duration_ns.unwrap() as f64 / 1e6;
    // The program times its own sleep: on a loaded machine usleep(200 ms)
    // can oversleep, and what ferret must match is what really happened.
    let own_ms = expected["slept_ns"] as f64 / 1e6;
    eprintln!("sleeper measured {ms:.2} ms by ferret, {own_ms:.2} ms by itself");
    assert!(own_ms >= 200.0, "usleep(200 ms) slept {own_ms} ms");
    assert!(
        (190.0..=210.0).contains(&ms) || (ms - own_ms).abs() <= own_ms * 0.05,
        "200 ms ± 5 %, got {ms:.2} ms (the program measured {own_ms:.2} ms)"
    );
    assert!(
        (ms - own_ms).abs() <= own_ms * 0.05,
        "ferret within 5 % of the program's own clock: {ms:.2} vs {own_ms:.2} ms"
    );
    assert_eq!(sleep.tid, Some(pid), "sleeper runs on the main thread");

    // Metrics and metadata.
    let metric = rows
        .iter()
        .find(|r| r.kind.as_deref() == Some("METRIC"))
        .expect("a METRIC row");
    assert!(metric.rss_bytes.unwrap() > 0 && metric.threads.unwrap() >= 1);
    let meta = read_metadata(&out).unwrap();
    assert_eq!(meta["ferret.lost_events"], "0");
    assert!(meta["ferret.target"].contains("nested"));
    assert!(meta.contains_key("ferret.version"));
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn attach_by_pid_sees_threads_started_after_the_attach() {
    let _machine = require_root();
    let program = build("nested.c", &[]);
    let dir = tempdir();
    let gate = dir.path().join("go");
    let out = dir.path().join("pid.parquet");
    let mut target = KillOnDrop(
        Command::new(&program)
            .args(["3", "200"])
            .arg(&gate)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut target_out = BufReader::new(target.0.stdout.take().unwrap());
    let mut line = String::new();
    target_out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "ready");

    let mut recorder = KillOnDrop(
        ferret()
            .args(["record", "-p", &target.0.id().to_string()])
            .args(["-s", "outer", "-s", "leaf", "-o"])
            .arg(&out)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut recorder_err = BufReader::new(recorder.0.stderr.take().unwrap());
    let mut log = String::new();
    loop {
        let mut l = String::new();
        assert!(
            recorder_err.read_line(&mut l).unwrap() > 0,
            "ferret ended early: {log}"
        );
        log.push_str(&l);
        if l.contains("probes attached") {
            break;
        }
    }
    std::fs::write(&gate, b"").unwrap();
    let mut rest = String::new();
    target_out.read_line(&mut rest).unwrap();
    assert!(target.0.wait().unwrap().success());
    let status = recorder.0.wait().unwrap();
    std::io::Read::read_to_string(&mut recorder_err, &mut log).unwrap();
    eprintln!("{log}");
    assert!(
        status.success(),
        "ferret stops cleanly when the target exits"
    );

    let expected = program_counts(&rest);
    let rows = read_all(&out).unwrap();
    let ok = count_by(&rows, "SPAN_END", Some("ok"));
    assert_eq!(ok["outer"] as i64, expected["outer"]);
    assert_eq!(ok["leaf"] as i64, expected["leaf"]);
    let tids: std::collections::HashSet<_> = ends(&rows).map(|r| r.tid).collect();
    assert_eq!(tids.len(), 3, "three threads born after the attach");
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn function_in_a_shared_library_of_a_launched_command() {
    let _machine = require_root();
    let program = build("mathlib.c", &[]);
    let dir = tempdir();
    let out = dir.path().join("libm.parquet");
    let mut cmd = ferret();
    cmd.args(["record", "-s", "libm.so.6:cbrt", "-o"])
        .arg(&out)
        .arg("--")
        .arg(&program)
        .arg("57");
    let output = run(cmd);
    assert!(output.status.success());
    let rows = read_all(&out).unwrap();
    let calls: Vec<&Row> = ends(&rows).collect();
    assert_eq!(calls.len(), 57);
    assert!(calls.iter().all(|r| {
        r.function.as_deref() == Some("cbrt")
            && r.module
                .as_deref()
                .is_some_and(|m| m.ends_with("libm.so.6"))
            && r.status.as_deref() == Some("ok")
    }));
}

/// Runs `program` bare and under ferret; returns (bare output, traced output, rows).
fn with_and_without(
    program: &std::path::Path,
    patterns: &[&str],
    extra: &[&str],
) -> (std::process::Output, std::process::Output, Vec<Row>) {
    let bare = Command::new(program).output().unwrap();
    let dir = tempdir();
    let out = dir.path().join("t.parquet");
    let mut cmd = ferret();
    cmd.arg("record");
    for p in patterns {
        cmd.args(["-s", p]);
    }
    cmd.args(extra).arg("-o").arg(&out).arg("--").arg(program);
    let traced = run(cmd);
    let rows = read_all(&out).unwrap();
    (bare, traced, rows)
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn cpp_exceptions_through_traced_frames_do_not_harm_the_target() {
    let _machine = require_root();
    let program = build("unwind.cpp", &[]);
    let (bare, traced, rows) = with_and_without(&program, &["thrower*", "middle*"], &[]);
    assert_eq!(bare.status.code(), Some(3));
    assert_eq!(traced.status.code(), Some(3), "exit status passed through");
    assert_eq!(bare.stdout, traced.stdout, "output unchanged");
    let stderr = String::from_utf8_lossy(&traced.stderr);
    assert!(
        stderr.contains("return-instruction probes"),
        "auto mode picks ret probes: {stderr}"
    );
    for f in ["thrower(int)", "middle(int)"] {
        let starts = count_by(&rows, "SPAN_START", None)[f];
        let ok = count_by(&rows, "SPAN_END", Some("ok"))[f];
        let unwound = count_by(&rows, "SPAN_END", Some("unwound"))[f];
        assert_eq!((starts, ok, unwound), (10, 5, 5), "{f}");
    }
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn rust_panics_through_traced_frames_do_not_harm_the_target() {
    let _machine = require_root();
    let program = build("panics.rs", &[]);
    let (bare, traced, rows) =
        with_and_without(&program, &["panics::may_panic", "panics::middle"], &[]);
    assert_eq!(bare.status.code(), Some(4));
    assert_eq!(traced.status.code(), Some(4));
    assert_eq!(bare.stdout, traced.stdout);
    assert_eq!(
        String::from_utf8_lossy(&bare.stdout).trim(),
        "returned=5 caught=5"
    );
    for f in ["panics::may_panic", "panics::middle"] {
        let ok = count_by(&rows, "SPAN_END", Some("ok"))
            .get(f)
            .copied()
            .unwrap_or(0);
        let unwound = count_by(&rows, "SPAN_END", Some("unwound"))
            .get(f)
            .copied()
            .unwrap_or(0);
        assert_eq!((ok, unwound), (5, 5), "{f}");
    }
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn recursion_200_deep_is_recorded_exactly_in_every_exit_mode() {
    let _machine = require_root();
    let program = build("recurse.c", &[]);
    for mode in ["auto", "ret"] {
        let (bare, traced, rows) =
            with_and_without(&program, &["recurse"], &["--exit-probes", mode]);
        assert_eq!(bare.stdout, traced.stdout);
        let ends: Vec<&Row> = ends(&rows).collect();
        assert_eq!(ends.len(), 600, "{mode}: 3 × 200 calls");
        assert!(
            ends.iter().all(|r| r.status.as_deref() == Some("ok")),
            "{mode}: all returned"
        );
        let mut per_depth = BTreeMap::new();
        for r in &ends {
            *per_depth.entry(r.depth.unwrap()).or_insert(0) += 1;
        }
        assert_eq!(per_depth.len(), 200, "{mode}: depths 0..199");
        assert!(
            per_depth.values().all(|&n| n == 3),
            "{mode}: three spans per depth"
        );
    }
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn a_thousand_functions_attach_and_detach_in_well_under_a_second() {
    let _machine = require_root();
    let dir = tempdir();
    let src = dir.path().join("thousand_functions.c");
    let mut code = String::from("#include <stdio.h>\nvolatile int sink;\n");
    for i in 0..1000 {
        writeln!(
            code,
            "__attribute__((noinline)) void fn_{i}(void) {{ sink += {i}; }}"
        )
        .unwrap();
    }
    code.push_str("int main(void) {\n");
    for i in 0..1000 {
        writeln!(code, "  fn_{i}();").unwrap();
    }
    code.push_str("  printf(\"done\\n\");\n  return 0;\n}\n");
    std::fs::write(&src, code).unwrap();
    let program = crate::support::build_path(&src, &[]);
    let out = dir.path().join("many.parquet");
    let mut cmd = ferret();
    cmd.args(["record", "-s", "fn_*", "-o"])
        .arg(&out)
        .arg("--")
        .arg(&program);
    let output = run(cmd);
    assert!(output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    let ms_after = |marker: &str| -> f64 {
        let line = stderr
            .lines()
            .find(|l| l.contains(marker))
            .unwrap_or_else(|| panic!("no `{marker}` in {stderr}"));
        let before_ms = line.split(" ms").next().unwrap();
        before_ms.rsplit(' ').next().unwrap().parse().unwrap()
    };
    let attach_ms = ms_after("probes attached");
    let detach_ms = ms_after("detached in");
    println!("1000 functions: attach {attach_ms:.1} ms, detach {detach_ms:.1} ms");
    assert!(
        attach_ms < 1000.0 && detach_ms < 1000.0,
        "attach {attach_ms} ms, detach {detach_ms} ms"
    );
    let rows = read_all(&out).unwrap();
    assert_eq!(
        ends(&rows)
            .filter(|r| r.status.as_deref() == Some("ok"))
            .count(),
        1000
    );
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn readme_duckdb_query_runs_on_a_real_recording() {
    let _machine = require_root();
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let query = readme
        .split("<!-- duckdb-query -->")
        .nth(1)
        .and_then(|s| s.split("```sql").nth(1))
        .and_then(|s| s.split("```").next())
        .expect("README has a ```sql block after <!-- duckdb-query -->");
    let program = build("nested.c", &[]);
    let dir = tempdir();
    let out = dir.path().join("trace.parquet");
    let mut cmd = ferret();
    cmd.args(["record", "-s", "outer", "-s", "leaf", "-o"])
        .arg(&out)
        .arg("--")
        .arg(&program)
        .args(["2", "50"]);
    assert!(run(cmd).status.success());
    let query = query.replace("trace.parquet", &out.display().to_string());
    let script = "import duckdb, sys\n\
        for row in duckdb.sql(sys.argv[1]).fetchall(): print('|'.join(str(c) for c in row))";
    let output = Command::new("python3")
        .args(["-c", script, &query])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "duckdb: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8_lossy(&output.stdout);
    eprintln!("{text}");
    let leaf = text
        .lines()
        .find(|l| l.starts_with("leaf|"))
        .expect("a row for leaf");
    assert_eq!(
        leaf.split('|').nth(1),
        Some("600"),
        "2 threads × 50 × 2 middle × 3 leaf"
    );
}
