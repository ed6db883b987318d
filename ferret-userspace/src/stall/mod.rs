//! The stall watchdog: where a stuck thread is stuck, while it is stuck.
//!
//! A thread is stalled when it has been inside its innermost open span for
//! longer than the threshold without entering or leaving any traced
//! function. (Counting quiet time rather than the span's age keeps a parent
//! that is busy calling traced children from flickering as stalled between
//! two calls.) For each stalled thread the watchdog captures, off the
//! caller's thread, what the kernel says it is doing (scheduler state, the
//! system call and its arguments, the kernel wait channel), the lock it
//! waits for and who holds it, whether those waits form a deadlock, and its
//! user stack walked with DWARF CFI and symbolized to function and
//! file:line. While the stall lasts it captures again every so often and
//! reports again when the location changed.
//!
//! Nothing here stops the target except for the instant it takes to read
//! the registers of a thread that is running in user space (blocked threads
//! are read without touching them); see [`ptrace`].
//!
//! Parsing is pure and tested on literals ([`procfs`], [`syscalls`],
//! [`futex`]); [`capture`], [`unwind`], [`symbolize`] and [`ptrace`] do the
//! I/O. [`existing`] finds the calls already running when tracing began.

pub mod capture;
pub mod existing;
pub mod futex;
pub mod memory;
pub mod procfs;
pub mod ptrace;
pub mod symbolize;
pub mod syscalls;
pub mod unwind;

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    fmt::Write as _,
    sync::{Arc, mpsc},
    thread::JoinHandle,
    time::{Duration, Instant},
};

pub use capture::{Capture, Capturer, RegisterSource};
pub use existing::{ProbedRanges, RunningBefore, running_before_attach};
pub use futex::LockHolder;
pub use procfs::SchedState;

use crate::{
    probe::ProbePoint,
    sink::{FunctionInfo, StallRow},
    trace::{Reconstructor, SpanEvent, ThreadName, ThreadStack},
};

/// How often, at most, a lasting stall is captured again to see whether it
/// moved.
pub const RECAPTURE_EVERY: Duration = Duration::from_secs(2);

/// One frame of a captured stack.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// Function name (demangled), where known.
    pub function: Option<String>,
    /// Source file, where debug information says.
    pub file: Option<String>,
    /// Source line.
    pub line: Option<u32>,
    /// The instruction pointer (innermost frame) or return address.
    pub address: u64,
    /// The binary or library holding the address.
    pub module: Option<String>,
    /// This call was inlined into the frame below it (same address).
    pub inlined: bool,
}

impl Frame {
    /// `function (file:line)`, or whatever part of it is known.
    pub fn display(&self) -> String {
        let mut out = match (&self.function, &self.module) {
            (Some(f), _) => f.clone(),
            (None, Some(m)) => format!("{:#x} in {m}", self.address),
            (None, None) => format!("{:#x}", self.address),
        };
        if let Some(file) = &self.file {
            let _ = match self.line {
                Some(line) => write!(out, " ({file}:{line})"),
                None => write!(out, " ({file})"),
            };
        }
        if self.inlined {
            out.push_str(" [inlined]");
        }
        out
    }
}

/// What a futex wait is for, told by the library functions on the stack
/// (and, for a mutex, by its recorded owner).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitKind {
    /// A mutex (`pthread_mutex_lock`, or any futex with a live owner).
    Mutex,
    /// A condition variable: it has no holder, only signalers.
    ConditionVariable,
    /// A reader-writer lock.
    RwLock,
    /// A semaphore.
    Semaphore,
    /// A barrier.
    Barrier,
    /// `pthread_join`: waiting for a thread to exit.
    ThreadExit,
    /// A futex nothing more is known of.
    Futex,
}

impl WaitKind {
    /// Tells the kind from the stack's function names, innermost first:
    /// glibc's, and Rust's `std::sync` and `parking_lot`'s.
    pub fn from_stack<'a>(functions: impl IntoIterator<Item = &'a str>) -> Self {
        for name in functions {
            let kind = if name.contains("pthread_cond_")
                || (name.contains("Condvar") && name.contains("wait"))
            {
                Self::ConditionVariable
            } else if name.contains("pthread_rwlock_") || name.contains("RwLock") {
                Self::RwLock
            } else if name.contains("sem_wait")
                || name.contains("sem_timedwait")
                || name.contains("sem_clockwait")
            {
                Self::Semaphore
            } else if name.contains("pthread_barrier_") {
                Self::Barrier
            } else if name.contains("pthread_join")
                || name.contains("pthread_clockjoin")
                || name.contains("pthread_timedjoin")
            {
                Self::ThreadExit
            } else if name.contains("mutex_lock")
                || name.contains("lll_lock")
                || (name.contains("Mutex") && name.contains("lock"))
            {
                Self::Mutex
            } else {
                continue;
            };
            return kind;
        }
        Self::Futex
    }

    /// What it is, in a word or two (`mutex`, `condition variable`).
    pub fn noun(self) -> &'static str {
        match self {
            Self::Mutex => "mutex",
            Self::ConditionVariable => "condition variable",
            Self::RwLock => "rwlock",
            Self::Semaphore => "semaphore",
            Self::Barrier => "barrier",
            Self::ThreadExit => "thread",
            Self::Futex => "futex",
        }
    }
}

/// What a stalled thread waits for on a futex.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LockWait {
    /// The futex address (for a mutex: the mutex).
    pub addr: u64,
    /// What kind of wait it is.
    pub kind: WaitKind,
    /// The thread holding the lock (or, for [`WaitKind::ThreadExit`], the
    /// thread waited for), where it can be told.
    pub owner: Option<u32>,
    /// That thread's name.
    pub owner_name: Option<String>,
    /// The owner was inferred (a reference to the lock on its stack), not
    /// read from the lock.
    pub probable: bool,
}

/// Where one stalled thread is stuck, as captured at one moment.
#[derive(Clone, Debug, PartialEq)]
pub struct StallReport {
    /// Process id.
    pub pid: u32,
    /// Thread id.
    pub tid: u32,
    /// Thread name.
    pub thread_name: String,
    /// The stalled span: the thread's innermost open span.
    pub span_id: u64,
    /// Its function (index into the probe table).
    pub function: u32,
    /// Its function's name.
    pub function_name: String,
    /// Its depth on the thread.
    pub depth: u32,
    /// The span's start, `CLOCK_MONOTONIC` ns (when tracing began, for a
    /// call that was already running then: see `before_attach`).
    pub since_ns: u64,
    /// The call was already running when ferret attached.
    pub before_attach: bool,
    /// When this capture was taken, `CLOCK_MONOTONIC` ns.
    pub captured_ns: u64,
    /// Scheduler state.
    pub state: SchedState,
    /// The system call it is blocked in, rendered strace-like.
    pub syscall: Option<String>,
    /// The kernel function it sleeps in.
    pub wchan: Option<String>,
    /// The lock it waits for.
    pub lock: Option<LockWait>,
    /// The deadlock it is part of: the threads (tid, name) each waiting for
    /// a lock the next one holds, this thread first; empty if none.
    pub deadlock: Vec<(u32, String)>,
    /// The thread whose lock this one waits for, when they are deadlocked.
    pub deadlock_with: Option<u32>,
    /// The user stack, innermost frame first.
    pub frames: Vec<Frame>,
    /// How the stack walk ended, when it could not reach the outermost
    /// frame (or why there is no stack).
    pub stack_note: Option<String>,
    /// One line: state, system call and what it waits for.
    pub wait: String,
    /// The stalled call was found on the walked stack (a frame of its
    /// function entered at its stack pointer): the capture shows that very
    /// call. `false` where the walk could not reach it (hidden by a
    /// uretprobe, cut short).
    pub on_stack: bool,
}

impl StallReport {
    /// The stack as text: one frame per line, innermost first, as
    /// `function (file:line)` where known; a last line says why the walk
    /// stopped early, if it did.
    pub fn stack_text(&self) -> String {
        let mut lines: Vec<String> = self.frames.iter().map(Frame::display).collect();
        lines.extend(self.stack_note.clone());
        lines.join("\n")
    }

    /// The report as a Parquet `STALL` row; `stack` is [`Self::stack_text`].
    pub fn row<'a>(&'a self, stack: &'a str) -> StallRow<'a> {
        StallRow {
            ts_ns: self.captured_ns,
            pid: self.pid,
            tid: self.tid,
            thread_name: &self.thread_name,
            span_id: self.span_id,
            depth: self.depth,
            function: self.function,
            start_ns: self.since_ns,
            stack,
            wait: &self.wait,
        }
    }

    /// One line for a terminal: who, where, for how long, waiting for what.
    pub fn headline(&self) -> String {
        let secs = self.captured_ns.saturating_sub(self.since_ns) as f64 / 1e9;
        let since = if self.before_attach {
            format!("since before ferret attached (≥ {secs:.1} s)")
        } else {
            format!("for {secs:.1} s")
        };
        // The line inside the stalled function says most; else the innermost.
        let at = self
            .frames
            .iter()
            .find(|f| f.function.as_deref() == Some(self.function_name.as_str()))
            .or(self.frames.first())
            .map(|f| format!(" at {}", f.display()))
            .unwrap_or_default();
        format!(
            "stall: tid {} ({}) in {} {since}{at}: {}",
            self.tid, self.thread_name, self.function_name, self.wait
        )
    }

    /// What identifies the location for "did it move": the innermost
    /// function (not its exact instruction, which a spinning loop changes
    /// all the time), the call sites below it, and what it waits in.
    fn location_key(&self) -> String {
        let mut key = format!(
            "{:?}|{:?}|",
            self.state,
            self.syscall.as_ref().map(|s| s.split('(').next())
        );
        for (i, frame) in self.frames.iter().enumerate() {
            if i == 0 {
                let _ = write!(key, "{:?};", frame.function);
            } else {
                let _ = write!(key, "{:#x};", frame.address);
            }
        }
        if let Some(lock) = &self.lock {
            let _ = write!(key, "{:#x}>{:?}", lock.addr, lock.owner);
        }
        key
    }
}

/// Builds the one-line `wait` summary, e.g. `sleeping in futex(0x55…,
/// FUTEX_WAIT_PRIVATE, 2, NULL) [futex_wait_queue] — waits for mutex
/// 0x55… held by tid 1235 (lock-ba) — DEADLOCK: tid 1234 (lock-ab) waits for
/// tid 1235 (lock-ba), which waits for tid 1234`.
pub fn wait_summary(
    state: SchedState,
    syscall: Option<&str>,
    wchan: Option<&str>,
    running_on: Option<u32>,
    lock: Option<&LockWait>,
    deadlock: &[(u32, String)],
    deadlock_probable: bool,
) -> String {
    let mut out = state.to_string();
    match (syscall, state) {
        (Some(call), _) => {
            let _ = write!(out, " in {call}");
        }
        (None, SchedState::Running) => {
            out.push_str(" in user space");
            if let Some(cpu) = running_on {
                let _ = write!(out, " (CPU {cpu})");
            }
        }
        (None, _) => out.push_str(", not in a system call"),
    }
    if let Some(wchan) = wchan {
        let _ = write!(out, " [kernel: {wchan}]");
    }
    if let Some(lock) = lock {
        let named = |tid: u32| match &lock.owner_name {
            Some(name) => format!("tid {tid} ({name})"),
            None => format!("tid {tid}"),
        };
        let noun = lock.kind.noun();
        match (lock.kind, lock.owner) {
            (WaitKind::ThreadExit, Some(tid)) => {
                let _ = write!(out, " — waits for {} to exit", named(tid));
            }
            (_, Some(_)) if deadlock.len() == 1 => {
                let _ = write!(
                    out,
                    " — waits for {noun} {:#x}, which it holds itself",
                    lock.addr
                );
            }
            (_, Some(owner)) if lock.probable => {
                let _ = write!(
                    out,
                    " — waits for {noun} {:#x} probably held by {} (its stack refers to the {noun})",
                    lock.addr,
                    named(owner)
                );
            }
            (_, Some(owner)) => {
                let _ = write!(
                    out,
                    " — waits for {noun} {:#x} held by {}",
                    lock.addr,
                    named(owner)
                );
            }
            (WaitKind::Mutex | WaitKind::RwLock | WaitKind::Futex, None) => {
                let _ = write!(out, " — waits on {noun} {:#x} (holder unknown)", lock.addr);
            }
            (_, None) => {
                let _ = write!(out, " — waits on {noun} {:#x}", lock.addr);
            }
        }
    }
    if deadlock.len() > 1 {
        out.push_str(if deadlock_probable {
            " — PROBABLE DEADLOCK: "
        } else {
            " — DEADLOCK: "
        });
        let names: Vec<String> = deadlock
            .iter()
            .map(|(tid, name)| format!("tid {tid} ({name})"))
            .collect();
        for (i, name) in names.iter().enumerate() {
            if i == 0 {
                out.push_str(name);
            } else {
                let _ = write!(out, " waits for {name}, which");
            }
        }
        let _ = write!(out, " waits for tid {}", deadlock[0].0);
    } else if deadlock.len() == 1 {
        out.push_str(" — DEADLOCK: relocking a mutex it holds");
    }
    out
}

/// Whether a symbolized name and a probe-table name are one function:
/// equal up to a parameter list, which one demangler writes and the other
/// may not.
fn same_function(a: &str, b: &str) -> bool {
    let bare = |s: &str| {
        let s = s.split('(').next().unwrap_or(s).trim();
        // A Rust legacy hash suffix (`::h0123456789abcdef`).
        match s.rsplit_once("::h") {
            Some((path, hash))
                if hash.len() == 16 && hash.bytes().all(|b| b.is_ascii_hexdigit()) =>
            {
                path.to_owned()
            }
            _ => s.to_owned(),
        }
    };
    !a.is_empty() && bare(a) == bare(b)
}

/// A stalled span found no longer on its thread's stack: it ended without
/// its exit being seen; the caller should end it (see
/// [`crate::trace::Reconstructor::retire`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StaleSpan {
    /// Process id.
    pub pid: u32,
    /// Thread id.
    pub tid: u32,
    /// The span.
    pub span_id: u64,
    /// When the capture saw it gone.
    pub seen_ns: u64,
}

/// "Stuck before ferret came": the probed calls found on the threads'
/// stacks right after attaching to a running process, to be adopted by the
/// reconstructor once the events of the attach window are in (see
/// [`Watchdog::adopt_when_drained`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunningCalls {
    pid: u32,
    ts_ns: u64,
    threads: Vec<RunningBefore>,
}

impl RunningCalls {
    /// Walks every thread of `pid` for the probed functions (`points`,
    /// indexed like the probe table); `ts_ns` is when tracing began, the
    /// adopted spans' start.
    pub fn find(pid: u32, points: &[ProbePoint], ts_ns: u64) -> Self {
        let ranges = ProbedRanges::new(points);
        let mut capturer = Capturer::new(pid);
        Self {
            pid,
            ts_ns,
            threads: running_before_attach(&mut capturer, &ranges),
        }
    }

    /// Opens a span for each call (marked
    /// [`crate::trace::OpenSpan::before_attach`]), appending the starts to
    /// `out`, except for calls the reconstructor already saw enter: call it
    /// after draining the events that arrived while the stacks were read.
    /// Returns how many were adopted.
    pub fn adopt(self, reconstructor: &mut Reconstructor, out: &mut Vec<SpanEvent>) -> usize {
        let mut adopted = 0;
        for thread in self.threads {
            let name = ThreadName::from(thread.thread_name.as_str());
            adopted += reconstructor
                .adopt(self.pid, thread.tid, &name, &thread.frames, self.ts_ns, out)
                .len();
        }
        adopted
    }
}

/// A job for the capture thread.
enum Job {
    /// Read a process's modules and debug information ahead of its first
    /// stall, so that capture is quick.
    Warm(u32),
    /// Capture a stalled thread.
    Capture(Request),
}

/// What the watchdog asks its capture thread for.
struct Request {
    pid: u32,
    tid: u32,
    thread_name: String,
    span_id: u64,
    function: u32,
    depth: u32,
    since_ns: u64,
    sp: u64,
    before_attach: bool,
    /// The functions of the open spans outside the stalled one, innermost
    /// first: the traced callers, named where the stack walk cannot go on.
    callers: Vec<u32>,
}

/// What the capture thread answers.
enum Outcome {
    Report(Box<StallReport>),
    Stale(StaleSpan),
    /// The thread is gone.
    Gone {
        pid: u32,
        tid: u32,
        span_id: u64,
    },
}

/// A stall being followed.
struct Tracked {
    span_id: u64,
    requested_ns: u64,
    pending: bool,
    report: Option<StallReport>,
    key: Option<String>,
}

/// The watchdog's policy, apart from its capture thread and its clock: which
/// threads are stalled, when to capture them (again), which captures make
/// rows, and which are stale. Pure, so it is tested on literals.
struct Detector {
    threshold_ns: u64,
    recapture_ns: u64,
    tracked: BTreeMap<(u32, u32), Tracked>,
    fresh: Vec<StallReport>,
    stale: Vec<StaleSpan>,
    /// Processes whose modules and debug information are being read.
    warmed: HashSet<u32>,
    /// Processes to start reading them for: a thread of theirs has been
    /// quiet for half the threshold.
    to_warm: Vec<u32>,
}

impl Detector {
    fn new(threshold_ns: u64, recapture_ns: u64) -> Self {
        Self {
            threshold_ns,
            recapture_ns,
            tracked: BTreeMap::new(),
            fresh: Vec::new(),
            stale: Vec::new(),
            warmed: HashSet::new(),
            to_warm: Vec::new(),
        }
    }

    /// The captures to ask for at `now_ns`: each newly stalled thread, and
    /// each lasting stall whose last capture is answered and older than
    /// the recapture interval. Forgets stalls that ended. The requests
    /// returned count as sent.
    fn check<'a>(
        &mut self,
        threads: impl Iterator<Item = ThreadStack<'a>>,
        now_ns: u64,
    ) -> Vec<Request> {
        let mut stalled = HashSet::new();
        let mut requests = Vec::new();
        for thread in threads {
            let Some(top) = thread.frames.last() else {
                continue;
            };
            let quiet_since = thread.last_event_ns.max(top.start_ns);
            let quiet = now_ns.saturating_sub(quiet_since);
            // Reading a process's debug information costs CPU the target
            // may be short of; it is done once a stall comes near, not at
            // attach, so most sessions never pay for it.
            if quiet >= self.threshold_ns / 2 && self.warmed.insert(thread.pid) {
                self.to_warm.push(thread.pid);
            }
            if quiet < self.threshold_ns {
                continue;
            }
            let key = (thread.pid, thread.tid);
            stalled.insert(key);
            let tracked = match self.tracked.get_mut(&key) {
                Some(t) if t.span_id == top.span_id => {
                    if t.pending || now_ns.saturating_sub(t.requested_ns) < self.recapture_ns {
                        continue;
                    }
                    t
                }
                _ => {
                    self.tracked.insert(
                        key,
                        Tracked {
                            span_id: top.span_id,
                            requested_ns: now_ns,
                            pending: false,
                            report: None,
                            key: None,
                        },
                    );
                    self.tracked.get_mut(&key).expect("just inserted")
                }
            };
            tracked.pending = true;
            tracked.requested_ns = now_ns;
            requests.push(Request {
                pid: thread.pid,
                tid: thread.tid,
                thread_name: thread.thread_name.to_string(),
                span_id: top.span_id,
                function: top.function,
                depth: top.depth,
                since_ns: top.start_ns,
                sp: top.sp,
                before_attach: top.before_attach,
                callers: thread.frames[..thread.frames.len() - 1]
                    .iter()
                    .rev()
                    .map(|f| f.function)
                    .collect(),
            });
        }
        self.tracked.retain(|key, _| stalled.contains(key));
        requests
    }

    /// Takes in one finished capture.
    fn accept(&mut self, outcome: Outcome) {
        match outcome {
            Outcome::Report(report) => {
                let current = self
                    .tracked
                    .get_mut(&(report.pid, report.tid))
                    .filter(|t| t.span_id == report.span_id);
                let Some(t) = current else {
                    // The stall ended while its capture was being finished.
                    // If the walk saw the very call, the capture still says
                    // where it was stuck; otherwise the thread had moved on.
                    if report.on_stack {
                        self.fresh.push(*report);
                    }
                    return;
                };
                t.pending = false;
                let key = report.location_key();
                if t.key.as_ref() != Some(&key) {
                    self.fresh.push((*report).clone());
                    t.key = Some(key);
                }
                t.report = Some(*report);
            }
            Outcome::Stale(stale) => {
                self.tracked.remove(&(stale.pid, stale.tid));
                self.stale.push(stale);
            }
            Outcome::Gone { pid, tid, span_id } => {
                if self
                    .tracked
                    .get(&(pid, tid))
                    .is_some_and(|t| t.span_id == span_id)
                {
                    self.tracked.remove(&(pid, tid));
                }
            }
        }
    }

    fn pending(&self) -> bool {
        self.tracked.values().any(|t| t.pending)
    }
}

/// Watches the open stacks for stalls and captures where stalled threads
/// are; see the module documentation. Captures run on a thread of its own,
/// so nothing here blocks the caller.
///
/// Use, from the thread that drains the ring buffer:
///
/// 1. [`Self::new`] after attaching (a process's modules and debug
///    information are read once one of its threads has been quiet for half
///    the threshold, or at [`Self::warm_up`]); attached to a running process, [`Self::adopt_when_drained`] with
///    [`RunningCalls::find`].
/// 2. Every few hundred milliseconds: [`Self::receive`], drain the ring
///    buffer into the reconstructor, [`Self::tick`]. It returns the new and
///    changed reports (one `STALL` row each: [`StallReport::row`]) and
///    appends to the span events the starts of adopted calls and the ends
///    of stale ones.
/// 3. For a live view: [`Self::stalls`] (the latest capture of each
///    current stall) and [`Self::is_stalled`].
/// 4. At the end: [`Self::settle`], then [`Self::take_reports`].
pub struct Watchdog {
    detector: Detector,
    functions: Arc<[FunctionInfo]>,
    requests: Option<mpsc::Sender<Job>>,
    outcomes: mpsc::Receiver<Outcome>,
    worker: Option<JoinHandle<()>>,
    /// Captures received and not yet taken in (see [`Watchdog::receive`]).
    inbox: Vec<Outcome>,
    pending_adoption: Option<RunningCalls>,
    adopted: Option<usize>,
}

impl std::fmt::Debug for Watchdog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watchdog")
            .field("threshold_ns", &self.detector.threshold_ns)
            .field("stalled", &self.detector.tracked.len())
            .finish_non_exhaustive()
    }
}

impl Watchdog {
    /// A watchdog for spans quiet longer than `threshold`; `functions` is
    /// the probe table (names for the reports). Starts the capture thread.
    pub fn new(threshold: Duration, functions: Arc<[FunctionInfo]>) -> Self {
        let (requests, inbox) = mpsc::channel::<Job>();
        let (outbox, outcomes) = mpsc::channel::<Outcome>();
        let names = Arc::clone(&functions);
        let worker = std::thread::Builder::new()
            .name("ferret-stall".to_owned())
            .spawn(move || capture_loop(&inbox, &outbox, &names))
            .ok();
        let nanos = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        Self {
            detector: Detector::new(
                nanos(threshold),
                nanos(RECAPTURE_EVERY.min(threshold.max(Duration::from_millis(500)))),
            ),
            functions,
            requests: worker.is_some().then_some(requests),
            outcomes,
            worker,
            inbox: Vec::new(),
            pending_adoption: None,
            adopted: None,
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
        while let Ok(outcome) = self.outcomes.try_recv() {
            self.inbox.push(outcome);
        }
    }

    /// How many calls the last tick adopted, once.
    pub fn take_adopted(&mut self) -> Option<usize> {
        self.adopted.take()
    }

    /// The stall threshold.
    pub fn threshold(&self) -> Duration {
        Duration::from_nanos(self.detector.threshold_ns)
    }

    /// Looks at every thread's open stack at `now_ns` (`CLOCK_MONOTONIC`):
    /// asks for a capture of each newly stalled thread and of each lasting
    /// stall due for another look; forgets stalls that ended. Then takes in
    /// the captures [`Self::receive`]d before.
    pub fn check<'a>(&mut self, threads: impl Iterator<Item = ThreadStack<'a>>, now_ns: u64) {
        let requests = self.detector.check(threads, now_ns);
        for pid in std::mem::take(&mut self.detector.to_warm) {
            self.warm_up(pid);
        }
        if let Some(sender) = &self.requests {
            for request in requests {
                let key = (request.pid, request.tid);
                if sender.send(Job::Capture(request)).is_err()
                    && let Some(t) = self.detector.tracked.get_mut(&key)
                {
                    // No capture thread: nothing will answer.
                    t.pending = false;
                }
            }
        }
        // After the stalls are brought up to date: a capture of a span that
        // has ended meanwhile finds no stall to belong to.
        for outcome in std::mem::take(&mut self.inbox) {
            self.detector.accept(outcome);
        }
    }

    /// Adopts the calls handed over by [`Self::adopt_when_drained`], if any;
    /// [`Self::check`] on `reconstructor`'s threads (taking in the captures
    /// [`Self::receive`]d before), then ends the stalled
    /// spans found no longer on their stacks (appending their ends to
    /// `out`), and returns the new and changed reports.
    pub fn tick(
        &mut self,
        reconstructor: &mut Reconstructor,
        now_ns: u64,
        out: &mut Vec<SpanEvent>,
    ) -> Vec<StallReport> {
        if let Some(calls) = self.pending_adoption.take() {
            self.adopted = Some(calls.adopt(reconstructor, out));
        }
        self.check(reconstructor.threads(), now_ns);
        for stale in self.take_stale() {
            reconstructor.retire(stale.pid, stale.tid, stale.span_id, stale.seen_ns, out);
        }
        self.take_reports()
    }

    /// Waits up to `timeout` for the captures asked for so far (at the end
    /// of a recording, so their rows are written).
    pub fn settle(&mut self, timeout: Duration) {
        self.collect();
        let deadline = Instant::now() + timeout;
        while self.detector.pending() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            match self.outcomes.recv_timeout(left) {
                Ok(outcome) => self.detector.accept(outcome),
                Err(_) => break,
            }
        }
        self.collect();
    }

    /// Captures that are new, or whose location changed, since the last call.
    pub fn take_reports(&mut self) -> Vec<StallReport> {
        std::mem::take(&mut self.detector.fresh)
    }

    /// Stalled spans found no longer on their thread's stack since the last call.
    pub fn take_stale(&mut self) -> Vec<StaleSpan> {
        std::mem::take(&mut self.detector.stale)
    }

    /// The current stalls, latest capture of each, ordered by (pid, tid).
    pub fn stalls(&self) -> impl Iterator<Item = &StallReport> {
        self.detector
            .tracked
            .values()
            .filter_map(|t| t.report.as_ref())
    }

    /// Whether span `span_id` is the stalled span of some thread.
    pub fn is_stalled(&self, span_id: u64) -> bool {
        self.detector.tracked.values().any(|t| t.span_id == span_id)
    }

    /// The probe table the reports name functions from.
    pub fn functions(&self) -> &Arc<[FunctionInfo]> {
        &self.functions
    }

    /// Takes in every finished capture now.
    fn collect(&mut self) {
        self.receive();
        for outcome in std::mem::take(&mut self.inbox) {
            self.detector.accept(outcome);
        }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        // Closing the channel ends the capture thread after its current capture.
        self.requests = None;
        if let Some(worker) = self.worker.take() {
            let _ = worker.join();
        }
    }
}

/// The capture thread: one [`Capturer`] per process, kept so modules and
/// debug information are read once.
fn capture_loop(
    inbox: &mpsc::Receiver<Job>,
    outbox: &mpsc::Sender<Outcome>,
    functions: &[FunctionInfo],
) {
    let mut capturers: HashMap<u32, Capturer> = HashMap::new();
    // Processes kept warm: a launched command maps its libraries after the
    // watchdog starts, a server may dlopen later.
    let mut warm: HashSet<u32> = HashSet::new();
    loop {
        let request = match inbox.recv_timeout(Duration::from_millis(100)) {
            Ok(Job::Capture(request)) => request,
            Ok(Job::Warm(pid)) => {
                warm.insert(pid);
                capturers
                    .entry(pid)
                    .or_insert_with(|| Capturer::new(pid))
                    .warm_up();
                continue;
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                // A thread that stopped late must not stay stopped.
                ptrace::release_late_within(Duration::ZERO);
                warm.retain(|pid| std::path::Path::new(&format!("/proc/{pid}")).exists());
                for pid in &warm {
                    if let Some(capturer) = capturers.get_mut(pid) {
                        capturer.warm_up();
                    }
                }
                continue;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        };
        let capturer = capturers
            .entry(request.pid)
            .or_insert_with(|| Capturer::new(request.pid));
        let outcome = capture_stall(capturer, &request, functions);
        if outbox.send(outcome).is_err() {
            break;
        }
    }
}

fn capture_stall(
    capturer: &mut Capturer,
    request: &Request,
    functions: &[FunctionInfo],
) -> Outcome {
    let Some(capture) = capturer.capture(request.tid) else {
        return Outcome::Gone {
            pid: request.pid,
            tid: request.tid,
            span_id: request.span_id,
        };
    };
    let captured_ns = crate::clock::monotonic_ns();
    let mut on_stack = false;
    let (frames, stack_note) = match &capture.stack {
        Ok(unwound) => {
            let per_frame = capturer.symbolize_each(unwound);
            // Did the walk meet the stalled call itself? A frame entered at
            // its stack pointer is not enough (a sibling call reuses the
            // slot); the frame must also be its function.
            let function_name = functions
                .get(request.function as usize)
                .map_or("", |f| f.name.as_str());
            let is_function = |f: &Frame| {
                f.function
                    .as_deref()
                    .is_some_and(|name| same_function(name, function_name))
            };
            on_stack = unwound.frames.iter().zip(&per_frame).any(|(raw, syms)| {
                raw.entry_sp == Some(request.sp) && syms.iter().any(is_function)
            });
            let frames: Vec<Frame> = per_frame.into_iter().flatten().collect();
            // A complete walk, all by CFI, on which neither the span's entry
            // stack pointer nor its function appears shows the call ended
            // unseen (an adopted call whose exit has no probe, a lost exit).
            // Anything less certain keeps the stall.
            let present = unwound
                .frames
                .iter()
                .any(|f| f.entry_sp == Some(request.sp))
                || frames.iter().any(is_function);
            let certain = unwound.end == unwind::StackEnd::Complete
                && unwound.frames.len() > 1
                && unwound.frames.iter().all(|f| !f.scanned);
            if !present && certain {
                return Outcome::Stale(StaleSpan {
                    pid: request.pid,
                    tid: request.tid,
                    span_id: request.span_id,
                    seen_ns: captured_ns,
                });
            }
            let note = if unwound.end == unwind::StackEnd::UretprobeTrampoline
                && !request.callers.is_empty()
            {
                let names: Vec<&str> = request
                    .callers
                    .iter()
                    .filter_map(|&f| functions.get(f as usize).map(|f| f.name.as_str()))
                    .collect();
                Some(format!(
                    "[callers hidden by a uretprobe (--exit-probes ret keeps them); \
                     traced callers: {}]",
                    names.join(" ← ")
                ))
            } else {
                unwound.end_note()
            };
            (frames, note)
        }
        Err(why) => (Vec::new(), Some(format!("[no stack: {why}]"))),
    };
    let pid = request.pid;
    let name_of = |tid: u32| procfs::thread_name(pid, tid).unwrap_or_else(|| "?".to_owned());
    let kind = WaitKind::from_stack(frames.iter().filter_map(|f| f.function.as_deref()));
    // A mutex that records no owner (Rust's std mutex): look for the thread
    // whose stack refers to it.
    let holder = capture.lock.map(|holder| match kind {
        WaitKind::Mutex | WaitKind::Futex => capturer.with_probable_holder(request.tid, holder),
        _ => holder,
    });
    let lock = holder.map(|holder| match (holder, kind) {
        // A live owner recorded in the lock (or found on a stack) makes it
        // a mutex, whatever the stack says (a stripped libc names nothing).
        (LockHolder::Mutex { addr, owner } | LockHolder::Probable { addr, owner }, _) => LockWait {
            addr,
            kind: if kind == WaitKind::Futex {
                WaitKind::Mutex
            } else {
                kind
            },
            owner: Some(owner),
            owner_name: Some(name_of(owner)),
            probable: matches!(holder, LockHolder::Probable { .. }),
        },
        // glibc's join sleeps on the joined thread's tid, which the kernel
        // clears when that thread exits.
        (LockHolder::Unknown { addr, word }, WaitKind::ThreadExit)
            if word != 0 && procfs::thread_name(pid, word).is_some() =>
        {
            LockWait {
                addr,
                kind,
                owner: Some(word),
                owner_name: procfs::thread_name(pid, word),
                probable: false,
            }
        }
        (LockHolder::Unknown { addr, .. }, _) => LockWait {
            addr,
            kind,
            owner: None,
            owner_name: None,
            probable: false,
        },
    });
    let (deadlock, deadlock_probable): (Vec<(u32, String)>, bool) = lock
        .as_ref()
        .and_then(|l| Some((l.owner?, l.probable)))
        .and_then(|(owner, probable)| {
            let (cycle, more) = capturer.deadlock_cycle(request.tid, owner)?;
            Some((cycle, probable || more))
        })
        .map(|(cycle, probable)| {
            (
                cycle.into_iter().map(|tid| (tid, name_of(tid))).collect(),
                probable,
            )
        })
        .unwrap_or_default();
    let deadlock_with = deadlock.get(1).map(|&(tid, _)| tid).or_else(|| {
        // A thread relocking its own mutex is deadlocked with itself.
        (deadlock.len() == 1).then_some(request.tid)
    });
    let state = capture.proc.stat.state;
    let mut wait = wait_summary(
        state,
        capture.call.as_deref(),
        capture.proc.wchan.as_deref(),
        capture.proc.stat.processor,
        lock.as_ref(),
        &deadlock,
        deadlock_probable,
    );
    if request.before_attach {
        wait.push_str(" — in this call since before ferret attached");
    }
    Outcome::Report(Box::new(StallReport {
        pid: request.pid,
        tid: request.tid,
        thread_name: if capture.proc.stat.comm.is_empty() {
            request.thread_name.clone()
        } else {
            capture.proc.stat.comm.clone()
        },
        span_id: request.span_id,
        function: request.function,
        function_name: functions
            .get(request.function as usize)
            .map_or_else(|| format!("#{}", request.function), |f| f.name.clone()),
        depth: request.depth,
        since_ns: request.since_ns,
        before_attach: request.before_attach,
        captured_ns,
        state,
        syscall: capture.call.clone(),
        wchan: capture.proc.wchan.clone(),
        lock,
        deadlock,
        deadlock_with,
        frames,
        stack_note,
        wait,
        on_stack,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lock(owner: Option<u32>, name: Option<&str>) -> LockWait {
        LockWait {
            kind: WaitKind::Mutex,
            probable: false,
            addr: 0x55d0_c0a0_2040,
            owner,
            owner_name: name.map(str::to_owned),
        }
    }

    #[test]
    fn a_mutex_wait_names_the_holder() {
        let text = wait_summary(
            SchedState::Sleeping,
            Some("futex(0x55d0c0a02040, FUTEX_WAIT_PRIVATE, 2, NULL)"),
            Some("futex_wait_queue"),
            Some(1),
            Some(&lock(Some(1235), Some("lock-ba"))),
            &[],
            false,
        );
        assert_eq!(
            text,
            "sleeping in futex(0x55d0c0a02040, FUTEX_WAIT_PRIVATE, 2, NULL) \
             [kernel: futex_wait_queue] — waits for mutex 0x55d0c0a02040 held by tid 1235 (lock-ba)"
        );
    }

    #[test]
    fn a_deadlock_is_named() {
        let text = wait_summary(
            SchedState::Sleeping,
            Some("futex(…)"),
            None,
            None,
            Some(&lock(Some(1235), Some("lock-ba"))),
            &[(1234, "lock-ab".to_owned()), (1235, "lock-ba".to_owned())],
            false,
        );
        assert!(
            text.ends_with(
                "— DEADLOCK: tid 1234 (lock-ab) waits for tid 1235 (lock-ba), which waits for tid 1234"
            ),
            "{text}"
        );
        let own = wait_summary(
            SchedState::Sleeping,
            Some("futex(…)"),
            None,
            None,
            Some(&lock(Some(7), Some("me"))),
            &[(7, "me".to_owned())],
            false,
        );
        assert!(own.contains("which it holds itself"), "{own}");
        assert!(
            own.ends_with("DEADLOCK: relocking a mutex it holds"),
            "{own}"
        );
    }

    #[test]
    fn an_inferred_holder_and_deadlock_are_called_probable() {
        let inferred = LockWait {
            probable: true,
            ..lock(Some(1235), Some("mover"))
        };
        let text = wait_summary(
            SchedState::Sleeping,
            None,
            None,
            None,
            Some(&inferred),
            &[(1234, "main".to_owned()), (1235, "mover".to_owned())],
            true,
        );
        assert!(
            text.contains(
                "waits for mutex 0x55d0c0a02040 probably held by tid 1235 (mover) \
                 (its stack refers to the mutex) — PROBABLE DEADLOCK: tid 1234 (main)"
            ),
            "{text}"
        );
    }

    #[test]
    fn running_and_unknown_holders() {
        assert_eq!(
            wait_summary(SchedState::Running, None, None, Some(3), None, &[], false),
            "running in user space (CPU 3)"
        );
        assert_eq!(
            wait_summary(
                SchedState::Sleeping,
                Some("futex(0x1, FUTEX_WAIT_BITSET_PRIVATE, 0, NULL)"),
                None,
                None,
                Some(&LockWait {
                    kind: WaitKind::Futex,
                    ..lock(None, None)
                }),
                &[],
                false
            ),
            "sleeping in futex(0x1, FUTEX_WAIT_BITSET_PRIVATE, 0, NULL) — waits on futex \
             0x55d0c0a02040 (holder unknown)"
        );
        let condvar = LockWait {
            kind: WaitKind::ConditionVariable,
            ..lock(None, None)
        };
        assert!(
            wait_summary(
                SchedState::Sleeping,
                None,
                None,
                None,
                Some(&condvar),
                &[],
                false
            )
            .ends_with("— waits on condition variable 0x55d0c0a02040"),
            "a condition variable has no holder to be unknown"
        );
        let join = LockWait {
            kind: WaitKind::ThreadExit,
            ..lock(Some(1236), Some("worker"))
        };
        assert!(
            wait_summary(
                SchedState::Sleeping,
                None,
                None,
                None,
                Some(&join),
                &[],
                false
            )
            .ends_with("— waits for tid 1236 (worker) to exit")
        );
        assert_eq!(
            wait_summary(
                SchedState::DiskSleep,
                None,
                Some("folio_wait_bit"),
                None,
                None,
                &[],
                false
            ),
            "in uninterruptible sleep, not in a system call [kernel: folio_wait_bit]"
        );
    }

    const S: u64 = 1_000_000_000;

    fn span(span_id: u64, function: u32, start_ns: u64, sp: u64) -> crate::trace::OpenSpan {
        crate::trace::OpenSpan {
            span_id,
            parent_span_id: None,
            function,
            start_ns,
            depth: 0,
            sp,
            thread_name: ThreadName::from("worker"),
            before_attach: false,
            overhead_ns: 0,
        }
    }

    fn thread<'a>(
        name: &'a ThreadName,
        frames: &'a [crate::trace::OpenSpan],
        last_event_ns: u64,
    ) -> ThreadStack<'a> {
        ThreadStack {
            pid: 1,
            tid: 7,
            thread_name: name,
            frames,
            maybe_incomplete: false,
            last_event_ns,
            goroutine: None,
        }
    }

    fn report(span_id: u64, innermost: &str, on_stack: bool) -> StallReport {
        StallReport {
            pid: 1,
            tid: 7,
            thread_name: "worker".to_owned(),
            span_id,
            function: 0,
            function_name: "work".to_owned(),
            depth: 0,
            since_ns: 0,
            before_attach: false,
            captured_ns: 6 * S,
            state: SchedState::Running,
            syscall: None,
            wchan: None,
            lock: None,
            deadlock: Vec::new(),
            deadlock_with: None,
            frames: vec![Frame {
                function: Some(innermost.to_owned()),
                file: None,
                line: Some(3),
                address: 0x1000,
                module: None,
                inlined: false,
            }],
            stack_note: None,
            wait: "running in user space".to_owned(),
            on_stack,
        }
    }

    #[test]
    fn a_thread_quiet_past_the_threshold_is_stalled_in_its_innermost_span() {
        let name = ThreadName::from("worker");
        let frames = [span(1, 0, 0, 0x1000), span(2, 1, 2 * S, 0xf00)];
        let mut d = Detector::new(5 * S, 2 * S);
        assert!(
            d.check([thread(&name, &frames, 2 * S)].into_iter(), 6 * S)
                .is_empty()
        );
        let asked = d.check([thread(&name, &frames, 2 * S)].into_iter(), 7 * S);
        assert_eq!(asked.len(), 1);
        assert_eq!(
            (asked[0].span_id, asked[0].sp, asked[0].callers.clone()),
            (2, 0xf00, vec![0])
        );
    }

    #[test]
    fn a_parent_between_two_calls_of_its_children_is_not_stalled() {
        // `main` opened long ago, but a child returned just now.
        let name = ThreadName::from("main");
        let frames = [span(1, 0, 0, 0x1000)];
        let mut d = Detector::new(5 * S, 2 * S);
        assert!(
            d.check([thread(&name, &frames, 99 * S)].into_iter(), 100 * S)
                .is_empty()
        );
    }

    #[test]
    fn debug_information_is_read_once_a_stall_comes_near() {
        let name = ThreadName::from("worker");
        let frames = [span(1, 0, 0, 0x1000)];
        let mut d = Detector::new(4 * S, 2 * S);
        d.check([thread(&name, &frames, 0)].into_iter(), S);
        assert!(d.to_warm.is_empty(), "quiet for a quarter of the threshold");
        d.check([thread(&name, &frames, 0)].into_iter(), 2 * S);
        assert_eq!(std::mem::take(&mut d.to_warm), [1], "half the threshold");
        d.check([thread(&name, &frames, 0)].into_iter(), 4 * S);
        assert!(d.to_warm.is_empty(), "once per process");
    }

    #[test]
    fn a_lasting_stall_is_captured_again_once_answered_and_due() {
        let name = ThreadName::from("worker");
        let frames = [span(1, 0, 0, 0x1000)];
        let at =
            |d: &mut Detector, t: u64| d.check([thread(&name, &frames, 0)].into_iter(), t).len();
        let mut d = Detector::new(5 * S, 2 * S);
        assert_eq!(at(&mut d, 5 * S), 1);
        assert_eq!(at(&mut d, 9 * S), 0, "still waiting for the answer");
        d.accept(Outcome::Report(Box::new(report(1, "work", true))));
        assert_eq!(at(&mut d, 9 * S), 1, "answered and 4 s old");
        d.accept(Outcome::Report(Box::new(report(1, "work", true))));
        assert_eq!(at(&mut d, 10 * S), 0, "answered but only 1 s old");
    }

    #[test]
    fn a_capture_makes_a_row_only_when_the_location_changed() {
        let name = ThreadName::from("worker");
        let frames = [span(1, 0, 0, 0x1000)];
        let mut d = Detector::new(5 * S, 2 * S);
        d.check([thread(&name, &frames, 0)].into_iter(), 5 * S);
        d.accept(Outcome::Report(Box::new(report(1, "work", true))));
        assert_eq!(std::mem::take(&mut d.fresh).len(), 1);
        let mut same = report(1, "work", true);
        same.frames[0].line = Some(4);
        d.accept(Outcome::Report(Box::new(same)));
        assert!(
            d.fresh.is_empty(),
            "another line of the same loop is the same place"
        );
        assert_eq!(
            d.tracked[&(1, 7)].report.as_ref().unwrap().frames[0].line,
            Some(4)
        );
        d.accept(Outcome::Report(Box::new(report(1, "helper", true))));
        assert_eq!(d.fresh.len(), 1, "moved into another function");
    }

    #[test]
    fn captures_of_stalls_that_ended_meanwhile() {
        let name = ThreadName::from("worker");
        let frames = [span(1, 0, 0, 0x1000)];
        let mut d = Detector::new(5 * S, 2 * S);
        d.check([thread(&name, &frames, 0)].into_iter(), 5 * S);
        // The thread moved on: the stall is forgotten.
        d.check([thread(&name, &frames, 6 * S)].into_iter(), 6 * S);
        assert!(d.tracked.is_empty());
        d.accept(Outcome::Report(Box::new(report(1, "work", false))));
        assert!(
            d.fresh.is_empty(),
            "walked after the thread moved on: dropped"
        );
        d.accept(Outcome::Report(Box::new(report(1, "work", true))));
        assert_eq!(d.fresh.len(), 1, "walked while stuck: kept");
    }

    #[test]
    fn a_stale_span_is_handed_back_and_forgotten() {
        let name = ThreadName::from("worker");
        let frames = [span(1, 0, 0, 0x1000)];
        let mut d = Detector::new(5 * S, 2 * S);
        d.check([thread(&name, &frames, 0)].into_iter(), 5 * S);
        let stale = StaleSpan {
            pid: 1,
            tid: 7,
            span_id: 1,
            seen_ns: 5 * S,
        };
        d.accept(Outcome::Stale(stale));
        assert_eq!(d.stale, [stale]);
        assert!(d.tracked.is_empty() && !d.pending());
    }

    #[test]
    fn the_stack_tells_what_a_futex_wait_is_for() {
        let kind = |names: &[&str]| WaitKind::from_stack(names.iter().copied());
        assert_eq!(
            kind(&[
                "futex_wait",
                "__GI___lll_lock_wait",
                "___pthread_mutex_lock",
                "work"
            ]),
            WaitKind::Mutex
        );
        assert_eq!(
            kind(&[
                "__futex_abstimed_wait_common",
                "___pthread_cond_wait",
                "consume"
            ]),
            WaitKind::ConditionVariable
        );
        assert_eq!(
            kind(&[
                "__futex_abstimed_wait_common",
                "__pthread_clockjoin_ex",
                "main"
            ]),
            WaitKind::ThreadExit
        );
        assert_eq!(
            kind(&["do_futex_wait", "__new_sem_wait_slow64", "take"]),
            WaitKind::Semaphore
        );
        assert_eq!(kind(&["syscall", "my_own_futex_lock"]), WaitKind::Futex);
        // Rust: std's futex mutex and condvar, parking_lot's raw mutex.
        assert_eq!(
            kind(&[
                "syscall",
                "std::sys::pal::unix::futex::futex_wait",
                "std::sys::sync::mutex::futex::Mutex::lock_contended",
                "app::transfer"
            ]),
            WaitKind::Mutex
        );
        assert_eq!(
            kind(&[
                "std::sys::pal::unix::futex::futex_wait",
                "std::sync::poison::condvar::Condvar::wait",
                "app::consume"
            ]),
            WaitKind::ConditionVariable
        );
        assert_eq!(
            kind(&["syscall", "parking_lot::raw_mutex::RawMutex::lock_slow"]),
            WaitKind::Mutex
        );
    }

    #[test]
    fn function_names_match_across_demanglers() {
        assert!(same_function("lock_b", "lock_b"));
        assert!(same_function("ns::f(int, char)", "ns::f(int, char)"));
        assert!(same_function("ns::f(int)", "ns::f"));
        assert!(same_function("app::work::h0123456789abcdef", "app::work"));
        assert!(!same_function("app::work", "app::worker"));
        assert!(!same_function("", ""));
    }

    #[test]
    fn frames_render_what_is_known() {
        let mut frame = Frame {
            function: Some("take_b".to_owned()),
            file: Some("/src/deadlock.c".to_owned()),
            line: Some(42),
            address: 0x1234,
            module: Some("/bin/app".to_owned()),
            inlined: false,
        };
        assert_eq!(frame.display(), "take_b (/src/deadlock.c:42)");
        frame.inlined = true;
        frame.line = None;
        assert_eq!(frame.display(), "take_b (/src/deadlock.c) [inlined]");
        frame.function = None;
        frame.file = None;
        frame.inlined = false;
        assert_eq!(frame.display(), "0x1234 in /bin/app");
        frame.module = None;
        assert_eq!(frame.display(), "0x1234");
    }
}
