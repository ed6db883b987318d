//! `ferret record`: trace the chosen functions into a Parquet event log.
//!
//! One thread does everything after attach: drain the ring buffer (woken by
//! the kernel in batches, and on a short timer so a lone event is never
//! stranded), rebuild spans, write rows, sample metrics once an interval, and
//! watch for the stop conditions: the target exiting, `-d`, Ctrl-C, SIGTERM.
//! However it stops, probes are detached first, then everything still in
//! the ring buffer is written, open spans are closed as `open`, and the
//! Parquet footer is written.

use std::{
    io::{IsTerminal as _, Write as _},
    os::fd::OwnedFd,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};
use aya::maps::{MapData, RingBuf};
use tokio::{
    io::{Interest, unix::AsyncFd},
    signal::unix::{SignalKind, signal},
};

use super::plan::{self, ResolvedTarget, Started};
use crate::{
    cli::RecordConfig,
    metrics::Sampler,
    probe::{Engine, decode::Decoder},
    sink::{RecordingMeta, RecordingWriter},
    target::{self, ExitStatus},
    trace::{Reconstructor, SpanEvent},
};

/// How the drain timer and the kernel's batched wakeups share the work: the
/// kernel wakes us when 256 KiB are waiting; otherwise this timer does.
const DRAIN_EVERY: Duration = Duration::from_millis(20);

/// Why recording stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stop {
    TargetExited,
    Duration,
    Interrupt,
    Terminate,
}

/// Runs `ferret record`; returns the process exit code.
pub fn run(config: &RecordConfig) -> Result<i32> {
    let target = ResolvedTarget::resolve(&config.target)?;
    let plan = plan::plan(&target, &config.probes)?;
    eprintln!(
        "ferret: tracing {} function{} of {}",
        plan.points.len(),
        if plan.points.len() == 1 { "" } else { "s" },
        target.describe()
    );
    for note in &plan.exit_notes {
        eprintln!("ferret:   {note}");
    }
    let meta = RecordingMeta {
        target: target.describe(),
        probes: config
            .probes
            .includes
            .iter()
            .map(|p| format!("-s {p}"))
            .chain(config.probes.excludes.iter().map(|p| format!("-x {p}")))
            .collect::<Vec<_>>()
            .join(" "),
        realtime_offset_ns: realtime_offset_ns(),
    };
    // The sink's error names the path and the cause; its source chain would
    // only repeat the cause.
    let writer = RecordingWriter::create(&config.output, plan.functions.clone(), meta)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut guard = OutputGuard {
        path: Some(config.output.clone()),
    };

    let mut engine = Engine::load(None)?;
    let mut started = plan::start(&target)?;
    let pid = started.pid();
    let attach = (|| -> Result<(OwnedFd, crate::probe::AttachStats)> {
        let pidfd = target::pidfd_open(pid)?;
        engine.add_target(pid)?;
        engine.attach_thread_exit()?;
        let stats = engine.attach(&plan.points, pid)?;
        if let Some(ms) = std::env::var("FERRET_TEST_PAUSE_IN_ATTACH_MS")
            .ok()
            .and_then(|v| v.parse().ok())
        {
            // Test hook: widen the attach window so a test can make the
            // target exit inside it deterministically.
            std::thread::sleep(Duration::from_millis(ms));
        }
        if let Started::Pid(_) = started
            && has_exited(&pidfd)
        {
            anyhow::bail!("pid {pid} exited while ferret was attaching");
        }
        Ok((pidfd, stats))
    })();
    let (pidfd, stats) = match attach {
        Ok(ok) => ok,
        Err(e) => {
            engine.detach();
            if let Started::Launched(child) = started {
                child.abandon();
            }
            return Err(e);
        }
    };
    eprintln!(
        "ferret: {} probes attached through {} {} link{} in {:.1} ms",
        stats.probes,
        stats.links,
        match stats.kind {
            crate::probe::LinkKind::Multi => "uprobe_multi",
            crate::probe::LinkKind::PerProbe => "perf",
        },
        if stats.links == 1 { "" } else { "s" },
        stats.elapsed.as_secs_f64() * 1e3
    );
    let ring = engine.take_ring()?;
    if let Started::Launched(child) = &mut started {
        child.release()?;
    }

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the event loop")?;
    let mut session = Session {
        decoder: Decoder::new(),
        reconstructor: Reconstructor::new(),
        spans: Vec::with_capacity(4096),
        writer,
        events: 0,
        span_ends: 0,
        lost: 0,
    };
    let stop = runtime.block_on(session.record(&engine, ring, pidfd, pid, config, &started))?;

    // Detach first so the target runs unprobed, then flush what the kernel
    // already delivered.
    let detach_time = engine.detach();
    let lost = engine.lost().unwrap_or(0);
    let now = monotonic_ns();
    if stop == Stop::TargetExited {
        session
            .reconstructor
            .process_exit(pid, now, &mut session.spans);
    }
    session.reconstructor.finish(now, &mut session.spans);
    session.write_spans()?;
    let rows = session.writer.rows_written();
    let extras = vec![
        ("ferret.stop_reason".to_owned(), format!("{stop:?}")),
        ("ferret.functions".to_owned(), plan.points.len().to_string()),
        (
            "ferret.orphan_exits".to_owned(),
            session.reconstructor.orphan_exits().to_string(),
        ),
    ];
    session
        .writer
        .finish(lost, &extras)
        .with_context(|| format!("finishing {}", config.output.display()))?;
    guard.path = None;
    eprintln!(
        "ferret: wrote {rows} rows ({} spans) to {}; {lost} events lost; probes detached in {:.1} ms",
        session.span_ends,
        config.output.display(),
        detach_time.as_secs_f64() * 1e3
    );
    if lost > 0 {
        eprintln!(
            "ferret: warning: the kernel dropped {lost} events (ring buffer full); \
             spans they touched may end as `unwound`"
        );
    }

    match started {
        Started::Pid(_) => Ok(0),
        Started::Launched(child) => {
            let status = if let Some(status) = target::try_wait(child.pid)? {
                status
            } else {
                eprintln!(
                    "ferret: recording stopped; {} runs on untraced, waiting for it to exit",
                    child.display()
                );
                target::wait(child.pid)?
            };
            eprintln!("ferret: {} ended with {status}", child.display());
            Ok(match status {
                ExitStatus::Code(c) => c,
                ExitStatus::Signal(_) => status.shell_code(),
            })
        }
    }
}

/// Deletes a half-written output file unless recording finished.
struct OutputGuard {
    path: Option<std::path::PathBuf>,
}

impl Drop for OutputGuard {
    fn drop(&mut self) {
        if let Some(path) = self.path.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}

struct Session {
    decoder: Decoder,
    reconstructor: Reconstructor,
    spans: Vec<SpanEvent>,
    writer: RecordingWriter,
    events: u64,
    span_ends: u64,
    /// Events the kernel dropped, as last read.
    lost: u64,
}

impl Session {
    async fn record(
        &mut self,
        engine: &Engine,
        ring: RingBuf<MapData>,
        pidfd: OwnedFd,
        pid: u32,
        config: &RecordConfig,
        started: &Started,
    ) -> Result<Stop> {
        // SAFETY: both objects own their fd for as long as the AsyncFd lives
        // and always return the same one.
        let mut ring = unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE) }
            .map_err(|e| e.into_parts().1)
            .context("polling the ring buffer")?;
        // SAFETY: as above.
        let pidfd = unsafe { AsyncFd::register_with_interest(pidfd, Interest::READABLE) }
            .map_err(|e| e.into_parts().1)
            .context("polling the target's pidfd")?;
        let mut sigint = signal(SignalKind::interrupt()).context("installing SIGINT handler")?;
        let mut sigterm = signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
        let mut drain_timer = tokio::time::interval(DRAIN_EVERY);
        drain_timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut metrics_timer = tokio::time::interval(config.interval);
        let mut status_timer = tokio::time::interval(Duration::from_millis(500));
        let show_status = std::io::stderr().is_terminal();
        let mut sampler = Sampler::new(pid);
        let deadline = config.duration.map(|d| tokio::time::Instant::now() + d);
        let started_at = Instant::now();
        let mut last_status = (Instant::now(), 0u64);

        let stop = loop {
            tokio::select! {
                guard = ring.readable_mut() => {
                    let mut guard = guard.context("waiting on the ring buffer")?;
                    self.drain(guard.get_inner_mut())?;
                    guard.clear_ready();
                }
                _ = drain_timer.tick() => self.drain(ring.get_mut())?,
                _ = metrics_timer.tick() => {
                    if let Ok(sample) = sampler.sample(monotonic_ns()) {
                        self.writer.write_metric(&sample)?;
                    }
                    self.check_lost(engine);
                    self.writer.flush()?;
                }
                _ = status_timer.tick(), if show_status => {
                    let (at, events) = last_status;
                    let rate = (self.events - events) as f64 / at.elapsed().as_secs_f64().max(1e-3);
                    eprint!(
                        "\r\x1b[2Kferret: {:>6.1}s  {:>9.0} events/s  {} spans  {} lost",
                        started_at.elapsed().as_secs_f64(), rate, self.span_ends, self.lost
                    );
                    let _ = std::io::stderr().flush();
                    last_status = (Instant::now(), self.events);
                }
                _ = pidfd.readable() => break Stop::TargetExited,
                _ = sigint.recv() => break Stop::Interrupt,
                _ = sigterm.recv() => {
                    if let Started::Launched(child) = started {
                        // The launched command is ours: pass the request on.
                        target::signal(child.pid, libc::SIGTERM);
                    }
                    break Stop::Terminate;
                }
                () = sleep_until(deadline) => break Stop::Duration,
            }
        };
        if show_status {
            eprint!("\r\x1b[2K");
        }
        // The target may still be running: give a launched command that was
        // asked to stop a moment to do so, recording its way out.
        if matches!(stop, Stop::Terminate | Stop::Interrupt)
            && matches!(started, Started::Launched(_))
        {
            let _ = tokio::time::timeout(Duration::from_secs(2), pidfd.readable()).await;
        }
        self.drain(ring.get_mut())?;
        Ok(stop)
    }

    /// Reads the kernel's drop counter; new drops mean some threads' stacks
    /// may have lost frames, which the reconstructor is told about.
    fn check_lost(&mut self, engine: &Engine) {
        if let Ok(lost) = engine.lost()
            && lost > self.lost
        {
            self.reconstructor.mark_lost(lost - self.lost);
            self.lost = lost;
        }
    }

    fn drain(&mut self, ring: &mut RingBuf<MapData>) -> Result<()> {
        while let Some(item) = ring.next() {
            if let Some(event) = self.decoder.decode_bytes(&item) {
                self.events += 1;
                self.reconstructor.push(&event, &mut self.spans);
            }
        }
        self.write_spans()
    }

    fn write_spans(&mut self) -> Result<()> {
        for span in self.spans.drain(..) {
            if let SpanEvent::End(_) = span {
                self.span_ends += 1;
            }
            self.writer.write_span(&span)?;
        }
        Ok(())
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn has_exited(pidfd: &OwnedFd) -> bool {
    use std::os::fd::AsRawFd as _;
    let mut pfd = libc::pollfd {
        fd: pidfd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: poll on one live pollfd with a zero timeout.
    unsafe { libc::poll(&raw mut pfd, 1, 0) > 0 }
}

fn clock_ns(clock: libc::clockid_t) -> i64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into a live local.
    unsafe { libc::clock_gettime(clock, &raw mut ts) };
    ts.tv_sec * 1_000_000_000 + ts.tv_nsec
}

/// CLOCK_MONOTONIC now, the clock `bpf_ktime_get_ns` reads.
pub fn monotonic_ns() -> u64 {
    clock_ns(libc::CLOCK_MONOTONIC) as u64
}

/// CLOCK_REALTIME − CLOCK_MONOTONIC: adds to a BPF timestamp to give wall time.
pub fn realtime_offset_ns() -> i64 {
    clock_ns(libc::CLOCK_REALTIME) - clock_ns(libc::CLOCK_MONOTONIC)
}
