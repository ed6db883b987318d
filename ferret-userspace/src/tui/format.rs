//! Compact, fixed-width renderings of durations, sizes, rates and times,
//! so columns line up and a value never pushes its neighbours about.

use crate::sink::{MetricSample, metric};

/// A duration in at most 7 columns: `850ns`, `12.3µs`, `4.56ms`, `1.234s`,
/// `12.35s`, `2m03s`, `1h02m`.
pub fn duration(ns: u64) -> String {
    const US: u64 = 1_000;
    const MS: u64 = 1_000_000;
    const S: u64 = 1_000_000_000;
    let f = ns as f64;
    match ns {
        0..US => format!("{ns}ns"),
        US..MS => three_digits(f / US as f64, "µs"),
        MS..S => three_digits(f / MS as f64, "ms"),
        S..60_000_000_000 => {
            let s = f / S as f64;
            if s < 10.0 {
                format!("{s:.3}s")
            } else {
                format!("{s:.2}s")
            }
        }
        60_000_000_000..3_600_000_000_000 => {
            let s = ns / S;
            format!("{}m{:02}s", s / 60, s % 60)
        }
        _ => {
            let m = ns / (60 * S);
            format!("{}h{:02}m", m / 60, m % 60)
        }
    }
}

/// `v` with three significant digits (at least one decimal under 100).
fn three_digits(v: f64, unit: &str) -> String {
    // Round first, so 9.996 becomes "10.0", not "10.00".
    if v < 9.995 {
        format!("{v:.2}{unit}")
    } else if v < 99.95 {
        format!("{v:.1}{unit}")
    } else {
        format!("{v:.0}{unit}")
    }
}

/// An elapsed time for a ticking clock: `812ms`, `4.2s`, `1m05s`, `2h03m`:
/// under a second as a duration, then with tenths under a minute so it
/// visibly moves.
pub fn elapsed(ns: u64) -> String {
    const S: u64 = 1_000_000_000;
    if ns < S {
        duration(ns)
    } else if ns < 60 * S {
        format!("{:.1}s", ns as f64 / S as f64)
    } else {
        duration(ns)
    }
}

/// Bytes with a binary unit: `512 B`, `3.4 KiB`, `120 MiB`, `1.50 GiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else if v < 9.995 {
        format!("{v:.2} {}", UNITS[unit])
    } else if v < 99.95 {
        format!("{v:.1} {}", UNITS[unit])
    } else {
        format!("{v:.0} {}", UNITS[unit])
    }
}

/// A count with a metric suffix past ten thousand: `9999`, `12.3k`, `4.56M`.
pub fn count(n: u64) -> String {
    match n {
        0..10_000 => n.to_string(),
        10_000..1_000_000 => three_digits(n as f64 / 1e3, "k"),
        1_000_000..1_000_000_000 => three_digits(n as f64 / 1e6, "M"),
        _ => three_digits(n as f64 / 1e9, "G"),
    }
}

/// A rate per second: `0`, `0.4`, `12`, `1.23k`.
pub fn rate(per_s: f64) -> String {
    if per_s <= 0.0 {
        "0".to_owned()
    } else if per_s < 10.0 {
        format!("{per_s:.1}")
    } else {
        count(per_s.round() as u64)
    }
}

/// The time of day of `wall_ns` (ns since the epoch, already shifted to
/// local time): `14:03:07.123`.
pub fn time_of_day(wall_ns: i64) -> String {
    let ms_of_day = wall_ns.div_euclid(1_000_000).rem_euclid(86_400_000);
    let (h, rest) = (ms_of_day / 3_600_000, ms_of_day % 3_600_000);
    let (m, rest) = (rest / 60_000, rest % 60_000);
    let (s, ms) = (rest / 1000, rest % 1000);
    format!("{h:02}:{m:02}:{s:02}.{ms:03}")
}

/// `s` cut to `width` columns, with `…` when something was cut.
pub fn truncate(s: &str, width: usize) -> String {
    if s.chars().count() <= width {
        return s.to_owned();
    }
    if width == 0 {
        return String::new();
    }
    let mut out: String = s.chars().take(width - 1).collect();
    out.push('…');
    out
}

/// A function name in `width` columns: whole leading path segments are
/// dropped first (`…pool::health_check`), since names are most distinct at
/// the end; only then is the last segment cut.
pub fn function_name(name: &str, width: usize) -> String {
    if name.chars().count() <= width {
        return name.to_owned();
    }
    let mut rest = name;
    while let Some(at) = rest.find("::") {
        rest = &rest[at + 2..];
        if rest.chars().count() < width {
            return format!("…{rest}");
        }
    }
    truncate_left(name, width)
}

/// A thread as `name:tid` in `width` columns: the name is cut, the tid kept.
pub fn thread(name: &str, tid: u32, width: usize) -> String {
    let tid = format!(":{tid}");
    let room = width.saturating_sub(tid.len());
    format!("{}{tid}", truncate(name, room))
}

/// `s` cut to `width` columns from the left, keeping the end.
pub fn truncate_left(s: &str, width: usize) -> String {
    let len = s.chars().count();
    if len <= width {
        return s.to_owned();
    }
    if width == 0 {
        return String::new();
    }
    let mut out = String::from("…");
    out.extend(s.chars().skip(len - (width - 1)));
    out
}

/// Every extra metric of `sample` as (label, formatted value) for the
/// Metrics pane: "unavailable" where this machine cannot measure it, "–"
/// where there is no value yet.
pub fn metric_values(sample: &MetricSample) -> Vec<(&'static str, String)> {
    metric::DEFS
        .iter()
        .enumerate()
        .map(|(i, def)| {
            let text = if sample.unavailable & (1 << i) != 0 {
                "unavailable".to_owned()
            } else {
                sample.extra[i].map_or_else(|| "–".to_owned(), |v| metric_value(def.unit, v))
            };
            (def.label, text)
        })
        .collect()
}

/// A metric value with its unit, compactly (`12.5 %`, `3.4 MiB`, `1.2 k/s`).
pub fn metric_value(unit: metric::Unit, value: f64) -> String {
    use metric::Unit;
    let scaled = |v: f64, suffixes: &[&str], base: f64| {
        let mut v = v;
        let mut i = 0;
        while v.abs() >= base && i + 1 < suffixes.len() {
            v /= base;
            i += 1;
        }
        if i == 0 {
            format!("{v:.0}{}", suffixes[0])
        } else {
            format!("{v:.1}{}", suffixes[i])
        }
    };
    match unit {
        Unit::Percent => format!("{value:.1} %"),
        Unit::Bytes => scaled(value, &[" B", " KiB", " MiB", " GiB", " TiB"], 1024.0),
        Unit::BytesPerS => scaled(value, &[" B/s", " KiB/s", " MiB/s", " GiB/s"], 1024.0),
        Unit::Count => format!("{value:.0}"),
        Unit::PerS => scaled(value, &["/s", " k/s", " M/s", " G/s"], 1000.0),
        Unit::Ratio => format!("{value:.2}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_fit_seven_columns() {
        let cases = [
            (0, "0ns"),
            (999, "999ns"),
            (1_000, "1.00µs"),
            (12_345, "12.3µs"),
            (999_499, "999µs"),
            (9_996_000, "10.0ms"),
            (4_560_000, "4.56ms"),
            (1_234_000_000, "1.234s"),
            (12_346_000_000, "12.35s"),
            (123_000_000_000, "2m03s"),
            (3_720_000_000_000, "1h02m"),
        ];
        for (ns, want) in cases {
            assert_eq!(duration(ns), want, "{ns}");
            assert!(duration(ns).chars().count() <= 7, "{ns}");
        }
    }

    #[test]
    fn sizes_counts_rates() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(3 * 1024 + 512), "3.50 KiB");
        assert_eq!(bytes(120 << 20), "120 MiB");
        assert_eq!(bytes(45 << 20), "45.0 MiB");
        assert_eq!(count(9_999), "9999");
        assert_eq!(count(12_345), "12.3k");
        assert_eq!(count(4_560_000), "4.56M");
        assert_eq!(rate(0.0), "0");
        assert_eq!(rate(0.44), "0.4");
        assert_eq!(rate(1234.0), "1234");
        assert_eq!(rate(12_345.0), "12.3k");
        assert_eq!(elapsed(4_249_000_000), "4.2s");
        assert_eq!(elapsed(812_300_000), "812ms");
        assert_eq!(elapsed(65_000_000_000), "1m05s");
    }

    #[test]
    fn time_of_day_wraps_days() {
        let ns = ((14 * 3600 + 3 * 60 + 7) * 1000 + 123) * 1_000_000i64 + 86_400_000_000_000 * 3;
        assert_eq!(time_of_day(ns), "14:03:07.123");
        assert_eq!(time_of_day(0), "00:00:00.000");
    }

    #[test]
    fn truncation_marks_the_cut() {
        assert_eq!(truncate("handle_request", 20), "handle_request");
        assert_eq!(truncate("handle_request", 7), "handle…");
        assert_eq!(truncate_left("ferret_demo::pool::ping", 12), "…:pool::ping");
        assert_eq!(
            function_name("ferret_demo::pool::ping", 30),
            "ferret_demo::pool::ping"
        );
        assert_eq!(function_name("ferret_demo::pool::ping", 12), "…pool::ping");
        assert_eq!(function_name("ferret_demo::pool::ping", 6), "…ping");
        assert_eq!(
            function_name("ferret_demo::pool::health_check", 8),
            "…h_check"
        );
        assert_eq!(thread("http-worker-0", 4243, 16), "http-worke…:4243");
        assert_eq!(thread("db", 7, 16), "db:7");
        assert_eq!(truncate("x", 0), "");
    }
}
