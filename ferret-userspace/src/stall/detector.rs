//! The watchdog's policy, apart from its capture thread and its clock:
//! which threads are stalled, when to capture them (again), which captures
//! make rows, and which spans are stale. Pure, so it is tested on literals;
//! [`super::watchdog`] drives it.

use std::collections::{BTreeMap, HashSet};

use super::report::{StaleSpan, StallReport};
use crate::trace::{StackKey, ThreadStack};

/// Whose stall: a process and one of its threads or goroutines.
type Key = (u32, StackKey);

fn key(pid: u32, tid: u32, goroutine: Option<u64>) -> Key {
    (
        pid,
        goroutine.map_or(StackKey::Thread(tid), StackKey::Goroutine),
    )
}

/// What the watchdog asks its capture thread for.
pub(super) struct Request {
    pub(super) pid: u32,
    pub(super) tid: u32,
    /// A goroutine's stall (Go programs): the runtime is asked about the
    /// goroutine, not the thread it last ran on.
    pub(super) goroutine: Option<u64>,
    pub(super) thread_name: String,
    pub(super) span_id: u64,
    pub(super) function: u32,
    pub(super) depth: u32,
    pub(super) since_ns: u64,
    pub(super) sp: u64,
    pub(super) before_attach: bool,
    /// The functions of the open spans outside the stalled one, innermost
    /// first: the traced callers, named where the stack walk cannot go on.
    pub(super) callers: Vec<u32>,
}

/// What the capture thread answers.
pub(super) enum Outcome {
    Report(Box<StallReport>),
    Stale(StaleSpan),
    /// The thread (goroutine) is gone.
    Gone {
        pid: u32,
        tid: u32,
        goroutine: Option<u64>,
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
pub(super) struct Detector {
    threshold_ns: u64,
    recapture_ns: u64,
    tracked: BTreeMap<Key, Tracked>,
    fresh: Vec<StallReport>,
    stale: Vec<StaleSpan>,
    /// Processes whose modules and debug information are being read.
    warmed: HashSet<u32>,
    /// Processes to start reading them for: a thread of theirs has been
    /// quiet for half the threshold.
    to_warm: Vec<u32>,
}

impl Detector {
    pub(super) fn new(threshold_ns: u64, recapture_ns: u64) -> Self {
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
    pub(super) fn check<'a>(
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
            let key = key(thread.pid, thread.tid, thread.goroutine);
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
                goroutine: thread.goroutine,
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
    pub(super) fn accept(&mut self, outcome: Outcome) {
        match outcome {
            Outcome::Report(report) => {
                let current = self
                    .tracked
                    .get_mut(&key(report.pid, report.tid, report.goroutine))
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
                self.tracked
                    .remove(&key(stale.pid, stale.tid, stale.goroutine));
                self.stale.push(stale);
            }
            Outcome::Gone {
                pid,
                tid,
                goroutine,
                span_id,
            } => {
                let key = key(pid, tid, goroutine);
                if self.tracked.get(&key).is_some_and(|t| t.span_id == span_id) {
                    self.tracked.remove(&key);
                }
            }
        }
    }

    /// Some capture asked for is not answered yet.
    pub(super) fn pending(&self) -> bool {
        self.tracked.values().any(|t| t.pending)
    }

    /// The stall threshold, ns.
    pub(super) fn threshold_ns(&self) -> u64 {
        self.threshold_ns
    }

    /// Threads stalled now.
    pub(super) fn stalled(&self) -> usize {
        self.tracked.len()
    }

    /// A capture asked for will not be answered (no capture thread).
    pub(super) fn unanswered(&mut self, pid: u32, tid: u32, goroutine: Option<u64>) {
        if let Some(t) = self.tracked.get_mut(&key(pid, tid, goroutine)) {
            t.pending = false;
        }
    }

    /// Processes whose modules and debug information to read now.
    pub(super) fn take_to_warm(&mut self) -> Vec<u32> {
        std::mem::take(&mut self.to_warm)
    }

    /// Captures that are new, or whose location changed, since the last call.
    pub(super) fn take_fresh(&mut self) -> Vec<StallReport> {
        std::mem::take(&mut self.fresh)
    }

    /// Stalled spans found no longer on their thread's stack since the last call.
    pub(super) fn take_stale(&mut self) -> Vec<StaleSpan> {
        std::mem::take(&mut self.stale)
    }

    /// The current stalls, latest capture of each, ordered by (pid, tid).
    pub(super) fn stalls(&self) -> impl Iterator<Item = &StallReport> {
        self.tracked.values().filter_map(|t| t.report.as_ref())
    }

    /// Whether span `span_id` is the stalled span of some thread.
    pub(super) fn is_stalled(&self, span_id: u64) -> bool {
        self.tracked.values().any(|t| t.span_id == span_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        stall::{Frame, SchedState},
        trace::ThreadName,
    };

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
            sched: crate::trace::SchedCounters::NONE,
            blocked: Vec::new(),
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
            goroutine: None,
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
            d.tracked[&(1, StackKey::Thread(7))]
                .report
                .as_ref()
                .unwrap()
                .frames[0]
                .line,
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
            goroutine: None,
        };
        d.accept(Outcome::Stale(stale));
        assert_eq!(d.stale, [stale]);
        assert!(d.tracked.is_empty() && !d.pending());
    }
}
