//! The watchdog: watches the open stacks for stalls (through its
//! [`Detector`]) and has a thread of its own capture where stalled threads
//! are ([`super::diagnose`]), so nothing blocks the thread that drains the
//! ring buffer. See [`Watchdog`] for how a session drives it.
//!
//! The capture thread keeps its cost bounded whatever the number of stalls:
//! first captures go before looks at lasting stalls, threads stuck alike
//! share their stack walks and symbols ([`super::unwind`],
//! [`super::capture`]), and a [`Budget`] keeps its CPU time under
//! [`CAPTURE_SHARE`] of one core (after a [`CAPTURE_BURST`]), so a burst of
//! thousands of stalls is spread over time rather than taking a core. At
//! the end of a session everything still queued is abandoned
//! ([`Watchdog::settle`]): the session ends on time.

use std::{
    collections::{HashMap, HashSet, VecDeque},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
        mpsc,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use super::{
    capture::{CaptureStats, Capturer},
    detector::{Detector, Look, Outcome, Request},
    diagnose::capture_stall,
    existing::RunningCalls,
    goroutine::{GoRuntime, capture_goroutine},
    group::{StallGroup, StallNews},
    ptrace,
    report::{StaleSpan, StallReport},
};
use crate::{
    probe::ProbePoint,
    trace::FunctionInfo,
    trace::{Reconstructor, SpanEvent, StackKey, ThreadStack},
};

/// How often, at most, a lasting stall is looked at again to see whether
/// it moved.
pub const RECAPTURE_EVERY: Duration = Duration::from_secs(2);

/// The share of one core the capture thread's captures may take over time.
pub const CAPTURE_SHARE: f64 = 0.05;

/// CPU time the capture thread may spend at once before [`CAPTURE_SHARE`]
/// holds it back: a burst of a few hundred stalls is captured at once.
pub const CAPTURE_BURST: Duration = Duration::from_millis(150);

/// How often the processes kept warm have their mappings looked at, for
/// libraries loaded since (their debug information is read then, not at
/// the next stall).
const REWARM_EVERY: Duration = Duration::from_secs(5);

/// How long dropping the watchdog waits for the capture thread to finish
/// what it is doing; after that it is left to finish alone.
const JOIN_WAIT: Duration = Duration::from_millis(200);

/// A job for the capture thread.
enum Job {
    /// Read a process's modules and debug information ahead of its first
    /// stall, so that capture is quick.
    Warm(u32),
    /// Find the calls already running in a process's threads when tracing
    /// began (see [`RunningCalls`]).
    Find {
        pid: u32,
        points: Vec<ProbePoint>,
        ts_ns: u64,
    },
    /// Capture a stalled thread.
    Capture(Request),
    /// The probe table grew: name functions from this one.
    Functions(Arc<[FunctionInfo]>),
}

/// What the capture thread sends back.
enum Reply {
    Outcome(Outcome),
    Running(RunningCalls),
    /// How its captures went so far, sent after each batch.
    Stats(WatchdogStats),
}

/// What the capture thread did, for measurements.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct WatchdogStats {
    /// CPU time of the capture thread (user and system) so far, all of it.
    pub cpu: Duration,
    /// Of which, finding the calls running at attach.
    pub finding_cpu: Duration,
    /// Of which, reading processes' modules and debug information ahead
    /// of their stalls.
    pub warming_cpu: Duration,
    /// Time it slept to keep within [`CAPTURE_SHARE`].
    pub held_back: Duration,
    /// Captures and looks taken.
    pub requests: u64,
    /// The capturers' counts, summed over processes.
    pub captures: CaptureStats,
}

impl WatchdogStats {
    /// As JSON, for the recording's metadata: `cpu_ns` (all of the capture
    /// thread's CPU time), `finding_cpu_ns` and `warming_cpu_ns` (the parts
    /// spent finding the calls running at attach and reading debug
    /// information), `held_back_ns` (time slept to keep within
    /// [`CAPTURE_SHARE`]), `requests` (captures and looks asked for),
    /// `captures` (taken in full), `unmoved` (looks that found the thread
    /// where it was), `walked` and `shared_walks` (stacks walked, and walks
    /// that were another thread's), `symbolized` and `shared_symbols`,
    /// `holder_searches`, `maps_reads`.
    pub fn to_json(&self) -> String {
        let ns = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        let c = &self.captures;
        serde_json::json!({
            "cpu_ns": ns(self.cpu),
            "finding_cpu_ns": ns(self.finding_cpu),
            "warming_cpu_ns": ns(self.warming_cpu),
            "held_back_ns": ns(self.held_back),
            "requests": self.requests,
            "captures": c.captures,
            "unmoved": c.unmoved,
            "walked": c.walks.walked,
            "shared_walks": c.walks.shared,
            "symbolized": c.symbolized,
            "shared_symbols": c.symbols_shared,
            "holder_searches": c.holder_searches,
            "maps_reads": c.walks.maps_reads,
        })
        .to_string()
    }
}

/// Watches the open stacks for stalls and captures where stalled threads
/// are; see the [`stall`](super) module. Captures run on a thread of its own,
/// so nothing here blocks the caller.
///
/// Use, from the thread that drains the ring buffer:
///
/// 1. [`Self::new`] after attaching (a process's modules and debug
///    information are read once one of its threads has been quiet for half
///    the threshold, or at [`Self::warm_up`]); attached to a running
///    process, [`Self::find_running`] (on the capture thread) or
///    [`Self::adopt_when_drained`] with [`RunningCalls::find`].
/// 2. Every few hundred milliseconds: [`Self::receive`], drain the ring
///    buffer into the reconstructor, [`Self::tick`]. It returns the news:
///    the new and changed reports (one `STALL` row each:
///    [`StallReport::row`]) and what is news about the groups, and appends
///    to the span events the starts of adopted calls and the ends of stale
///    ones.
/// 3. For a live view: [`Self::stalls`] (the latest capture of each
///    current stall), [`Self::groups`], [`Self::generation`].
/// 4. At the end: [`Self::settle`], which abandons what is still queued.
pub struct Watchdog {
    detector: Detector,
    functions: Arc<[FunctionInfo]>,
    requests: Option<mpsc::Sender<Job>>,
    replies: mpsc::Receiver<Reply>,
    worker: Option<JoinHandle<()>>,
    /// Set at the end: the capture thread drops what is queued and stops.
    abandon: Arc<AtomicBool>,
    /// How long dropping it waits for the capture thread: [`JOIN_WAIT`],
    /// nothing once [`Self::settle`] waited out its time.
    join_wait: Duration,
    /// Captures received and not yet taken in (see [`Watchdog::receive`]).
    inbox: Vec<Outcome>,
    pending_adoption: Option<RunningCalls>,
    adopted: Option<usize>,
    stats: WatchdogStats,
}

impl std::fmt::Debug for Watchdog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watchdog")
            .field("threshold_ns", &self.detector.threshold_ns())
            .field("stalled", &self.detector.stalled())
            .finish_non_exhaustive()
    }
}

impl Watchdog {
    /// A watchdog for spans quiet longer than `threshold`; `functions` is
    /// the probe table (names for the reports). Starts the capture thread.
    pub fn new(threshold: Duration, functions: Arc<[FunctionInfo]>) -> Self {
        let (requests, jobs) = mpsc::channel::<Job>();
        let (outbox, replies) = mpsc::channel::<Reply>();
        let names = Arc::clone(&functions);
        let abandon = Arc::new(AtomicBool::new(false));
        let stop = Arc::clone(&abandon);
        let worker = std::thread::Builder::new()
            .name("ferret-stall".to_owned())
            .spawn(move || capture_loop(&jobs, &outbox, names, &stop))
            .ok();
        let nanos = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        Self {
            detector: Detector::new(
                nanos(threshold),
                nanos(RECAPTURE_EVERY.min(threshold.max(Duration::from_millis(500)))),
            ),
            functions,
            requests: worker.is_some().then_some(requests),
            replies,
            worker,
            abandon,
            join_wait: JOIN_WAIT,
            inbox: Vec::new(),
            pending_adoption: None,
            adopted: None,
            stats: WatchdogStats::default(),
        }
    }

    /// Has the capture thread read process `pid`'s modules and debug
    /// information now, in the background, rather than at its first stall
    /// (which would then wait for it).
    pub fn warm_up(&self, pid: u32) {
        if let Some(sender) = &self.requests {
            let _ = sender.send(Job::Warm(pid));
        }
    }

    /// Has the capture thread walk every thread of `pid` for the probed
    /// functions already running (`points`, indexed like the probe table;
    /// `ts_ns`, when tracing began, is their start); the first
    /// [`Self::tick`] after they are found, the ring buffer drained, adopts
    /// them (see [`Self::adopt_when_drained`]).
    pub fn find_running(&self, pid: u32, points: &[ProbePoint], ts_ns: u64) {
        if let Some(sender) = &self.requests {
            let _ = sender.send(Job::Find {
                pid,
                points: points.to_vec(),
                ts_ns,
            });
        }
    }

    /// Hands over the calls found running at attach; the next
    /// [`Self::tick`], after the ring buffer was drained, adopts them, so
    /// that calls entered while the stacks were read are known and not
    /// adopted twice.
    pub fn adopt_when_drained(&mut self, calls: RunningCalls) {
        self.pending_adoption = Some(calls);
    }

    /// Receives the captures finished so far. Call it, then drain the ring
    /// buffer into the reconstructor, then [`Self::tick`]: every event from
    /// before those captures is then in the reconstructor, so a capture
    /// taken after its thread moved on is known for what it is.
    pub fn receive(&mut self) {
        while let Ok(reply) = self.replies.try_recv() {
            self.take(reply);
        }
    }

    fn take(&mut self, reply: Reply) {
        match reply {
            Reply::Outcome(outcome) => self.inbox.push(outcome),
            Reply::Running(calls) => self.pending_adoption = Some(calls),
            Reply::Stats(stats) => self.stats = stats,
        }
    }

    /// How many calls the last tick adopted, once.
    pub fn take_adopted(&mut self) -> Option<usize> {
        self.adopted.take()
    }

    /// The stall threshold.
    pub fn threshold(&self) -> Duration {
        Duration::from_nanos(self.detector.threshold_ns())
    }

    /// Looks at every thread's open stack at `now_ns` (`CLOCK_MONOTONIC`):
    /// asks for a capture of each newly stalled thread and a look at each
    /// lasting stall due for one; forgets stalls that ended. Then takes in
    /// the captures [`Self::receive`]d before.
    pub fn check<'a>(&mut self, threads: impl Iterator<Item = ThreadStack<'a>>, now_ns: u64) {
        let requests = self.detector.check(threads, now_ns);
        for pid in self.detector.take_to_warm() {
            self.warm_up(pid);
        }
        for request in requests {
            let (pid, tid, goroutine) = (request.pid, request.tid, request.goroutine);
            let sent = self
                .requests
                .as_ref()
                .is_some_and(|sender| sender.send(Job::Capture(request)).is_ok());
            if !sent {
                // No capture thread: nothing will answer.
                self.detector.unanswered(pid, tid, goroutine);
            }
        }
        // After the stalls are brought up to date: a capture of a span that
        // has ended meanwhile finds no stall to belong to.
        for outcome in std::mem::take(&mut self.inbox) {
            self.detector.accept(outcome);
        }
        self.detector.regroup();
    }

    /// Adopts the calls found running at attach, if they are in;
    /// [`Self::check`] on `reconstructor`'s threads (taking in the captures
    /// [`Self::receive`]d before), then ends the stalled spans found no
    /// longer on their stacks (appending their ends to `out`), and returns
    /// the news.
    pub fn tick(
        &mut self,
        reconstructor: &mut Reconstructor,
        now_ns: u64,
        out: &mut Vec<SpanEvent>,
    ) -> StallNews {
        if let Some(calls) = self.pending_adoption.take() {
            self.adopted = Some(calls.adopt(reconstructor, out));
        }
        // Goroutines too: one stuck inside a traced call is a stall.
        self.check(reconstructor.stacks(), now_ns);
        for stale in self.take_stale() {
            let key = stale
                .goroutine
                .map_or(StackKey::Thread(stale.tid), StackKey::Goroutine);
            reconstructor.retire(stale.pid, key, stale.span_id, stale.seen_ns, out);
        }
        self.detector.take_news(now_ns, false)
    }

    /// The end of a session: abandons the captures still queued, waits up
    /// to `timeout` for the one being taken (a recording wants its row),
    /// and returns the last news, every group not told yet included. No
    /// capture is asked for after this.
    pub fn settle(&mut self, timeout: Duration) -> StallNews {
        self.abandon.store(true, Ordering::Relaxed);
        // Closing the channel wakes the capture thread if it waits for work.
        self.requests = None;
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.replies.recv_timeout(left) {
                Ok(reply) => self.take(reply),
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
                // Out of time: the capture is left to finish alone, and
                // dropping the watchdog does not wait for it again.
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    self.join_wait = Duration::ZERO;
                    break;
                }
            }
        }
        for outcome in std::mem::take(&mut self.inbox) {
            self.detector.accept(outcome);
        }
        self.detector.abandon_pending();
        self.detector.take_news(crate::clock::monotonic_ns(), true)
    }

    /// Stalled spans found no longer on their thread's stack since the last call.
    pub fn take_stale(&mut self) -> Vec<StaleSpan> {
        self.detector.take_stale()
    }

    /// The current stalls, latest capture of each, ordered by (pid, tid).
    pub fn stalls(&self) -> impl Iterator<Item = &StallReport> {
        self.detector.stalls()
    }

    /// The current stalls' groups, in the order to show them (deadlocks,
    /// lock holders, then the smallest groups first); their members index
    /// [`Self::stalls`].
    pub fn groups(&self) -> &[StallGroup] {
        self.detector.groups()
    }

    /// Changes each time the stalls or their groups do: a view built from
    /// them need not be rebuilt while it stays the same.
    pub fn generation(&self) -> u64 {
        self.detector.generation()
    }

    /// Whether span `span_id` is the stalled span of some thread.
    pub fn is_stalled(&self, span_id: u64) -> bool {
        self.detector.is_stalled(span_id)
    }

    /// The probe table the reports name functions from.
    pub fn functions(&self) -> &Arc<[FunctionInfo]> {
        &self.functions
    }

    /// What the capture thread did, as of the last [`Self::receive`].
    pub fn stats(&self) -> WatchdogStats {
        self.stats
    }

    /// The probe table grew (functions traced while the session runs).
    pub fn set_functions(&mut self, functions: Arc<[FunctionInfo]>) {
        if let Some(sender) = &self.requests {
            let _ = sender.send(Job::Functions(functions.clone()));
        }
        self.functions = functions;
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        // The capture thread drops what is queued and ends after its
        // current capture; a capture that takes longer (a thread slow to
        // stop) is left to finish alone rather than hold up the end.
        self.abandon.store(true, Ordering::Relaxed);
        self.requests = None;
        let deadline = Instant::now() + self.join_wait;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.replies.recv_timeout(left) {
                Ok(_) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    if let Some(worker) = self.worker.take() {
                        let _ = worker.join();
                    }
                    break;
                }
                Err(mpsc::RecvTimeoutError::Timeout) => break,
            }
        }
    }
}

/// CPU time of the calling thread (user and system).
fn thread_cpu() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// Keeps the capture thread's captures under a share of one core: a token
/// bucket of CPU time, filled at `share` seconds per second up to `burst`,
/// from which each capture takes the CPU time it used (the thread's own
/// clock: user and system time, system calls included). While it is
/// empty, the thread sleeps.
struct Budget {
    share: f64,
    burst: f64,
    /// Seconds of CPU time left.
    tokens: f64,
    filled: Instant,
    charged: Duration,
    held_back: Duration,
}

impl Budget {
    fn new(share: f64, burst: Duration) -> Self {
        Self {
            share,
            burst: burst.as_secs_f64(),
            tokens: burst.as_secs_f64(),
            filled: Instant::now(),
            charged: thread_cpu(),
            held_back: Duration::ZERO,
        }
    }

    fn fill(&mut self) {
        let now = Instant::now();
        let dt = now.duration_since(self.filled).as_secs_f64();
        self.tokens = (self.tokens + dt * self.share).min(self.burst);
        self.filled = now;
    }

    /// Takes the CPU time used since the last call.
    fn charge(&mut self) {
        let cpu = thread_cpu();
        self.tokens -= cpu.saturating_sub(self.charged).as_secs_f64();
        self.charged = cpu;
    }

    /// Not charged: work outside the budget (a one-off at attach).
    fn forgive(&mut self) -> Duration {
        let cpu = thread_cpu();
        let spent = cpu.saturating_sub(self.charged);
        self.charged = cpu;
        spent
    }

    /// Sleeps while the bucket is empty; `false` if abandoned meanwhile.
    fn wait(&mut self, abandon: &AtomicBool) -> bool {
        self.fill();
        while self.tokens < 0.0 {
            if abandon.load(Ordering::Relaxed) {
                return false;
            }
            let nap =
                Duration::from_secs_f64(-self.tokens / self.share).min(Duration::from_millis(50));
            std::thread::sleep(nap);
            self.held_back += nap;
            self.fill();
        }
        !abandon.load(Ordering::Relaxed)
    }
}

/// The capture thread: one [`Capturer`] per process, kept so modules and
/// debug information are read once. Jobs are taken as they come; captures
/// wait in two queues, first captures (and full ones) ahead of looks at
/// lasting stalls.
fn capture_loop(
    inbox: &mpsc::Receiver<Job>,
    outbox: &mpsc::Sender<Reply>,
    mut functions: Arc<[FunctionInfo]>,
    abandon: &AtomicBool,
) {
    let mut capturers: HashMap<u32, Capturer> = HashMap::new();
    // A Go program's runtime, read once per process (None: not Go, or its
    // goroutines cannot be read).
    let mut runtimes: HashMap<u32, Option<GoRuntime>> = HashMap::new();
    // Processes kept warm: a launched command maps its libraries after the
    // watchdog starts, a server may dlopen later.
    let mut warm: HashSet<u32> = HashSet::new();
    let mut rewarmed = Instant::now();
    let mut first: VecDeque<Request> = VecDeque::new();
    let mut again: VecDeque<Request> = VecDeque::new();
    let mut budget = Budget::new(CAPTURE_SHARE, CAPTURE_BURST);
    // Test hook: every capture takes this long (a thread slow to stop), so
    // a test can end a session with captures in flight and queued.
    let capture_delay = std::env::var("FERRET_TEST_CAPTURE_DELAY_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map(Duration::from_millis);
    let mut stats = WatchdogStats::default();
    let report =
        |stats: &mut WatchdogStats, capturers: &HashMap<u32, Capturer>, budget: &Budget| {
            stats.cpu = thread_cpu();
            stats.held_back = budget.held_back;
            stats.captures = capturers
                .values()
                .map(Capturer::stats)
                .fold(CaptureStats::default(), add_stats);
            outbox.send(Reply::Stats(*stats)).is_ok()
        };
    loop {
        if abandon.load(Ordering::Relaxed) {
            break;
        }
        // Wait for work only when there is none queued.
        let job = if first.is_empty() && again.is_empty() {
            match inbox.recv_timeout(Duration::from_millis(100)) {
                Ok(job) => Some(job),
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    // A thread that stopped late must not stay stopped.
                    ptrace::release_late_within(Duration::ZERO);
                    if rewarmed.elapsed() >= REWARM_EVERY {
                        rewarmed = Instant::now();
                        warm.retain(|pid| std::path::Path::new(&format!("/proc/{pid}")).exists());
                        for pid in &warm {
                            if let Some(capturer) = capturers.get_mut(pid) {
                                capturer.warm_up();
                            }
                        }
                        stats.warming_cpu += budget.forgive();
                    }
                    continue;
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        } else {
            None
        };
        for job in job
            .into_iter()
            .chain(std::iter::from_fn(|| inbox.try_recv().ok()))
        {
            match job {
                Job::Capture(request) if request.look == Look::Again => again.push_back(request),
                Job::Capture(request) => first.push_back(request),
                Job::Functions(table) => functions = table,
                Job::Warm(pid) => {
                    warm.insert(pid);
                    capturers
                        .entry(pid)
                        .or_insert_with(|| Capturer::new(pid))
                        .warm_up();
                    stats.warming_cpu += budget.forgive();
                }
                Job::Find { pid, points, ts_ns } => {
                    let capturer = capturers.entry(pid).or_insert_with(|| Capturer::new(pid));
                    let calls = RunningCalls::find(capturer, &points, ts_ns);
                    stats.finding_cpu += budget.forgive();
                    if outbox.send(Reply::Running(calls)).is_err() {
                        return;
                    }
                }
            }
        }
        let Some(request) = first.pop_front().or_else(|| again.pop_front()) else {
            continue;
        };
        if !budget.wait(abandon) {
            break;
        }
        if let Some(delay) = capture_delay {
            std::thread::sleep(delay);
        }
        let capturer = capturers
            .entry(request.pid)
            .or_insert_with(|| Capturer::new(request.pid));
        let outcome = if request.goroutine.is_some() {
            // A goroutine is not where its last thread is: the runtime says.
            let runtime = runtimes
                .entry(request.pid)
                .or_insert_with(|| GoRuntime::open(request.pid));
            capture_goroutine(runtime.as_ref(), capturer, &request, &functions)
        } else {
            capture_stall(capturer, &request, &functions)
        };
        budget.charge();
        stats.requests += 1;
        if outbox.send(Reply::Outcome(outcome)).is_err() {
            break;
        }
        if first.is_empty() && again.is_empty() && !report(&mut stats, &capturers, &budget) {
            break;
        }
    }
    let _ = report(&mut stats, &capturers, &budget);
}

fn add_stats(a: CaptureStats, b: CaptureStats) -> CaptureStats {
    CaptureStats {
        captures: a.captures + b.captures,
        unmoved: a.unmoved + b.unmoved,
        symbolized: a.symbolized + b.symbolized,
        symbols_shared: a.symbols_shared + b.symbols_shared,
        holder_searches: a.holder_searches + b.holder_searches,
        walks: super::unwind::WalkStats {
            walked: a.walks.walked + b.walks.walked,
            shared: a.walks.shared + b.walks.shared,
            maps_reads: a.walks.maps_reads + b.walks.maps_reads,
        },
    }
}
