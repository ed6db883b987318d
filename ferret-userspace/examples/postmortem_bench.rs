//! Throughput and peak memory of `ferret analyze` and `ferret export` on a
//! synthetic recording of any size.
//!
//! ```text
//! cargo build --release && cargo run --release --example postmortem_bench -- ROWS [DIR]
//! ```
//!
//! Writes `DIR/synthetic-ROWS.parquet` (kept for the next run) with
//! [`ferret::analyze::synthetic::write`], then runs the release `ferret`
//! binary on it once per command and prints wall time, rows per second and
//! peak RSS (from `wait4`). `cargo xtask bench` can call the same two
//! library functions.

use std::path::{Path, PathBuf};
use std::process::Command;

use ferret::analyze::synthetic::{self, Spec};

fn main() {
    let mut args = std::env::args().skip(1);
    let rows: u64 = args
        .next()
        .and_then(|a| a.replace('_', "").parse().ok())
        .unwrap_or(10_000_000);
    let dir = args.next().map_or_else(std::env::temp_dir, PathBuf::from);
    let ferret = std::env::var_os("FERRET").map_or_else(
        || {
            let exe = std::env::current_exe().expect("current exe");
            // target/release/examples/postmortem_bench → target/release/ferret
            exe.parent()
                .and_then(Path::parent)
                .expect("target dir")
                .join("ferret")
        },
        PathBuf::from,
    );
    assert!(
        ferret.is_file(),
        "{} is missing: `cargo build --release` first, or set FERRET",
        ferret.display()
    );

    let file = dir.join(format!("synthetic-{rows}.parquet"));
    if file.exists() {
        println!("using {}", file.display());
    } else {
        let started = std::time::Instant::now();
        let written = synthetic::write(
            &file,
            &Spec {
                rows,
                ..Spec::default()
            },
        )
        .expect("write synthetic recording");
        println!(
            "wrote {} ({} rows, {} spans, {:.1} MiB) in {:.1?}",
            file.display(),
            written.rows,
            written.spans,
            written.bytes as f64 / f64::from(1 << 20),
            started.elapsed()
        );
    }
    let bytes = std::fs::metadata(&file).map_or(0, |m| m.len());
    let rows = ferret::analyze::Recording::open(&file)
        .map(|r| r.info().rows)
        .expect("readable");
    println!(
        "{rows} rows, {:.1} MiB on disk\n",
        bytes as f64 / f64::from(1 << 20)
    );
    println!(
        "{:<34} {:>9} {:>12} {:>10}",
        "command", "wall", "rows/s", "peak RSS"
    );
    let out = dir.join("postmortem-bench-out");
    let cases: Vec<(&str, Vec<&std::ffi::OsStr>)> = vec![
        ("analyze", vec!["analyze".as_ref(), file.as_os_str()]),
        (
            "analyze --format json --top 0",
            vec![
                "analyze".as_ref(),
                file.as_os_str(),
                "--format".as_ref(),
                "json".as_ref(),
                "--top".as_ref(),
                "0".as_ref(),
            ],
        ),
        (
            "analyze --tree",
            vec!["analyze".as_ref(), file.as_os_str(), "--tree".as_ref()],
        ),
        (
            "export chrome",
            vec![
                "export".as_ref(),
                file.as_os_str(),
                "--format".as_ref(),
                "chrome".as_ref(),
                "-o".as_ref(),
                out.as_os_str(),
            ],
        ),
        (
            "export speedscope",
            vec![
                "export".as_ref(),
                file.as_os_str(),
                "--format".as_ref(),
                "speedscope".as_ref(),
                "-o".as_ref(),
                out.as_os_str(),
            ],
        ),
        (
            "export folded",
            vec![
                "export".as_ref(),
                file.as_os_str(),
                "--format".as_ref(),
                "folded".as_ref(),
                "-o".as_ref(),
                out.as_os_str(),
            ],
        ),
        (
            "export svg",
            vec![
                "export".as_ref(),
                file.as_os_str(),
                "--format".as_ref(),
                "svg".as_ref(),
                "-o".as_ref(),
                out.as_os_str(),
            ],
        ),
    ];
    for (name, args) in cases {
        let m = synthetic::measure(Command::new(&ferret).args(&args)).expect("run ferret");
        assert!(m.success, "{name} failed");
        let out_size = std::fs::metadata(&out).map_or(0, |m| m.len());
        let _ = std::fs::remove_file(&out);
        println!(
            "{name:<34} {:>8.2}s {:>11.1}M {:>8.1}MiB{}",
            m.wall.as_secs_f64(),
            rows as f64 / m.wall.as_secs_f64() / 1e6,
            m.peak_rss_bytes as f64 / f64::from(1 << 20),
            if out_size > 0 {
                format!(
                    "   ({:.0} MiB written)",
                    out_size as f64 / f64::from(1 << 20)
                )
            } else {
                String::new()
            }
        );
    }
}
