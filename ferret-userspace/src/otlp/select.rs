//! Which spans are sent: the span lifecycle in, finished spans chosen for
//! export out. Runs on the caller's thread, so it is small and allocation
//! free per span: one map entry per open span.
//!
//! A span is chosen when it ends, if it is at least `--otlp-min-duration`
//! long and the per-second cap has room, or if it is *required*: an
//! ancestor of a span already chosen (so a slow call arrives with its whole
//! path; an ancestor always ends after its descendants), or a span a stall
//! report was attached to. Required spans are sent above the cap, so the
//! cap is exceeded by at most the ancestors of the spans it let through.
//! The open-span map is what remembers ancestors until they end; it also
//! gives each span its trace: the root call (depth 0) it runs under on its
//! thread.

use crate::stall::StallReport;
use crate::trace::{SpanEnd, SpanEvent, SpanStatus, ThreadName};
use rustc_hash::FxHashMap as FxMap;

/// Stall notes kept per span at most; more are counted, not kept.
pub const MAX_NOTES_PER_SPAN: usize = 16;

/// What decides whether an ended span is sent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Selection {
    /// Spans shorter than this are left out unless required (0: none are).
    pub min_duration_ns: u64,
    /// At most this many spans chosen per second of span end time, before
    /// required ones (0: no cap).
    pub max_spans_per_s: u64,
}

/// A stall report, as a span event: when, and where the thread was stuck.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StallNote {
    /// When it was captured, `CLOCK_MONOTONIC` ns.
    pub ts_ns: u64,
    /// The one-line wait summary (state, system call, lock and holder).
    pub wait: String,
    /// The stack, one frame per line, innermost first.
    pub stack: String,
    /// The thread is part of a deadlock.
    pub deadlock: bool,
}

impl StallNote {
    /// The note for `report`.
    pub fn from_report(report: &StallReport) -> Self {
        Self {
            ts_ns: report.captured_ns,
            wait: report.wait.clone(),
            stack: report.stack_text(),
            deadlock: !report.deadlock.is_empty(),
        }
    }
}

/// A finished span chosen for export: plain values; names are looked up
/// on the exporter thread.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finished {
    /// ferret's span id (unique in the session).
    pub span_id: u64,
    /// The enclosing span on the thread.
    pub parent_span_id: Option<u64>,
    /// The root call this span runs under (itself for a root): its trace.
    pub root_span_id: u64,
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
    /// How it ended.
    pub status: SpanStatus,
    /// ferret's probe time inside it (see [`crate::trace::SpanEnd`]).
    pub overhead_ns: u64,
    /// Stall reports captured while it ran.
    pub notes: Vec<StallNote>,
    /// Notes beyond [`MAX_NOTES_PER_SPAN`].
    pub dropped_notes: u32,
}

/// What the selection did, counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SelectCounts {
    /// Spans that ended.
    pub ended: u64,
    /// Spans chosen for export.
    pub chosen: u64,
    /// Of those, chosen only because they were required (ancestors, or
    /// stalled) although short or over the cap.
    pub required: u64,
    /// Left out: shorter than the minimum duration.
    pub below_min_duration: u64,
    /// Left out: the per-second cap was reached.
    pub over_cap: u64,
    /// Stall reports attached to an open span.
    pub stall_notes: u64,
    /// Stall reports for a span not open here (nothing to attach them to).
    pub stalls_unattached: u64,
}

struct Open {
    root: u64,
    required: bool,
    notes: Vec<StallNote>,
    dropped_notes: u32,
}

/// The open spans and the cap's window; see the module documentation.
pub struct Tracker {
    selection: Selection,
    open: FxMap<u64, Open>,
    /// The cap's current second (span end time / 1 s) and spans chosen in it.
    window: u64,
    in_window: u64,
    counts: SelectCounts,
}

impl Tracker {
    /// A tracker choosing by `selection`.
    pub fn new(selection: Selection) -> Self {
        Self {
            selection,
            open: FxMap::default(),
            window: 0,
            in_window: 0,
            counts: SelectCounts::default(),
        }
    }

    /// What was done so far.
    pub fn counts(&self) -> SelectCounts {
        self.counts
    }

    /// Spans open now.
    pub fn open_spans(&self) -> usize {
        self.open.len()
    }

    /// Follows `events`; appends the spans chosen to `out`.
    pub fn push(&mut self, events: &[SpanEvent], out: &mut Vec<Finished>) {
        for event in events {
            match event {
                SpanEvent::Start(start) => {
                    let root = self.root_of(start.span_id, start.parent_span_id);
                    self.open.insert(
                        start.span_id,
                        Open {
                            root,
                            required: false,
                            notes: Vec::new(),
                            dropped_notes: 0,
                        },
                    );
                }
                SpanEvent::End(end) => self.end(end, out),
            }
        }
    }

    /// Attaches `report` to its span, if that span is open; the span is
    /// then sent whatever its duration.
    pub fn stall(&mut self, report: &StallReport) {
        let Some(open) = self.open.get_mut(&report.span_id) else {
            self.counts.stalls_unattached += 1;
            return;
        };
        open.required = true;
        self.counts.stall_notes += 1;
        if open.notes.len() < MAX_NOTES_PER_SPAN {
            open.notes.push(StallNote::from_report(report));
        } else {
            open.dropped_notes += 1;
        }
    }

    /// The root a span under `parent` belongs to: its parent's, when the
    /// parent is open here; the parent itself when it is not (its start
    /// came before the tracker: siblings still share a trace); itself at
    /// the root.
    fn root_of(&self, span_id: u64, parent: Option<u64>) -> u64 {
        match parent {
            None => span_id,
            Some(p) => self.open.get(&p).map_or(p, |o| o.root),
        }
    }

    fn end(&mut self, end: &SpanEnd, out: &mut Vec<Finished>) {
        self.counts.ended += 1;
        let open = self.open.remove(&end.span_id);
        let (root, required, notes, dropped_notes) = match open {
            Some(o) => (o.root, o.required, o.notes, o.dropped_notes),
            None => (
                self.root_of(end.span_id, end.parent_span_id),
                false,
                Vec::new(),
                0,
            ),
        };
        let long_enough = end.duration_ns() >= self.selection.min_duration_ns;
        let chosen = if long_enough {
            let room = self.take_budget(end.ts_ns);
            if !room && !required {
                self.counts.over_cap += 1;
            }
            room || required
        } else {
            if !required {
                self.counts.below_min_duration += 1;
            }
            required
        };
        if !chosen {
            return;
        }
        if required && !long_enough {
            self.counts.required += 1;
        }
        self.counts.chosen += 1;
        if let Some(parent) = end.parent_span_id
            && let Some(p) = self.open.get_mut(&parent)
        {
            p.required = true;
        }
        out.push(Finished {
            span_id: end.span_id,
            parent_span_id: end.parent_span_id,
            root_span_id: root,
            pid: end.pid,
            tid: end.tid,
            thread_name: end.thread_name,
            function: end.function,
            start_ns: end.start_ns,
            end_ns: end.ts_ns,
            status: end.status,
            overhead_ns: end.overhead_ns,
            notes,
            dropped_notes,
        });
    }

    /// One span of the cap's budget for the second `ts_ns` falls in; false
    /// when it is spent. Windows only move forward: ends of different CPUs
    /// arrive slightly out of order.
    fn take_budget(&mut self, ts_ns: u64) -> bool {
        if self.selection.max_spans_per_s == 0 {
            return true;
        }
        let window = ts_ns / 1_000_000_000;
        if window > self.window {
            self.window = window;
            self.in_window = 0;
        }
        if self.in_window < self.selection.max_spans_per_s {
            self.in_window += 1;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::trace::{SpanEnd, SpanStart};

    /// A lifecycle built by hand: `call(id, parent, depth, start, end)`.
    #[derive(Default)]
    pub struct Script {
        pub events: Vec<SpanEvent>,
    }

    impl Script {
        pub fn start(&mut self, id: u64, parent: Option<u64>, depth: u32, ts: u64) -> &mut Self {
            self.events.push(SpanEvent::Start(SpanStart {
                span_id: id,
                parent_span_id: parent,
                depth,
                pid: 100,
                tid: 101,
                thread_name: ThreadName::new("worker"),
                function: id as u32 % 4,
                ts_ns: ts,
                before_attach: false,
                goroutine: None,
            }));
            self
        }

        pub fn end(&mut self, id: u64, parent: Option<u64>, start: u64, end: u64) -> &mut Self {
            self.end_as(id, parent, start, end, SpanStatus::Ok)
        }

        pub fn end_as(
            &mut self,
            id: u64,
            parent: Option<u64>,
            start: u64,
            end: u64,
            status: SpanStatus,
        ) -> &mut Self {
            self.events.push(SpanEvent::End(SpanEnd {
                span_id: id,
                parent_span_id: parent,
                depth: 0,
                pid: 100,
                tid: 101,
                thread_name: ThreadName::new("worker"),
                function: id as u32 % 4,
                start_ns: start,
                ts_ns: end,
                status,
                overhead_ns: 0,
                overhead_outside_ns: 0,
                goroutine: None,
                sched: None,
            }));
            self
        }
    }

    /// A stall report on `span_id`, as the watchdog makes them.
    pub fn stall_report(span_id: u64) -> StallReport {
        StallReport {
            pid: 100,
            tid: 101,
            thread_name: "worker".to_owned(),
            span_id,
            function: 1,
            function_name: "f1".to_owned(),
            depth: 1,
            since_ns: 1,
            before_attach: false,
            captured_ns: 5,
            state: crate::stall::SchedState::Sleeping,
            syscall: Some("futex(0x1, FUTEX_WAIT, 2, NULL)".to_owned()),
            wchan: None,
            lock: None,
            deadlock: Vec::new(),
            deadlock_with: None,
            frames: std::sync::Arc::from([crate::stall::Frame {
                function: Some("f1".to_owned()),
                file: Some("f.c".to_owned()),
                line: Some(3),
                address: 0x1000,
                module: None,
                inlined: false,
            }]),
            stack_note: None,
            wait: "sleeping in futex".to_owned(),
            on_stack: true,
            group: 0,
            goroutine: None,
        }
    }

    fn chosen(selection: Selection, script: &Script) -> (Vec<u64>, SelectCounts) {
        let mut tracker = Tracker::new(selection);
        let mut out = Vec::new();
        tracker.push(&script.events, &mut out);
        (out.iter().map(|f| f.span_id).collect(), tracker.counts())
    }

    /// root 1 [0, 100] → 2 [10, 90] → 3 [20, 80] (slow), and a short
    /// sibling 4 [85, 88] of 2; then root 5, short, alone.
    fn slow_path() -> Script {
        let mut s = Script::default();
        s.start(1, None, 0, 0)
            .start(2, Some(1), 1, 10)
            .start(3, Some(2), 2, 20)
            .end(3, Some(2), 20, 80)
            .end(2, Some(1), 10, 84)
            .start(4, Some(1), 1, 85)
            .end(4, Some(1), 85, 88)
            .end(1, None, 0, 100)
            .start(5, None, 0, 200)
            .end(5, None, 200, 205);
        s
    }

    #[test]
    fn everything_is_chosen_without_limits_with_roots_as_traces() {
        let mut tracker = Tracker::new(Selection::default());
        let mut out = Vec::new();
        tracker.push(&slow_path().events, &mut out);
        let roots: Vec<(u64, u64)> = out.iter().map(|f| (f.span_id, f.root_span_id)).collect();
        assert_eq!(roots, [(3, 1), (2, 1), (4, 1), (1, 1), (5, 5)]);
        assert_eq!(tracker.open_spans(), 0, "nothing left behind");
        assert_eq!(tracker.counts().chosen, 5);
    }

    #[test]
    fn min_duration_sends_slow_spans_and_their_ancestors_only() {
        let (ids, counts) = chosen(
            Selection {
                min_duration_ns: 50,
                max_spans_per_s: 0,
            },
            &slow_path(),
        );
        assert_eq!(ids, [3, 2, 1], "the slow span, then its path upwards");
        assert_eq!(counts.below_min_duration, 2, "4 and 5");
    }

    #[test]
    fn an_ancestor_shorter_than_the_minimum_is_still_sent() {
        // Ancestors contain their descendants in time, except where the
        // stream says otherwise (a span adopted at attach, a clock step):
        // the path is sent all the same.
        let mut s = Script::default();
        s.start(1, None, 0, 0)
            .start(2, Some(1), 1, 10)
            .end(2, Some(1), 10, 90)
            .end(1, None, 50, 60);
        let (ids, counts) = chosen(
            Selection {
                min_duration_ns: 50,
                max_spans_per_s: 0,
            },
            &s,
        );
        assert_eq!(ids, [2, 1]);
        assert_eq!(counts.required, 1);
    }

    #[test]
    fn the_cap_counts_the_excess_and_never_orphans_a_chosen_span() {
        // One second: a root with ten children; the cap lets 3 through.
        let mut s = Script::default();
        s.start(1, None, 0, 0);
        for i in 0..10 {
            let (id, t) = (10 + i, 1000 + i * 100);
            s.start(id, Some(1), 1, t).end(id, Some(1), t, t + 50);
        }
        s.end(1, None, 0, 5000);
        // The next second has a fresh budget.
        s.start(2, None, 0, 1_000_000_000)
            .end(2, None, 1_000_000_000, 1_000_000_100);
        let (ids, counts) = chosen(
            Selection {
                min_duration_ns: 0,
                max_spans_per_s: 3,
            },
            &s,
        );
        assert_eq!(ids, [10, 11, 12, 1, 2], "the root above the cap");
        assert_eq!(counts.over_cap, 7);
        assert_eq!(counts.chosen, 5);
        assert_eq!(counts.ended, counts.chosen + counts.over_cap);
    }

    #[test]
    fn an_end_whose_start_came_before_the_tracker_joins_its_parents_trace() {
        let mut s = Script::default();
        s.end(7, Some(3), 0, 10).end(8, Some(3), 11, 20);
        let mut tracker = Tracker::new(Selection::default());
        let mut out = Vec::new();
        tracker.push(&s.events, &mut out);
        assert!(out.iter().all(|f| f.root_span_id == 3));
    }

    #[test]
    fn stalls_attach_to_open_spans_and_force_them_out() {
        let mut tracker = Tracker::new(Selection {
            min_duration_ns: 1_000,
            max_spans_per_s: 0,
        });
        let mut out = Vec::new();
        let mut s = Script::default();
        s.start(1, None, 0, 0).start(2, Some(1), 1, 1);
        tracker.push(&s.events, &mut out);
        let mut report = stall_report(2);
        report.captured_ns = 5;
        tracker.stall(&report);
        report.span_id = 99;
        tracker.stall(&report);
        let mut s = Script::default();
        s.end(2, Some(1), 1, 9).end(1, None, 0, 10);
        tracker.push(&s.events, &mut out);
        let ids: Vec<u64> = out.iter().map(|f| f.span_id).collect();
        assert_eq!(ids, [2, 1], "short, but stalled, and its parent");
        assert_eq!(out[0].notes.len(), 1);
        assert_eq!(out[0].notes[0].ts_ns, 5);
        assert_eq!(tracker.counts().stall_notes, 1);
        assert_eq!(tracker.counts().stalls_unattached, 1);
    }
}
