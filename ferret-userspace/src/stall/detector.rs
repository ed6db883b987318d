//! The watchdog's policy, apart from its capture thread and its clock:
//! which threads are stalled, when to capture them (again), which captures
//! make rows, how the stalls group and what about them is news, and which
//! spans are stale. Pure, so it is tested on literals; [`super::watchdog`]
//! drives it.
//!
//! A stall is captured in full once; after that it is only *looked at*
//! every [`super::RECAPTURE_EVERY`] ([`Look::Again`]): the capture thread
//! reads its `/proc/…/syscall` line alone and captures again only if it
//! changed (a thread running in user space publishes none, so it is
//! captured each time). A lasting stall thus costs one small read per look,
//! and a new row only when its location changed.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::{
    group::{Grouper, StallGroup, StallNews},
    report::{StaleSpan, StallReport},
};
use crate::trace::{StackKey, ThreadStack};

/// Whose stall: a process and one of its threads or goroutines.
pub(super) type Key = (u32, StackKey);

pub(super) fn key(pid: u32, tid: u32, goroutine: Option<u64>) -> Key {
    (
        pid,
        goroutine.map_or(StackKey::Thread(tid), StackKey::Goroutine),
    )
}

/// How a capture is asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Look {
    /// The stall's first capture.
    First,
    /// A lasting stall looked at again: a thread blocked exactly as at its
    /// last capture (the same system call, arguments, stack and instruction
    /// pointers) has not moved, and is not captured again.
    Again,
    /// A lasting stall captured again whatever it looks like: a deadlock
    /// was found through it since its last capture.
    Full,
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
    pub(super) look: Look,
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
    /// A [`Look::Again`] found the thread where its last capture left it.
    Unchanged {
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
    /// Its first capture was answered (or will never be).
    answered: bool,
    /// The next look is a full capture.
    force: bool,
    report: Option<StallReport>,
    key: Option<String>,
}

/// The watchdog's policy, apart from its capture thread and its clock: which
/// threads are stalled, when to capture them (again), which captures make
/// rows, how they group, and which are stale. Pure, so it is tested on
/// literals.
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
    grouper: Grouper,
    /// The current stalls' groups, as of the last [`Self::regroup`].
    groups: Vec<StallGroup>,
    /// The stalls changed since the last regroup.
    dirty: bool,
    /// Counts the regroups: a view rebuilt from [`Self::stalls`] need not
    /// be rebuilt while it stays the same.
    generation: u64,
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
            grouper: Grouper::default(),
            groups: Vec::new(),
            dirty: false,
            generation: 0,
        }
    }

    /// The captures to ask for at `now_ns`: each newly stalled thread's
    /// first (those in a function fewer threads are stalled in first), then
    /// lasting stalls whose last capture is answered and older than the
    /// recapture interval (those a deadlock was found through first). Forgets stalls that ended. The requests returned count as
    /// sent.
    pub(super) fn check<'a>(
        &mut self,
        threads: impl Iterator<Item = ThreadStack<'a>>,
        now_ns: u64,
    ) -> Vec<Request> {
        let mut stalled = HashSet::new();
        let (mut first, mut full, mut again) = (Vec::new(), Vec::new(), Vec::new());
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
            let (tracked, look) = match self.tracked.get_mut(&key) {
                Some(t) if t.span_id == top.span_id => {
                    let due = t.force || now_ns.saturating_sub(t.requested_ns) >= self.recapture_ns;
                    if t.pending || !due {
                        continue;
                    }
                    let look = if t.force { Look::Full } else { Look::Again };
                    (t, look)
                }
                _ => {
                    self.dirty |= self.tracked.contains_key(&key);
                    self.tracked.insert(
                        key,
                        Tracked {
                            span_id: top.span_id,
                            requested_ns: now_ns,
                            pending: false,
                            answered: false,
                            force: false,
                            report: None,
                            key: None,
                        },
                    );
                    (
                        self.tracked.get_mut(&key).expect("just inserted"),
                        Look::First,
                    )
                }
            };
            tracked.pending = true;
            tracked.force = false;
            tracked.requested_ns = now_ns;
            let request = Request {
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
                look,
            };
            match look {
                Look::First => first.push(request),
                Look::Full => full.push(request),
                Look::Again => again.push(request),
            }
        }
        let before = self.tracked.len();
        self.tracked.retain(|key, _| stalled.contains(key));
        self.dirty |= self.tracked.len() != before;
        // Threads stalled in a function few others are stalled in first: a
        // deadlocked pair is captured (and told) before the thousand
        // threads of a pool at rest in one function beside it.
        let mut alike: HashMap<(u32, u32), usize> = HashMap::new();
        for request in &first {
            *alike.entry((request.pid, request.function)).or_default() += 1;
        }
        first.sort_by_key(|r| alike[&(r.pid, r.function)]);
        first.extend(full);
        first.extend(again);
        first
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
                t.answered = true;
                let location = report.location_key();
                if t.key.as_ref() != Some(&location) {
                    self.fresh.push((*report).clone());
                    t.key = Some(location);
                }
                // Found in a deadlock: the other threads of the cycle,
                // captured before it closed, are captured again to say so.
                let (pid, cycle) = (report.pid, report.deadlock.clone());
                t.report = Some(*report);
                for (tid, _) in cycle.iter().skip(1) {
                    if let Some(other) = self.tracked.get_mut(&key(pid, *tid, None))
                        && other.report.as_ref().is_some_and(|r| !r.deadlocked())
                    {
                        other.force = true;
                    }
                }
                self.dirty = true;
            }
            Outcome::Unchanged {
                pid,
                tid,
                goroutine,
                span_id,
            } => {
                if let Some(t) = self
                    .tracked
                    .get_mut(&key(pid, tid, goroutine))
                    .filter(|t| t.span_id == span_id)
                {
                    t.pending = false;
                    t.answered = true;
                }
            }
            Outcome::Stale(stale) => {
                self.dirty |= self
                    .tracked
                    .remove(&key(stale.pid, stale.tid, stale.goroutine))
                    .is_some();
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
                    self.dirty = true;
                }
            }
        }
    }

    /// Groups the current stalls again if they changed, and writes each
    /// one's group into its report.
    pub(super) fn regroup(&mut self) {
        if !self.dirty {
            return;
        }
        self.dirty = false;
        self.generation += 1;
        let reports: Vec<&StallReport> = self
            .tracked
            .values()
            .filter_map(|t| t.report.as_ref())
            .collect();
        let groups = self.grouper.group(&reports);
        let mut of: HashMap<Key, u64> = HashMap::new();
        for group in &groups {
            for &i in &group.members {
                of.insert(reports[i].key(), group.id);
            }
        }
        self.groups = groups;
        for (key, t) in &mut self.tracked {
            if let (Some(report), Some(&id)) = (&mut t.report, of.get(key)) {
                report.group = id;
            }
        }
    }

    /// The rows (captures that are new, or whose location changed) and the
    /// news about the groups since the last call, at `now_ns`; `flush` (at
    /// the end) tells every group not told yet.
    pub(super) fn take_news(&mut self, now_ns: u64, flush: bool) -> StallNews {
        self.regroup();
        let settled = self.tracked.values().all(|t| t.answered);
        let reports: Vec<&StallReport> = self
            .tracked
            .values()
            .filter_map(|t| t.report.as_ref())
            .collect();
        let groups = self
            .grouper
            .news(&self.groups, &reports, now_ns, settled, flush);
        let mut rows = std::mem::take(&mut self.fresh);
        for row in &mut rows {
            row.group = match self.tracked.get(&row.key()) {
                Some(t) if t.span_id == row.span_id => t.report.as_ref().map_or(0, |r| r.group),
                // The stall ended before it was grouped: its own place.
                _ => self.grouper.group(&[&*row])[0].id,
            };
        }
        StallNews { rows, groups }
    }

    /// Some capture asked for is not answered yet.
    #[cfg(test)]
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

    /// A capture asked for will not be answered (no capture thread, or the
    /// session is ending).
    pub(super) fn unanswered(&mut self, pid: u32, tid: u32, goroutine: Option<u64>) {
        if let Some(t) = self.tracked.get_mut(&key(pid, tid, goroutine)) {
            t.pending = false;
            t.answered = true;
        }
    }

    /// No capture asked for so far will be answered.
    pub(super) fn abandon_pending(&mut self) {
        for t in self.tracked.values_mut() {
            t.pending = false;
            t.answered = true;
        }
    }

    /// Processes whose modules and debug information to read now.
    pub(super) fn take_to_warm(&mut self) -> Vec<u32> {
        std::mem::take(&mut self.to_warm)
    }

    /// Stalled spans found no longer on their thread's stack since the last call.
    pub(super) fn take_stale(&mut self) -> Vec<StaleSpan> {
        std::mem::take(&mut self.stale)
    }

    /// The current stalls, latest capture of each, ordered by (pid, tid).
    pub(super) fn stalls(&self) -> impl Iterator<Item = &StallReport> {
        self.tracked.values().filter_map(|t| t.report.as_ref())
    }

    /// The current stalls' groups, in the order to show them, as of the
    /// last [`Self::regroup`]; members index [`Self::stalls`].
    pub(super) fn groups(&self) -> &[StallGroup] {
        &self.groups
    }

    /// Changes each time the stalls or their groups do.
    pub(super) fn generation(&self) -> u64 {
        self.generation
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
            frames: std::sync::Arc::from([Frame {
                function: Some(innermost.to_owned()),
                file: None,
                line: Some(3),
                address: 0x1000,
                module: None,
                inlined: false,
            }]),
            stack_note: None,
            wait: "running in user space".to_owned(),
            on_stack,
            group: 0,
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
        let look = |d: &mut Detector, t: u64| {
            d.check([thread(&name, &frames, 0)].into_iter(), t)
                .iter()
                .map(|r| r.look)
                .collect::<Vec<_>>()
        };
        assert_eq!(look(&mut d, 5 * S), [Look::First]);
        assert_eq!(at(&mut d, 9 * S), 0, "still waiting for the answer");
        d.accept(Outcome::Report(Box::new(report(1, "work", true))));
        assert_eq!(look(&mut d, 9 * S), [Look::Again], "answered and 4 s old");
        d.accept(Outcome::Unchanged {
            pid: 1,
            tid: 7,
            goroutine: None,
            span_id: 1,
        });
        assert_eq!(at(&mut d, 10 * S), 0, "answered but only 1 s old");
        assert_eq!(at(&mut d, 11 * S), 1, "due again");
    }

    #[test]
    fn a_capture_makes_a_row_only_when_the_location_changed() {
        let name = ThreadName::from("worker");
        let frames = [span(1, 0, 0, 0x1000)];
        let mut d = Detector::new(5 * S, 2 * S);
        d.check([thread(&name, &frames, 0)].into_iter(), 5 * S);
        d.accept(Outcome::Report(Box::new(report(1, "work", true))));
        assert_eq!(d.take_news(5 * S, false).rows.len(), 1);
        let mut same = report(1, "work", true);
        std::sync::Arc::make_mut(&mut same.frames)[0].line = Some(4);
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

    fn thread_of<'a>(
        tid: u32,
        name: &'a ThreadName,
        frames: &'a [crate::trace::OpenSpan],
    ) -> ThreadStack<'a> {
        ThreadStack {
            tid,
            ..thread(name, frames, 0)
        }
    }

    fn report_of(tid: u32, span_id: u64) -> StallReport {
        StallReport {
            tid,
            ..report(span_id, "nanosleep", true)
        }
    }

    #[test]
    fn first_captures_come_before_looks_at_lasting_stalls() {
        let name = ThreadName::from("worker");
        let old = [span(1, 0, 0, 0x1000)];
        let new = [span(2, 0, 4 * S, 0x1000)];
        let mut d = Detector::new(S, 2 * S);
        d.check([thread_of(7, &name, &old)].into_iter(), S);
        d.accept(Outcome::Report(Box::new(report_of(7, 1))));
        let asked = d.check(
            [thread_of(7, &name, &old), thread_of(8, &name, &new)].into_iter(),
            5 * S,
        );
        let order: Vec<(u32, Look)> = asked.iter().map(|r| (r.tid, r.look)).collect();
        assert_eq!(order, [(8, Look::First), (7, Look::Again)]);
    }

    #[test]
    fn threads_stalled_in_a_function_few_share_are_captured_first() {
        let name = ThreadName::from("pool");
        let pool: Vec<[crate::trace::OpenSpan; 1]> =
            (0..5).map(|i| [span(i + 1, 0, 0, 0x1000)]).collect();
        let lock = [span(9, 3, 0, 0x2000)];
        let threads = pool
            .iter()
            .enumerate()
            .map(|(i, frames)| thread_of(10 + i as u32, &name, frames))
            .chain(std::iter::once(thread_of(20, &name, &lock)));
        let mut d = Detector::new(S, 2 * S);
        let order: Vec<u32> = d.check(threads, S).iter().map(|r| r.tid).collect();
        assert_eq!(
            order,
            [20, 10, 11, 12, 13, 14],
            "the one alone first, then in order"
        );
    }

    #[test]
    fn a_deadlock_found_later_has_its_other_thread_captured_again_in_full() {
        let name = ThreadName::from("lock");
        let frames = [span(1, 0, 0, 0x1000)];
        let other = [span(2, 0, 0, 0x1000)];
        let both = |d: &mut Detector, t: u64| {
            d.check(
                [thread_of(7, &name, &frames), thread_of(8, &name, &other)].into_iter(),
                t,
            )
            .iter()
            .map(|r| (r.tid, r.look))
            .collect::<Vec<_>>()
        };
        let mut d = Detector::new(S, 2 * S);
        both(&mut d, S);
        // 7 was captured before 8 blocked: no deadlock yet.
        d.accept(Outcome::Report(Box::new(report_of(7, 1))));
        let mut found = report_of(8, 2);
        found.deadlock = vec![(8, "b".to_owned()), (7, "a".to_owned())];
        d.accept(Outcome::Report(Box::new(found)));
        assert_eq!(
            both(&mut d, S + S / 4),
            [(7, Look::Full)],
            "at once, in full"
        );
    }

    #[test]
    fn rows_carry_their_group_and_a_group_is_told_once_its_captures_are_in() {
        let name = ThreadName::from("pool");
        let frames: Vec<[crate::trace::OpenSpan; 1]> =
            (0..3).map(|i| [span(i + 1, 0, 0, 0x1000)]).collect();
        let mut d = Detector::new(S, 2 * S);
        let asked = d.check(
            (0..3).map(|i| thread_of(10 + i as u32, &name, &frames[i])),
            S,
        );
        assert_eq!(asked.len(), 3);
        d.accept(Outcome::Report(Box::new(report_of(10, 1))));
        d.accept(Outcome::Report(Box::new(report_of(11, 2))));
        let news = d.take_news(S, false);
        assert_eq!(news.rows.len(), 2);
        assert!(news.rows.iter().all(|r| r.group == 1), "{:?}", news.rows);
        assert!(news.groups.is_empty(), "one capture is still to come");
        d.accept(Outcome::Report(Box::new(report_of(12, 3))));
        let news = d.take_news(S + S / 4, false);
        assert_eq!(news.rows[0].group, 1);
        assert_eq!(
            news.groups.iter().map(|g| g.kind).collect::<Vec<_>>(),
            [crate::stall::group::NewsKind::Appeared(3)]
        );
        assert_eq!(d.groups().len(), 1);
        assert_eq!(d.groups()[0].members, [0, 1, 2]);
        assert!(d.stalls().all(|r| r.group == 1));
    }
}
