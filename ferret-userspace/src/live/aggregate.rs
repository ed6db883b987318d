//! The live aggregates, fed one span event and one metrics sample at a time.

use std::{
    collections::{BTreeMap, VecDeque},
    sync::Arc,
};

use super::{
    histogram::Histogram,
    rate::RateWindow,
    snapshot::{FinishedCall, FunctionRow, MetricPoint, MetricsHistory, ThreadView},
};
use rustc_hash::FxHashMap as FxMap;

use crate::{
    sink::MetricSample,
    trace::{SpanEvent, SpanStatus, ThreadName, ThreadStack},
};

/// How many finished calls are kept for the Recent Activity pane.
pub const RECENT_KEPT: usize = 500;
/// How many metric samples are kept (ten minutes at the default 1 s).
pub const METRICS_KEPT: usize = 600;
/// A thread with nothing open stays listed this long after its last span,
/// so busy threads keep their place in the Live Stack instead of blinking
/// in and out with every call.
pub const IDLE_THREAD_KEPT_NS: u64 = 10_000_000_000;

/// One function's numbers so far.
#[derive(Clone, Debug, Default)]
pub struct FunctionStats {
    /// Calls that ended (any status).
    pub calls: u64,
    /// Of those, calls left without a return.
    pub unwound: u64,
    /// Sum of durations.
    pub total_ns: u64,
    /// Sum of durations minus the time spent in traced children.
    pub self_ns: u64,
    /// Durations.
    pub histogram: Histogram,
    /// Ends per second, lately.
    pub rate: RateWindow,
    /// Of the calls with a known split: time on a CPU (probe time taken
    /// out) and their whole time.
    pub split_cpu_ns: u64,
    /// See [`Self::split_cpu_ns`].
    pub split_ns: u64,
}

/// Everything the dashboard shows that is computed from the event stream,
/// in bounded memory: per-function statistics, the most recent finished
/// calls, the metrics history, and the threads seen lately.
#[derive(Debug)]
pub struct Aggregates {
    functions: Vec<FunctionStats>,
    /// Open span id → time spent so far in its ended children; an entry
    /// lives exactly as long as the span is open.
    children_ns: FxMap<u64, u64>,
    recent: VecDeque<FinishedCall>,
    /// Bumped when `recent` changes, so a snapshot can reuse the last copy.
    recent_version: u64,
    recent_shared: (u64, Arc<[FinishedCall]>),
    metrics: VecDeque<MetricPoint>,
    metrics_shared: Arc<MetricsHistory>,
    threads: BTreeMap<(u32, u32), (ThreadName, u64)>,
    /// Goroutines seen lately, by (pid, goid): when last.
    goroutines: FxMap<(u32, u64), u64>,
    /// The thread of the latest event, with its name and its newest time
    /// not yet folded into `threads`: a run of one thread's events looks
    /// the map up once.
    last_seen: Option<((u32, u32), ThreadName, u64)>,
    calls: u64,
}

impl Aggregates {
    /// Aggregates for a probe table of `functions` entries.
    pub fn new(functions: usize) -> Self {
        Self {
            functions: vec![FunctionStats::default(); functions],
            children_ns: FxMap::default(),
            recent: VecDeque::with_capacity(RECENT_KEPT),
            recent_version: 0,
            recent_shared: (0, Arc::from([])),
            metrics: VecDeque::with_capacity(METRICS_KEPT),
            metrics_shared: Arc::default(),
            threads: BTreeMap::new(),
            goroutines: FxMap::default(),
            last_seen: None,
            calls: 0,
        }
    }

    /// The probe table grew to `functions` entries (functions traced while
    /// the session runs).
    pub fn grow(&mut self, functions: usize) {
        if self.functions.len() < functions {
            self.functions.resize(functions, FunctionStats::default());
        }
    }

    /// Counts one span event.
    pub fn apply(&mut self, event: &SpanEvent) {
        match event {
            SpanEvent::Start(start) => {
                self.children_ns.insert(start.span_id, 0);
                self.seen_span(
                    start.pid,
                    start.tid,
                    start.goroutine,
                    &start.thread_name,
                    start.ts_ns,
                );
            }
            SpanEvent::End(end) => {
                // Shown with ferret's probe time taken out (0 when the
                // session measured none).
                let duration = end.corrected_ns();
                let children = self.children_ns.remove(&end.span_id).unwrap_or(0);
                let self_ns = duration.saturating_sub(children);
                if let Some(parent) = end.parent_span_id
                    && let Some(parent_children) = self.children_ns.get_mut(&parent)
                {
                    *parent_children += duration;
                }
                if let Some(stats) = self.functions.get_mut(end.function as usize) {
                    stats.calls += 1;
                    stats.unwound += u64::from(end.status == SpanStatus::Unwound);
                    stats.total_ns += duration;
                    stats.self_ns += self_ns;
                    stats.histogram.record(duration);
                    stats.rate.add(end.ts_ns, 1);
                    if let Some(split) = &end.sched {
                        let cpu = split.cpu_ns.saturating_sub(end.overhead_ns);
                        stats.split_cpu_ns += cpu;
                        stats.split_ns += cpu + split.runnable_ns + split.blocked_ns;
                    }
                }
                self.calls += 1;
                self.seen_span(end.pid, end.tid, end.goroutine, &end.thread_name, end.ts_ns);
                // The oldest call makes room.
                if self.recent.len() == RECENT_KEPT {
                    self.recent.pop_back();
                }
                let call = FinishedCall {
                    span_id: end.span_id,
                    parent_span_id: end.parent_span_id,
                    depth: end.depth,
                    pid: end.pid,
                    tid: end.tid,
                    thread_name: end.thread_name,
                    function: end.function,
                    start_ns: end.start_ns,
                    end_ns: end.ts_ns,
                    self_ns,
                    status: end.status,
                    overhead_ns: end.overhead_ns,
                    sched: end.sched,
                };
                self.recent.push_front(call);
                self.recent_version += 1;
            }
        }
    }

    /// A span event of thread `tid`, or of goroutine `goroutine` (whose
    /// threads are not listed: a Go program's calls are the goroutines').
    fn seen_span(
        &mut self,
        pid: u32,
        tid: u32,
        goroutine: Option<u64>,
        name: &ThreadName,
        ts_ns: u64,
    ) {
        match goroutine {
            None => self.seen(pid, tid, name, ts_ns),
            Some(goid) => {
                let last = self.goroutines.entry((pid, goid)).or_insert(ts_ns);
                *last = (*last).max(ts_ns);
            }
        }
    }

    fn seen(&mut self, pid: u32, tid: u32, name: &ThreadName, ts_ns: u64) {
        if let Some((key, last_name, last_ts)) = &mut self.last_seen
            && *key == (pid, tid)
            && ThreadName::ptr_eq(*last_name, *name)
        {
            *last_ts = (*last_ts).max(ts_ns);
            return;
        }
        self.fold_last_seen();
        self.last_seen = Some(((pid, tid), *name, ts_ns));
        match self.threads.get_mut(&(pid, tid)) {
            Some(entry) => {
                entry.0 = *name;
                entry.1 = entry.1.max(ts_ns);
            }
            None => {
                self.threads.insert((pid, tid), (*name, ts_ns));
            }
        }
    }

    /// Folds `last_seen` into `threads`.
    fn fold_last_seen(&mut self) {
        if let Some((key, _, ts_ns)) = self.last_seen.take()
            && let Some(entry) = self.threads.get_mut(&key)
        {
            entry.1 = entry.1.max(ts_ns);
        }
    }

    /// Adds a metrics sample to the history.
    pub fn metric(&mut self, sample: &MetricSample) {
        if self.metrics.len() == METRICS_KEPT {
            self.metrics.pop_front();
        }
        self.metrics.push_back(MetricPoint {
            ts_ns: sample.ts_ns,
            cpu_percent: sample.cpu_percent,
            rss_bytes: sample.rss_bytes,
            threads: sample.threads,
        });
        self.metrics_shared = Arc::new(MetricsHistory {
            points: self.metrics.iter().copied().collect(),
            latest: Some(sample.clone()),
        });
    }

    /// Statistics of function `id`.
    pub fn function(&self, id: u32) -> Option<&FunctionStats> {
        self.functions.get(id as usize)
    }

    /// Calls ended so far.
    pub fn calls(&self) -> u64 {
        self.calls
    }

    /// Spans currently open, as seen by the aggregates.
    pub fn open(&self) -> usize {
        self.children_ns.len()
    }

    /// A row per function called at least once, in probe-table order.
    pub fn function_rows(&self, now_ns: u64, since_ns: u64) -> Vec<FunctionRow> {
        self.functions
            .iter()
            .enumerate()
            .filter(|(_, s)| s.calls > 0)
            .map(|(id, s)| {
                let [p50, p95, p99] = s.histogram.quantiles([0.5, 0.95, 0.99]);
                FunctionRow {
                    id: id as u32,
                    calls: s.calls,
                    unwound: s.unwound,
                    calls_per_s: s.rate.per_second(now_ns, since_ns),
                    total_ns: s.total_ns,
                    self_ns: s.self_ns,
                    mean_ns: s.total_ns / s.calls,
                    p50_ns: p50.unwrap_or(0),
                    p95_ns: p95.unwrap_or(0),
                    p99_ns: p99.unwrap_or(0),
                    max_ns: s.histogram.max(),
                    cpu_share: (s.split_ns > 0).then(|| s.split_cpu_ns as f64 / s.split_ns as f64),
                }
            })
            .collect()
    }

    /// The finished calls kept, newest first (shared until the next one).
    pub fn recent(&mut self) -> Arc<[FinishedCall]> {
        if self.recent_shared.0 != self.recent_version {
            self.recent_shared = (self.recent_version, self.recent.iter().cloned().collect());
        }
        self.recent_shared.1.clone()
    }

    /// The metrics history (shared until the next sample).
    pub fn metrics(&self) -> Arc<MetricsHistory> {
        self.metrics_shared.clone()
    }

    /// Every goroutine with open spans (Go programs), and how many more
    /// ran traced calls in the last [`IDLE_THREAD_KEPT_NS`] and have none
    /// open now. Forgets older ones.
    pub fn goroutines<'a>(
        &mut self,
        open: impl Iterator<Item = ThreadStack<'a>>,
        now_ns: u64,
    ) -> (Vec<ThreadView>, usize) {
        self.goroutines
            .retain(|_, last| last.saturating_add(IDLE_THREAD_KEPT_NS) >= now_ns);
        let open: Vec<ThreadView> = open.map(|stack| ThreadView::open(&stack)).collect();
        let open_seen = open
            .iter()
            .filter(|g| {
                g.goroutine
                    .is_some_and(|goid| self.goroutines.contains_key(&(g.pid, goid)))
            })
            .count();
        let idle = self.goroutines.len() - open_seen;
        (open, idle)
    }

    /// Every thread with open spans, plus the threads seen in the last
    /// [`IDLE_THREAD_KEPT_NS`], ordered by (pid, tid). Forgets older ones.
    pub fn threads<'a>(
        &mut self,
        open: impl Iterator<Item = ThreadStack<'a>>,
        now_ns: u64,
    ) -> Vec<ThreadView> {
        self.fold_last_seen();
        self.threads
            .retain(|_, (_, last)| last.saturating_add(IDLE_THREAD_KEPT_NS) >= now_ns);
        let mut open = open.peekable();
        let mut out = Vec::with_capacity(self.threads.len());
        let mut idle = self.threads.iter().peekable();
        // Merge two lists ordered by (pid, tid).
        loop {
            let open_key = open.peek().map(|t| (t.pid, t.tid));
            let idle_key = idle.peek().map(|(k, _)| **k);
            match (open_key, idle_key) {
                (None, None) => break,
                (Some(o), i) if i.is_none_or(|i| o <= i) => {
                    let stack = open.next().expect("peeked");
                    if i == Some(o) {
                        idle.next();
                    }
                    out.push(ThreadView::open(&stack));
                }
                _ => {
                    let (&(pid, tid), (name, _)) = idle.next().expect("peeked");
                    out.push(ThreadView {
                        pid,
                        tid,
                        name: *name,
                        frames: Vec::new(),
                        maybe_incomplete: false,
                        goroutine: None,
                        now: None,
                    });
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::{SchedCounters, SpanEnd, SpanStart};

    fn name(s: &str) -> ThreadName {
        ThreadName::from(s)
    }

    fn start(span_id: u64, parent: Option<u64>, tid: u32, function: u32, ts: u64) -> SpanEvent {
        SpanEvent::Start(SpanStart {
            span_id,
            parent_span_id: parent,
            depth: u32::from(parent.is_some()),
            pid: 1,
            tid,
            thread_name: name("worker"),
            function,
            ts_ns: ts,
            before_attach: false,
            goroutine: None,
        })
    }

    fn end(
        span_id: u64,
        parent: Option<u64>,
        tid: u32,
        function: u32,
        start_ns: u64,
        ts: u64,
        status: SpanStatus,
    ) -> SpanEvent {
        SpanEvent::End(SpanEnd {
            span_id,
            parent_span_id: parent,
            depth: u32::from(parent.is_some()),
            pid: 1,
            tid,
            thread_name: name("worker"),
            function,
            start_ns,
            ts_ns: ts,
            status,
            overhead_ns: 0,
            overhead_outside_ns: 0,
            goroutine: None,
            sched: None,
        })
    }

    #[test]
    fn a_functions_cpu_share_is_over_its_calls_with_a_split() {
        let mut a = Aggregates::new(1);
        let with_split = |span_id, cpu_ns, blocked_ns, overhead_ns| {
            let SpanEvent::End(mut e) = end(span_id, None, 7, 0, 0, 1000, SpanStatus::Ok) else {
                unreachable!()
            };
            e.overhead_ns = overhead_ns;
            e.sched = Some(crate::trace::SchedSplit {
                cpu_ns,
                runnable_ns: 1000 - cpu_ns - blocked_ns,
                blocked_ns,
                blocked_in: None,
            });
            SpanEvent::End(e)
        };
        for ev in [
            start(1, None, 7, 0, 0),
            with_split(1, 300, 600, 100),
            start(2, None, 7, 0, 0),
            // No split: not counted in the share.
            end(2, None, 7, 0, 0, 1000, SpanStatus::Ok),
            start(3, None, 7, 0, 0),
            with_split(3, 700, 0, 0),
        ] {
            a.apply(&ev);
        }
        let rows = a.function_rows(1000, 0);
        // (300 - 100 probe) + 700 on a CPU of 1900 shown.
        let share = rows[0].cpu_share.unwrap();
        assert!((share - 900.0 / 1900.0).abs() < 1e-9, "{share}");
    }

    #[test]
    fn self_time_excludes_traced_children() {
        let mut a = Aggregates::new(2);
        // f (0..100) calls g twice: 10..30 and 50..90.
        for ev in [
            start(1, None, 7, 0, 0),
            start(2, Some(1), 7, 1, 10),
            end(2, Some(1), 7, 1, 10, 30, SpanStatus::Ok),
            start(3, Some(1), 7, 1, 50),
            end(3, Some(1), 7, 1, 50, 90, SpanStatus::Ok),
            end(1, None, 7, 0, 0, 100, SpanStatus::Ok),
        ] {
            a.apply(&ev);
        }
        let f = a.function(0).unwrap();
        assert_eq!((f.calls, f.total_ns, f.self_ns), (1, 100, 40));
        let g = a.function(1).unwrap();
        assert_eq!((g.calls, g.total_ns, g.self_ns), (2, 60, 60));
        assert_eq!(a.calls(), 3);
        assert_eq!(a.open(), 0, "nothing open is remembered");
    }

    #[test]
    fn times_are_shown_with_ferrets_probe_time_taken_out() {
        let costed = |event: SpanEvent, overhead: u64| match event {
            SpanEvent::End(mut e) => {
                e.overhead_ns = overhead;
                SpanEvent::End(e)
            }
            start @ SpanEvent::Start(_) => start,
        };
        let mut a = Aggregates::new(2);
        // f (0..100, 30 of it probes) calls g (10..30, 5 of it probes).
        for ev in [
            start(1, None, 7, 0, 0),
            start(2, Some(1), 7, 1, 10),
            costed(end(2, Some(1), 7, 1, 10, 30, SpanStatus::Ok), 5),
            costed(end(1, None, 7, 0, 0, 100, SpanStatus::Ok), 30),
        ] {
            a.apply(&ev);
        }
        let f = a.function(0).unwrap();
        assert_eq!((f.total_ns, f.self_ns), (70, 55));
        let g = a.function(1).unwrap();
        assert_eq!((g.total_ns, g.self_ns), (15, 15));
        let recent = a.recent();
        assert_eq!(
            (recent[0].duration_ns(), recent[0].measured_ns()),
            (70, 100)
        );
    }

    #[test]
    fn rows_carry_percentiles_rates_and_unwound_counts() {
        let mut a = Aggregates::new(3);
        let s = 1_000_000_000;
        for i in 0..100u64 {
            let t = 10 * s + i * s / 100;
            a.apply(&start(i + 1, None, 7, 2, t));
            let status = if i == 99 {
                SpanStatus::Unwound
            } else {
                SpanStatus::Ok
            };
            a.apply(&end(i + 1, None, 7, 2, t, t + (i + 1) * 1000, status));
        }
        let rows = a.function_rows(11 * s, 10 * s);
        assert_eq!(rows.len(), 1, "functions never called have no row");
        let row = &rows[0];
        assert_eq!((row.id, row.calls, row.unwound), (2, 100, 1));
        assert_eq!(row.max_ns, 100_000);
        assert_eq!(row.mean_ns, 50_500);
        assert!(row.p50_ns.abs_diff(50_000) <= 50_000 / 32, "{}", row.p50_ns);
        assert!(row.p99_ns.abs_diff(99_000) <= 99_000 / 32, "{}", row.p99_ns);
        assert!((row.calls_per_s - 100.0).abs() < 1.0, "{}", row.calls_per_s);
    }

    #[test]
    fn recent_is_newest_first_and_bounded() {
        let mut a = Aggregates::new(1);
        for i in 0..(RECENT_KEPT as u64 + 10) {
            a.apply(&start(i + 1, None, 7, 0, i * 10));
            a.apply(&end(i + 1, None, 7, 0, i * 10, i * 10 + 5, SpanStatus::Ok));
        }
        let recent = a.recent();
        assert_eq!(recent.len(), RECENT_KEPT);
        assert_eq!(recent[0].span_id, RECENT_KEPT as u64 + 10);
        assert_eq!(recent[1].span_id, RECENT_KEPT as u64 + 9);
        assert!(
            Arc::ptr_eq(&recent, &a.recent()),
            "unchanged: shared, not copied"
        );
    }

    #[test]
    fn metrics_history_is_bounded() {
        let mut a = Aggregates::new(0);
        for i in 0..(METRICS_KEPT as u64 + 5) {
            a.metric(&MetricSample::basic(
                i,
                1,
                "p".into(),
                Some(i as f64),
                Some(i * 4096),
                Some(3),
            ));
        }
        let m = a.metrics();
        assert_eq!(m.points.len(), METRICS_KEPT);
        assert_eq!(m.points[0].ts_ns, 5);
        assert_eq!(m.latest.as_ref().unwrap().ts_ns, METRICS_KEPT as u64 + 4);
    }

    #[test]
    fn idle_threads_stay_listed_for_a_while_then_go() {
        let mut a = Aggregates::new(1);
        a.apply(&start(1, None, 7, 0, 1_000));
        a.apply(&end(1, None, 7, 0, 1_000, 2_000, SpanStatus::Ok));
        let listed = a.threads(std::iter::empty(), 5_000);
        assert_eq!(listed.len(), 1);
        assert_eq!((listed[0].tid, listed[0].frames.len()), (7, 0));
        let listed = a.threads(std::iter::empty(), 2_000 + IDLE_THREAD_KEPT_NS + 1);
        assert!(listed.is_empty());
    }

    /// A run of one thread's events (one shared name) updates the thread
    /// list once; what the list shows is still the run's last event.
    #[test]
    fn a_run_of_one_threads_events_keeps_its_latest_time_and_name() {
        let shared = |mut event: SpanEvent, name: &ThreadName| {
            match &mut event {
                SpanEvent::Start(s) => s.thread_name = *name,
                SpanEvent::End(e) => e.thread_name = *name,
            }
            event
        };
        let worker = name("worker");
        let mut a = Aggregates::new(1);
        a.apply(&shared(start(1, None, 7, 0, 1_000), &worker));
        a.apply(&shared(start(2, Some(1), 7, 0, 1_500), &worker));
        a.apply(&shared(
            end(2, Some(1), 7, 0, 1_500, 1_800, SpanStatus::Ok),
            &worker,
        ));
        a.apply(&shared(
            end(1, None, 7, 0, 1_000, 2_000, SpanStatus::Ok),
            &worker,
        ));
        let listed = a.threads(std::iter::empty(), 1_000 + IDLE_THREAD_KEPT_NS + 1);
        assert_eq!(listed.len(), 1, "last seen at 2000, not 1000");
        // Renamed: a new name for the same thread.
        let renamed = name("renamed");
        a.apply(&shared(start(3, None, 7, 0, 3_000), &renamed));
        a.apply(&shared(
            end(3, None, 7, 0, 3_000, 4_000, SpanStatus::Ok),
            &renamed,
        ));
        let listed = a.threads(std::iter::empty(), 3_000 + IDLE_THREAD_KEPT_NS + 1);
        assert_eq!(&*listed[0].name, "renamed");
        assert!(
            a.threads(std::iter::empty(), 4_000 + IDLE_THREAD_KEPT_NS + 1)
                .is_empty()
        );
        assert_eq!(a.calls(), 3);
        assert_eq!(a.open(), 0);
    }

    #[test]
    fn open_and_idle_threads_merge_in_tid_order() {
        use crate::trace::{RawEvent, RawKind, Reconstructor};
        let mut a = Aggregates::new(1);
        for tid in [3, 9] {
            a.apply(&start(u64::from(tid), None, tid, 0, 10));
            a.apply(&end(u64::from(tid), None, tid, 0, 10, 20, SpanStatus::Ok));
        }
        let mut r = Reconstructor::new();
        let mut out = Vec::new();
        for tid in [5, 9] {
            r.push(
                &RawEvent {
                    kind: RawKind::Entry,
                    ts_ns: 30,
                    pid: 1,
                    tid,
                    function: 0,
                    sp: 0x7000,
                    thread_name: name("open"),
                    goroutine: None,
                    sched: SchedCounters::NONE,
                },
                &mut out,
            );
        }
        let listed = a.threads(r.threads(), 40);
        let shape: Vec<(u32, usize)> = listed.iter().map(|t| (t.tid, t.frames.len())).collect();
        assert_eq!(shape, [(3, 0), (5, 1), (9, 1)]);
    }

    #[test]
    fn goroutines_are_listed_while_in_calls_and_counted_while_idle() {
        use crate::trace::{RawEvent, RawKind, Reconstructor};
        let mut a = Aggregates::new(1);
        let go = |ev: SpanEvent, goid| match ev {
            SpanEvent::Start(s) => SpanEvent::Start(SpanStart {
                goroutine: Some(goid),
                ..s
            }),
            SpanEvent::End(e) => SpanEvent::End(SpanEnd {
                goroutine: Some(goid),
                sched: None,
                ..e
            }),
        };
        // Thirty goroutines ran a call on thread 7 and returned.
        for goid in 1..=30 {
            a.apply(&go(start(goid, None, 7, 0, 10), goid));
            a.apply(&go(end(goid, None, 7, 0, 10, 20, SpanStatus::Ok), goid));
        }
        // Goroutine 5 is in a call again.
        let mut r = Reconstructor::new();
        let mut out = Vec::new();
        r.push(
            &RawEvent {
                kind: RawKind::Entry,
                ts_ns: 30,
                pid: 1,
                tid: 8,
                function: 0,
                sp: 0x7000,
                thread_name: name("worker"),
                goroutine: Some(5),
                sched: SchedCounters::NONE,
            },
            &mut out,
        );
        for ev in &out {
            a.apply(ev);
        }
        assert!(
            a.threads(r.threads(), 40).is_empty(),
            "no thread is listed for them"
        );
        let (open, idle) = a.goroutines(r.goroutines(), 40);
        let shown: Vec<(Option<u64>, u32, usize)> = open
            .iter()
            .map(|g| (g.goroutine, g.tid, g.frames.len()))
            .collect();
        assert_eq!(shown, [(Some(5), 8, 1)]);
        assert_eq!(idle, 29);
        // Forgotten once quiet for long enough.
        let (_, idle) = a.goroutines(r.goroutines(), 30 + IDLE_THREAD_KEPT_NS + 1);
        assert_eq!(idle, 0);
    }
}
