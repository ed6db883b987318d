//! Sustained load and memory over time. `bench/programs/load.c` runs
//! threads that call a three-deep chain of traced functions flat out;
//! `ferret record -p PID -d N` traces it. Attaching by pid keeps the target
//! out of ferret's process tree, so `wait4` reports ferret's own CPU time and
//! peak RSS, and nothing of the target's.

use std::io::Read as _;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use serde_json::{Value, json};

use super::{Bench, num, number_before};

/// The traced functions of `load.c`.
const SYMBOLS: &str = "load_*";

pub fn sustained(b: &Bench) -> Result<Value> {
    let seconds = if b.quick { 5 } else { 30 };
    let threads = 4;
    let run = record_under_load(b, threads, seconds, None)?;
    let delivered = run.rows;
    let produced = delivered + run.lost;
    println!(
        "{threads} threads for {seconds} s: {delivered:.0} events delivered ({:.0}/s), \
         {:.0} lost; ferret used {:.1}% of a core, peak RSS {:.1} MiB",
        delivered / run.seconds,
        run.lost,
        run.cpu_seconds / run.seconds * 100.0,
        run.peak_rss_kib / 1024.0
    );
    Ok(json!({
        "threads": threads,
        "seconds": num(Some(run.seconds), 2),
        "exit_probes": run.exit_probes,
        "events_delivered": delivered,
        "events_per_s": num(Some(delivered / run.seconds), 0),
        "events_lost": run.lost,
        "lost_fraction": num(Some(if produced > 0.0 { run.lost / produced } else { 0.0 }), 6),
        "ferret_cpu_seconds": num(Some(run.cpu_seconds), 2),
        "ferret_cpu_percent": num(Some(run.cpu_seconds / run.seconds * 100.0), 1),
        "ferret_peak_rss_mib": num(Some(run.peak_rss_kib / 1024.0), 1),
    }))
}

pub fn memory(b: &Bench) -> Result<Value> {
    let (seconds, every) = if b.quick { (30, 2) } else { (600, 5) };
    let threads = 2;
    let run = record_under_load(b, threads, seconds, Some(Duration::from_secs(every)))?;
    let rss: Vec<f64> = run
        .rss_samples
        .iter()
        .map(|(_, kib)| kib / 1024.0)
        .collect();
    let (Some(first), Some(last)) = (rss.first().copied(), rss.last().copied()) else {
        bail!("no RSS samples");
    };
    let max = rss.iter().copied().fold(f64::MIN, f64::max);
    // Flat: what the second half adds over the first is noise, not a trend.
    let half = rss.len() / 2;
    let first_half_max = rss[..half.max(1)].iter().copied().fold(f64::MIN, f64::max);
    let second_half_max = rss[half..].iter().copied().fold(f64::MIN, f64::max);
    let flat = second_half_max <= first_half_max * 1.10;
    println!(
        "RSS over {seconds} s at {:.0} events/s: first {first:.1} MiB, last {last:.1} MiB, \
         max {max:.1} MiB ({})",
        run.rows / run.seconds,
        if flat { "flat" } else { "growing" }
    );
    Ok(json!({
        "threads": threads,
        "seconds": num(Some(run.seconds), 1),
        "sample_every_s": every,
        "events_delivered": run.rows,
        "events_per_s": num(Some(run.rows / run.seconds), 0),
        "events_lost": run.lost,
        "rss_first_mib": num(Some(first), 1),
        "rss_last_mib": num(Some(last), 1),
        "rss_max_mib": num(Some(max), 1),
        "flat": flat,
        "rss_samples": run
            .rss_samples
            .iter()
            .map(|(t, kib)| json!([num(Some(*t), 1), num(Some(kib / 1024.0), 2)]))
            .collect::<Vec<_>>(),
    }))
}

/// What one recording under load measured.
struct LoadRun {
    seconds: f64,
    rows: f64,
    lost: f64,
    exit_probes: String,
    cpu_seconds: f64,
    peak_rss_kib: f64,
    /// (seconds since ferret started, VmRSS KiB).
    rss_samples: Vec<(f64, f64)>,
}

/// Starts `load THREADS`, records it for `seconds` with ferret attached by
/// pid, sampling ferret's RSS every `sample` if given.
fn record_under_load(
    b: &Bench,
    threads: u32,
    seconds: u64,
    sample: Option<Duration>,
) -> Result<LoadRun> {
    let target = KillOnDrop(
        b.sh.cmd(b.program("load"))
            .args([threads.to_string(), "0".to_owned()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .context("starting the load program")?,
    );
    // Let every thread start calling before ferret attaches.
    std::thread::sleep(Duration::from_millis(300));
    let out = b.scratch("load.parquet");
    let started = Instant::now();
    let mut ferret = b
        .ferret()
        .args(["record", "-p", &target.0.id().to_string(), "-s", SYMBOLS])
        .args(["--max-rate", "0", "-d", &format!("{seconds}s"), "-o"])
        .arg(&out)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting ferret")?;
    let pid = ferret.id();
    let mut stderr_pipe = ferret.stderr.take().expect("piped");
    // Read stderr on the side so a chatty ferret never blocks on the pipe.
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr_pipe.read_to_string(&mut text);
        text
    });
    let mut rss_samples = Vec::new();
    if let Some(every) = sample {
        let mut next = every;
        while !has_exited(pid) {
            std::thread::sleep(Duration::from_millis(100));
            if started.elapsed() >= next {
                if let Some(kib) = status_kib(pid, "VmRSS:") {
                    rss_samples.push((started.elapsed().as_secs_f64(), kib));
                }
                next += every;
            }
        }
    }
    let (status, usage) = wait_with_rusage(&mut ferret)?;
    let elapsed = started.elapsed().as_secs_f64();
    drop(target);
    let stderr = reader.join().unwrap_or_default();
    if !status.success() {
        bail!("ferret failed ({status}): {stderr}");
    }
    let rows = number_before(&stderr, "wrote", "rows").context("no `wrote N rows` line")?;
    let lost = number_before(&stderr, "events lost", "events").unwrap_or(0.0);
    let exit_probes = stderr
        .lines()
        .find(|l| l.contains("exits by"))
        .map(|l| l.trim().trim_start_matches("ferret:").trim().to_owned())
        .unwrap_or_default();
    let _ = std::fs::remove_file(&out);
    Ok(LoadRun {
        // ferret's own duration: -d plus attach and the final flush.
        seconds: elapsed.max(1e-3),
        rows,
        lost,
        exit_probes,
        cpu_seconds: usage.cpu_seconds,
        peak_rss_kib: usage.max_rss_kib,
        rss_samples,
    })
}

pub(super) struct Usage {
    pub(super) cpu_seconds: f64,
    pub(super) max_rss_kib: f64,
}

/// Waits for `child` with `wait4`, which also returns its resource usage.
pub(super) fn wait_with_rusage(child: &mut Child) -> Result<(std::process::ExitStatus, Usage)> {
    use std::os::unix::process::ExitStatusExt as _;
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value to be overwritten.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our own child, writing into live locals.
    let ret = unsafe { libc::wait4(pid, &raw mut status, 0, &raw mut usage) };
    if ret != pid {
        bail!("wait4 failed: {}", std::io::Error::last_os_error());
    }
    let seconds = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 * 1e-6;
    Ok((
        std::process::ExitStatus::from_raw(status),
        Usage {
            cpu_seconds: seconds(usage.ru_utime) + seconds(usage.ru_stime),
            max_rss_kib: usage.ru_maxrss as f64,
        },
    ))
}

/// True once `pid` (our child) has exited, without reaping it.
fn has_exited(pid: u32) -> bool {
    // SAFETY: an all-zero siginfo is a valid value to be overwritten.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: waitid with WNOWAIT only inspects our own child.
    let ret = unsafe {
        libc::waitid(
            libc::P_PID,
            pid,
            &raw mut info,
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
        )
    };
    // SAFETY: waitid filled `info` (si_pid is 0 when the child still runs).
    ret != 0 || unsafe { info.si_pid() } != 0
}

/// A `kB` field of `/proc/PID/status` (`VmRSS:`, `VmHWM:`).
fn status_kib(pid: u32, field: &str) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Kills and reaps the load program however the measurement ends.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
