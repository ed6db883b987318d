//! End-to-end: the METRIC rows of a recording of a program that idles, then
//! allocates and touches 256 MiB, then burns one core. Needs root (ferret
//! attaches probes to mark the phases); fails loudly without.

use crate::support::{build, ferret, require_root, run, tempdir};
use ferret::sink::{Row, metric, read_all, read_metadata};

/// The METRIC rows whose timestamps fall inside the span of `function`.
fn metrics_during<'a>(rows: &'a [Row], function: &str) -> Vec<&'a Row> {
    let span = rows
        .iter()
        .find(|r| r.kind.as_deref() == Some("SPAN_END") && r.function.as_deref() == Some(function))
        .unwrap_or_else(|| panic!("a span of {function}"));
    let (start, end) = (span.start_ns.unwrap(), span.ts_ns.unwrap());
    rows.iter()
        .filter(|r| r.kind.as_deref() == Some("METRIC"))
        // A sample's rates cover the interval before it: skip the first
        // sample inside the phase, whose interval straddles its start.
        .filter(|r| r.ts_ns.unwrap() > start + 300_000_000 && r.ts_ns.unwrap() <= end)
        .collect()
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn idle_allocate_burn_phases_show_in_the_metrics() {
    let _machine = require_root();
    let program = build("phases.c", &[]);
    let dir = tempdir();
    let out = dir.path().join("phases.parquet");
    let mut cmd = ferret();
    cmd.args([
        "record",
        "-s",
        "idle",
        "-s",
        "allocate",
        "-s",
        "burn",
        "--interval",
        "250ms",
        "-o",
    ])
    .arg(&out)
    .arg("--")
    .arg(&program)
    .args(["1500", "1500", "2000"]);
    let output = run(cmd);
    assert!(output.status.success());
    let rows = read_all(&out).unwrap();
    let metrics: Vec<&Row> = rows
        .iter()
        .filter(|r| r.kind.as_deref() == Some("METRIC"))
        .collect();

    // Samples one interval apart (250 ms; generous bounds for a shared machine).
    let gaps: Vec<i64> = metrics
        .windows(2)
        .map(|w| w[1].ts_ns.unwrap() - w[0].ts_ns.unwrap())
        .collect();
    let mut sorted = gaps.clone();
    sorted.sort_unstable();
    let median = sorted[sorted.len() / 2];
    assert!(
        (240_000_000..=260_000_000).contains(&median),
        "median gap {median} ns"
    );
    assert!(
        gaps.iter()
            .all(|&g| (150_000_000..=400_000_000).contains(&g)),
        "gaps {gaps:?}"
    );

    // Idle: about 0 % CPU.
    let idle = metrics_during(&rows, "idle");
    assert!(!idle.is_empty());
    for m in &idle {
        let cpu = m.cpu_percent.unwrap();
        assert!(cpu < 5.0, "idle CPU {cpu}");
    }
    // RSS rises by at least 240 MiB after allocate().
    let first_rss = metrics.first().unwrap().rss_bytes.unwrap();
    let peak_rss = metrics.iter().map(|m| m.rss_bytes.unwrap()).max().unwrap();
    let rise_mib = (peak_rss - first_rss) / (1 << 20);
    eprintln!("RSS rose by {rise_mib} MiB");
    assert!(rise_mib >= 240, "RSS rose by {rise_mib} MiB");
    // Burn: about 100 % (one core), mostly user time. The program measures
    // what it really got (less than a core on a loaded machine); ferret's
    // samples must agree with that.
    let stdout = String::from_utf8_lossy(&output.stdout);
    let own: f64 = stdout
        .split_whitespace()
        .find_map(|kv| kv.strip_prefix("burn_cpu_percent="))
        .unwrap()
        .parse()
        .unwrap();
    let burn = metrics_during(&rows, "burn");
    assert!(burn.len() >= 4, "samples during the burn: {}", burn.len());
    let mean = burn.iter().map(|m| m.cpu_percent.unwrap()).sum::<f64>() / burn.len() as f64;
    eprintln!("burn: ferret {mean:.1} %, the program itself {own:.1} %");
    assert!(
        (mean - own).abs() <= 15.0,
        "ferret {mean:.1} % vs the program's {own:.1} %"
    );
    for m in &burn {
        let cpu = m.cpu_percent.unwrap();
        assert!(
            cpu <= 115.0,
            "one thread cannot use more than a core: {cpu}"
        );
        assert!(
            m.extra[metric::CPU_USER].unwrap() > 0.7 * cpu,
            "mostly user time"
        );
    }
    // Faults: touching 256 MiB is ~65k minor faults.
    let faults: f64 = metrics
        .iter()
        .filter_map(|m| m.extra[metric::MINOR_FAULTS])
        .sum::<f64>()
        * 0.25;
    assert!(faults > 50_000.0, "minor faults counted: {faults}");
    // The task clock (schedstat) agrees with `stat` during the burn; hardware events
    // are counted or declared unavailable in the metadata, never zero.
    for m in &burn {
        let task = m.extra[metric::TASK_CLOCK].expect("the task clock is read from schedstat");
        let cpu = m.cpu_percent.unwrap();
        assert!(
            (task - cpu).abs() <= 25.0,
            "task clock {task} % vs procfs {cpu} %"
        );
    }
    let meta = read_metadata(&out).unwrap();
    let unavailable = meta
        .get("ferret.metrics_unavailable")
        .cloned()
        .unwrap_or_default();
    eprintln!("unavailable: {unavailable}");
    for (name, index) in [
        ("cycles", metric::CYCLES),
        ("instructions", metric::INSTRUCTIONS),
    ] {
        let counted = burn.iter().all(|m| m.extra[index].is_some_and(|v| v > 0.0));
        let declared = unavailable.contains(name);
        assert!(
            counted != declared,
            "{name}: counted={counted} declared unavailable={declared}"
        );
        if declared {
            assert!(
                burn.iter().all(|m| m.extra[index].is_none()),
                "{name} null, not zero"
            );
        }
    }
}
