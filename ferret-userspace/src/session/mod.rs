//! A tracing session, as `record` and `watch` both run it: choose the
//! functions ([`plan`]), attach, then ONE event loop ([`Session::run`])
//! that drains the ring buffer through the [`Pipeline`] (decode →
//! reconstruct), samples metrics, runs the stall watchdog and the
//! overhead [`guard`], and hands everything to [`Consumer`]s until a
//! [`stop`] condition; then a tidy ending.
//!
//! The order of the steps matters. Everything that can fail on bad input
//! (pid, command, patterns, output path) runs before any probe is attached
//! or any command launched; a launched command is held before its first
//! instruction until every probe is in place; and at the end the probes are
//! detached before the remaining events are drained, so the target runs
//! unprobed as early as possible.
//!
//! ```text
//! ring buffer ─▶ Pipeline (decode, reconstruct) ─▶ consumers (Parquet, live view, …)
//! sampler ──────────────────────────────────────▶ consumers
//! watchdog ─▶ stalls (and spans it retires) ────▶ consumers
//! guard ◀── span starts; detaches hot functions (generation swap)
//! sampler thread (CPU samples, unwound, symbolized) ─▶ consumers
//! dashboard requests ─▶ retrace (trace / detach live: generation swap)
//! ```

pub mod consumer;
pub mod guard;
pub mod pipeline;
pub mod plan;
pub mod retrace;
pub mod sampling;
pub mod stop;

use std::{
    os::fd::{AsFd as _, OwnedFd},
    sync::{Arc, mpsc},
    time::Duration,
};

use anyhow::{Context as _, Result};
use tokio::{
    io::{Interest, unix::AsyncFd},
    sync::{mpsc as tokio_mpsc, oneshot},
    time::MissedTickBehavior,
};

pub use consumer::{Consumer, LoopView, RecordingConsumer, SessionEnd};
pub use guard::OverheadGuard;
pub use pipeline::Pipeline;
pub use retrace::ProbeRequest;
pub use sampling::SamplingStatus;
pub use stop::{GRACE, Stop, Stopper};

use self::{
    plan::{Plan, ResolvedTarget, Started},
    retrace::Retrace,
    sampling::Sampling,
};
use crate::{
    cli::{ExitMode, ProbeConfig, Target},
    clock::{monotonic_ns, realtime_offset_ns},
    cost::{self, Calibration, EntryKind, calibrate::Recalibrator},
    metrics::Sampler,
    probe::{AttachStats, Engine, EventRing, LinkKind},
    sink::{Recording, RecordingMeta, meta_key},
    stall::Watchdog,
    target::{self, ExitStatus, Redirect},
    trace::{FunctionCost, FunctionInfo},
};

/// How the drain timer and the kernel's batched wakeups share the work: the
/// kernel wakes the reader when an eighth of the ring is waiting; otherwise
/// this timer does, so a lone event is never stranded.
pub const DRAIN_EVERY: Duration = Duration::from_millis(20);

/// How often the open stacks are checked for stalls.
pub const STALL_CHECK_EVERY: Duration = Duration::from_millis(250);

/// How often consumers get a [`Consumer::tick`] (the dashboard's snapshot
/// rate) and the kernel's drop counter is read.
pub const TICK_EVERY: Duration = Duration::from_millis(100);

/// How often the overhead guard weighs the probes' cost (and, each second,
/// the call rates).
pub const GUARD_EVERY: Duration = Duration::from_millis(250);

/// How long the end of a session waits for the stall capture being taken,
/// if one is (its row is wanted); the captures still queued are abandoned,
/// so the session ends on time however many threads are stalled.
const SETTLE_STALLS: Duration = Duration::from_millis(250);

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
    /// `--exit-probes`, for functions traced later too.
    pub exit_mode: ExitMode,
    /// `-x`, for patterns added later too.
    pub excludes: Vec<crate::symbols::Pattern>,
}

/// Resolves the target and selects the functions; says what was chosen.
pub fn prepare(target: &Target, probes: &ProbeConfig) -> Result<Prepared> {
    let target = ResolvedTarget::resolve(target)?;
    let plan = plan::plan(&target, probes)?;
    if !plan.points.is_empty() {
        eprintln!(
            "ferret: tracing {} function{} of {}",
            plan.traced_functions(),
            if plan.traced_functions() == 1 {
                ""
            } else {
                "s"
            },
            target.describe()
        );
    }
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
        exit_mode: probes.exit_mode,
        excludes: probes.excludes.clone(),
    })
}

/// What a session does besides tracing, fixed at its start.
#[derive(Clone, Copy, Debug)]
pub struct SessionOptions {
    /// `--stall`: quiet this long inside a traced call is a stall (0: off).
    pub stall: Duration,
    /// `--max-rate`: calls per second above which a function is detached
    /// (0: off).
    pub max_rate: u64,
    /// `--max-overhead`: the probes' budget, percent of the target's own
    /// time (0: off).
    pub max_overhead: f64,
    /// `--interval`: how often metrics are sampled.
    pub interval: Duration,
    /// `--sample-hz`: CPU samples per second of each thread's CPU time
    /// (0: no sampling).
    pub sample_hz: u64,
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

    /// Creates the Parquet file at `path` for this session (before anything
    /// is attached, so a bad path fails early).
    pub fn create_recording(&self, path: &std::path::Path) -> Result<Recording> {
        Ok(Recording::create(
            path,
            self.plan.functions.clone(),
            self.recording_meta(),
        )?)
    }

    /// Loads the eBPF programs, starts the target (a command is launched
    /// held at its gate, streams redirected if asked), attaches every probe,
    /// then lets the command run. On failure nothing is left attached and a
    /// launched command never runs.
    pub fn start(self, options: SessionOptions, redirect: Option<&Redirect>) -> Result<Session> {
        let ring_bytes = std::env::var("FERRET_RING_BYTES")
            .ok()
            .and_then(|v| v.parse().ok());
        let mut engine = Engine::load(ring_bytes)?;
        engine.configure(self.follow_forks)?;
        // Measured before the target starts, so it competes with nothing.
        let calibration = measure_probe_cost();
        let entry_kinds = cost::entry_kinds(&self.plan.points);
        let costs: Arc<[FunctionCost]> = calibration.costs(&self.plan.points, &entry_kinds).into();
        let mut started = plan::start(&self.target, redirect)?;
        let pid = started.pid();
        let attached = (|| -> Result<(OwnedFd, AttachStats)> {
            let pidfd = target::pidfd_open(pid)?;
            engine.add_target(pid)?;
            engine.attach_process_events()?;
            if let Err(e) = engine.attach_sched() {
                eprintln!(
                    "ferret: warning: {:#}; calls are shown without their CPU / runnable / \
                     blocked split",
                    anyhow::Error::from(e)
                );
            }
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
        if stats.probes > 0 {
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
        }
        let ring = engine.take_ring()?;
        let sampling = if options.sample_hz > 0 {
            match Sampling::start(&mut engine, pid, options.sample_hz, options.max_overhead) {
                Ok(sampling) => {
                    eprintln!(
                        "ferret: sampling every thread on CPU at {} Hz",
                        options.sample_hz
                    );
                    Some(sampling)
                }
                Err(e) if self.plan.points.is_empty() => {
                    engine.detach();
                    if let Started::Launched(child) = started {
                        child.abandon();
                    }
                    return Err(e);
                }
                Err(e) => {
                    eprintln!("ferret: warning: {e:#}; tracing without sampling");
                    None
                }
            }
        } else {
            None
        };
        if let Started::Launched(child) = &mut started {
            child.release()?;
        }
        let attached_ns = monotonic_ns();
        let watchdog = (!options.stall.is_zero()).then(|| {
            let watchdog = Watchdog::new(options.stall, self.plan.functions.clone());
            // A Go program's calls are kept per goroutine, and a thread's
            // stack says nothing about the goroutines that are not on it.
            let go = self.plan.points.iter().any(|p| p.goid_offset != 0);
            if matches!(started, Started::Pid(_)) && !go {
                // Calls already on the threads' stacks, found on the
                // watchdog's thread (thousands of threads take a while);
                // the stall check after they are found adopts them,
                // started at attach.
                watchdog.find_running(pid, &self.plan.points, attached_ns);
            }
            watchdog
        });
        let launched = matches!(started, Started::Launched(_)).then_some(pid);
        let mut pipeline = Pipeline::new(launched);
        pipeline.reconstructor.set_costs(costs.clone());
        let calls = cost::calibrate::calls_from_env();
        Ok(Session {
            retrace: Retrace::new(pid, self.exit_mode, self.excludes.clone()),
            sampling,
            guard: OverheadGuard::new(
                pid,
                self.plan.points.len(),
                options.max_rate,
                options.max_overhead,
                costs,
            ),
            pipeline,
            recalibrator: (calls > 0).then(|| {
                Recalibrator::start(
                    cost::calibrate::RECALIBRATE_EVERY,
                    cost::calibrate::RECALIBRATION_CALLS.min(calls),
                )
            }),
            calibration,
            first_calibration: calibration,
            recalibrations: 0,
            entry_kinds,
            sampler: Sampler::new(pid),
            prepared: self,
            options,
            engine,
            started,
            pid,
            pidfd: Some(pidfd),
            ring: Some(ring),
            stats,
            attached_ns,
            watchdog,
            exit: None,
        })
    }
}

/// How [`Session::run`] behaves, beyond what the session was started with.
#[derive(Default)]
pub struct RunOptions {
    /// `-d`: stop after this long.
    pub duration: Option<Duration>,
    /// The dashboard's quit: resolves (or is dropped) when the user quits.
    pub quit: Option<oneshot::Receiver<()>>,
    /// Told once the signal handlers are installed, so a signal from then on
    /// ends the session in order.
    pub ready: Option<mpsc::Sender<()>>,
    /// A launched command ends with the session (`watch`): asked to stop
    /// (SIGTERM) unless it exited, then killed if it has not after
    /// [`GRACE`]. Otherwise (`record`) it runs on, untraced.
    pub end_launched: bool,
    /// Wait (up to [`SETTLE_STALLS`]) for the stall capture being taken at
    /// the end, so its report reaches the consumers (a recording wants it).
    pub settle_stalls: bool,
    /// What the dashboard asks: trace or detach functions while the session
    /// runs.
    pub requests: Option<tokio_mpsc::UnboundedReceiver<ProbeRequest>>,
}

/// A running target with probes attached, and the event sources of the loop.
pub struct Session {
    prepared: Prepared,
    options: SessionOptions,
    /// Programs, maps and links; dropping it detaches.
    engine: Engine,
    started: Started,
    pid: u32,
    pidfd: Option<OwnedFd>,
    ring: Option<EventRing>,
    stats: AttachStats,
    attached_ns: u64,
    pipeline: Pipeline,
    watchdog: Option<Watchdog>,
    sampler: Sampler,
    guard: OverheadGuard,
    /// The probes' cost in use, and as first measured.
    calibration: Calibration,
    first_calibration: Calibration,
    /// Measurements since the start.
    recalibrations: u32,
    recalibrator: Option<Recalibrator>,
    /// How each function's entry probe fires (for new calibrations).
    entry_kinds: Vec<EntryKind>,
    /// A launched command's exit status, once reaped.
    exit: Option<ExitStatus>,
    /// CPU sampling, if on.
    sampling: Option<Sampling>,
    /// Functions traced and detached from the dashboard.
    retrace: Retrace,
}

impl Session {
    /// The target's pid.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The target as started (launched or attached by pid).
    pub fn started(&self) -> &Started {
        &self.started
    }

    /// The target, patterns and plan.
    pub fn prepared(&self) -> &Prepared {
        &self.prepared
    }

    /// The probe table.
    pub fn functions(&self) -> &Arc<[FunctionInfo]> {
        &self.prepared.plan.functions
    }

    /// How the probes were attached.
    pub fn stats(&self) -> &AttachStats {
        &self.stats
    }

    /// When the probes were in place, `CLOCK_MONOTONIC` ns.
    pub fn attached_ns(&self) -> u64 {
        self.attached_ns
    }

    /// The probes' cost, as measured at the start.
    pub fn first_calibration(&self) -> &Calibration {
        &self.first_calibration
    }

    /// Perf counters this machine cannot count, with why.
    pub fn metrics_unavailable(&self) -> Vec<(&'static str, String)> {
        self.sampler.unavailable()
    }

    /// The event loop: until a stop condition, drains the ring buffer into
    /// the pipeline and hands what comes out to `consumers`, samples
    /// metrics, checks for stalls and runs the overhead guard. Then ends the
    /// session in order: a launched command's grace, the probes detached,
    /// the last events drained, open spans closed, every consumer finished.
    /// Runs once. An error (a consumer's or the ring buffer's) still ends
    /// the session in order, and is returned after.
    pub fn run(
        &mut self,
        consumers: &mut [&mut dyn Consumer],
        mut options: RunOptions,
    ) -> Result<SessionEnd> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the event loop")?;
        let (stop, mut error) = runtime.block_on(self.event_loop(consumers, &mut options));
        drop(runtime);
        let mut end = self.end(stop, consumers, &options, &mut error);
        for consumer in consumers.iter_mut() {
            if let Err(e) = consumer.finish(&mut end) {
                error.get_or_insert(e);
            }
        }
        match error {
            Some(e) => Err(e),
            None => Ok(end),
        }
    }

    async fn event_loop(
        &mut self,
        consumers: &mut [&mut dyn Consumer],
        options: &mut RunOptions,
    ) -> (Stop, Option<anyhow::Error>) {
        let launched = self.launched();
        let ring = self.ring.take().expect("the session runs once");
        // SAFETY: the ring owns its fd for as long as the AsyncFd lives and
        // always returns the same one.
        let ring = unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE) }
            .map_err(|e| e.into_parts().1)
            .context("polling the ring buffer");
        let pidfd = self.pidfd.take().expect("the session runs once");
        let stopper = Stopper::new(pidfd, options.duration, options.quit.take(), launched);
        let (mut ring, mut stopper) = match (ring, stopper) {
            (Ok(ring), Ok(stopper)) => (ring, stopper),
            (Err(e), _) | (_, Err(e)) => return (Stop::Quit, Some(e)),
        };
        if let Some(ready) = options.ready.take() {
            let _ = ready.send(());
        }
        let timer = |every: Duration| {
            let mut timer = tokio::time::interval(every);
            timer.set_missed_tick_behavior(MissedTickBehavior::Delay);
            timer
        };
        let mut drain_timer = timer(DRAIN_EVERY);
        let mut metrics_timer = timer(self.options.interval);
        let mut tick_timer = timer(TICK_EVERY);
        let mut guard_timer = timer(GUARD_EVERY);
        let mut stall_timer = timer(STALL_CHECK_EVERY);
        let mut requests = options.requests.take();

        let Self {
            engine,
            pipeline,
            watchdog,
            sampler,
            guard,
            prepared,
            recalibrator,
            calibration,
            recalibrations,
            entry_kinds,
            sampling,
            retrace,
            ..
        } = self;
        let looped: Result<Stop> = async {
            loop {
                tokio::select! {
                    ready = ring.readable_mut() => {
                        let mut ready = ready.context("waiting on the ring buffer")?;
                        ready.get_inner_mut().drain(|record| pipeline.push(record));
                        ready.clear_ready();
                    }
                    _ = drain_timer.tick() => ring.get_mut().drain(|record| pipeline.push(record)),
                    _ = metrics_timer.tick() => {
                        if let Ok(sample) = sampler.sample(monotonic_ns()) {
                            for consumer in consumers.iter_mut() {
                                consumer.metric(&sample)?;
                            }
                        }
                        for consumer in consumers.iter_mut() {
                            consumer.flush()?;
                        }
                    }
                    _ = tick_timer.tick() => {
                        if let Ok(lost) = engine.lost() {
                            pipeline.note_lost(lost);
                        }
                        consume(pipeline, guard, consumers)?;
                        if let Some(sampling) = sampling.as_mut() {
                            sampling.deliver(consumers)?;
                        }
                        let view = LoopView {
                            now_ns: monotonic_ns(),
                            pipeline,
                            overhead: guard.estimate(),
                            functions: &prepared.plan.functions,
                            detached: guard.disabled(),
                            sampling: sampling.as_ref().map(Sampling::status),
                            sched: &|tid| engine.sched_state(tid),
                        };
                        for consumer in consumers.iter_mut() {
                            consumer.tick(&view)?;
                        }
                    }
                    _ = guard_timer.tick() => {
                        if let Some(latest) = recalibrator.as_ref().and_then(Recalibrator::latest) {
                            let costs: Arc<[FunctionCost]> =
                                latest.costs(&prepared.plan.points, entry_kinds).into();
                            pipeline.reconstructor.set_costs(costs.clone());
                            guard.set_costs(costs);
                            *calibration = latest;
                            *recalibrations += 1;
                        }
                        let notices = guard.check(engine, &prepared.plan);
                        pipeline.notices.extend(notices);
                        if let Some(notice) = sampling.as_mut().and_then(|s| s.check(engine)) {
                            pipeline.notices.push(notice);
                        }
                    }
                    request = next_request(&mut requests) => match request {
                        Some(request) => {
                            // What was delivered before the swap is
                            // consumed under the old table.
                            ring.get_mut().drain(|record| pipeline.push(record));
                            consume(pipeline, guard, consumers)?;
                            retrace.apply(
                                request,
                                retrace::Parts {
                                    engine,
                                    plan: &mut prepared.plan,
                                    guard,
                                    pipeline,
                                    watchdog: watchdog.as_mut(),
                                    calibration,
                                    entry_kinds,
                                },
                                consumers,
                            )?;
                        }
                        // The dashboard is gone.
                        None => requests = None,
                    },
                    _ = stall_timer.tick(), if watchdog.is_some() => {
                        let watchdog = watchdog.as_mut().expect("checked by the guard");
                        let ring = ring.get_mut();
                        let news = pipeline.check_stalls(watchdog, |pipeline| {
                            ring.drain(|record| pipeline.push(record));
                        });
                        consume(pipeline, guard, consumers)?;
                        for consumer in consumers.iter_mut() {
                            consumer.stalls(&news, watchdog)?;
                        }
                    }
                    stop = stopper.next() => break Ok(stop),
                }
                consume(pipeline, guard, consumers)?;
            }
        }
        .await;
        let (stop, mut error) = match looped {
            Ok(stop) => (stop, None),
            Err(e) => (Stop::Quit, Some(e)),
        };

        // A launched command that ends with the session is asked to stop
        // (SIGTERM to ferret already went to it).
        if let Some(pid) = launched
            && options.end_launched
            && !matches!(stop, Stop::TargetExited | Stop::Terminate)
        {
            target::signal(pid, libc::SIGTERM);
        }
        // Give a launched command time to exit, traced, and keep the
        // consumers current meanwhile.
        if launched.is_some() && stop.asked() {
            let graced = stopper.target_exit(GRACE);
            tokio::pin!(graced);
            loop {
                tokio::select! {
                    () = &mut graced => break,
                    _ = drain_timer.tick() => {
                        ring.get_mut().drain(|record| pipeline.push(record));
                        if let Err(e) = consume(pipeline, guard, consumers) {
                            error.get_or_insert(e);
                        }
                    }
                }
            }
        }
        ring.get_mut().drain(|record| pipeline.push(record));
        if let Err(e) = consume(pipeline, guard, consumers) {
            error.get_or_insert(e);
        }
        (stop, error)
    }

    /// The end of a session, after the loop: stall captures in flight, a
    /// launched command that ends with the session, detaching, the last
    /// spans.
    fn end(
        &mut self,
        stop: Stop,
        consumers: &mut [&mut dyn Consumer],
        options: &RunOptions,
        error: &mut Option<anyhow::Error>,
    ) -> SessionEnd {
        // The watchdog stops first, whatever it is doing: captures still
        // queued are abandoned, the one being taken gets SETTLE_STALLS to
        // finish if a recording wants its row. Its last news (groups not
        // told yet) goes out.
        if let Some(watchdog) = &mut self.watchdog {
            let wait = if options.settle_stalls {
                SETTLE_STALLS
            } else {
                Duration::ZERO
            };
            let news = watchdog.settle(wait);
            for consumer in consumers.iter_mut() {
                if let Err(e) = consumer.stalls(&news, watchdog) {
                    error.get_or_insert(e);
                }
            }
        }
        let watchdog = self.watchdog.take();
        let stall_threshold = watchdog.as_ref().map(Watchdog::threshold);
        let stall_stats = watchdog.as_ref().map(|w| w.stats().to_json());
        drop(watchdog);
        // No measuring while the session winds down.
        drop(self.recalibrator.take());

        // The launched command: reaped if it exited; if it ends with the
        // session and has not, killed (it had its grace).
        let mut ended_by_us = None;
        if let Started::Launched(child) = &self.started {
            if stop.target_gone() || options.end_launched {
                self.exit = target::try_wait(child.pid).ok().flatten();
            }
            if options.end_launched && !stop.target_gone() {
                if self.exit.is_some() {
                    ended_by_us = Some("SIGTERM");
                } else {
                    target::signal(child.pid, libc::SIGKILL);
                    self.exit = target::wait(child.pid).ok();
                    ended_by_us = Some("SIGKILL: still running 2 s after SIGTERM");
                }
            }
        }

        let pid = self.pid;
        let detach = self
            .engine
            .detach_with(|| crate::target::freeze::running_threads(pid));
        let sampled = self.sampling.as_mut().map(|sampling| {
            let (delivered, json) = sampling.finish(&self.engine, consumers);
            if let Err(e) = delivered {
                error.get_or_insert(e);
            }
            json
        });
        let lost = self.engine.lost().unwrap_or(self.pipeline.lost);
        self.pipeline.lost = self.pipeline.lost.max(lost);
        let sched_split = serde_json::json!({
            "on_at_end": self.engine.sched_on(),
            "stopped_by_budget": self.guard.sched_stopped,
            "hook_runs": self.engine.count(ferret_common::counts::SCHED_HOOKS).ok(),
            "hook_ns": guard::SCHED_HOOK_NS,
            "restarts": self.engine.count(ferret_common::counts::SCHED_RESTARTS).ok(),
        });
        // Spans still open end as `unwound` if the process is gone, `open`
        // if it runs on without us.
        let gone = stop.target_gone() || self.exit.is_some();
        self.pipeline.close(gone, self.pid);
        if let Err(e) = consume(&mut self.pipeline, &mut self.guard, consumers) {
            error.get_or_insert(e);
        }

        let unavailable = self.sampler.unavailable();
        let mut calibration = serde_json::json!({
            "start": serde_json::from_str::<serde_json::Value>(&self.first_calibration.to_json())
                .unwrap_or_default(),
            "recalibrations": self.recalibrations,
        });
        if self.recalibrations > 0 {
            calibration["end"] =
                serde_json::from_str(&self.calibration.to_json()).unwrap_or_default();
        }
        SessionEnd {
            stop,
            failed: error.as_ref().map(|e| format!("{e:#}")),
            lost: self.pipeline.lost,
            events: self.pipeline.events,
            functions: self.prepared.plan.traced_functions(),
            orphan_exits: self.pipeline.reconstructor.orphan_exits(),
            detach,
            exit: self.exit,
            ended_by_us,
            calibration: self.first_calibration,
            metadata: vec![
                (meta_key::CALIBRATION, calibration.to_string()),
                (
                    meta_key::MAX_OVERHEAD_PERCENT,
                    self.guard.estimate().1.unwrap_or(0.0).to_string(),
                ),
                (meta_key::DETACHED_FUNCTIONS, self.guard.metadata()),
                (meta_key::SCHED_SPLIT, sched_split.to_string()),
                (meta_key::PROBE_CHANGES, self.retrace.metadata()),
                (meta_key::SAMPLING, sampled.unwrap_or_default()),
                (
                    meta_key::STALL_THRESHOLD_NS,
                    stall_threshold.unwrap_or_default().as_nanos().to_string(),
                ),
                (meta_key::STALL_WATCHDOG, stall_stats.unwrap_or_default()),
                (
                    meta_key::METRICS_UNAVAILABLE,
                    unavailable
                        .iter()
                        .map(|(event, why)| format!("{event}: {why}"))
                        .collect::<Vec<_>>()
                        .join("; "),
                ),
            ],
        }
    }

    /// The pid of the command ferret launched, if it did.
    fn launched(&self) -> Option<u32> {
        match &self.started {
            Started::Launched(child) => Some(child.pid),
            Started::Pid(_) => None,
        }
    }

    /// After the session: for a launched command, waits for it (saying so
    /// if it still runs) and returns its exit code; 0 for a pid target.
    pub fn finish_target(self) -> Result<i32> {
        match self.started {
            Started::Pid(_) => Ok(0),
            Started::Launched(child) => {
                let status = if let Some(status) = self.exit {
                    status
                } else if let Some(status) = target::try_wait(child.pid)? {
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

/// Measures the probes' cost (see [`crate::cost`]), unless
/// `FERRET_CALIBRATION_CALLS=0`; on failure, says so and corrects nothing.
fn measure_probe_cost() -> Calibration {
    let calls = cost::calibrate::calls_from_env();
    if calls == 0 {
        return Calibration::NONE;
    }
    match cost::calibrate::calibrate(calls) {
        Ok(calibration) => {
            eprintln!("ferret: probe cost: {}", calibration.describe());
            calibration
        }
        Err(e) => {
            eprintln!(
                "ferret: warning: measuring the probes' cost failed ({}); times are shown as \
                 measured and --max-overhead is off",
                anyhow::Error::new(e)
                    .chain()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(": ")
            );
            Calibration::NONE
        }
    }
}

/// Hands the notices and span events the pipeline produced to every
/// consumer (the guard counts the calls first).
fn consume(
    pipeline: &mut Pipeline,
    guard: &mut OverheadGuard,
    consumers: &mut [&mut dyn Consumer],
) -> Result<()> {
    for notice in pipeline.notices.drain(..) {
        for consumer in consumers.iter_mut() {
            consumer.notice(&notice);
        }
    }
    if pipeline.spans.is_empty() {
        return Ok(());
    }
    guard.observe(&pipeline.spans);
    let result = consumers
        .iter_mut()
        .try_for_each(|consumer| consumer.spans(&pipeline.spans));
    pipeline.spans.clear();
    result
}

/// The next request from the dashboard; never, without one.
async fn next_request(
    requests: &mut Option<tokio_mpsc::UnboundedReceiver<ProbeRequest>>,
) -> Option<ProbeRequest> {
    match requests {
        Some(requests) => requests.recv().await,
        None => std::future::pending().await,
    }
}

/// Whether the process behind `pidfd` has exited (its pidfd is readable).
fn has_exited(pidfd: &OwnedFd) -> bool {
    let fd = pidfd.as_fd();
    let mut fds = [rustix::event::PollFd::new(
        &fd,
        rustix::event::PollFlags::IN,
    )];
    rustix::event::poll(&mut fds, Some(&rustix::time::Timespec::default())).is_ok_and(|n| n > 0)
}
