//! Pipeline throughput: the `bench pipeline` helper pushes synthetic
//! ring-buffer records (eight threads, nested calls, 256 functions) through
//! decode, stack reconstruction, the live aggregates (`watch`) and the
//! Parquet writer on one thread, and
//! reports each stage's rate by the thread's CPU time (what one core can do)
//! and by wall time (what it did on this shared machine).

use anyhow::{Context as _, Result};
use serde_json::{Value, json};

use super::{Bench, capture, median, num};

/// The goal: the kernel, never ferret, is the limit.
pub const GOAL_PER_S: f64 = 5e6;

pub fn run(b: &Bench) -> Result<Value> {
    let (runs, events) = if b.quick {
        (1, 2_000_000)
    } else {
        (3, 20_000_000)
    };
    let mut samples: Vec<Value> = Vec::new();
    for run in 0..runs {
        let output = capture(
            b.sh.cmd(&b.helper)
                .args(["pipeline", "--events", &events.to_string(), "--out"])
                .arg(b.scratch("pipeline.parquet")),
        )?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        let value: Value = serde_json::from_str(stdout.trim())
            .with_context(|| format!("the helper printed no JSON: {stdout}"))?;
        println!(
            "run {}/{runs}  record path {:.2} M events/s, with aggregates (watch -o) {:.2} M/s \
             (CPU time; wall: {:.2} M/s)",
            run + 1,
            rate(&value, "record", "cpu_per_s").unwrap_or(0.0) / 1e6,
            rate(&value, "full", "cpu_per_s").unwrap_or(0.0) / 1e6,
            rate(&value, "full", "wall_per_s").unwrap_or(0.0) / 1e6,
        );
        samples.push(value);
    }
    let stage = |name: &str, clock: &str| {
        let values: Vec<f64> = samples
            .iter()
            .filter_map(|s| rate(s, name, clock))
            .collect();
        num(median(&values), 0)
    };
    let full = median(
        &samples
            .iter()
            .filter_map(|s| rate(s, "full", "cpu_per_s"))
            .collect::<Vec<_>>(),
    );
    Ok(json!({
        "events_per_run": events,
        "runs": runs,
        "decode_per_s": stage("decode", "cpu_per_s"),
        "reconstruct_per_s": stage("reconstruct", "cpu_per_s"),
        "aggregate_per_s": stage("aggregate", "cpu_per_s"),
        "record_per_s": stage("record", "cpu_per_s"),
        "full_per_s": num(full, 0),
        "full_wall_per_s": stage("full", "wall_per_s"),
        "vs_goal": num(full.map(|f| f / GOAL_PER_S), 3),
        "file_bytes_per_event": samples.first().and_then(|s| s.get("file_bytes_per_event")).cloned(),
        "samples": samples,
    }))
}

fn rate(sample: &Value, stage: &str, clock: &str) -> Option<f64> {
    sample.get(stage)?.get(clock)?.as_f64()
}
