//! What CPU sampling costs. `bench/programs/spin.c` does fixed integer work
//! (no calls to trace) and times it by its own thread's CPU time, which
//! includes the timer interrupts that sample it and the BPF program they
//! run. Contenders, alternated run by run (the order flips every round):
//!
//! - unsampled;
//! - `ferret record` without `-s` at `--sample-hz` 99 (the default) and 999,
//!   with `--max-overhead 0` so the budget does not slow sampling down.
//!
//! Reported: the target's slowdown (median of per-round ratios), the cost
//! per sample that implies, the BPF program's own time per sample (it
//! measures itself; `ferret.sampling` in the recording), and ferret's own
//! CPU time per sample on the sampler thread (unwinding and symbolizing,
//! which the target does not pay but the machine does).

use anyhow::{Context as _, Result};
use serde_json::{Value, json};

use super::{Bench, capture, median, num, number_after};

/// The rates compared.
pub const RATES: [u64; 2] = [99, 999];

/// How long `spin` works untimed before it starts timing.
const WARMUP_MS: &str = "500";

#[derive(Default)]
struct Runs {
    /// CPU ns per unit of work.
    cpu: Vec<f64>,
    /// Samples taken, the target's whole CPU time, ns.
    samples: Vec<f64>,
    cpu_total: Vec<f64>,
    bpf_ns: Vec<f64>,
    sampler_ns: Vec<f64>,
}

pub fn run(b: &Bench) -> Result<Value> {
    let (rounds, units) = if b.quick { (3, 15_000) } else { (7, 60_000) };
    let mut plain = Runs::default();
    let mut sampled: Vec<Runs> = RATES.iter().map(|_| Runs::default()).collect();
    let contenders: Vec<Option<usize>> = std::iter::once(None)
        .chain((0..RATES.len()).map(Some))
        .collect();
    for round in 0..rounds {
        let mut order = contenders.clone();
        if round % 2 == 1 {
            order.reverse();
        }
        for contender in order {
            let runs = match contender {
                None => &mut plain,
                Some(i) => &mut sampled[i],
            };
            measure(b, contender.map(|i| RATES[i]), units, runs).with_context(|| {
                format!(
                    "measuring {}",
                    contender.map_or("unsampled".to_owned(), |i| format!("{} Hz", RATES[i]))
                )
            })?;
            println!(
                "round {}/{rounds}  {:<10} {:>10} CPU per unit{}",
                round + 1,
                contender.map_or("unsampled".to_owned(), |i| format!("{} Hz", RATES[i])),
                super::report::duration_ns(*runs.cpu.last().unwrap_or(&0.0)),
                runs.samples
                    .last()
                    .map(|s| format!(", {s} samples"))
                    .unwrap_or_default()
            );
        }
    }
    let mut rates = serde_json::Map::new();
    for (i, hz) in RATES.iter().enumerate() {
        let runs = &sampled[i];
        let ratios: Vec<f64> = runs
            .cpu
            .iter()
            .zip(&plain.cpu)
            .filter(|&(_, &p)| p > 0.0)
            .map(|(s, p)| s / p)
            .collect();
        let slowdown = median(&ratios);
        // Samples per second of the target's CPU time, and so what each
        // sample cost it.
        let per_cpu_s: Vec<f64> = runs
            .samples
            .iter()
            .zip(&runs.cpu_total)
            .filter(|&(_, &t)| t > 0.0)
            .map(|(s, t)| s / (t / 1e9))
            .collect();
        let per_cpu_s = median(&per_cpu_s);
        let ns_per_sample = slowdown
            .zip(per_cpu_s)
            .filter(|&(_, rate)| rate > 0.0)
            .map(|(r, rate)| (r - 1.0) * 1e9 / rate);
        rates.insert(
            hz.to_string(),
            json!({
                "slowdown": num(slowdown, 4),
                "overhead_percent": num(slowdown.map(|r| (r - 1.0) * 100.0), 3),
                "samples_per_cpu_s": num(per_cpu_s, 1),
                "target_ns_per_sample": num(ns_per_sample, 0),
                "bpf_ns_per_sample": num(median(&runs.bpf_ns), 0),
                "sampler_cpu_ns_per_sample": num(median(&runs.sampler_ns), 0),
                "cpu_ns_per_unit": runs.cpu,
                "samples": runs.samples,
            }),
        );
    }
    Ok(json!({
        "program": "spin (integer work, no calls traced)",
        "clock": "CPU time of the working thread",
        "rounds": rounds,
        "units_per_run": units,
        "unsampled_cpu_ns_per_unit": plain.cpu,
        "unsampled_ns_per_unit": num(median(&plain.cpu), 1),
        "rates": rates,
    }))
}

/// One run, at `hz` or unsampled.
fn measure(b: &Bench, hz: Option<u64>, units: u64, runs: &mut Runs) -> Result<()> {
    let spin = b.program("spin");
    let output = match hz {
        None => capture(b.sh.cmd(&spin).arg(units.to_string()).arg(WARMUP_MS))?,
        Some(hz) => {
            let parquet = b.scratch("sampling.parquet");
            let output = capture(
                b.ferret()
                    .env("FERRET_CALIBRATION_CALLS", "0")
                    .args(["record", "--sample-hz", &hz.to_string()])
                    .args(["--max-overhead", "0", "-o"])
                    .arg(&parquet)
                    .arg("--")
                    .arg(&spin)
                    .arg(units.to_string())
                    .arg(WARMUP_MS),
            )?;
            let sampling = sampling_metadata(b, &parquet)?;
            let field = |key: &str| sampling.get(key).and_then(Value::as_f64);
            let samples = field("samples").unwrap_or(0.0);
            runs.samples.push(samples);
            if samples > 0.0 {
                if let Some(ns) = field("bpf_ns_per_sample") {
                    runs.bpf_ns.push(ns);
                }
                if let Some(ns) = field("sampler_cpu_ns") {
                    runs.sampler_ns.push(ns / samples);
                }
            }
            output
        }
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    let field = |key: &str| {
        number_after(&stdout, key).with_context(|| format!("no `{key}` in the output: {stdout}"))
    };
    runs.cpu.push(field("cpu_ns_per_unit")?);
    runs.cpu_total.push(field("cpu_total_ns")?);
    Ok(())
}

/// The recording's `ferret.sampling` metadata, as the `bench` helper
/// prints the footer's keys.
fn sampling_metadata(b: &Bench, parquet: &std::path::Path) -> Result<Value> {
    let output = capture(b.sh.cmd(&b.helper).arg("metadata").arg(parquet))?;
    let text = String::from_utf8_lossy(&output.stdout);
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("ferret.sampling "))
        .with_context(|| format!("no ferret.sampling in {}", parquet.display()))?;
    serde_json::from_str(line).context("ferret.sampling is not JSON")
}
