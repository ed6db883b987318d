//! `cargo xtask bench`: what ferret costs, each number a ratio against a
//! reference measured in the same run.
//!
//! 1. [`overhead`]: cost per traced call of a ~1 ns function, ferret against
//!    the floor (an empty BPF program at the same probe points, same links),
//!    bpftrace doing the same job, and no tracing at all.
//! 2. [`pipeline`]: synthetic events through ferret's user-side pipeline on
//!    one core.
//! 3. [`load`]: a target calling traced functions flat out on several
//!    threads: events delivered and lost, ferret's CPU and peak memory.
//! 4. [`attach`]: attach and detach of 10,000 functions.
//! 5. [`load::memory`]: ferret's resident memory over a long recording.
//! 6. [`otlp`]: OpenTelemetry export throughput on one core, against the
//!    Parquet writer on the same spans.
//! 7. [`cost`]: the overhead budget (a broad pattern's slowdown) and the
//!    correction's error (a corrected time against the untraced one).
//! 8. [`sampling`]: what CPU sampling costs a busy target, at 99 and 999 Hz,
//!    against the same target unsampled.
//! 9. [`stalls`]: the stall watchdog on a pool of 1000 and 2000 resting
//!    threads beside a deadlock: ferret's CPU time against the session's
//!    length, how late `-d` ends, the stderr lines.
//! 10. [`sched`]: what the scheduler hooks (the per-call time split) cost
//!     a target that blocks and wakes tens of thousands of times a second.
//! 11. [`sched::go`]: what the Go split's hand-off probes cost a Go program
//!     switching goroutines millions of times a second.
//!
//! The machine is shared and noisy, so every comparison alternates its
//! contenders run by run and reports medians. Results are written to
//! `target/bench/results.json` after every part (a run cut short keeps what
//! it measured), then printed as a table. Nothing here is a test: it never
//! runs as part of `cargo xtask test`.

mod attach;
mod cost;
mod load;
mod otlp;
mod overhead;
mod pipeline;
mod report;
mod sampling;
mod sched;
mod stalls;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use anyhow::{Context as _, Result, bail};
use clap::{Args, ValueEnum};
use serde_json::{Map, Value, json};

use crate::setup;
use crate::sh::{Sh, display};

/// `cargo xtask bench` options.
#[derive(Args, Clone, Debug)]
pub struct Options {
    /// A smoke run: fewer rounds, shorter loads (seconds instead of minutes).
    #[arg(long)]
    pub quick: bool,
    /// Run only these parts (default: all).
    #[arg(long, value_enum, value_delimiter = ',')]
    pub only: Vec<Part>,
    /// Skip `cargo xtask setup`.
    #[arg(long)]
    pub no_setup: bool,
    /// Internal: everything is built; measure only (the second half of a
    /// run started without root, re-run under sudo).
    #[arg(long, hide = true)]
    pub measure_only: bool,
}

/// The parts of the benchmark.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Part {
    /// Cost per traced call against the floor and bpftrace.
    Overhead,
    /// Events per second through decode, reconstruction and Parquet.
    Pipeline,
    /// A flat-out multi-threaded target: delivered, lost, CPU, RSS.
    Load,
    /// Attach and detach of 10,000 functions.
    Attach,
    /// RSS over a long recording.
    Memory,
    /// Spans per second through OTLP export (one core), against Parquet.
    Otlp,
    /// The overhead budget's slowdown and the correction's error.
    Cost,
    /// The slowdown CPU sampling causes a busy target, per sample.
    Sampling,
    /// The stall watchdog on thousands of stalled threads: CPU, `-d`, lines.
    Stalls,
    /// The scheduler hooks' cost to a target that switches often.
    Sched,
    /// The Go hand-off probes' cost to a Go program switching goroutines often.
    #[value(name = "gosched")]
    GoSched,
}

impl Part {
    const ALL: [Part; 11] = [
        Part::Overhead,
        Part::Pipeline,
        Part::Load,
        Part::Attach,
        Part::Memory,
        Part::Otlp,
        Part::Cost,
        Part::Sampling,
        Part::Stalls,
        Part::Sched,
        Part::GoSched,
    ];

    fn key(self) -> &'static str {
        match self {
            Part::Overhead => "overhead",
            Part::Pipeline => "pipeline",
            Part::Load => "load",
            Part::Attach => "attach",
            Part::Memory => "memory",
            Part::Otlp => "otlp",
            Part::Cost => "cost",
            Part::Sampling => "sampling",
            Part::Stalls => "stalls",
            Part::Sched => "sched",
            Part::GoSched => "gosched",
        }
    }
}

/// Everything a part needs: where things are, and how long to measure.
pub struct Bench<'a> {
    pub sh: &'a Sh,
    pub quick: bool,
    /// `target/bench`: programs, recordings, results.
    pub dir: PathBuf,
    /// The release `ferret` binary.
    pub ferret: PathBuf,
    /// The release `bench` example of ferret-userspace (floor, pipeline).
    pub helper: PathBuf,
    /// Compiled benchmark programs, by source stem.
    pub programs: PathBuf,
}

impl Bench<'_> {
    /// A compiled program from `bench/programs`.
    pub fn program(&self, stem: &str) -> PathBuf {
        self.programs.join(stem)
    }

    /// A scratch file in `target/bench`.
    pub fn scratch(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// `ferret ARGS`.
    pub fn ferret(&self) -> Command {
        self.sh.cmd(&self.ferret)
    }
}

pub fn run(sh: &Sh, options: &Options) -> Result<()> {
    let parts: Vec<Part> = if options.only.is_empty() {
        Part::ALL.to_vec()
    } else {
        Part::ALL
            .into_iter()
            .filter(|p| options.only.contains(p))
            .collect()
    };
    let target = sh.target_dir()?;
    let dir = target.join("bench");
    let bench = Bench {
        sh,
        quick: options.quick,
        dir: dir.clone(),
        ferret: target.join("release").join("ferret"),
        helper: target.join("release").join("examples").join("bench"),
        programs: dir.join("programs"),
    };

    if !options.measure_only {
        if !options.no_setup {
            setup::run(sh).context("`cargo xtask setup` failed")?;
        }
        build(&bench)?;
        if !sh.is_root {
            return rerun_as_root(sh, options);
        }
    }
    if sh.dry_run {
        println!("\n==> dry run: nothing was measured");
        return Ok(());
    }
    if !sh.is_root {
        bail!("the benchmarks attach uprobes: run as root");
    }

    let results_path = dir.join("results.json");
    let mut results = Map::new();
    results.insert("machine".into(), report::machine());
    results.insert("quick".into(), Value::Bool(options.quick));
    results.insert("started".into(), Value::String(report::now_utc()));
    for part in &parts {
        println!("\n==> {}", report::title(*part));
        let value = match part {
            Part::Overhead => overhead::run(&bench),
            Part::Pipeline => pipeline::run(&bench),
            Part::Load => load::sustained(&bench),
            Part::Attach => attach::run(&bench),
            Part::Memory => load::memory(&bench),
            Part::Otlp => otlp::run(&bench),
            Part::Cost => cost::run(&bench),
            Part::Sampling => sampling::run(&bench),
            Part::Stalls => stalls::run(&bench),
            Part::Sched => sched::run(&bench),
            Part::GoSched => sched::go(&bench),
        };
        let value = value.unwrap_or_else(|e| {
            println!("{} failed: {e:#}", part.key());
            json!({ "error": format!("{e:#}") })
        });
        results.insert(part.key().into(), value);
        write_results(&results_path, &results)?;
    }
    let results = Value::Object(results);
    println!("\n{}", report::table(&results));
    println!("results: {}", results_path.display());
    Ok(())
}

fn write_results(path: &Path, results: &Map<String, Value>) -> Result<()> {
    let text = serde_json::to_string_pretty(results).expect("JSON values serialize");
    std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))
}

/// Builds ferret, the helper example and the benchmark programs, as the
/// invoking user.
fn build(bench: &Bench) -> Result<()> {
    let sh = bench.sh;
    sh.run(sh.cargo().args([
        "build",
        "--release",
        "--package",
        "ferret-userspace",
        "--bin",
        "ferret",
        "--example",
        "bench",
    ]))?;
    if !sh.dry_run {
        std::fs::create_dir_all(&bench.programs)
            .with_context(|| format!("creating {}", bench.programs.display()))?;
    }
    let sources = sh.root.join("bench").join("programs");
    for (source, extra) in [
        ("tight.c", &[][..]),
        ("load.c", &["-pthread"][..]),
        ("spin.c", &[][..]),
        ("pingpong.c", &["-pthread"][..]),
    ] {
        let stem = source.trim_end_matches(".c");
        let mut cc = sh.cmd("cc");
        cc.args(["-O2", "-g"])
            .args(extra)
            .arg(sources.join(source))
            .arg("-o")
            .arg(bench.program(stem));
        sh.run(&mut cc)?;
    }
    build_go(bench, &sources)?;
    attach::build_programs(bench)?;
    stalls::build_program(bench)?;
    cost::build_programs(bench)
}

/// The Go programs, when Go is installed (`cargo xtask setup` installs it;
/// without it the Go row of the overhead table stays empty and the
/// `gosched` part fails saying so): `tight.go` as `tight-go`,
/// `gopingpong.go` as `gopingpong`. Their build cache lives in
/// `target/bench`, and nothing is fetched.
fn build_go(bench: &Bench, sources: &Path) -> Result<()> {
    let sh = bench.sh;
    if sh.which("go").is_none() {
        println!("go is not installed: the Go row of the overhead table stays empty");
        return Ok(());
    }
    let cache = bench.scratch("go-cache");
    for (source, stem) in [("tight.go", "tight-go"), ("gopingpong.go", "gopingpong")] {
        let module = bench.scratch(&format!("{stem}-module"));
        let source = sources.join(source);
        if !sh.dry_run {
            std::fs::create_dir_all(&module)
                .with_context(|| format!("creating {}", module.display()))?;
            std::fs::copy(&source, module.join("main.go"))
                .with_context(|| format!("copying {}", source.display()))?;
            std::fs::write(module.join("go.mod"), format!("module {stem}\n\ngo 1.17\n"))
                .with_context(|| format!("writing {}", module.display()))?;
        }
        let mut go = sh.cmd("go");
        go.arg("build")
            .arg("-o")
            .arg(bench.program(stem))
            .current_dir(&module)
            .env("GOCACHE", cache.join("build"))
            .env("GOPATH", cache.join("path"))
            .env("GOFLAGS", "-mod=mod")
            .env("GOPROXY", "off")
            .env("GOTOOLCHAIN", "local")
            .env("CGO_ENABLED", "0");
        sh.run(&mut go)?;
    }
    Ok(())
}

/// The measurements need root; the build above ran as the user (so
/// `target/` stays theirs). Runs this same task again under sudo, measuring
/// only.
fn rerun_as_root(sh: &Sh, options: &Options) -> Result<()> {
    let xtask = std::env::current_exe().context("finding the xtask binary")?;
    let mut cmd = sh.as_root(&xtask, "the benchmarks (eBPF uprobes)")?;
    cmd.args(["bench", "--measure-only"]);
    if options.quick {
        cmd.arg("--quick");
    }
    if !options.only.is_empty() {
        let only: Vec<&str> = options.only.iter().map(|p| p.key()).collect();
        cmd.arg(format!("--only={}", only.join(",")));
    }
    println!("not root: measuring under sudo");
    sh.run(&mut cmd)
}

/// Runs `cmd` to completion, capturing stdout and stderr; fails with the
/// stderr tail if it exits non-zero.
pub fn capture(cmd: &mut Command) -> Result<Output> {
    let output = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run `{}`", display(cmd)))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(6).collect();
        bail!(
            "`{}` failed ({}): {}",
            display(cmd),
            output.status,
            tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
        );
    }
    Ok(output)
}

/// The number after `key` on the first line of `text` containing `key`
/// (`"calls 100 ns_per_call 3.5"`, key `ns_per_call` → 3.5).
pub fn number_after(text: &str, key: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        let mut words = line.split_whitespace();
        words.find(|w| *w == key)?;
        words.next()?.parse().ok()
    })
}

/// The number just before `unit` on the first line containing `marker`
/// (`"... attached ... in 16.4 ms"`, marker `attached`, unit `ms` → 16.4).
pub fn number_before(text: &str, marker: &str, unit: &str) -> Option<f64> {
    let line = text.lines().find(|l| l.contains(marker))?;
    let words: Vec<&str> = line.split_whitespace().collect();
    words
        .windows(2)
        .find(|w| w[1].trim_end_matches([';', ',', '.']) == unit && w[0].parse::<f64>().is_ok())
        .and_then(|w| w[0].parse().ok())
}

/// The median of `values` (the mean of the middle two for an even count);
/// `None` when empty.
pub fn median(values: &[f64]) -> Option<f64> {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(sorted[n / 2]),
        _ => Some(f64::midpoint(sorted[n / 2 - 1], sorted[n / 2])),
    }
}

/// The median of the round-by-round ratios `a[i] / b[i]` (runs of one
/// round are neighbours in time); `None` without pairs.
pub fn paired_ratio(a: &[f64], b: &[f64]) -> Option<f64> {
    let ratios: Vec<f64> = a
        .iter()
        .zip(b)
        .filter(|&(_, &b)| b > 0.0)
        .map(|(a, b)| a / b)
        .collect();
    median(&ratios)
}

/// A JSON number rounded to `digits` decimals, or null.
pub fn num(value: Option<f64>, digits: i32) -> Value {
    value.map_or(Value::Null, |v| {
        let scale = 10f64.powi(digits);
        json!((v * scale).round() / scale)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_numbers_from_program_and_ferret_output() {
        let out = "Attaching 2 probes...\ncalls 5000 ns_per_call 45111.425 result 5000\n";
        assert_eq!(number_after(out, "ns_per_call"), Some(45111.425));
        assert_eq!(number_after(out, "missing"), None);
        let err = "ferret: 20000 probes attached through 2 uprobe_multi links in 16.4 ms\n\
                   ferret: wrote 5 rows to x.parquet; 0 events lost; probes detached in 111.4 ms\n";
        assert_eq!(number_before(err, "probes attached", "ms"), Some(16.4));
        assert_eq!(number_before(err, "detached in", "ms"), Some(111.4));
        assert_eq!(number_before(err, "wrote", "rows"), Some(5.0));
        assert_eq!(number_before(err, "wrote", "events"), Some(0.0));
    }

    #[test]
    fn medians_and_numbers() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(&[]), None);
        assert_eq!(num(Some(1.23456), 2), json!(1.23));
    }
}
