//! `ferret watch`: the live dashboard, optionally recording to Parquet too.
//!
//! Two threads. The ingestion thread (a current-thread tokio runtime, the
//! same loop as `record`'s) owns everything fed by the event stream: the
//! ring buffer, the reconstructor, the live aggregates, the metrics sampler
//! and the optional Parquet writer. About ten times a second it publishes an
//! immutable [`Snapshot`] into a [`Mailbox`]. The main thread runs the
//! dashboard: it reads the newest snapshot, draws, and handles keys; it
//! never blocks ingestion, and ingestion never waits for a frame.
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

use std::{
    io::IsTerminal as _,
    path::PathBuf,
    sync::{Arc, mpsc},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use tokio::sync::oneshot;

use super::{
    plan::Plan,
    plan::{ResolvedTarget, Started},
    session::{
        self, Attached, DRAIN_EVERY, OverheadGuard, Pipeline, Prepared, Recording,
        STALL_CHECK_EVERY, Stop, Stopper, monotonic_ns, realtime_offset_ns,
    },
};
use crate::{
    cli::{ExitMode, WatchConfig},
    live::{Aggregates, OtlpProgress, SessionInfo, Snapshot, TargetState, rate::RateWindow},
    metrics::Sampler,
    otlp,
    probe::ExitProbes,
    stall::{StallReport, Watchdog},
    target::{self, ExitStatus, Redirect},
    tui::{
        self,
        app::App,
        terminal::{Mailbox, TerminalEvents, TerminalGuard},
    },
};

/// How often the ingestion thread publishes a snapshot.
pub const PUBLISH_EVERY: Duration = Duration::from_millis(100);

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
        .map(|path| Recording::create(path, &prepared))
        .transpose()?;
    let log = match &prepared.target {
        ResolvedTarget::Command { exe, .. } => Some(log_path(exe)),
        ResolvedTarget::Pid(_) => None,
    };
    let otlp = session::otlp_config(&config.otlp)?;
    let redirect = log
        .as_deref()
        .map(|path| Redirect::to_log(path).with_context(|| format!("creating {}", path.display())))
        .transpose()?;
    let attached = prepared.attach(redirect.as_ref())?;
    let attached_ns = monotonic_ns();
    drop(redirect);
    let watchdog = prepared.start_watchdog(config.stall, &attached, attached_ns);
    let otlp = prepared.start_otlp(otlp, attached.pid)?;

    let session = Arc::new(session_info(&prepared, config, &attached, log.clone()));
    let mailbox = Arc::new(Mailbox::new(Arc::new(Snapshot::empty(session.clone()))));
    let (ready_tx, ready_rx) = mpsc::channel();
    let (quit_tx, quit_rx) = oneshot::channel();
    let ingest = {
        let mailbox = mailbox.clone();
        let plan = prepared.plan;
        let interval = config.interval;
        let max_rate = config.probes.max_rate;
        thread::Builder::new()
            .name("ferret-ingest".into())
            .spawn(move || {
                let overhead = OverheadGuard::new(plan.points.len(), max_rate);
                let mut ingest = Ingest::new(attached, recording, session, mailbox, plan, overhead);
                ingest.watchdog = watchdog;
                ingest.otlp = otlp;
                ingest.run(interval, &ready_tx, quit_rx)
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
    let ui = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| dashboard(&mailbox, stats)));
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
    let outcome = outcome?;
    outcome.report(log.as_deref());
    if let Some(line) = &outcome.otlp {
        eprintln!("ferret: otlp: {line}");
    }
    if stats {
        eprintln!("{}", outcome.stats);
    }
    ui.context("running the dashboard")?;
    if let Some(e) = outcome.recording_error {
        return Err(e);
    }
    Ok(outcome.exit_code())
}

/// Runs the dashboard on the real terminal until the user quits; the
/// terminal is restored before this returns (or unwinds).
fn dashboard(mailbox: &Arc<Mailbox>, stats: bool) -> Result<()> {
    let mut guard = TerminalGuard::enter().context("setting up the terminal")?;
    let size = guard.terminal().size()?;
    let mut app = App::new(
        mailbox.latest(),
        ratatui::layout::Rect::new(0, 0, size.width, size.height),
    );
    let mut events = TerminalEvents::new(mailbox.clone());
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
fn session_info(
    prepared: &Prepared,
    config: &WatchConfig,
    attached: &Attached,
    log: Option<PathBuf>,
) -> SessionInfo {
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
        .filter(|p| matches!(p.exits, ExitProbes::Instructions(_)))
        .count();
    let uret = prepared.plan.points.len() - ret;
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
        pid: attached.pid,
        command,
        launched: matches!(attached.started, Started::Launched(_)),
        functions: prepared.plan.functions.clone(),
        exit_mode,
        log,
        output: config.output.clone(),
        started_ns: monotonic_ns(),
        stall_ns: u64::try_from(config.stall.as_nanos()).unwrap_or(u64::MAX),
        local_offset_ns: realtime_offset_ns() + local_utc_offset_s() * 1_000_000_000,
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

/// The ingestion side: the event stream in, snapshots out.
struct Ingest {
    attached: Attached,
    recording: Option<Recording>,
    recording_error: Option<anyhow::Error>,
    pipeline: Pipeline,
    aggregates: Aggregates,
    session: Arc<SessionInfo>,
    mailbox: Arc<Mailbox>,
    plan: Plan,
    /// `--max-rate`: detaches functions called too often, as `record` does.
    overhead: OverheadGuard,
    /// `--stall`: finds stalled threads and captures where they are stuck,
    /// as `record` does (off with `--stall 0`).
    watchdog: Option<Watchdog>,
    /// `--otlp-endpoint`: sends spans to a collector.
    otlp: Option<otlp::Exporter>,
    /// Its final counts, once finished, for the last snapshots.
    otlp_final: Option<OtlpProgress>,
    /// The current stalls, as last published.
    stalls: Arc<[StallReport]>,
    /// The newest lifecycle notice (exec, a followed fork, a function
    /// detached by the overhead guard).
    notice: Option<String>,
    events: RateWindow,
    events_counted: u64,
    warning: Option<String>,
    /// Snapshots built, and the time spent building them.
    built: (u64, Duration, Duration),
}

impl Ingest {
    fn new(
        attached: Attached,
        recording: Option<Recording>,
        session: Arc<SessionInfo>,
        mailbox: Arc<Mailbox>,
        plan: Plan,
        overhead: OverheadGuard,
    ) -> Self {
        Self {
            aggregates: Aggregates::new(session.functions.len()),
            pipeline: Pipeline::for_target(&attached),
            attached,
            recording,
            recording_error: None,
            session,
            mailbox,
            plan,
            overhead,
            watchdog: None,
            otlp: None,
            otlp_final: None,
            stalls: Arc::from([]),
            notice: None,
            events: RateWindow::new(),
            events_counted: 0,
            warning: None,
            built: (0, Duration::ZERO, Duration::ZERO),
        }
    }

    fn run(
        &mut self,
        interval: Duration,
        ready: &mpsc::Sender<()>,
        quit: oneshot::Receiver<()>,
    ) -> Result<Outcome> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the event loop")?;
        let mut sampler = Sampler::new(self.attached.pid);
        let unavailable = sampler.unavailable();
        let (stop, loop_error) = runtime.block_on(self.stream(&mut sampler, interval, ready, quit));
        self.finish_stalls();

        // The launched command is ours: on the way out it is asked to stop
        // (after the grace period it had to do so by itself, traced).
        let mut ended_by_us = None;
        let mut exit = None;
        if let Started::Launched(child) = &self.attached.started {
            exit = target::try_wait(child.pid).ok().flatten();
            if stop != Stop::TargetExited {
                if exit.is_some() {
                    ended_by_us = Some("SIGTERM");
                } else {
                    target::signal(child.pid, libc::SIGKILL);
                    exit = target::wait(child.pid).ok();
                    ended_by_us = Some("SIGKILL: still running 2 s after SIGTERM");
                }
            }
        }
        let detach = self.attached.engine.detach();
        let lost = self.attached.engine.lost().unwrap_or(self.pipeline.lost);
        self.pipeline.lost = self.pipeline.lost.max(lost);
        // Spans still open end as `unwound` if the process is gone, `open`
        // if it runs on without us.
        let gone = stop == Stop::TargetExited || exit.is_some();
        let close_as = if gone { Stop::TargetExited } else { stop };
        self.pipeline.close(close_as, self.attached.pid);
        self.consume();
        let otlp = self.otlp.take().map(|exporter| {
            let endpoint = exporter.endpoint().to_owned();
            let stats = exporter.finish(session::OTLP_FINISH_TIMEOUT);
            self.otlp_final = Some(OtlpProgress {
                sent: stats.sent,
                unsent: stats.unsent(),
            });
            if let Some(recording) = &mut self.recording {
                for (key, value) in stats.metadata(&endpoint) {
                    recording.add_metadata(&key, value);
                }
            }
            stats.summary(&endpoint)
        });

        let mut recorded = None;
        if let Some(mut recording) = self.recording.take() {
            recording.add_metadata("ferret.detached_functions", self.overhead.metadata());
            recording.add_metadata(
                "ferret.stall_threshold_ns",
                self.session.stall_ns.to_string(),
            );
            let path = recording.path().to_owned();
            match recording.finish(
                stop,
                lost,
                self.plan.points.len(),
                self.pipeline.reconstructor.orphan_exits(),
                &unavailable,
            ) {
                Ok(rows) => recorded = Some((rows, path)),
                Err(e) => self.fail_recording(e),
            }
        }
        let now = monotonic_ns();
        let state = match (&loop_error, stop) {
            (Some(e), _) => TargetState::Stopped {
                why: format!("{e:#}"),
                at_ns: now,
            },
            (None, Stop::TargetExited) => TargetState::Exited {
                status: exit,
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
        let close = matches!(stop, Stop::Interrupt | Stop::Terminate);
        self.publish(state, close);
        if let Some(e) = loop_error {
            return Err(e);
        }
        let (count, total, max) = self.built;
        Ok(Outcome {
            stop,
            exit,
            ended_by_us,
            command: self.session.command.clone(),
            lost,
            detach,
            recorded,
            recording_error: self.recording_error.take(),
            otlp,
            stats: format!(
                "ferret: ingestion: {count} snapshots, {:.1} µs to build on average, {:.1} µs at most; \
                 {} events, {} calls",
                total.as_secs_f64() * 1e6 / count.max(1) as f64,
                max.as_secs_f64() * 1e6,
                self.pipeline.events,
                self.aggregates.calls()
            ),
        })
    }

    /// The loop: drain, aggregate, record, sample, publish, until a stop
    /// condition. Returns why it stopped, and the error if one stopped it.
    async fn stream(
        &mut self,
        sampler: &mut Sampler,
        interval: Duration,
        ready: &mpsc::Sender<()>,
        mut quit: oneshot::Receiver<()>,
    ) -> (Stop, Option<anyhow::Error>) {
        let mut ring = match self.attached.take_ring() {
            Ok(ring) => ring,
            Err(e) => return (Stop::Quit, Some(e)),
        };
        let mut stopper = match Stopper::new(&mut self.attached, None) {
            Ok(stopper) => stopper,
            Err(e) => return (Stop::Quit, Some(e)),
        };
        let _ = ready.send(());
        let mut drain_timer = tokio::time::interval(DRAIN_EVERY);
        drain_timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut metrics_timer = tokio::time::interval(interval);
        metrics_timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut publish_timer = tokio::time::interval(PUBLISH_EVERY);
        publish_timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut guard_timer = tokio::time::interval(Duration::from_secs(1));
        let mut stall_timer = tokio::time::interval(STALL_CHECK_EVERY);
        stall_timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

        let stop = loop {
            tokio::select! {
                guard = ring.readable_mut() => {
                    match guard {
                        Ok(mut guard) => {
                            self.pipeline.drain(guard.get_inner_mut());
                            guard.clear_ready();
                        }
                        Err(e) => {
                            let e = anyhow::Error::new(e).context("waiting on the ring buffer");
                            return (Stop::Quit, Some(e));
                        }
                    }
                }
                _ = drain_timer.tick() => self.pipeline.drain(ring.get_mut()),
                _ = metrics_timer.tick() => {
                    if let Ok(sample) = sampler.sample(monotonic_ns()) {
                        self.aggregates.metric(&sample);
                        if let Some(otlp) = &mut self.otlp {
                            otlp.metric(&sample);
                        }
                        if let Some(recording) = &mut self.recording
                            && let Err(e) = recording.write_metric(&sample)
                        {
                            self.fail_recording(e);
                        }
                    }
                    if let Some(recording) = &mut self.recording
                        && let Err(e) = recording.flush()
                    {
                        self.fail_recording(e);
                    }
                }
                _ = guard_timer.tick() => {
                    let notices = self.overhead.check(&mut self.attached.engine, &self.plan);
                    self.pipeline.notices.extend(notices);
                }
                _ = stall_timer.tick(), if self.watchdog.is_some() => {
                    self.check_stalls(ring.get_mut());
                }
                _ = publish_timer.tick() => {
                    self.pipeline.check_lost(&self.attached.engine);
                    self.publish(TargetState::Live, false);
                }
                _ = &mut quit => break Stop::Quit,
                stop = stopper.next() => break stop,
            }
            self.consume();
        };
        // A launched command ends with the session (SIGTERM already went to
        // it with a SIGTERM to ferret).
        if !matches!(stop, Stop::TargetExited | Stop::Terminate)
            && let Started::Launched(child) = &self.attached.started
        {
            target::signal(child.pid, libc::SIGTERM);
        }
        // Give a launched command time to exit, traced; keep the dashboard
        // (if still open, after a signal) and the aggregates current meanwhile.
        let graced = stopper.grace(stop);
        tokio::pin!(graced);
        loop {
            tokio::select! {
                () = &mut graced => break,
                _ = drain_timer.tick() => {
                    self.pipeline.drain(ring.get_mut());
                    self.consume();
                }
            }
        }
        self.pipeline.drain(ring.get_mut());
        self.consume();
        (stop, None)
    }

    /// Looks for stalled threads; keeps the current stalls for the
    /// snapshots and records new or moved ones.
    fn check_stalls(&mut self, ring: &mut aya::maps::RingBuf<aya::maps::MapData>) {
        let Some(watchdog) = self.watchdog.as_mut() else {
            return;
        };
        let reports = self.pipeline.check_stalls(watchdog, ring);
        // Shown while they last (the header counts them, the Stalls pane
        // lists them), not as a notice that would outlive them.
        self.stalls = watchdog.stalls().cloned().collect();
        self.write_stalls(&reports);
    }

    /// STALL rows into the recording, if there is one.
    fn write_stalls(&mut self, reports: &[StallReport]) {
        if let Some(otlp) = &mut self.otlp {
            otlp.stalls(reports);
        }
        if let Some(recording) = &mut self.recording
            && let Err(e) = recording.write_stalls(reports)
        {
            self.fail_recording(e);
        }
    }

    /// At the end: captures already asked for still belong in the
    /// recording; with nothing left open, nothing is stalled any more.
    fn finish_stalls(&mut self) {
        let Some(mut watchdog) = self.watchdog.take() else {
            return;
        };
        if self.recording.is_some() {
            watchdog.settle(Duration::from_secs(2));
            let reports = watchdog.take_reports();
            self.write_stalls(&reports);
        }
        self.stalls = Arc::from([]);
    }

    /// Feeds the span events decoded so far to the aggregates and the
    /// recording.
    fn consume(&mut self) {
        if let Some(notice) = self.pipeline.notices.drain(..).next_back() {
            self.notice = Some(notice);
        }
        self.overhead.observe(&self.pipeline.spans);
        for span in &self.pipeline.spans {
            self.aggregates.apply(span);
        }
        if let Some(otlp) = &mut self.otlp {
            otlp.spans(&self.pipeline.spans);
        }
        if let Some(recording) = &mut self.recording
            && let Err(e) = recording.write_spans(&mut self.pipeline.spans)
        {
            self.fail_recording(e);
        }
        self.pipeline.spans.clear();
    }

    /// Stops recording after a write error: the dashboard goes on, the
    /// header says what happened, and `watch` exits with the error.
    fn fail_recording(&mut self, e: anyhow::Error) {
        // Dropping the recording deletes the half-written file, as `record`
        // does when it fails.
        if let Some(recording) = self.recording.take() {
            self.warning = Some(format!(
                "recording to {} failed: {e:#}",
                recording.path().display()
            ));
        }
        self.recording_error
            .get_or_insert_with(|| e.context("recording stopped"));
    }

    /// Builds a snapshot and leaves it for the dashboard.
    fn publish(&mut self, state: TargetState, close: bool) {
        let began = Instant::now();
        let now = monotonic_ns();
        let started = self.session.started_ns;
        self.events
            .add(now, self.pipeline.events - self.events_counted);
        self.events_counted = self.pipeline.events;
        let snapshot = Snapshot {
            session: self.session.clone(),
            taken_ns: now,
            state,
            events: self.pipeline.events,
            events_per_s: self.events.per_second(now, started),
            lost: self.pipeline.lost,
            calls: self.aggregates.calls(),
            threads: self
                .aggregates
                .threads(self.pipeline.reconstructor.threads(), now),
            functions: self.aggregates.function_rows(now, started),
            recent: self.aggregates.recent(),
            metrics: self.aggregates.metrics(),
            stalls: self.stalls.clone(),
            warning: self.warning.clone(),
            notice: self.notice.clone(),
            otlp: self
                .otlp
                .as_ref()
                .map(|o| {
                    let stats = o.stats();
                    OtlpProgress {
                        sent: stats.sent,
                        unsent: stats.unsent(),
                    }
                })
                .or(self.otlp_final),
            close,
        };
        self.mailbox.publish(Arc::new(snapshot));
        let took = began.elapsed();
        self.built.0 += 1;
        self.built.1 += took;
        self.built.2 = self.built.2.max(took);
    }
}
