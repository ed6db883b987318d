//! The machine the numbers came from, and the results as a Markdown table
//! (the README's Performance section pastes it as printed).

use std::fmt::Write as _;

use serde_json::{Value, json};

use super::Part;
use super::pipeline::GOAL_PER_S;

pub fn title(part: Part) -> &'static str {
    match part {
        Part::Overhead => "1/11 cost per traced call: untraced, floor, ferret, bpftrace",
        Part::Pipeline => "2/11 pipeline throughput (synthetic events, one core)",
        Part::Load => "3/11 sustained load",
        Part::Attach => "4/11 attach and detach at scale",
        Part::Memory => "5/11 memory over time",
        Part::Otlp => "6/11 OpenTelemetry export throughput (one core)",
        Part::Cost => "7/11 ferret's own cost: the overhead budget and the correction",
        Part::Sampling => "8/11 CPU sampling: a busy target's slowdown at 99 and 999 Hz",
        Part::Stalls => "9/11 the stall watchdog on 1000 and 2000 stalled threads",
        Part::Sched => "10/11 the scheduler hooks: a target that blocks and wakes often",
        Part::GoSched => "11/11 the Go hand-off probes: goroutines switching often",
    }
}

/// CPU count, kernel, CPU model and whether this is a virtual machine.
pub fn machine() -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|v| v.trim_start_matches([' ', '\t', ':']).trim().to_owned());
    let hypervisor = cpuinfo
        .lines()
        .any(|l| l.starts_with("flags") && l.split_whitespace().any(|f| f == "hypervisor"));
    let virt = crate::sh::probe(&mut std::process::Command::new("systemd-detect-virt"))
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty() && s != "none");
    json!({
        "nproc": std::thread::available_parallelism().map_or(0, std::num::NonZero::get),
        "kernel": std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_owned())
            .ok(),
        "cpu": model,
        "virtual_machine": hypervisor,
        "virtualization": virt,
        "memory_gib": meminfo_gib(),
    })
}

fn meminfo_gib() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kib: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some((kib / 1024.0 / 1024.0 * 10.0).round() / 10.0)
}

/// Now, as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn now_utc() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// `ns` nanoseconds as ns, µs or ms.
pub fn duration_ns(ns: f64) -> String {
    if ns < 1e3 {
        format!("{ns:.1} ns")
    } else if ns < 1e6 {
        format!("{:.2} µs", ns / 1e3)
    } else {
        format!("{:.2} ms", ns / 1e6)
    }
}

fn f(value: &Value, path: &[&str]) -> Option<f64> {
    let mut v = value;
    for key in path {
        v = v.get(key)?;
    }
    v.as_f64()
}

fn verdict(met: Option<bool>) -> &'static str {
    match met {
        Some(true) => "met",
        Some(false) => "**not met**",
        None => "?",
    }
}

fn or_dash(text: Option<String>) -> String {
    text.unwrap_or_else(|| "–".to_owned())
}

fn millions(per_s: f64) -> String {
    format!("{:.2} M/s", per_s / 1e6)
}

/// The results as a Markdown table: measurement, result, reference, ratio, goal.
pub fn table(results: &Value) -> String {
    let mut rows: Vec<[String; 5]> = Vec::new();
    let mut row = |a: &str, b: String, c: String, d: String, e: String| {
        rows.push([a.to_owned(), b, c, d, e]);
    };

    if let Some(o) = results.get("overhead").filter(|o| o.get("modes").is_some()) {
        let untraced = f(o, &["untraced_ns"]);
        let bpftrace = f(o, &["bpftrace_ns"]);
        row(
            "call, untraced",
            or_dash(untraced.map(duration_ns)),
            String::new(),
            String::new(),
            String::new(),
        );
        for mode in super::overhead::MODES {
            let ferret = f(o, &["modes", mode, "ferret_ns"]);
            let floor = f(o, &["modes", mode, "floor_ns"]);
            let vs_floor = f(o, &["modes", mode, "ferret_vs_floor"]);
            let vs_bpftrace = f(o, &["modes", mode, "ferret_vs_bpftrace"]);
            row(
                &format!("traced call, `{mode}` exits"),
                format!("ferret {}", or_dash(ferret.map(duration_ns))),
                format!("floor {}", or_dash(floor.map(duration_ns))),
                or_dash(vs_floor.map(|r| format!("{r:.3}×"))),
                format!("≤ 1.05× floor: {}", verdict(vs_floor.map(|r| r <= 1.05))),
            );
            // bpftrace (Debian's 0.17) refuses probes inside a function
            // ("compiled without (k|u)probe offset support"), so it always
            // uses a uretprobe: against `ret` exits it is no like-for-like
            // reference, and the floor is.
            let goal = if mode == "ret" {
                "≤ bpftrace: n/a (bpftrace cannot probe `ret` instructions)".to_owned()
            } else {
                format!("≤ bpftrace: {}", verdict(vs_bpftrace.map(|r| r <= 1.0)))
            };
            row(
                &format!("traced call, `{mode}` exits"),
                format!("ferret {}", or_dash(ferret.map(duration_ns))),
                format!(
                    "bpftrace (uretprobe) {}",
                    or_dash(bpftrace.map(duration_ns))
                ),
                or_dash(vs_bpftrace.map(|r| format!("{r:.3}×"))),
                goal,
            );
        }
        if let Some(go) = o.get("go").filter(|g| g.is_object()) {
            let vs_floor = f(go, &["ferret_vs_floor"]);
            row(
                "traced call in a Go program (`ret` exits, goroutine read)",
                format!("ferret {}", or_dash(f(go, &["ferret_ns"]).map(duration_ns))),
                format!("floor {}", or_dash(f(go, &["floor_ns"]).map(duration_ns))),
                or_dash(vs_floor.map(|r| format!("{r:.3}×"))),
                format!("≤ 1.05× floor: {}", verdict(vs_floor.map(|r| r <= 1.05))),
            );
        }
    }

    if let Some(p) = results
        .get("pipeline")
        .filter(|p| p.get("full_per_s").is_some())
    {
        for (label, key) in [
            (
                "pipeline, one core: decode → reconstruct → Parquet (`record`)",
                "record_per_s",
            ),
            (
                "pipeline, one core: decode → reconstruct → aggregates → Parquet (`watch -o`)",
                "full_per_s",
            ),
        ] {
            let rate = f(p, &[key]);
            row(
                label,
                or_dash(rate.map(|r| format!("{} events", millions(r)))),
                format!("goal {}", millions(GOAL_PER_S)),
                or_dash(rate.map(|r| format!("{:.2}×", r / GOAL_PER_S))),
                format!("≥ 5 M/s: {}", verdict(rate.map(|r| r >= GOAL_PER_S))),
            );
        }
        row(
            "pipeline stages alone, one core",
            format!(
                "decode {}, + reconstruct {}, + aggregates {}",
                or_dash(f(p, &["decode_per_s"]).map(millions)),
                or_dash(f(p, &["reconstruct_per_s"]).map(millions)),
                or_dash(f(p, &["aggregate_per_s"]).map(millions))
            ),
            format!(
                "`watch -o` by wall clock: {}",
                or_dash(f(p, &["full_wall_per_s"]).map(millions))
            ),
            String::new(),
            String::new(),
        );
    }

    if let Some(l) = results
        .get("load")
        .filter(|l| l.get("events_delivered").is_some())
    {
        let lost = f(l, &["events_lost"]);
        row(
            &format!(
                "sustained load, {} threads, {:.0} s",
                f(l, &["threads"]).unwrap_or(0.0),
                f(l, &["seconds"]).unwrap_or(0.0)
            ),
            format!(
                "{:.0} events delivered ({:.0}/s), {:.0} lost",
                f(l, &["events_delivered"]).unwrap_or(0.0),
                f(l, &["events_per_s"]).unwrap_or(0.0),
                lost.unwrap_or(0.0)
            ),
            format!(
                "ferret: {:.1}% of a core, peak RSS {:.1} MiB",
                f(l, &["ferret_cpu_percent"]).unwrap_or(0.0),
                f(l, &["ferret_peak_rss_mib"]).unwrap_or(0.0)
            ),
            String::new(),
            format!("none lost: {}", verdict(lost.map(|n| n == 0.0))),
        );
    }

    if let Some(a) = results.get("attach").filter(|a| a.get("modes").is_some()) {
        for mode in super::overhead::MODES {
            let attach = f(a, &["modes", mode, "attach_ms"]);
            let detach = f(a, &["modes", mode, "detach_ms"]);
            row(
                &format!(
                    "10,000 functions, `{mode}` exits ({:.0} probes)",
                    f(a, &["modes", mode, "probes"]).unwrap_or(0.0)
                ),
                format!(
                    "attach {} ms, detach {} ms",
                    or_dash(attach.map(|v| format!("{v:.1}"))),
                    or_dash(detach.map(|v| format!("{v:.1}")))
                ),
                String::new(),
                String::new(),
                format!(
                    "each < 1 s: {}",
                    verdict(attach.zip(detach).map(|(x, y)| x < 1000.0 && y < 1000.0))
                ),
            );
        }
        if let Some(pp) = a
            .get("per_probe_links")
            .filter(|p| p.get("attach_ms").is_some())
        {
            row(
                &format!(
                    "per-probe perf links (fallback), {:.0} functions",
                    f(pp, &["functions"]).unwrap_or(0.0)
                ),
                format!(
                    "attach {:.1} ms, detach {:.1} ms",
                    f(pp, &["attach_ms"]).unwrap_or(0.0),
                    f(pp, &["detach_ms"]).unwrap_or(0.0)
                ),
                String::new(),
                String::new(),
                "for comparison".to_owned(),
            );
        }
    }

    if let Some(m) = results
        .get("memory")
        .filter(|m| m.get("rss_first_mib").is_some())
    {
        let flat = m.get("flat").and_then(Value::as_bool);
        row(
            &format!(
                "RSS over a {:.0} s recording ({:.0} events/s)",
                f(m, &["seconds"]).unwrap_or(0.0),
                f(m, &["events_per_s"]).unwrap_or(0.0)
            ),
            format!(
                "first {:.1}, last {:.1}, max {:.1} MiB",
                f(m, &["rss_first_mib"]).unwrap_or(0.0),
                f(m, &["rss_last_mib"]).unwrap_or(0.0),
                f(m, &["rss_max_mib"]).unwrap_or(0.0)
            ),
            String::new(),
            String::new(),
            format!("flat: {}", verdict(flat)),
        );
    }

    if let Some(o) = results
        .get("otlp")
        .filter(|o| o.get("export_per_s").is_some())
    {
        let export = f(o, &["export_per_s"]);
        row(
            "OTLP export, one core: select → map → protobuf → gzip",
            or_dash(export.map(|r| format!("{} spans", millions(r)))),
            format!(
                "Parquet writer, same spans: {}",
                or_dash(f(o, &["parquet_per_s"]).map(millions))
            ),
            or_dash(f(o, &["export_vs_parquet"]).map(|r| format!("{r:.3}×"))),
            format!(
                "≥ 0.1 M/s (the default cap under 1% of a core): {}",
                verdict(export.map(|r| r >= super::otlp::GOAL_PER_S))
            ),
        );
        row(
            "OTLP export thread → loopback HTTP collector",
            format!(
                "{} spans by wall clock, {:.0} unsent",
                or_dash(f(o, &["loopback_per_s"]).map(millions)),
                f(o, &["loopback_unsent"]).unwrap_or(0.0)
            ),
            format!(
                "{:.1} bytes/span gzipped ({:.0} protobuf)",
                f(o, &["gzip_bytes_per_span"]).unwrap_or(0.0),
                f(o, &["protobuf_bytes_per_span"]).unwrap_or(0.0)
            ),
            String::new(),
            String::new(),
        );
        row(
            "OTLP span selection alone (on the tracing thread)",
            or_dash(f(o, &["select_per_s"]).map(|r| format!("{} spans", millions(r)))),
            String::new(),
            String::new(),
            String::new(),
        );
    }

    if let Some(o) = results
        .get("cost")
        .filter(|o| o.get("budget_slowdown").is_some())
    {
        let slowdown = f(o, &["budget_slowdown"]);
        row(
            "`-s '*'` on 300 small functions, default --max-overhead 5",
            format!(
                "{} functions detached",
                or_dash(f(o, &["budget_detached"]).map(|n| format!("{n:.0}")))
            ),
            "the program untraced, before and after".to_owned(),
            or_dash(slowdown.map(|r| format!("{r:.2}×"))),
            format!(
                "≤ {}×: {}",
                super::cost::SLOWDOWN_GOAL,
                verdict(slowdown.map(|r| r <= super::cost::SLOWDOWN_GOAL))
            ),
        );
        let error = f(o, &["correction_error"]);
        row(
            "corrected time of a parent with 200 traced calls",
            format!(
                "{} corrected ({} measured)",
                or_dash(f(o, &["corrected_parent_ns"]).map(duration_ns)),
                or_dash(f(o, &["measured_parent_ns"]).map(duration_ns))
            ),
            format!(
                "{} untraced",
                or_dash(f(o, &["untraced_parent_ns"]).map(duration_ns))
            ),
            or_dash(error.map(|e| format!("{:+.1} %", e * 100.0))),
            format!(
                "within {:.0} %: {}",
                super::cost::ERROR_GOAL * 100.0,
                verdict(error.map(|e| e.abs() <= super::cost::ERROR_GOAL))
            ),
        );
        row(
            "corrected p50 of the trivial getter it calls",
            format!(
                "{} ({} measured)",
                or_dash(f(o, &["corrected_getter_ns"]).map(duration_ns)),
                or_dash(f(o, &["measured_getter_ns"]).map(duration_ns))
            ),
            String::new(),
            String::new(),
            String::new(),
        );
    }

    if let Some(sampling) = results.get("sampling").and_then(|s| s.get("rates")) {
        for hz in super::sampling::RATES {
            let r = |key: &str| f(sampling, &[&hz.to_string(), key]);
            let percent = r("overhead_percent");
            row(
                &format!("CPU sampling at {hz} Hz, a busy thread"),
                format!(
                    "{} slower; {} per sample (BPF program {})",
                    or_dash(percent.map(|p| format!("{p:.2} %"))),
                    or_dash(r("target_ns_per_sample").map(duration_ns)),
                    or_dash(r("bpf_ns_per_sample").map(duration_ns)),
                ),
                format!(
                    "unsampled; ferret's sampler thread {} per sample",
                    or_dash(r("sampler_cpu_ns_per_sample").map(duration_ns))
                ),
                or_dash(r("slowdown").map(|x| format!("{x:.3}×"))),
                format!(
                    "inside its share of --max-overhead (1 %): {}",
                    verdict(percent.map(|p| p <= 1.0))
                ),
            );
        }
    }

    if let Some(stalls) = results.get("stalls").and_then(|s| s.get("scenarios")) {
        for (threads, seconds, stall) in super::stalls::SCENARIOS {
            let s = |key: &str| f(stalls, &[&threads.to_string(), key]);
            let share = s("cpu_per_session_s");
            let late = s("late_s");
            row(
                &format!("{threads} stalled threads + a deadlock, -d {seconds} --stall {stall}"),
                format!(
                    "ferret {} CPU, {} stall lines, -d {} late; captures {} of a core",
                    or_dash(s("cpu_s").map(|v| format!("{v:.2} s"))),
                    or_dash(s("stall_lines").map(|v| format!("{v:.0}"))),
                    or_dash(late.map(|v| format!("{v:.2} s"))),
                    or_dash(s("captures_share_of_a_core").map(|v| format!("{:.1} %", v * 100.0))),
                ),
                format!(
                    "session {}",
                    or_dash(s("wall_s").map(|v| format!("{v:.2} s")))
                ),
                or_dash(share.map(|x| format!("{x:.3}"))),
                format!(
                    "CPU ≤ {:.3} of the session, -d ≤ {:.0} s late: {}",
                    super::stalls::CPU_SHARE_GOAL,
                    super::stalls::LATE_GOAL_S,
                    verdict(
                        share
                            .zip(late)
                            .map(|(x, l)| x <= super::stalls::CPU_SHARE_GOAL
                                && l <= super::stalls::LATE_GOAL_S)
                    )
                ),
            );
        }
    }

    for (key, what, per) in [
        (
            "sched",
            "scheduler hooks, two threads ping-ponging through pipes",
            "context switch",
        ),
        (
            "gosched",
            "Go hand-off probes, two goroutines ping-ponging on GOMAXPROCS=1",
            "goroutine switch",
        ),
    ] {
        let Some(o) = results.get(key).filter(|o| o.get("slowdown").is_some()) else {
            continue;
        };
        let budget = f(o, &["budget_overhead_percent"]);
        row(
            what,
            format!(
                "budget off: {} slower, {} added per {per}; default budget: {}",
                or_dash(f(o, &["overhead_percent"]).map(|p| format!("{p:.1} %"))),
                or_dash(f(o, &["added_ns_per_switch"]).map(duration_ns)),
                or_dash(budget.map(|p| format!("{p:.1} %"))),
            ),
            format!(
                "untraced, {} switches/s",
                or_dash(f(o, &["switches_per_s_untraced"]).map(|v| format!("{v:.0}")))
            ),
            or_dash(f(o, &["budget_slowdown"]).map(|x| format!("{x:.3}×"))),
            format!(
                "default budget within --max-overhead (5 %): {}",
                verdict(budget.map(|p| p <= 5.0))
            ),
        );
    }

    let header = ["measurement", "result", "reference", "ratio", "goal"];
    let mut widths = header.map(|h| h.chars().count());
    for r in &rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &[String; 5]| {
        let mut text = String::from("|");
        for (cell, w) in cells.iter().zip(widths) {
            let pad = w - cell.chars().count();
            let _ = write!(text, " {cell}{} |", " ".repeat(pad));
        }
        text
    };
    let mut out = String::new();
    if let Some(m) = results.get("machine") {
        let _ = writeln!(
            out,
            "{} CPUs, Linux {}, {}{}{}",
            f(m, &["nproc"]).unwrap_or(0.0),
            m.get("kernel").and_then(Value::as_str).unwrap_or("?"),
            m.get("cpu")
                .and_then(Value::as_str)
                .unwrap_or("unknown CPU"),
            if m.get("virtual_machine").and_then(Value::as_bool) == Some(true) {
                ", virtual machine"
            } else {
                ""
            },
            if results.get("quick").and_then(Value::as_bool) == Some(true) {
                " (quick run)"
            } else {
                ""
            },
        );
        out.push('\n');
    }
    let _ = writeln!(out, "{}", line(&header.map(str::to_owned)));
    let _ = writeln!(out, "{}", line(&widths.map(|w| "-".repeat(w))));
    for r in &rows {
        let _ = writeln!(out, "{}", line(r));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_gives_each_goal_a_verdict() {
        let results = json!({
            "machine": { "nproc": 2, "kernel": "6.18", "cpu": "Xeon", "virtual_machine": true },
            "quick": true,
            "overhead": {
                "untraced_ns": 1.4,
                "bpftrace_ns": 30_000.0,
                "modes": {
                    "ret": { "ferret_ns": 50_000.0, "floor_ns": 49_000.0,
                             "ferret_vs_floor": 1.02, "ferret_vs_bpftrace": 1.67 },
                    "uretprobe": { "ferret_ns": 31_000.0, "floor_ns": 27_000.0,
                                   "ferret_vs_floor": 1.148, "ferret_vs_bpftrace": 1.033 },
                },
                "go": { "ferret_ns": 21_000.0, "floor_ns": 20_500.0, "ferret_vs_floor": 1.024 },
            },
            "pipeline": { "record_per_s": 2.5e6, "full_per_s": 1.9e6, "decode_per_s": 3e7 },
            "load": { "threads": 4, "seconds": 30, "events_delivered": 1e6, "events_lost": 0 },
            "attach": { "modes": { "ret": { "probes": 20000, "attach_ms": 30.0, "detach_ms": 120.0 } } },
            "memory": { "seconds": 600, "rss_first_mib": 80.0, "rss_last_mib": 80.2,
                        "rss_max_mib": 80.3, "flat": true },
            "otlp": { "export_per_s": 1.01e6, "parquet_per_s": 9e6, "export_vs_parquet": 0.112,
                      "loopback_per_s": 9.2e5, "loopback_unsent": 0,
                      "gzip_bytes_per_span": 33.9, "protobuf_bytes_per_span": 234.0 },
            "stalls": { "scenarios": {
                "1000": { "cpu_s": 0.62, "wall_s": 4.41, "cpu_per_session_s": 0.141,
                          "late_s": 0.41, "stall_lines": 3.0, "captures_share_of_a_core": 0.012 },
                "2000": { "cpu_s": 3.9, "wall_s": 9.3, "cpu_per_session_s": 0.419,
                          "late_s": 1.3, "stall_lines": 3.0, "captures_share_of_a_core": 0.02 },
            } },
            "sched": { "slowdown": 1.152, "overhead_percent": 15.2, "added_ns_per_switch": 2900.0,
                       "switches_per_s_untraced": 52000.0, "budget_slowdown": 1.031,
                       "budget_overhead_percent": 3.1 },
            "gosched": { "slowdown": 201.0, "overhead_percent": 20000.0,
                         "added_ns_per_switch": 28000.0, "switches_per_s_untraced": 7.2e6,
                         "budget_slowdown": 1.062, "budget_overhead_percent": 6.2 },
        });
        let table = table(&results);
        assert!(table.starts_with("2 CPUs, Linux 6.18, Xeon, virtual machine (quick run)"));
        assert!(table.contains("| ferret 50.00 µs"), "{table}");
        assert!(
            table.lines().any(|l| l.contains("in a Go program")
                && l.contains("ferret 21.00 µs")
                && l.contains("1.024×")),
            "{table}"
        );
        assert!(table.contains("1.020× | ≤ 1.05× floor: met"), "{table}");
        assert!(table.contains("≤ 1.05× floor: **not met**"), "{table}");
        assert!(
            table.contains("1.033× | ≤ bpftrace: **not met**"),
            "{table}"
        );
        assert!(
            table.contains("1.670× | ≤ bpftrace: n/a (bpftrace cannot probe `ret` instructions)"),
            "bpftrace uses uretprobes: no reference for `ret` exits\n{table}"
        );
        assert!(table.contains("≥ 5 M/s: **not met**"), "{table}");
        assert!(table.contains("none lost: met"), "{table}");
        assert!(table.contains("attach 30.0 ms, detach 120.0 ms"), "{table}");
        assert!(table.contains("flat: met"), "{table}");
        assert!(
            table.contains(
                "budget off: 15.2 % slower, 2.90 µs added per context switch; \
                 default budget: 3.1 %"
            ) && table.contains("1.031× | default budget within --max-overhead (5 %): met"),
            "{table}"
        );
        assert!(
            table.lines().any(|l| l.contains("Go hand-off probes")
                && l.contains("28.00 µs added per goroutine switch; default budget: 6.2 %")
                && l.contains("untraced, 7200000 switches/s")
                && l.contains("1.062× | default budget within --max-overhead (5 %): **not met**")),
            "{table}"
        );
        let otlp = table
            .lines()
            .find(|l| l.contains("OTLP export, one core"))
            .unwrap();
        for cell in [
            "1.01 M/s spans",
            "Parquet writer, same spans: 9.00 M/s",
            "0.112×",
        ] {
            assert!(otlp.contains(cell), "{otlp}");
        }
        assert!(
            table.contains("default cap under 1% of a core): met"),
            "{table}"
        );
        let pool = table
            .lines()
            .find(|l| l.contains("1000 stalled threads + a deadlock, -d 4 --stall 1s"))
            .unwrap();
        for cell in [
            "ferret 0.62 s CPU, 3 stall lines, -d 0.41 s late; captures 1.2 % of a core",
            "session 4.41 s",
            "0.141",
            "CPU ≤ 0.375 of the session, -d ≤ 1 s late: met",
        ] {
            assert!(pool.contains(cell), "{pool}");
        }
        let big = table
            .lines()
            .find(|l| l.contains("2000 stalled threads"))
            .unwrap();
        assert!(
            big.contains("0.419") && big.contains("-d ≤ 1 s late: **not met**"),
            "{big}"
        );
        let widths: Vec<usize> = table
            .lines()
            .filter(|l| l.starts_with('|'))
            .map(|l| l.chars().count())
            .collect();
        assert!(widths.windows(2).all(|w| w[0] == w[1]), "rows line up");
    }

    #[test]
    fn durations_pick_their_unit() {
        assert_eq!(duration_ns(1.44), "1.4 ns");
        assert_eq!(duration_ns(45_111.4), "45.11 µs");
        assert_eq!(duration_ns(2.5e6), "2.50 ms");
    }

    #[test]
    fn dates_are_utc_iso() {
        let now = now_utc();
        assert_eq!(now.len(), 20, "{now}");
        assert!(now.ends_with('Z') && now.as_bytes()[10] == b'T', "{now}");
    }
}
