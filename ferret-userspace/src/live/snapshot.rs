//! The immutable picture of a session that the dashboard draws.
//!
//! The ingestion thread builds one about ten times a second and publishes it
//! behind an `Arc`; the UI thread only ever reads snapshots, so drawing
//! never holds up ingestion and ingestion never waits for a frame.

use std::{collections::HashSet, path::PathBuf, sync::Arc};

use super::HotView;
use crate::{
    session::SamplingStatus,
    sink::MetricSample,
    stall::{StallGroup, StallReport},
    target::ExitStatus,
    trace::FunctionInfo,
    trace::{BlockedIn, SchedCounters, SpanStatus, ThreadName, ThreadStack},
};

/// What does not change during a session.
#[derive(Clone, Debug, Default)]
pub struct SessionInfo {
    /// Target process id.
    pub pid: u32,
    /// Its command line (or the command launched).
    pub command: String,
    /// Whether ferret launched it (so it has a log file and an exit status).
    pub launched: bool,
    /// The probe table: a span's `function` indexes it.
    pub functions: Arc<[FunctionInfo]>,
    /// How exits are observed, in a few words (`auto: ret 3, uretprobe 9`).
    pub exit_mode: String,
    /// Where a launched command's output goes.
    pub log: Option<PathBuf>,
    /// The Parquet file written alongside, if any.
    pub output: Option<PathBuf>,
    /// When tracing began, `CLOCK_MONOTONIC` ns.
    pub started_ns: u64,
    /// A thread quiet this long inside a traced call is stalled (`--stall`;
    /// 0: the watchdog is off).
    pub stall_ns: u64,
    /// Added to a `CLOCK_MONOTONIC` time gives the local wall-clock time
    /// (ns since the epoch, shifted by the local UTC offset), for display.
    pub local_offset_ns: i64,
    /// What the dearest traced call's probes cost, as measured at the
    /// start (times shown are corrected by each call's own figure); `None`
    /// when not measured, and times are as measured.
    pub probe_cost_ns: Option<f64>,
    /// `--sample-hz` (0: no sampling, no Hot pane numbers).
    pub sample_hz: u64,
    /// No `-s` was given: the session began sampling only.
    pub sampling_only: bool,
}

/// How the OpenTelemetry export is going, for the header.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OtlpProgress {
    /// Spans the collector accepted.
    pub sent: u64,
    /// Spans that will not reach it (queue full, refused, failed).
    pub unsent: u64,
}

/// Whether the target is still being traced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TargetState {
    /// Probes attached, events flowing.
    Live,
    /// The target exited at `at_ns`; `status` is known for a launched command.
    Exited {
        /// Exit code or signal of a launched command.
        status: Option<ExitStatus>,
        /// `CLOCK_MONOTONIC` ns.
        at_ns: u64,
    },
    /// Tracing stopped for another reason (a signal, an error).
    Stopped {
        /// Why, in a few words.
        why: String,
        /// `CLOCK_MONOTONIC` ns.
        at_ns: u64,
    },
}

impl TargetState {
    /// When tracing ended, if it has.
    pub fn ended_ns(&self) -> Option<u64> {
        match self {
            Self::Live => None,
            Self::Exited { at_ns, .. } | Self::Stopped { at_ns, .. } => Some(*at_ns),
        }
    }
}

/// One open span on a thread's stack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpenFrame {
    /// The span's id.
    pub span_id: u64,
    /// Index into the probe table.
    pub function: u32,
    /// Start, `CLOCK_MONOTONIC` ns.
    pub start_ns: u64,
    /// 0 for the thread's outermost open span.
    pub depth: u32,
}

/// A thread and its open spans; in a Go program, a goroutine and its.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ThreadView {
    /// Process id.
    pub pid: u32,
    /// Thread id; for a goroutine, the thread it last ran a traced call on.
    pub tid: u32,
    /// The goroutine, in a Go program; `None` for a thread.
    pub goroutine: Option<u64>,
    /// Thread name.
    pub name: ThreadName,
    /// Open spans, outermost first; empty for an idle thread.
    pub frames: Vec<OpenFrame>,
    /// Events were lost while these frames were open: some may be missing.
    pub maybe_incomplete: bool,
    /// What the thread is doing right now, as the scheduler hooks saw it;
    /// `None` when unknown (no counters: a Go program, an idle thread, the
    /// hooks not attached).
    pub now: Option<ThreadNow>,
}

/// A thread's scheduler state right now, and how much of its innermost open
/// call's time so far was on a CPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ThreadNow {
    /// Running, waiting for a CPU, or blocked (and in what).
    pub state: RunState,
    /// The innermost open call's CPU time over its elapsed time, in
    /// thousandths (0 to 1000); `None` when its start carried no counters.
    pub innermost_cpu_permille: Option<u16>,
}

/// Where a thread is now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunState {
    /// On a CPU.
    Running,
    /// Ready, waiting for a CPU.
    Runnable,
    /// Blocked, in this system call when it was one.
    Blocked(Option<BlockedIn>),
}

impl ThreadNow {
    /// From the kernel's state of the thread at `now_ns` and the scheduler
    /// counters its innermost open call started with, at `start_ns` (pure).
    pub fn of(
        state: &ferret_common::SchedState,
        innermost: &SchedCounters,
        start_ns: u64,
        now_ns: u64,
    ) -> Self {
        let run = if state.running() && !state.blocked() {
            RunState::Running
        } else if state.blocked() {
            RunState::Blocked(
                (state.syscall != ferret_common::NO_SYSCALL).then_some(BlockedIn(state.syscall)),
            )
        } else {
            RunState::Runnable
        };
        let cpu_now = state.cpu_ns_at(now_ns);
        let share = (innermost.epoch != 0
            && innermost.epoch == state.created_ns
            && innermost.lost == state.lost)
            .then(|| {
                let cpu = cpu_now.checked_sub(innermost.cpu_ns)?;
                let elapsed = now_ns.checked_sub(start_ns)?;
                (elapsed > 0).then(|| (cpu.saturating_mul(1000) / elapsed).min(1000) as u16)
            })
            .flatten();
        Self {
            state: run,
            innermost_cpu_permille: share,
        }
    }
}

impl ThreadView {
    /// A copy of the reconstructor's view of one thread.
    pub fn open(stack: &ThreadStack<'_>) -> Self {
        Self {
            pid: stack.pid,
            tid: stack.tid,
            goroutine: stack.goroutine,
            name: *stack.thread_name,
            frames: stack
                .frames
                .iter()
                .map(|f| OpenFrame {
                    span_id: f.span_id,
                    function: f.function,
                    start_ns: f.start_ns,
                    depth: f.depth,
                })
                .collect(),
            maybe_incomplete: stack.maybe_incomplete,
            now: None,
        }
    }
}

/// A call that ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FinishedCall {
    /// The span's id.
    pub span_id: u64,
    /// The enclosing span, if any.
    pub parent_span_id: Option<u64>,
    /// Nesting depth on its thread.
    pub depth: u32,
    /// Process id.
    pub pid: u32,
    /// Thread id.
    pub tid: u32,
    /// Thread name.
    pub thread_name: ThreadName,
    /// Index into the probe table.
    pub function: u32,
    /// Start, `CLOCK_MONOTONIC` ns.
    pub start_ns: u64,
    /// End, `CLOCK_MONOTONIC` ns.
    pub end_ns: u64,
    /// Duration minus traced children.
    pub self_ns: u64,
    /// How it ended.
    pub status: SpanStatus,
    /// ferret's probe time inside it (0 when uncorrected).
    pub overhead_ns: u64,
    /// Where its time went, as measured (probe time inside `cpu_ns`), if
    /// known.
    pub sched: Option<crate::trace::SchedSplit>,
}

impl FinishedCall {
    /// End minus start, less ferret's probe time inside it: what the
    /// dashboard shows.
    pub fn duration_ns(&self) -> u64 {
        self.measured_ns().saturating_sub(self.overhead_ns)
    }

    /// End minus start, as measured.
    pub fn measured_ns(&self) -> u64 {
        self.end_ns.saturating_sub(self.start_ns)
    }
}

/// One function's statistics at snapshot time.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct FunctionRow {
    /// Index into the probe table.
    pub id: u32,
    /// Calls ended.
    pub calls: u64,
    /// Of which unwound.
    pub unwound: u64,
    /// Calls ended per second over the last few seconds.
    pub calls_per_s: f64,
    /// Sum of durations.
    pub total_ns: u64,
    /// Sum of self times.
    pub self_ns: u64,
    /// Mean duration.
    pub mean_ns: u64,
    /// Median duration (within ~3 %).
    pub p50_ns: u64,
    /// 95th percentile (within ~3 %).
    pub p95_ns: u64,
    /// 99th percentile (within ~3 %).
    pub p99_ns: u64,
    /// Longest call (exact).
    pub max_ns: u64,
    /// The share of its calls' time spent on a CPU (0 to 1), over the calls
    /// whose split is known; `None` if none is.
    pub cpu_share: Option<f64>,
}

/// The three contract metrics of one sample, for the sparklines.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct MetricPoint {
    /// `CLOCK_MONOTONIC` ns.
    pub ts_ns: u64,
    /// CPU %, 100 = one core.
    pub cpu_percent: Option<f64>,
    /// Resident memory.
    pub rss_bytes: Option<u64>,
    /// Thread count.
    pub threads: Option<u32>,
}

/// Recent samples, oldest first, and the newest one in full.
#[derive(Clone, Debug, Default)]
pub struct MetricsHistory {
    /// Oldest first.
    pub points: Vec<MetricPoint>,
    /// The newest sample with every field.
    pub latest: Option<MetricSample>,
}

/// Everything the dashboard draws, as of `taken_ns`.
#[derive(Clone, Debug)]
pub struct Snapshot {
    /// Fixed facts about the session.
    pub session: Arc<SessionInfo>,
    /// When this snapshot was taken, `CLOCK_MONOTONIC` ns.
    pub taken_ns: u64,
    /// Live, exited or stopped.
    pub state: TargetState,
    /// Probe events decoded so far.
    pub events: u64,
    /// Events per second, lately.
    pub events_per_s: f64,
    /// Events the kernel dropped (ring buffer full).
    pub lost: u64,
    /// Calls ended so far.
    pub calls: u64,
    /// Threads with open spans first-class, idle ones seen lately too;
    /// then the goroutines with open spans (Go programs).
    pub threads: Vec<ThreadView>,
    /// Goroutines that ran traced calls lately and have none open now:
    /// counted, not listed (a Go server runs thousands).
    pub idle_goroutines: usize,
    /// One row per function called at least once.
    pub functions: Vec<FunctionRow>,
    /// Finished calls, newest first.
    pub recent: Arc<[FinishedCall]>,
    /// Process metrics.
    pub metrics: Arc<MetricsHistory>,
    /// The threads stalled now: the latest capture of each, by (pid, tid).
    pub stalls: Arc<[StallReport]>,
    /// Their groups (threads stuck in the same place), in the order to
    /// show them; members index `stalls`.
    pub stall_groups: Arc<[StallGroup]>,
    /// A problem worth showing (the Parquet file could not be written…).
    pub warning: Option<String>,
    /// The newest lifecycle notice (an exec, a followed fork, a function
    /// detached for calling too often).
    pub notice: Option<String>,
    /// Spans sent to the OpenTelemetry collector and not, with
    /// `--otlp-endpoint`.
    pub otlp: Option<OtlpProgress>,
    /// The overhead guard's estimate of the probes' cost, percent of the
    /// target's own time, and the budget (`--max-overhead`), if on.
    pub overhead: (Option<f64>, Option<f64>),
    /// The session is over and the dashboard should close (ferret got
    /// SIGINT or SIGTERM); after the target exits it stays open instead.
    pub close: bool,
    /// Where the sampled threads spent their CPU time lately.
    pub hot: Arc<HotView>,
    /// Functions of the table no longer traced (detached by the overhead
    /// guard or from the dashboard).
    pub detached: Arc<HashSet<u32>>,
    /// CPU sampling, if on.
    pub sampling: Option<SamplingStatus>,
}

impl Snapshot {
    /// The picture before any event: nothing open, nothing finished.
    pub fn empty(session: Arc<SessionInfo>) -> Self {
        Self {
            taken_ns: session.started_ns,
            session,
            state: TargetState::Live,
            events: 0,
            events_per_s: 0.0,
            lost: 0,
            calls: 0,
            threads: Vec::new(),
            idle_goroutines: 0,
            functions: Vec::new(),
            recent: Arc::from([]),
            metrics: Arc::default(),
            stalls: Arc::from([]),
            stall_groups: Arc::from([]),
            warning: None,
            notice: None,
            otlp: None,
            overhead: (None, None),
            close: false,
            hot: Arc::default(),
            detached: Arc::default(),
            sampling: None,
        }
    }

    /// Functions traced now: the table less the detached ones.
    pub fn traced(&self) -> usize {
        self.session
            .functions
            .len()
            .saturating_sub(self.detached.len())
    }

    /// The table's index of the function named `name` in `module`, if it
    /// is in the table.
    pub fn function_id(&self, name: &str, module: Option<&str>) -> Option<u32> {
        self.session
            .functions
            .iter()
            .position(|f| f.name == name && module.is_none_or(|m| f.module == m))
            .map(|i| i as u32)
    }

    /// The name of function `id`, or a placeholder for an id outside the table.
    pub fn function_name(&self, id: u32) -> &str {
        self.session
            .functions
            .get(id as usize)
            .map_or("?", |f| f.name.as_str())
    }

    /// The capture of the stall whose stalled span is `span_id`, if it is one.
    pub fn stall_of(&self, span_id: u64) -> Option<&StallReport> {
        self.stalls.iter().find(|s| s.span_id == span_id)
    }

    /// The capture of thread `tid`'s stall, if it is stalled.
    pub fn stall_of_thread(&self, pid: u32, tid: u32) -> Option<&StallReport> {
        self.stalls
            .iter()
            .find(|s| s.pid == pid && s.tid == tid && s.goroutine.is_none())
    }

    /// The capture of the stall of `stack` (a thread's or a goroutine's).
    pub fn stall_of_stack(&self, stack: &ThreadView) -> Option<&StallReport> {
        match stack.goroutine {
            None => self.stall_of_thread(stack.pid, stack.tid),
            Some(goid) => self
                .stalls
                .iter()
                .find(|s| s.pid == stack.pid && s.goroutine == Some(goid)),
        }
    }

    /// Stall group `id` (its number), if it is current.
    pub fn stall_group(&self, id: u64) -> Option<&StallGroup> {
        self.stall_groups.iter().find(|g| g.id == id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferret_common::SchedState;

    const MS: u64 = 1_000_000;

    /// A thread created at 1 s that ran 300 ms, then blocked at 1.3 s in
    /// `syscall`, the block still open.
    fn blocked_since_1300ms(syscall: u32) -> SchedState {
        SchedState {
            created_ns: 1_000 * MS,
            in_sum: 1_000 * MS,
            out_sum: 1_300 * MS,
            block_start_sum: 1_300 * MS,
            in_count: 1,
            out_count: 1,
            block_starts: 1,
            syscall,
            ..SchedState::default()
        }
    }

    fn counters(cpu_ns: u64, epoch: u64) -> SchedCounters {
        SchedCounters {
            cpu_ns,
            epoch,
            ..SchedCounters::default()
        }
    }

    #[test]
    fn a_blocked_thread_names_its_system_call_and_its_calls_cpu_share() {
        let state = blocked_since_1300ms(202);
        // The innermost call began at 1.1 s with 100 ms of CPU behind it:
        // 200 ms of CPU in the 400 ms to now (1.5 s).
        let now = ThreadNow::of(
            &state,
            &counters(100 * MS, 1_000 * MS),
            1_100 * MS,
            1_500 * MS,
        );
        assert_eq!(now.state, RunState::Blocked(Some(BlockedIn(202))));
        assert_eq!(now.innermost_cpu_permille, Some(500));
    }

    #[test]
    fn a_running_thread_counts_its_current_stretch_on_the_cpu() {
        // Switched back in at 1.4 s after the block ended then.
        let mut state = blocked_since_1300ms(202);
        state.block_end_sum = 1_400 * MS;
        state.block_ends = 1;
        state.in_sum += 1_400 * MS;
        state.in_count = 2;
        // At 1.5 s: 300 + 100 ms of CPU, all of the call's since 1.4 s.
        let now = ThreadNow::of(
            &state,
            &counters(300 * MS, 1_000 * MS),
            1_400 * MS,
            1_500 * MS,
        );
        assert_eq!(now.state, RunState::Running);
        assert_eq!(now.innermost_cpu_permille, Some(1000));
    }

    #[test]
    fn preempted_is_runnable_and_other_counters_give_no_share() {
        let mut state = blocked_since_1300ms(0);
        state.block_starts = 0;
        state.block_start_sum = 0;
        let now = ThreadNow::of(&state, &counters(0, 999 * MS), 1_000 * MS, 1_500 * MS);
        assert_eq!(now.state, RunState::Runnable);
        assert_eq!(now.innermost_cpu_permille, None, "another epoch");
        let none = ThreadNow::of(&state, &SchedCounters::NONE, 1_000 * MS, 1_500 * MS);
        assert_eq!(
            none.innermost_cpu_permille, None,
            "no counters at the start"
        );
    }
}
