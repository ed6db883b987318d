//! The stall watchdog at a server's scale: `stall_pool` (the end-to-end
//! tests' program) runs a pool of threads sleeping in a traced `idle_wait`
//! and two threads deadlocked on a pair of mutexes; `ferret record -p`
//! attaches after all of that happened, with `-d` and `--stall`:
//!
//! - 1000 threads, `-d 4 --stall 1s` (what the end-to-end test checks);
//! - 2000 threads, `-d 8 --stall 3s` (the report: 2000 stall lines,
//!   a core for the whole session, `-d 8` ending after 13 s).
//!
//! Reported, medians over the rounds: ferret's CPU time for the whole
//! session (its rusage, calibration and attach included) as a ratio to the
//! session's length, how late `-d` ended, how many stall lines stderr got,
//! and what the watchdog's capture thread cost (`ferret.stall_watchdog`:
//! its CPU time, the share of a core its captures took, the time it held
//! back to stay within that share).

use std::io::{BufRead as _, BufReader, Read as _};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use serde_json::{Value, json};

use super::{Bench, capture, median, num};

/// (threads, `-d` seconds, `--stall`).
pub const SCENARIOS: [(usize, u64, &str); 2] = [(1000, 4, "1s"), (2000, 8, "3s")];

/// ferret's CPU time over the session's length, at most: 1.5 s of a 4 s
/// session.
pub const CPU_SHARE_GOAL: f64 = 1.5 / 4.0;

/// How late `-d` may end, start-up included.
pub const LATE_GOAL_S: f64 = 1.0;

/// Compiles `stall_pool` from the end-to-end tests' programs.
pub fn build_program(b: &Bench) -> Result<()> {
    let source =
        b.sh.root
            .join("ferret-userspace/tests/programs/stall_pool.c");
    let mut cc = b.sh.cmd("cc");
    cc.args(["-O2", "-g", "-pthread"])
        .arg(source)
        .arg("-o")
        .arg(b.program("stall_pool"));
    b.sh.run(&mut cc)
}

struct Run {
    cpu_s: f64,
    wall_s: f64,
    stall_lines: usize,
    watchdog: Value,
}

pub fn run(b: &Bench) -> Result<Value> {
    let rounds = if b.quick { 1 } else { 3 };
    let mut scenarios = serde_json::Map::new();
    for (threads, seconds, stall) in SCENARIOS {
        let mut runs = Vec::new();
        for round in 0..rounds {
            let run = record(b, threads, seconds, stall)
                .with_context(|| format!("{threads} threads, -d {seconds}"))?;
            println!(
                "round {}/{rounds}  {threads} threads, -d {seconds} --stall {stall}: ferret used \
                 {:.2} s of CPU in {:.2} s ({:.1} % of a core), {} stall lines; capture thread \
                 {:.2} s",
                round + 1,
                run.cpu_s,
                run.wall_s,
                100.0 * run.cpu_s / run.wall_s,
                run.stall_lines,
                watchdog_s(&run.watchdog, "cpu_ns").unwrap_or(0.0),
            );
            runs.push(run);
        }
        let med = |f: &dyn Fn(&Run) -> Option<f64>| {
            median(&runs.iter().filter_map(f).collect::<Vec<_>>())
        };
        let seconds_f = seconds as f64;
        // What the captures themselves took, over the session: the capture
        // thread's CPU time without the one-offs (finding the calls running
        // at attach, reading debug information).
        let captures_share = |r: &Run| {
            let all = watchdog_s(&r.watchdog, "cpu_ns")?;
            let finding = watchdog_s(&r.watchdog, "finding_cpu_ns").unwrap_or(0.0);
            let warming = watchdog_s(&r.watchdog, "warming_cpu_ns").unwrap_or(0.0);
            Some((all - finding - warming).max(0.0) / r.wall_s)
        };
        scenarios.insert(
            format!("{threads}"),
            json!({
                "threads": threads,
                "duration_s": seconds,
                "stall": stall,
                "cpu_s": num(med(&|r| Some(r.cpu_s)), 3),
                "wall_s": num(med(&|r| Some(r.wall_s)), 3),
                "cpu_per_session_s": num(med(&|r| Some(r.cpu_s / r.wall_s)), 4),
                "late_s": num(med(&|r| Some(r.wall_s - seconds_f)), 3),
                "stall_lines": med(&|r| Some(r.stall_lines as f64)),
                "watchdog_cpu_s": num(med(&|r| watchdog_s(&r.watchdog, "cpu_ns")), 3),
                "watchdog_finding_cpu_s":
                    num(med(&|r| watchdog_s(&r.watchdog, "finding_cpu_ns")), 3),
                "watchdog_warming_cpu_s":
                    num(med(&|r| watchdog_s(&r.watchdog, "warming_cpu_ns")), 3),
                "watchdog_held_back_s": num(med(&|r| watchdog_s(&r.watchdog, "held_back_ns")), 3),
                "captures_share_of_a_core": num(med(&captures_share), 4),
                "runs": runs.iter().map(|r| json!({
                    "cpu_s": num(Some(r.cpu_s), 3),
                    "wall_s": num(Some(r.wall_s), 3),
                    "stall_lines": r.stall_lines,
                    "stall_watchdog": r.watchdog,
                })).collect::<Vec<_>>(),
            }),
        );
    }
    Ok(json!({
        "program": "stall_pool: THREADS sleeping in a traced idle_wait, two deadlocked",
        "rounds": rounds,
        "scenarios": scenarios,
    }))
}

/// A figure of `ferret.stall_watchdog` in seconds.
fn watchdog_s(stats: &Value, key: &str) -> Option<f64> {
    stats.get(key)?.as_f64().map(|ns| ns / 1e9)
}

/// One session: the pool started and resting, ferret attached and timed.
fn record(b: &Bench, threads: usize, seconds: u64, stall: &str) -> Result<Run> {
    let mut pool =
        b.sh.cmd(b.program("stall_pool"))
            .args([threads.to_string(), (seconds + 60).to_string()])
            .stdout(Stdio::piped())
            .spawn()
            .context("starting stall_pool")?;
    let ready = {
        let mut line = String::new();
        BufReader::new(pool.stdout.take().expect("piped"))
            .read_line(&mut line)
            .map(|_| line)
    };
    let result = (|| {
        if ready.as_deref().ok() != Some("ready\n") {
            bail!("stall_pool did not say ready: {ready:?}");
        }
        std::thread::sleep(Duration::from_millis(200));
        let out = b.scratch("stalls.parquet");
        let started = Instant::now();
        let mut ferret = b
            .ferret()
            .args(["record", "-p", &pool.id().to_string()])
            .args([
                "-s",
                "idle_wait",
                "-s",
                "lock_*",
                "-d",
                &seconds.to_string(),
            ])
            .args(["--stall", stall, "-o"])
            .arg(&out)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting ferret")?;
        let mut stderr = ferret.stderr.take().expect("piped");
        let reader = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            text
        });
        let (status, usage) = super::load::wait_with_rusage(&mut ferret)?;
        let wall_s = started.elapsed().as_secs_f64();
        let stderr = reader.join().unwrap_or_default();
        if !status.success() {
            bail!("ferret failed ({status}): {stderr}");
        }
        let output = capture(b.sh.cmd(&b.helper).arg("metadata").arg(&out))?;
        let text = String::from_utf8_lossy(&output.stdout);
        let watchdog = text
            .lines()
            .find_map(|l| l.strip_prefix("ferret.stall_watchdog "))
            .map(serde_json::from_str::<Value>)
            .transpose()
            .context("ferret.stall_watchdog is not JSON")?
            .unwrap_or(Value::Null);
        let _ = std::fs::remove_file(&out);
        Ok(Run {
            cpu_s: usage.cpu_seconds,
            wall_s,
            stall_lines: stderr
                .lines()
                .filter(|l| l.starts_with("ferret: stall:"))
                .count(),
            watchdog,
        })
    })();
    let _ = pool.kill();
    let _ = pool.wait();
    result
}
