//! OpenTelemetry export throughput: the `bench otlp` helper replays the
//! pipeline's synthetic span events through the exporter's selection, OTLP
//! mapping, protobuf encoding and gzip on one thread (CPU time: what one
//! core can do), and through the Parquet writer, the reference measured in
//! the same run; then through the real exporter thread to a null collector
//! on loopback HTTP (wall time).

use anyhow::{Context as _, Result};
use serde_json::{Value, json};

use super::{Bench, capture, median, num};

/// The goal: at the default cap (`--otlp-max-spans 1000`) the export costs
/// under 1 % of a core.
pub const GOAL_PER_S: f64 = 1e5;

pub fn run(b: &Bench) -> Result<Value> {
    let (runs, spans) = if b.quick {
        (1, 200_000)
    } else {
        (3, 2_000_000)
    };
    let mut samples: Vec<Value> = Vec::new();
    for run in 0..runs {
        let output = capture(
            b.sh.cmd(&b.helper)
                .args(["otlp", "--spans", &spans.to_string()]),
        )?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        let value: Value = serde_json::from_str(stdout.trim())
            .with_context(|| format!("the helper printed no JSON: {stdout}"))?;
        println!(
            "run {}/{runs}  OTLP export {:.2} M spans/s, Parquet {:.2} M spans/s (CPU time); \
             loopback HTTP {:.2} M spans/s (wall)",
            run + 1,
            get(&value, &["export", "cpu_per_s"]).unwrap_or(0.0) / 1e6,
            get(&value, &["parquet", "cpu_per_s"]).unwrap_or(0.0) / 1e6,
            get(&value, &["loopback", "wall_per_s"]).unwrap_or(0.0) / 1e6,
        );
        samples.push(value);
    }
    let med = |path: &[&str]| {
        median(
            &samples
                .iter()
                .filter_map(|s| get(s, path))
                .collect::<Vec<_>>(),
        )
    };
    let export = med(&["export", "cpu_per_s"]);
    let parquet = med(&["parquet", "cpu_per_s"]);
    // The ratio per run (the two stages alternate within a run), then the median.
    let ratios: Vec<f64> = samples
        .iter()
        .filter_map(|s| {
            Some(get(s, &["export", "cpu_per_s"])? / get(s, &["parquet", "cpu_per_s"])?)
        })
        .collect();
    Ok(json!({
        "spans_per_run": spans,
        "runs": runs,
        "export_per_s": num(export, 0),
        "parquet_per_s": num(parquet, 0),
        "select_per_s": num(med(&["select", "cpu_per_s"]), 0),
        "export_vs_parquet": num(median(&ratios), 3),
        "loopback_per_s": num(med(&["loopback", "wall_per_s"]), 0),
        "loopback_unsent": num(med(&["loopback", "unsent"]), 0),
        "gzip_bytes_per_span": num(med(&["gzip_bytes_per_span"]), 1),
        "protobuf_bytes_per_span": num(med(&["protobuf_bytes_per_span"]), 1),
        "vs_goal": num(export.map(|e| e / GOAL_PER_S), 2),
        "samples": samples,
    }))
}

fn get(value: &Value, path: &[&str]) -> Option<f64> {
    let mut v = value;
    for key in path {
        v = v.get(key)?;
    }
    v.as_f64()
}
