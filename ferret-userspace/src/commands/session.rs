//! What `record` and `watch` share: choosing the functions, attaching, the
//! event pipeline (ring buffer → decoder → reconstructor), the stop
//! conditions, and a tidy ending.
//!
//! The order of the steps matters. Everything that can fail on bad input
//! (pid, command, patterns, output path) runs before any probe is attached
//! or any command launched; a launched command is held before its first
//! instruction until every probe is in place; and at the end the probes are
//! detached before the remaining events are drained, so the target runs
//! unprobed as early as possible.

use std::{
    os::fd::{AsRawFd as _, OwnedFd},
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context as _, Result};
use aya::maps::{MapData, RingBuf};
use tokio::{
    io::{Interest, unix::AsyncFd},
    signal::unix::{Signal, SignalKind, signal},
};

use super::plan::{self, Plan, ResolvedTarget, Started};
use crate::{
    cli::{ProbeConfig, Target},
    otlp,
    probe::{AttachStats, Engine, LinkKind, decode::Decoder},
    sink::{MetricSample, RecordingMeta, RecordingWriter},
    stall::{RunningCalls, StallReport, Watchdog},
    target::{self, ExitStatus, Redirect},
    trace::{RawKind, Reconstructor, SpanEvent},
};

/// How the drain timer and the kernel's batched wakeups share the work: the
/// kernel wakes the reader when 256 KiB are waiting; otherwise this timer does.
pub const DRAIN_EVERY: Duration = Duration::from_millis(20);

/// How long the end of a session waits for the OTLP exporter to send what
/// it still holds.
pub const OTLP_FINISH_TIMEOUT: Duration = Duration::from_secs(5);

/// The OTLP configuration of the command line and the environment.
pub fn otlp_config(options: &crate::cli::OtlpOptions) -> Result<Option<otlp::Config>> {
    Ok(otlp::Config::resolve(options, |name| {
        std::env::var(name).ok()
    })?)
}

/// How often the open stacks are checked for stalls.
pub const STALL_CHECK_EVERY: Duration = Duration::from_millis(250);

/// A target and its chosen functions, before anything is attached.
pub struct Prepared {
    /// The target.
    pub target: ResolvedTarget,
    /// The functions and their probe points.
    pub plan: Plan,
    /// The patterns, as the user gave them (for metadata and headers).
    pub probes_text: String,
    /// Trace forked children too.
    pub follow_forks: bool,
}

/// Resolves the target and selects the functions; says what was chosen.
pub fn prepare(target: &Target, probes: &ProbeConfig) -> Result<Prepared> {
    let target = ResolvedTarget::resolve(target)?;
    let plan = plan::plan(&target, probes)?;
    eprintln!(
        "ferret: tracing {} function{} of {}",
        plan.points.len(),
        if plan.points.len() == 1 { "" } else { "s" },
        target.describe()
    );
    for note in &plan.exit_notes {
        eprintln!("ferret:   {note}");
    }
    let probes_text = probes
        .includes
        .iter()
        .map(|p| format!("-s {p}"))
        .chain(probes.excludes.iter().map(|p| format!("-x {p}")))
        .collect::<Vec<_>>()
        .join(" ");
    Ok(Prepared {
        target,
        plan,
        probes_text,
        follow_forks: probes.follow_forks,
    })
}

impl Prepared {
    /// Metadata for a recording of this session.
    pub fn recording_meta(&self) -> RecordingMeta {
        RecordingMeta {
            target: self.target.describe(),
            probes: self.probes_text.clone(),
            realtime_offset_ns: realtime_offset_ns(),
        }
    }

    /// Starts the OpenTelemetry exporter for `pid` (the target, attached),
    /// if `config` asks for one; says where spans go.
    pub fn start_otlp(
        &self,
        config: Option<otlp::Config>,
        pid: u32,
    ) -> Result<Option<otlp::Exporter>> {
        let Some(mut config) = config else {
            return Ok(None);
        };
        for note in &config.notes {
            eprintln!("ferret: {note}");
        }
        config.realtime_offset_ns = realtime_offset_ns();
        let resource = match &self.target {
            ResolvedTarget::Pid(info) => otlp::Resource::new(pid, &info.exe, info.cmdline.clone()),
            ResolvedTarget::Command { exe, .. } => {
                otlp::Resource::new(pid, exe, self.target.describe())
            }
        };
        let exporter = otlp::Exporter::start(config, resource, self.plan.functions.clone())?;
        eprintln!(
            "ferret: sending spans to {} (OTLP/HTTP)",
            exporter.endpoint()
        );
        Ok(Some(exporter))
    }

    /// Starts the stall watchdog (see [`crate::stall`]) unless `stall` is
    /// zero. Attached to a running process (not launched by ferret), it
    /// first finds the traced calls already on its threads' stacks; the
    /// first stall check adopts them, started at `attached_ns`.
    pub fn start_watchdog(
        &self,
        stall: Duration,
        attached: &Attached,
        attached_ns: u64,
    ) -> Option<Watchdog> {
        if stall.is_zero() {
            return None;
        }
        let mut watchdog = Watchdog::new(stall, self.plan.functions.clone());
        if matches!(attached.started, Started::Pid(_)) {
            watchdog.adopt_when_drained(RunningCalls::find(
                attached.pid,
                &self.plan.points,
                attached_ns,
            ));
        }
        Some(watchdog)
    }

    /// Loads the eBPF programs, starts the target (a command is launched
    /// held at its gate, streams redirected if asked), attaches every probe,
    /// then lets the command run. On failure nothing is left attached and a
    /// launched command never runs.
    pub fn attach(&self, redirect: Option<&Redirect>) -> Result<Attached> {
        // FERRET_RING_BYTES: a power of two ≥ 4096; tests use a tiny one to
        // provoke losses.
        let ring_bytes = std::env::var("FERRET_RING_BYTES")
            .ok()
            .and_then(|v| v.parse().ok());
        let mut engine = Engine::load(ring_bytes)?;
        engine.configure(self.follow_forks)?;
        let mut started = plan::start(&self.target, redirect)?;
        let pid = started.pid();
        let attached = (|| -> Result<(OwnedFd, AttachStats)> {
            let pidfd = target::pidfd_open(pid)?;
            engine.add_target(pid)?;
            engine.attach_process_events()?;
            // Following forks, the links cannot name one pid: the kernel-side
            // target set (which the fork hook extends) does the filtering.
            let link_pid = if self.follow_forks { 0 } else { pid };
            let stats = engine.attach(&self.plan.points, link_pid)?;
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
        let (pidfd, stats) = match attached {
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
                LinkKind::Multi => "uprobe_multi",
                LinkKind::PerProbe => "perf",
            },
            if stats.links == 1 { "" } else { "s" },
            stats.elapsed.as_secs_f64() * 1e3
        );
        let ring = engine.take_ring()?;
        if let Started::Launched(child) = &mut started {
            child.release()?;
        }
        Ok(Attached {
            engine,
            started,
            pid,
            pidfd: Some(pidfd),
            ring: Some(ring),
            stats,
        })
    }
}

/// A running target with probes attached.
pub struct Attached {
    /// Programs, maps and links; dropping it detaches.
    pub engine: Engine,
    /// The target.
    pub started: Started,
    /// Its pid.
    pub pid: u32,
    /// Readable once the target exits (taken by [`Stopper::new`]).
    pub pidfd: Option<OwnedFd>,
    /// The event stream (taken by the reader).
    pub ring: Option<RingBuf<MapData>>,
    /// How the probes were attached.
    pub stats: AttachStats,
}

impl Attached {
    /// The ring buffer, registered with the current tokio runtime.
    pub fn take_ring(&mut self) -> Result<AsyncFd<RingBuf<MapData>>> {
        let ring = self.ring.take().expect("ring taken once");
        // SAFETY: the ring buffer owns its fd for as long as the AsyncFd
        // lives and always returns the same one.
        unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE) }
            .map_err(|e| e.into_parts().1)
            .context("polling the ring buffer")
    }

    /// After the session: for a launched command, waits for it (saying so
    /// if it still runs) and returns its exit code; 0 for a pid target.
    pub fn finish_target(self) -> Result<i32> {
        match self.started {
            Started::Pid(_) => Ok(0),
            Started::Launched(child) => {
                let status = if let Some(status) = target::try_wait(child.pid)? {
                    status
                } else {
                    eprintln!(
                        "ferret: tracing stopped; {} runs on untraced, waiting for it to exit",
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
}

/// Ring-buffer records to span events.
#[derive(Default)]
pub struct Pipeline {
    /// Record decoder.
    pub decoder: Decoder,
    /// Open stacks.
    pub reconstructor: Reconstructor,
    /// Span events produced and not yet consumed.
    pub spans: Vec<SpanEvent>,
    /// Records decoded so far.
    pub events: u64,
    /// Events the kernel dropped, as last read.
    pub lost: u64,
    /// Lifecycle news for the user (exec, followed forks), not yet shown.
    pub notices: Vec<String>,
    /// A launched command's pid until its own first exec (the one that
    /// starts it, after the gate) has been seen.
    pub launch_exec: Option<u32>,
}

impl Pipeline {
    /// A pipeline for `attached`'s target.
    pub fn for_target(attached: &Attached) -> Self {
        Self {
            launch_exec: matches!(attached.started, Started::Launched(_)).then_some(attached.pid),
            ..Self::default()
        }
    }

    /// Decodes everything waiting in the ring buffer into [`Self::spans`].
    /// One stall check (see [`Watchdog`]): takes in the captures finished
    /// so far, drains the ring buffer (so a capture taken after its thread
    /// moved on is known for what it is), then checks the open stacks.
    /// Returns the new and moved stalls; calls adopted at attach are told
    /// in [`Self::notices`].
    pub fn check_stalls(
        &mut self,
        watchdog: &mut Watchdog,
        ring: &mut RingBuf<MapData>,
    ) -> Vec<StallReport> {
        watchdog.receive();
        self.drain(ring);
        let reports = watchdog.tick(&mut self.reconstructor, monotonic_ns(), &mut self.spans);
        if let Some(adopted) = watchdog.take_adopted().filter(|&n| n > 0) {
            self.notices.push(format!(
                "{adopted} traced call{} already running when ferret attached",
                if adopted == 1 { " was" } else { "s were" }
            ));
        }
        reports
    }

    pub fn drain(&mut self, ring: &mut RingBuf<MapData>) {
        while let Some(item) = ring.next() {
            if let Some(event) = self.decoder.decode_bytes_ref(&item) {
                self.events += 1;
                match event.kind {
                    RawKind::Exec if self.launch_exec == Some(event.pid) => {
                        self.launch_exec = None;
                        continue;
                    }
                    RawKind::Exec => self.notices.push(format!(
                        "pid {} replaced its program (exec); the probed functions are in the \
                         old one, so nothing more is traced there",
                        event.pid
                    )),
                    RawKind::Fork { parent } => self
                        .notices
                        .push(format!("following pid {} (forked by {parent})", event.pid)),
                    _ => {}
                }
                self.reconstructor.push(event, &mut self.spans);
            }
        }
    }

    /// Reads the kernel's drop counter; new drops mean some threads' stacks
    /// may have lost frames, which the reconstructor is told about.
    pub fn check_lost(&mut self, engine: &Engine) {
        if let Ok(lost) = engine.lost()
            && lost > self.lost
        {
            self.reconstructor.mark_lost(lost - self.lost);
            self.lost = lost;
        }
        if self.lost > 0 {
            self.resync_dead_threads();
        }
    }

    /// After losses, a thread's exit event may be among the lost: close the
    /// spans of threads that no longer exist, as `unwound` now, so no span
    /// stays open forever. (Frames lost inside a live thread are retired by
    /// the stack-pointer rule as the thread moves on.)
    pub fn resync_dead_threads(&mut self) {
        let dead: Vec<(u32, u32, crate::trace::ThreadName)> = self
            .reconstructor
            .threads()
            .filter(|t| !std::path::Path::new(&format!("/proc/{}/task/{}", t.pid, t.tid)).exists())
            .map(|t| (t.pid, t.tid, *t.thread_name))
            .collect();
        let now = monotonic_ns();
        for (pid, tid, thread_name) in dead {
            let exit = crate::trace::RawEvent {
                kind: RawKind::ThreadExit,
                ts_ns: now,
                pid,
                tid,
                function: 0,
                sp: 0,
                thread_name,
            };
            self.reconstructor.push(&exit, &mut self.spans);
        }
    }

    /// Ends what is still open: as `unwound` if the target exited, else as
    /// `open` (still running when tracing stopped).
    pub fn close(&mut self, stop: Stop, pid: u32) {
        let now = monotonic_ns();
        if stop == Stop::TargetExited {
            self.reconstructor.process_exit(pid, now, &mut self.spans);
        }
        self.reconstructor.finish(now, &mut self.spans);
    }
}

/// Why tracing stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// The target exited.
    TargetExited,
    /// `-d` elapsed.
    Duration,
    /// SIGINT (Ctrl-C).
    Interrupt,
    /// SIGTERM.
    Terminate,
    /// The user quit the dashboard.
    Quit,
}

/// The stop conditions other than the user's own: target exit, signals,
/// a deadline.
pub struct Stopper {
    pidfd: AsyncFd<OwnedFd>,
    sigint: Signal,
    sigterm: Signal,
    deadline: Option<tokio::time::Instant>,
    launched: Option<u32>,
}

impl Stopper {
    /// Must be called inside a tokio runtime.
    pub fn new(attached: &mut Attached, duration: Option<Duration>) -> Result<Self> {
        let pidfd = attached.pidfd.take().expect("pidfd taken once");
        // SAFETY: the OwnedFd owns its fd for as long as the AsyncFd lives.
        let pidfd = unsafe { AsyncFd::register_with_interest(pidfd, Interest::READABLE) }
            .map_err(|e| e.into_parts().1)
            .context("polling the target's pidfd")?;
        Ok(Self {
            pidfd,
            sigint: signal(SignalKind::interrupt()).context("installing a SIGINT handler")?,
            sigterm: signal(SignalKind::terminate()).context("installing a SIGTERM handler")?,
            deadline: duration.map(|d| tokio::time::Instant::now() + d),
            launched: match &attached.started {
                Started::Launched(child) => Some(child.pid),
                Started::Pid(_) => None,
            },
        })
    }

    /// Resolves at the first stop condition. On SIGTERM a launched command
    /// (ours) is asked to stop too.
    pub async fn next(&mut self) -> Stop {
        let deadline = self.deadline;
        tokio::select! {
            _ = self.pidfd.readable() => Stop::TargetExited,
            _ = self.sigint.recv() => Stop::Interrupt,
            _ = self.sigterm.recv() => {
                if let Some(pid) = self.launched {
                    target::signal(pid, libc::SIGTERM);
                }
                Stop::Terminate
            }
            () = sleep_until(deadline) => Stop::Duration,
        }
    }

    /// After a signal (or the user quitting `watch`, which then asks the
    /// command to stop), gives a launched command up to two seconds to exit,
    /// so its way out is traced too.
    pub async fn grace(&self, stop: Stop) {
        if self.launched.is_some() && matches!(stop, Stop::Interrupt | Stop::Terminate | Stop::Quit)
        {
            let _ = tokio::time::timeout(Duration::from_secs(2), self.pidfd.readable()).await;
        }
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn has_exited(pidfd: &OwnedFd) -> bool {
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

/// The Parquet event log of a session, as `record` and `watch -o` write it;
/// the file is deleted again unless [`Recording::finish`] completes.
pub struct Recording {
    writer: RecordingWriter,
    guard: OutputGuard,
    path: PathBuf,
    /// Metadata added by other parts of the session (e.g. the overhead guard).
    more_metadata: Vec<(String, String)>,
}

impl Recording {
    /// Adds a key-value pair to the file's metadata (written at finish).
    pub fn add_metadata(&mut self, key: &str, value: String) {
        self.more_metadata.push((key.to_owned(), value));
    }

    /// Creates `path` for a recording of `prepared` (before anything is
    /// attached, so a bad path fails early).
    pub fn create(path: &Path, prepared: &Prepared) -> Result<Self> {
        // The sink's error names the path and the cause; its source chain
        // would only repeat the cause.
        let writer = RecordingWriter::create(
            path,
            prepared.plan.functions.clone(),
            prepared.recording_meta(),
        )
        .map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(Self {
            writer,
            guard: OutputGuard {
                path: Some(path.to_owned()),
            },
            path: path.to_owned(),
            more_metadata: Vec::new(),
        })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes one span event.
    pub fn write_span(&mut self, span: &SpanEvent) -> Result<()> {
        Ok(self.writer.write_span(span)?)
    }

    /// Writes and clears `spans`; returns how many ended.
    pub fn write_spans(&mut self, spans: &mut Vec<SpanEvent>) -> Result<u64> {
        let mut ends = 0;
        for span in spans.drain(..) {
            ends += u64::from(matches!(span, SpanEvent::End(_)));
            self.writer.write_span(&span)?;
        }
        Ok(ends)
    }

    /// Writes one metrics row.
    pub fn write_metric(&mut self, sample: &MetricSample) -> Result<()> {
        Ok(self.writer.write_metric(sample)?)
    }

    /// Writes one STALL row (see [`crate::stall`]).
    pub fn write_stall(&mut self, row: &crate::sink::StallRow<'_>) -> Result<()> {
        Ok(self.writer.write_stall(row)?)
    }

    /// One STALL row per report.
    pub fn write_stalls(&mut self, reports: &[StallReport]) -> Result<()> {
        for report in reports {
            let stack = report.stack_text();
            self.write_stall(&report.row(&stack))?;
        }
        Ok(())
    }

    /// Writes buffered rows out, so a crash loses little.
    pub fn flush(&mut self) -> Result<()> {
        Ok(self.writer.flush()?)
    }

    /// Writes the footer with the session's metadata (lost events, why it
    /// stopped, functions traced, exits without an entry, perf counters the
    /// machine could not count); returns the number of rows. The file is
    /// kept from here on.
    pub fn finish(
        mut self,
        stop: Stop,
        lost: u64,
        functions: usize,
        orphan_exits: u64,
        metrics_unavailable: &[(&'static str, String)],
    ) -> Result<u64> {
        let rows = self.writer.rows_written();
        let mut extras = vec![
            ("ferret.stop_reason".to_owned(), format!("{stop:?}")),
            ("ferret.functions".to_owned(), functions.to_string()),
            ("ferret.orphan_exits".to_owned(), orphan_exits.to_string()),
            (
                "ferret.metrics_unavailable".to_owned(),
                metrics_unavailable
                    .iter()
                    .map(|(event, why)| format!("{event}: {why}"))
                    .collect::<Vec<_>>()
                    .join("; "),
            ),
        ];
        extras.append(&mut self.more_metadata);
        self.writer
            .finish(lost, &extras)
            .with_context(|| format!("finishing {}", self.path.display()))?;
        self.guard.path = None;
        Ok(rows)
    }
}

/// Deletes a half-written output file unless the session finished it.
pub struct OutputGuard {
    /// The file; `None` once finished.
    pub path: Option<std::path::PathBuf>,
}

impl Drop for OutputGuard {
    fn drop(&mut self) {
        if let Some(path) = self.path.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// The overhead guard (`--max-rate`): a function called more often than the
/// limit per second is detached, so tracing cannot swamp the target; the
/// rest stay traced.
pub struct OverheadGuard {
    max_rate: u64,
    calls: Vec<u64>,
    window_start_ns: u64,
    disabled: std::collections::HashSet<u32>,
    /// (function name, calls/s when detached), in detach order.
    pub detached: Vec<(String, u64)>,
}

impl OverheadGuard {
    /// A guard for `functions` functions; `max_rate` 0 turns it off.
    pub fn new(functions: usize, max_rate: u64) -> Self {
        Self {
            max_rate,
            calls: vec![0; functions],
            window_start_ns: monotonic_ns(),
            disabled: std::collections::HashSet::new(),
            detached: Vec::new(),
        }
    }

    /// Counts the calls among freshly produced span events.
    pub fn observe(&mut self, spans: &[SpanEvent]) {
        if self.max_rate == 0 {
            return;
        }
        for span in spans {
            if let SpanEvent::Start(start) = span
                && let Some(count) = self.calls.get_mut(start.function as usize)
            {
                *count += 1;
            }
        }
    }

    /// Once a second: detaches functions over the limit. Returns a notice per
    /// detached function.
    pub fn check(&mut self, engine: &mut Engine, plan: &Plan) -> Vec<String> {
        let now = monotonic_ns();
        let elapsed = now.saturating_sub(self.window_start_ns);
        if self.max_rate == 0 || elapsed < 1_000_000_000 {
            return Vec::new();
        }
        let seconds = elapsed as f64 / 1e9;
        let mut hot = Vec::new();
        for (id, count) in self.calls.iter_mut().enumerate() {
            let rate = (*count as f64 / seconds) as u64;
            *count = 0;
            let id = id as u32;
            if rate > self.max_rate && !self.disabled.contains(&id) {
                hot.push((id, rate));
            }
        }
        self.window_start_ns = now;
        if hot.is_empty() {
            return Vec::new();
        }
        let mut disabled = self.disabled.clone();
        disabled.extend(hot.iter().map(|&(id, _)| id));
        match engine.reattach_without(&plan.points, &disabled) {
            Ok(took) => {
                self.disabled = disabled;
                hot.into_iter()
                    .map(|(id, rate)| {
                        let name = plan.functions[id as usize].name.clone();
                        let notice = format!(
                            "detached `{name}`: {rate} calls/s exceeds --max-rate {} \
                             (re-attached the rest in {:.1} ms)",
                            self.max_rate,
                            took.as_secs_f64() * 1e3
                        );
                        self.detached.push((name, rate));
                        notice
                    })
                    .collect()
            }
            Err(e) => {
                // Do not retry every second.
                self.max_rate = 0;
                vec![format!("overhead guard off: {e}")]
            }
        }
    }

    /// For the recording's metadata: `name (calls/s); ...`.
    pub fn metadata(&self) -> String {
        self.detached
            .iter()
            .map(|(name, rate)| format!("{name} ({rate} calls/s)"))
            .collect::<Vec<_>>()
            .join("; ")
    }
}
