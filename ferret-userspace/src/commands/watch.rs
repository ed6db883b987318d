//! `ferret watch`: the live dashboard, optionally recording to Parquet too.
//!
//! Two threads. The ingestion thread runs the session's one event loop
//! ([`crate::session::Session::run`]) with one consumer, `Live`: the live
//! aggregates, the optional Parquet recording, and about ten times a second
//! an immutable [`Snapshot`] published into a [`Mailbox`]. The main thread
//! runs the dashboard: it reads the newest snapshot, draws, and handles
//! keys; it never blocks ingestion, and ingestion never waits for a frame.
//!
//! The ways out, and what each does:
//! - `q` / Ctrl-C in the dashboard: the terminal is restored at once, then
//!   the ingestion thread is told to stop. A command that watch launched is
//!   asked to stop (SIGTERM, traced for up to two seconds, then SIGKILL); a
//!   process attached by pid keeps running. Probes are detached, the ring
//!   buffer drained, open spans closed, the Parquet file finished.
//! - SIGINT / SIGTERM to ferret: the same, from the ingestion side; the
//!   dashboard closes by itself.
//! - The target exits: tracing ends (the Parquet file is finished then), and
//!   the dashboard says so, with the exit status of a launched command, and
//!   keeps its last state on screen until `q`.
//! - A panic in the dashboard: the panic hook restores the terminal, the
//!   session is still shut down in order, and the panic then continues.
//! - A recording that fails (a full disk): the dashboard goes on, its
//!   header says what happened, and `watch` exits with the error.

use std::{
    collections::HashSet,
    io::IsTerminal as _,
    path::PathBuf,
    sync::{Arc, mpsc},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use tokio::sync::oneshot;

use crate::{
    cli::{ExitMode, WatchConfig},
    clock::{monotonic_ns, realtime_offset_ns},
    live::{
        Aggregates, HotProfile, Mailbox, OtlpProgress, SessionInfo, Snapshot, TargetState,
        rate::RateWindow,
    },
    otlp::{self, OtlpConsumer},
    probe::ExitProbes,
    sample::Sample,
    session::{
        self, Consumer, LoopView, ProbeRequest, RecordingConsumer, RunOptions, SamplingStatus,
        Session, SessionEnd, SessionOptions, Stop,
        plan::{ResolvedTarget, Started},
    },
    sink::MetricSample,
    stall::{StallGroup, StallNews, StallReport, Watchdog},
    target::{ExitStatus, Redirect},
    trace::{FunctionInfo, SpanEvent},
    tui::{
        self,
        app::App,
        terminal::{TerminalEvents, TerminalGuard},
    },
};

/// Runs `ferret watch`; returns the process exit code.
pub fn run(config: &WatchConfig) -> Result<i32> {
    if !std::io::stdout().is_terminal() {
        bail!(
            "`ferret watch` draws a live dashboard and needs a terminal; \
             to trace without one, use `ferret record`"
        );
    }
    let prepared = session::prepare(&config.target, &config.probes)?;
    let recording = config
        .output
        .as_deref()
        .map(|path| prepared.create_recording(path))
        .transpose()?;
    let log = match &prepared.target {
        ResolvedTarget::Command { exe, .. } => Some(log_path(exe)),
        ResolvedTarget::Pid(_) => None,
    };
    let otlp = otlp::config(&config.otlp)?;
    let redirect = log
        .as_deref()
        .map(|path| Redirect::to_log(path).with_context(|| format!("creating {}", path.display())))
        .transpose()?;
    let mut session = prepared.start(
        SessionOptions {
            stall: config.stall,
            max_rate: config.probes.max_rate,
            max_overhead: config.probes.max_overhead,
            interval: config.interval,
            sample_hz: config.sample_hz,
        },
        redirect.as_ref(),
    )?;
    drop(redirect);
    let otlp = OtlpConsumer::start(
        otlp,
        &session.prepared().target,
        session.pid(),
        session.functions().clone(),
    )?;

    let info = Arc::new(session_info(&session, config, log.clone()));
    let mailbox = Arc::new(Mailbox::new(Arc::new(Snapshot::empty(info.clone()))));
    let (ready_tx, ready_rx) = mpsc::channel();
    let (quit_tx, quit_rx) = oneshot::channel();
    let (requests_tx, requests_rx) = tokio::sync::mpsc::unbounded_channel();
    let ingest = {
        let mailbox = mailbox.clone();
        thread::Builder::new()
            .name("ferret-ingest".into())
            .spawn(move || {
                let settle_stalls = recording.is_some();
                let mut live = Live::new(recording.map(RecordingConsumer::new), info, mailbox);
                live.otlp = otlp;
                let end = session.run(
                    &mut [&mut live],
                    RunOptions {
                        quit: Some(quit_rx),
                        ready: Some(ready_tx),
                        end_launched: true,
                        settle_stalls,
                        requests: Some(requests_rx),
                        ..RunOptions::default()
                    },
                );
                end.map(|end| live.outcome(&end))
            })
            .context("starting the ingestion thread")?
    };
    // The ingestion thread installs the SIGINT/SIGTERM handlers; until it
    // has, a signal would kill ferret with the terminal in raw mode.
    if ready_rx.recv().is_err() {
        return match ingest.join() {
            Ok(Err(e)) => Err(e),
            Ok(Ok(_)) => bail!("the ingestion thread ended before it started"),
            Err(panic) => std::panic::resume_unwind(panic),
        };
    }

    let stats = std::env::var_os("FERRET_WATCH_STATS").is_some();
    let ui = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        dashboard(&mailbox, requests_tx, stats)
    }));
    // The terminal is back to normal here, whatever happened.
    let _ = quit_tx.send(());
    let outcome = match ingest.join() {
        Ok(outcome) => outcome,
        Err(panic) => std::panic::resume_unwind(panic),
    };
    let ui = match ui {
        Ok(ui) => ui,
        Err(panic) => std::panic::resume_unwind(panic),
    };
    let mut outcome = outcome?;
    outcome.report(log.as_deref());
    if let Some(line) = &outcome.otlp {
        eprintln!("ferret: otlp: {line}");
    }
    if stats {
        eprintln!("{}", outcome.stats);
    }
    ui.context("running the dashboard")?;
    if let Some(e) = outcome.recording_error.take() {
        return Err(e);
    }
    Ok(outcome.exit_code())
}

/// Runs the dashboard on the real terminal until the user quits; the
/// terminal is restored before this returns (or unwinds).
fn dashboard(
    mailbox: &Arc<Mailbox>,
    requests: tokio::sync::mpsc::UnboundedSender<ProbeRequest>,
    stats: bool,
) -> Result<()> {
    let mut guard = TerminalGuard::enter().context("setting up the terminal")?;
    let size = guard.terminal().size()?;
    let mut app = App::new(
        mailbox.latest(),
        ratatui::layout::Rect::new(0, 0, size.width, size.height),
    );
    let mut events = TerminalEvents::new(mailbox.clone()).with_requests(requests);
    if stats {
        let mut timed = Timed {
            inner: &mut events,
            frames: 0,
            busy: Duration::ZERO,
            started: Instant::now(),
        };
        tui::run(guard.terminal(), &mut app, &mut timed)?;
        drop(guard);
        eprintln!(
            "ferret: dashboard: {} frames, {:.1} µs of work per frame on average",
            timed.frames,
            timed.busy.as_secs_f64() * 1e6 / timed.frames.max(1) as f64
        );
        return Ok(());
    }
    tui::run(guard.terminal(), &mut app, &mut events)?;
    Ok(())
}

/// Measures the UI thread's work per frame (`FERRET_WATCH_STATS=1`): the
/// time between returning from one wait and entering the next.
struct Timed<'a> {
    inner: &'a mut TerminalEvents,
    frames: u64,
    busy: Duration,
    started: Instant,
}

impl tui::EventSource for Timed<'_> {
    fn next(&mut self, timeout: Duration) -> std::io::Result<Option<tui::app::Event>> {
        if timeout > Duration::ZERO {
            self.frames += 1;
            self.busy += self.started.elapsed();
        }
        let event = self.inner.next(timeout);
        self.started = Instant::now();
        event
    }

    fn now_ns(&mut self) -> u64 {
        self.inner.now_ns()
    }

    fn send(&mut self, request: ProbeRequest) {
        self.inner.send(request);
    }
}

/// Where a launched command's output goes: a fresh file in the temporary
/// directory, named after the command and this ferret.
fn log_path(exe: &std::path::Path) -> PathBuf {
    let name = exe
        .file_name()
        .map_or_else(|| "command".into(), |n| n.to_string_lossy().into_owned());
    let name: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    std::env::temp_dir().join(format!("ferret-watch-{name}-{}.log", std::process::id()))
}

/// The fixed facts the header shows.
fn session_info(session: &Session, config: &WatchConfig, log: Option<PathBuf>) -> SessionInfo {
    let prepared = session.prepared();
    let command = match &prepared.target {
        ResolvedTarget::Pid(info) => info.cmdline.clone(),
        ResolvedTarget::Command { args, .. } => args
            .iter()
            .map(|a| a.to_string_lossy())
            .collect::<Vec<_>>()
            .join(" "),
    };
    let ret = prepared
        .plan
        .points
        .iter()
        .filter(|p| !p.is_go_marker() && matches!(p.exits, ExitProbes::Instructions(_)))
        .count();
    let uret = prepared.plan.traced_functions() - ret;
    let mode = match config.probes.exit_mode {
        ExitMode::Auto => "auto",
        ExitMode::Ret => "ret",
        ExitMode::Uretprobe => "uretprobe",
    };
    let exit_mode = match (ret, uret) {
        (_, 0) => format!("{mode}: ret"),
        (0, _) => format!("{mode}: uretprobe"),
        _ => format!("{mode}: ret {ret}, uretprobe {uret}"),
    };
    SessionInfo {
        pid: session.pid(),
        command,
        launched: matches!(session.started(), Started::Launched(_)),
        functions: prepared.plan.functions.clone(),
        exit_mode,
        log,
        output: config.output.clone(),
        started_ns: monotonic_ns(),
        stall_ns: u64::try_from(config.stall.as_nanos()).unwrap_or(u64::MAX),
        local_offset_ns: realtime_offset_ns() + local_utc_offset_s() * 1_000_000_000,
        probe_cost_ns: Some(session.first_calibration())
            .filter(|c| !c.is_none())
            .map(crate::cost::Calibration::typical_call_ns),
        sample_hz: config.sample_hz,
        sampling_only: prepared.plan.points.is_empty(),
    }
}

/// The local time zone's offset from UTC now, in seconds (0 if unknown).
fn local_utc_offset_s() -> i64 {
    // SAFETY: time(NULL) has no preconditions; localtime_r writes into a
    // live local and reads the time zone (TZ, /etc/localtime).
    unsafe {
        let now = libc::time(std::ptr::null_mut());
        let mut tm: libc::tm = std::mem::zeroed();
        if libc::localtime_r(&raw const now, &raw mut tm).is_null() {
            0
        } else {
            tm.tm_gmtoff
        }
    }
}

/// How the session ended, for the lines printed after the dashboard closes.
struct Outcome {
    stop: Stop,
    /// A launched command's exit status, if it ended.
    exit: Option<ExitStatus>,
    /// We ended the launched command on the way out.
    ended_by_us: Option<&'static str>,
    command: String,
    lost: u64,
    detach: Duration,
    /// Rows written and the file, when recording.
    recorded: Option<(u64, PathBuf)>,
    /// Recording failed; the dashboard went on without it.
    recording_error: Option<anyhow::Error>,
    stats: String,
    /// What the OTLP exporter sent and did not, if there was one.
    otlp: Option<String>,
}

impl Outcome {
    fn report(&self, log: Option<&std::path::Path>) {
        if let Some((rows, path)) = &self.recorded {
            eprintln!(
                "ferret: wrote {rows} rows to {}; {} events lost; probes detached in {:.1} ms",
                path.display(),
                self.lost,
                self.detach.as_secs_f64() * 1e3
            );
        } else {
            eprintln!(
                "ferret: {} events lost; probes detached in {:.1} ms",
                self.lost,
                self.detach.as_secs_f64() * 1e3
            );
        }
        if self.lost > 0 {
            eprintln!(
                "ferret: warning: the kernel dropped {} events (ring buffer full); \
                 spans they touched may have ended as `unwound`",
                self.lost
            );
        }
        match (self.exit, self.ended_by_us) {
            (_, Some(how)) => eprintln!("ferret: stopped {} ({how})", self.command),
            (Some(status), None) => eprintln!("ferret: {} ended with {status}", self.command),
            (None, None) => {}
        }
        if let Some(log) = log {
            eprintln!("ferret: its output is in {}", log.display());
        }
    }

    /// The launched command's status if it ended by itself; 0 when the user
    /// quit (or for a pid target); 128 + signal when ferret was signalled.
    fn exit_code(&self) -> i32 {
        match (self.stop, self.exit, self.ended_by_us) {
            (Stop::TargetExited, Some(status), None) => status.shell_code(),
            (Stop::Interrupt, ..) => 128 + libc::SIGINT,
            (Stop::Terminate, ..) => 128 + libc::SIGTERM,
            _ => 0,
        }
    }
}

/// The ingestion side's consumer: span events into the live aggregates
/// (and the recording, if any), snapshots out.
struct Live {
    recording: Option<RecordingConsumer>,
    /// `--otlp-endpoint`: spans to a collector; its counts in the header.
    otlp: Option<OtlpConsumer>,
    recording_error: Option<anyhow::Error>,
    aggregates: Aggregates,
    session: Arc<SessionInfo>,
    mailbox: Arc<Mailbox>,
    /// The current stalls and their groups, as last published, and the
    /// watchdog's generation they are of.
    stalls: Arc<[StallReport]>,
    stall_groups: Arc<[StallGroup]>,
    stalls_of: Option<u64>,
    /// The newest lifecycle notice (exec, a followed fork, a function
    /// detached by the overhead guard).
    notice: Option<String>,
    events: RateWindow,
    events_counted: u64,
    warning: Option<String>,
    /// Rows written and the file, once the recording is finished.
    recorded: Option<(u64, PathBuf)>,
    /// The overhead guard's newest estimate and budget.
    overhead: (Option<f64>, Option<f64>),
    /// Snapshots built, and the time spent building them (total, longest).
    built: (u64, Duration, Duration),
    /// Goroutines idle now that ran traced calls lately, as last counted.
    idle_goroutines: usize,
    /// The CPU samples, for the Hot pane.
    hot: HotProfile,
    /// Functions no longer traced, as the loop last said.
    detached: Arc<HashSet<u32>>,
    sampling: Option<SamplingStatus>,
}

impl Live {
    fn new(
        recording: Option<RecordingConsumer>,
        session: Arc<SessionInfo>,
        mailbox: Arc<Mailbox>,
    ) -> Self {
        Self {
            aggregates: Aggregates::new(session.functions.len()),
            recording,
            otlp: None,
            recording_error: None,
            session,
            mailbox,
            stalls: Arc::from([]),
            stall_groups: Arc::from([]),
            stalls_of: None,
            notice: None,
            events: RateWindow::new(),
            events_counted: 0,
            warning: None,
            recorded: None,
            overhead: (None, None),
            built: (0, Duration::ZERO, Duration::ZERO),
            idle_goroutines: 0,
            hot: HotProfile::new(),
            detached: Arc::default(),
            sampling: None,
        }
    }

    /// Feeds the recording, if there is one; a failure stops recording,
    /// not the dashboard.
    fn record(&mut self, write: impl FnOnce(&mut RecordingConsumer) -> Result<()>) {
        let Some(recording) = &mut self.recording else {
            return;
        };
        if let Err(e) = write(recording) {
            let path = recording.path().map(std::path::Path::to_path_buf);
            // Dropping the recording deletes the half-written file, as
            // `record` does when it fails.
            self.recording = None;
            self.fail_recording(path, e);
        }
    }

    /// Says in the header that recording stopped; `watch` exits with `e`.
    fn fail_recording(&mut self, path: Option<PathBuf>, e: anyhow::Error) {
        self.warning = Some(format!(
            "recording to {} failed: {e:#}",
            path.unwrap_or_default().display()
        ));
        self.recording_error
            .get_or_insert_with(|| e.context("recording stopped"));
    }

    /// Builds a snapshot and leaves it for the dashboard.
    fn publish(
        &mut self,
        state: TargetState,
        close: bool,
        (events, lost): (u64, u64),
        threads: Vec<crate::live::ThreadView>,
        now: u64,
    ) {
        let began = Instant::now();
        let started = self.session.started_ns;
        self.events.add(now, events - self.events_counted);
        self.events_counted = events;
        let snapshot = Snapshot {
            session: self.session.clone(),
            taken_ns: now,
            state,
            events,
            events_per_s: self.events.per_second(now, started),
            lost,
            calls: self.aggregates.calls(),
            threads,
            idle_goroutines: self.idle_goroutines,
            functions: self.aggregates.function_rows(now, started),
            recent: self.aggregates.recent(),
            metrics: self.aggregates.metrics(),
            stalls: self.stalls.clone(),
            stall_groups: self.stall_groups.clone(),
            warning: self.warning.clone(),
            notice: self.notice.clone(),
            otlp: self.otlp.as_ref().map(|otlp| {
                let stats = otlp.stats();
                OtlpProgress {
                    sent: stats.sent,
                    unsent: stats.unsent(),
                }
            }),
            overhead: self.overhead,
            close,
            hot: self.hot.view(now),
            detached: self.detached.clone(),
            sampling: self.sampling,
        };
        self.mailbox.publish(Arc::new(snapshot));
        let took = began.elapsed();
        self.built.0 += 1;
        self.built.1 += took;
        self.built.2 = self.built.2.max(took);
    }

    /// How the session ended, for the lines printed after the dashboard.
    fn outcome(&mut self, end: &SessionEnd) -> Outcome {
        let (count, total, max) = self.built;
        Outcome {
            stop: end.stop,
            exit: end.exit,
            ended_by_us: end.ended_by_us,
            command: self.session.command.clone(),
            lost: end.lost,
            detach: end.detach,
            recorded: self.recorded.take(),
            recording_error: self.recording_error.take(),
            otlp: self.otlp.as_ref().and_then(OtlpConsumer::summary),
            stats: format!(
                "ferret: ingestion: {count} snapshots, {:.1} µs to build on average, {:.1} µs at most; \
                 {} events, {} calls",
                total.as_secs_f64() * 1e6 / count.max(1) as f64,
                max.as_secs_f64() * 1e6,
                end.events,
                self.aggregates.calls()
            ),
        }
    }
}

impl Consumer for Live {
    fn spans(&mut self, spans: &[SpanEvent]) -> Result<()> {
        for span in spans {
            self.aggregates.apply(span);
        }
        if let Some(otlp) = &mut self.otlp {
            otlp.spans(spans)?;
        }
        self.record(|recording| recording.spans(spans));
        Ok(())
    }

    fn metric(&mut self, sample: &MetricSample) -> Result<()> {
        self.aggregates.metric(sample);
        if let Some(otlp) = &mut self.otlp {
            otlp.metric(sample)?;
        }
        self.record(|recording| recording.metric(sample));
        Ok(())
    }

    fn stalls(&mut self, news: &StallNews, watchdog: &Watchdog) -> Result<()> {
        // Shown while they last (the header counts them, the Stalls pane
        // lists them), not as a notice that would outlive them; copied
        // only when they changed (thousands of them, four times a second).
        if self.stalls_of != Some(watchdog.generation()) {
            self.stalls_of = Some(watchdog.generation());
            self.stalls = watchdog.stalls().cloned().collect();
            self.stall_groups = watchdog.groups().into();
        }
        if let Some(otlp) = &mut self.otlp {
            otlp.stalls(news, watchdog)?;
        }
        self.record(|recording| recording.stalls(news, watchdog));
        Ok(())
    }

    fn samples(&mut self, samples: &[Sample]) -> Result<()> {
        for sample in samples {
            self.hot.add(sample);
        }
        self.record(|recording| recording.samples(samples));
        Ok(())
    }

    fn functions_changed(&mut self, functions: &Arc<[FunctionInfo]>) -> Result<()> {
        self.aggregates.grow(functions.len());
        self.session = Arc::new(SessionInfo {
            functions: functions.clone(),
            ..(*self.session).clone()
        });
        if let Some(otlp) = &mut self.otlp {
            otlp.functions_changed(functions)?;
        }
        self.record(|recording| recording.functions_changed(functions));
        Ok(())
    }

    fn notice(&mut self, notice: &str) {
        self.notice = Some(notice.to_owned());
    }

    fn flush(&mut self) -> Result<()> {
        self.record(Consumer::flush);
        Ok(())
    }

    fn tick(&mut self, view: &LoopView<'_>) -> Result<()> {
        self.overhead = view.overhead;
        if *self.detached != *view.detached {
            self.detached = Arc::new(view.detached.clone());
        }
        self.sampling = view.sampling;
        let reconstructor = &view.pipeline.reconstructor;
        let mut threads = self
            .aggregates
            .threads(reconstructor.threads(), view.now_ns);
        // What each thread with an open call is doing now: one map lookup
        // (a system call) per such thread a tick, and none for threads whose
        // innermost call carried no counters (adopted at attach: the kernel
        // keeps no state for a thread that never hit a probe; a pool of a
        // thousand would otherwise cost ten thousand lookups a second).
        let now: std::collections::HashMap<(u32, u32), crate::live::ThreadNow> = reconstructor
            .threads()
            .filter_map(|stack| {
                let top = stack.frames.last().filter(|top| top.sched.epoch != 0)?;
                let state = (view.sched)(stack.tid)?;
                Some((
                    (stack.pid, stack.tid),
                    crate::live::ThreadNow::of(&state, &top.sched, top.start_ns, view.now_ns),
                ))
            })
            .collect();
        for thread in &mut threads {
            if !thread.frames.is_empty() {
                thread.now = now.get(&(thread.pid, thread.tid)).copied();
            }
        }
        let (goroutines, idle) = self
            .aggregates
            .goroutines(reconstructor.goroutines(), view.now_ns);
        threads.extend(goroutines);
        self.idle_goroutines = idle;
        self.publish(
            TargetState::Live,
            false,
            (view.pipeline.events, view.pipeline.lost),
            threads,
            view.now_ns,
        );
        Ok(())
    }

    fn finish(&mut self, end: &mut SessionEnd) -> Result<()> {
        // With nothing left open, nothing is stalled any more.
        self.stalls = Arc::from([]);
        self.stall_groups = Arc::from([]);
        // The exporter first: its counts go into the recording.
        if let Some(otlp) = &mut self.otlp {
            otlp.finish(end)?;
        }
        if let Some(mut recording) = self.recording.take() {
            let path = recording.path().map(std::path::Path::to_path_buf);
            match recording.finish(end) {
                Ok(()) => {
                    self.recorded = recording.rows.zip(path);
                }
                Err(e) => self.fail_recording(path, e),
            }
        }
        let now = monotonic_ns();
        let state = match (&end.failed, end.stop) {
            (Some(why), _) => TargetState::Stopped {
                why: why.clone(),
                at_ns: now,
            },
            (None, Stop::TargetExited) => TargetState::Exited {
                status: end.exit,
                at_ns: now,
            },
            (None, other) => TargetState::Stopped {
                why: match other {
                    Stop::Interrupt => "SIGINT".to_owned(),
                    Stop::Terminate => "SIGTERM".to_owned(),
                    _ => "quit".to_owned(),
                },
                at_ns: now,
            },
        };
        let close = matches!(end.stop, Stop::Interrupt | Stop::Terminate);
        let threads = self.aggregates.threads(std::iter::empty(), now);
        self.publish(state, close, (end.events, end.lost), threads, now);
        Ok(())
    }
}
