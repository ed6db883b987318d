//! The watchdog: watches the open stacks for stalls (through its
//! [`Detector`]) and has a thread of its own capture where stalled threads
//! are ([`super::diagnose`]), so nothing blocks the thread that drains the
//! ring buffer. See [`Watchdog`] for how a session drives it.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, mpsc},
    thread::JoinHandle,
    time::{Duration, Instant},
};

use super::{
    capture::Capturer,
    detector::{Detector, Outcome, Request},
    diagnose::capture_stall,
    existing::RunningCalls,
    goroutine::{GoRuntime, capture_goroutine},
    ptrace,
    report::{StaleSpan, StallReport},
};
use crate::{
    trace::FunctionInfo,
    trace::{Reconstructor, SpanEvent, StackKey, ThreadStack},
};

/// How often, at most, a lasting stall is captured again to see whether it
/// moved.
pub const RECAPTURE_EVERY: Duration = Duration::from_secs(2);

/// A job for the capture thread.
enum Job {
    /// Read a process's modules and debug information ahead of its first
    /// stall, so that capture is quick.
    Warm(u32),
    /// Capture a stalled thread.
    Capture(Request),
    /// The probe table grew: name functions from this one.
    Functions(Arc<[FunctionInfo]>),
}

/// Watches the open stacks for stalls and captures where stalled threads
/// are; see the [`stall`](super) module. Captures run on a thread of its own,
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
            .field("threshold_ns", &self.detector.threshold_ns())
            .field("stalled", &self.detector.stalled())
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
            .spawn(move || capture_loop(&inbox, &outbox, names))
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
        Duration::from_nanos(self.detector.threshold_ns())
    }

    /// Looks at every thread's open stack at `now_ns` (`CLOCK_MONOTONIC`):
    /// asks for a capture of each newly stalled thread and of each lasting
    /// stall due for another look; forgets stalls that ended. Then takes in
    /// the captures [`Self::receive`]d before.
    pub fn check<'a>(&mut self, threads: impl Iterator<Item = ThreadStack<'a>>, now_ns: u64) {
        let requests = self.detector.check(threads, now_ns);
        for pid in self.detector.take_to_warm() {
            self.warm_up(pid);
        }
        if let Some(sender) = &self.requests {
            for request in requests {
                let (pid, tid, goroutine) = (request.pid, request.tid, request.goroutine);
                if sender.send(Job::Capture(request)).is_err() {
                    // No capture thread: nothing will answer.
                    self.detector.unanswered(pid, tid, goroutine);
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
        // Goroutines too: one stuck inside a traced call is a stall.
        self.check(reconstructor.stacks(), now_ns);
        for stale in self.take_stale() {
            let key = stale
                .goroutine
                .map_or(StackKey::Thread(stale.tid), StackKey::Goroutine);
            reconstructor.retire(stale.pid, key, stale.span_id, stale.seen_ns, out);
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
        self.detector.take_fresh()
    }

    /// Stalled spans found no longer on their thread's stack since the last call.
    pub fn take_stale(&mut self) -> Vec<StaleSpan> {
        self.detector.take_stale()
    }

    /// The current stalls, latest capture of each, ordered by (pid, tid).
    pub fn stalls(&self) -> impl Iterator<Item = &StallReport> {
        self.detector.stalls()
    }

    /// Whether span `span_id` is the stalled span of some thread.
    pub fn is_stalled(&self, span_id: u64) -> bool {
        self.detector.is_stalled(span_id)
    }

    /// The probe table the reports name functions from.
    pub fn functions(&self) -> &Arc<[FunctionInfo]> {
        &self.functions
    }

    /// The probe table grew (functions traced while the session runs).
    pub fn set_functions(&mut self, functions: Arc<[FunctionInfo]>) {
        if let Some(sender) = &self.requests {
            let _ = sender.send(Job::Functions(functions.clone()));
        }
        self.functions = functions;
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
    mut functions: Arc<[FunctionInfo]>,
) {
    let mut capturers: HashMap<u32, Capturer> = HashMap::new();
    // A Go program's runtime, read once per process (None: not Go, or its
    // goroutines cannot be read).
    let mut runtimes: HashMap<u32, Option<GoRuntime>> = HashMap::new();
    // Processes kept warm: a launched command maps its libraries after the
    // watchdog starts, a server may dlopen later.
    let mut warm: HashSet<u32> = HashSet::new();
    loop {
        let request = match inbox.recv_timeout(Duration::from_millis(100)) {
            Ok(Job::Capture(request)) => request,
            Ok(Job::Functions(table)) => {
                functions = table;
                continue;
            }
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
        let outcome = if request.goroutine.is_some() {
            // A goroutine is not where its last thread is: the runtime says.
            let runtime = runtimes
                .entry(request.pid)
                .or_insert_with(|| GoRuntime::open(request.pid));
            capture_goroutine(runtime.as_ref(), capturer, &request, &functions)
        } else {
            capture_stall(capturer, &request, &functions)
        };
        if outbox.send(outcome).is_err() {
            break;
        }
    }
}
