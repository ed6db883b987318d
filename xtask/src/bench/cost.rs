//! ferret's own cost, bounded and corrected (issue "ferret knows its own
//! cost"), measured against the same programs run untraced, alternating.
//!
//! - The budget: `many` (300 small functions called flat out, the shape of
//!   `-s '*'` on a real program) timed by itself, untraced and traced with
//!   the default `--max-overhead 5`; the slowdown is the traced run's work
//!   time over the mean of the untraced runs before and after it.
//! - The correction: `getter` (a parent doing ~10 ms of work around 200
//!   calls of a trivial getter, probed at its return instructions, about a
//!   third of the parent's time in probes) timed by itself untraced, against
//!   ferret's corrected median parent time; the error is their ratio less 1.
//!   The measured (`--raw`) median is shown beside it.

use std::path::PathBuf;

use anyhow::{Context as _, Result};
use serde_json::{Value, json};

use super::{Bench, capture, median, num};

/// The budget's goal: a broad pattern within 1.5× of the untraced time.
pub const SLOWDOWN_GOAL: f64 = 1.5;
/// The correction's goal: the corrected parent within 25 % of its untraced time.
pub const ERROR_GOAL: f64 = 0.25;

/// Builds the two programs from the end-to-end tests' sources.
pub fn build_programs(b: &Bench) -> Result<()> {
    let sources = b.sh.root.join("ferret-userspace/tests/programs");
    let mut cc = b.sh.cmd("cc");
    cc.args(["-O2", "-g"])
        .arg(sources.join("many.c"))
        .arg("-o")
        .arg(b.program("many"));
    b.sh.run(&mut cc)?;
    let mut cxx = b.sh.cmd("g++");
    cxx.args(["-O2", "-g"])
        .arg(sources.join("getter.cpp"))
        .arg("-o")
        .arg(b.program("getter"));
    b.sh.run(&mut cxx)
}

pub fn run(b: &Bench) -> Result<Value> {
    let rounds = if b.quick { 1 } else { 3 };
    let iterations = if b.quick { "300000" } else { "1000000" };
    let many = b.program("many");
    let getter = b.program("getter");

    // The budget: untraced, traced, untraced, … (each traced run between two).
    let untraced_many = || -> Result<f64> {
        let output = capture(b.sh.cmd(&many).args([iterations, "bench"]))?;
        work_ns(&output.stderr)
    };
    let mut slowdowns = Vec::new();
    let mut detached = Vec::new();
    let mut before = untraced_many()?;
    for round in 0..rounds {
        let out = b.scratch("cost-many.parquet");
        let output = capture(
            b.ferret()
                .args(["record", "-s", "*", "-o"])
                .arg(&out)
                .arg("--")
                .arg(&many)
                .args([iterations, "bench"]),
        )?;
        let traced = work_ns(&output.stderr)?;
        let after = untraced_many()?;
        let slowdown = traced / f64::midpoint(before, after);
        let stderr = String::from_utf8_lossy(&output.stderr);
        let n: f64 = stderr
            .lines()
            .filter_map(|l| l.split("detaching ").nth(1))
            .filter_map(|rest| rest.split_whitespace().next()?.parse::<f64>().ok())
            .sum();
        println!(
            "round {}/{rounds}  many: {:.2} s traced, {:.2} and {:.2} s untraced: {slowdown:.2}×, \
             {n} functions detached",
            round + 1,
            traced / 1e9,
            before / 1e9,
            after / 1e9,
        );
        slowdowns.push(slowdown);
        detached.push(n);
        before = after;
    }

    // The correction.
    let mut errors = Vec::new();
    let mut samples = Vec::new();
    for round in 0..rounds {
        let output = capture(b.sh.cmd(&getter).args(["20", "200"]))?;
        let untraced = parent_median(&output.stdout)?;
        let out = b.scratch("cost-getter.parquet");
        capture(
            b.ferret()
                .args([
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
                .arg(&getter)
                .args(["20", "200"]),
        )?;
        let corrected = analyze_p50(b, &out, false)?;
        let raw = analyze_p50(b, &out, true)?;
        let error = corrected.parent / untraced - 1.0;
        println!(
            "round {}/{rounds}  getter: parent {:.2} ms untraced, {:.2} ms corrected ({:+.1} %), \
             {:.2} ms measured; getter p50 {:.0} ns corrected, {:.0} ns measured",
            round + 1,
            untraced / 1e6,
            corrected.parent / 1e6,
            error * 100.0,
            raw.parent / 1e6,
            corrected.getter,
            raw.getter,
        );
        errors.push(error);
        samples.push(json!({
            "untraced_parent_ns": untraced,
            "corrected_parent_ns": corrected.parent,
            "measured_parent_ns": raw.parent,
            "corrected_getter_ns": corrected.getter,
            "measured_getter_ns": raw.getter,
        }));
    }
    let pick = |key: &str| {
        median(
            &samples
                .iter()
                .filter_map(|s| s[key].as_f64())
                .collect::<Vec<_>>(),
        )
    };
    Ok(json!({
        "rounds": rounds,
        "budget_slowdown": num(median(&slowdowns), 3),
        "budget_detached": num(median(&detached), 0),
        "correction_error": num(median(&errors), 4),
        "untraced_parent_ns": num(pick("untraced_parent_ns"), 0),
        "corrected_parent_ns": num(pick("corrected_parent_ns"), 0),
        "measured_parent_ns": num(pick("measured_parent_ns"), 0),
        "corrected_getter_ns": num(pick("corrected_getter_ns"), 0),
        "measured_getter_ns": num(pick("measured_getter_ns"), 0),
        "slowdowns": slowdowns,
        "errors": errors,
    }))
}

/// `many`'s own `work_ns=` on stderr.
fn work_ns(stderr: &[u8]) -> Result<f64> {
    let text = String::from_utf8_lossy(stderr);
    text.split_whitespace()
        .find_map(|w| w.strip_prefix("work_ns="))
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("no work_ns in {text}"))
}

/// `getter`'s own `parent_median_ns=` on stdout.
fn parent_median(stdout: &[u8]) -> Result<f64> {
    let text = String::from_utf8_lossy(stdout);
    text.split_whitespace()
        .find_map(|w| w.strip_prefix("parent_median_ns="))
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("no parent_median_ns in {text}"))
}

struct Medians {
    parent: f64,
    getter: f64,
}

/// The parent's and the getter's p50 as `ferret analyze` reports them.
fn analyze_p50(b: &Bench, file: &PathBuf, raw: bool) -> Result<Medians> {
    let mut cmd = b.ferret();
    cmd.arg("analyze")
        .arg(file)
        .args(["--format", "json", "--top", "0"]);
    if raw {
        cmd.arg("--raw");
    }
    let output = capture(&mut cmd)?;
    let json: Value = serde_json::from_slice(&output.stdout).context("analyze printed no JSON")?;
    let p50 = |name: &str| -> Result<f64> {
        json["functions"]
            .as_array()
            .and_then(|fs| fs.iter().find(|f| f["function"] == name))
            .and_then(|f| f["p50_ns"].as_f64())
            .with_context(|| format!("no {name} in the analysis"))
    };
    Ok(Medians {
        parent: p50("parent(Widget const&, int)")?,
        getter: p50("Widget::get() const")?,
    })
}
