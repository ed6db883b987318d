//! Streaming replay of a recording's span lifecycle.
//!
//! Analysis and every export walk the same thing: each thread's call stack
//! as it grew and shrank. [`Recording::replay`] reads the event log one
//! record batch at a time (only the columns it needs, found by name),
//! rebuilds the per-thread stacks from the `SPAN_START`/`SPAN_END` rows, and
//! hands a [`Visitor`] every span twice: when it starts (with its parent's
//! visitor state, so trees and folded stacks can be built) and when it ends
//! (with its self time: duration minus the time in its traced direct
//! children). Memory holds one batch, the open stacks, and whatever the
//! visitor keeps, never the whole file. String columns are decoded as
//! dictionaries, so the few distinct kinds, functions and thread names are
//! resolved once per batch rather than compared per row. The one part of
//! memory that grows with the file is Parquet's footer, which the reader
//! needs whole: about 17 KiB per row group of 65,536 rows (some 2 % of the
//! file; 52 MiB for a 2.8 GB recording).
//!
//! The replay keeps the stacks well nested whatever the file says, so
//! consumers (speedscope in particular) can rely on it:
//! - a span whose `SPAN_END` never came (the recording was cut short: the
//!   writer was dropped before `finish`) ends at the recording's last
//!   timestamp, innermost first, with [`Status::Cut`];
//! - a `SPAN_END` for a span below the top of its thread's stack first ends
//!   the spans above it, as [`Status::Unwound`], at the same instant (their
//!   own `SPAN_END`s, if they come later, are dropped);
//! - a `SPAN_END` with no `SPAN_START` before it goes to
//!   [`Visitor::orphan`], outside any stack.
//!
//! Rows must be in the order ferret wrote them (causal order per thread);
//! rows of other kinds (`METRIC`, `STALL`, later ones) and unknown columns
//! are ignored.
//!
//! The parts: [`recording`] opens the file, checks its columns and reads
//! the footer; `columns` is one batch's columns as the contract types;
//! [`names`] interns the functions and threads; this module is the state
//! machine that rebuilds the stacks, and the [`Visitor`] it feeds.

mod columns;
pub(crate) mod names;
pub(crate) mod recording;

use std::collections::HashSet;

use arrow::array::Array as _;
use rustc_hash::FxHashMap;

pub use names::{FnIx, Names, ThreadIx};
pub use recording::{ReadError, Recording, RecordingInfo};

use self::columns::{Columns, opt_i64};
use crate::sink::{KIND_SPAN_END, KIND_SPAN_START};
use crate::trace::{BlockedIn, SchedSplit};

/// How a span ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Status {
    /// The function returned.
    Ok,
    /// Left without a return (exception, panic, longjmp, thread exit), or
    /// ended by the replay because an enclosing span ended first.
    Unwound,
    /// Still running when the recording stopped; ends at the stop.
    Open,
    /// No `SPAN_END` in the file (it was cut short); ends at the
    /// recording's last timestamp.
    Cut,
}

impl Status {
    /// The word used in output: the `status` column's, plus `cut`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Unwound => "unwound",
            Self::Open => "open",
            Self::Cut => "cut",
        }
    }

    fn parse(text: Option<&str>) -> Self {
        match text {
            Some("unwound") => Self::Unwound,
            Some("open") => Self::Open,
            // `ok`, null, or a word a later version added: a plain end.
            _ => Self::Ok,
        }
    }
}

/// A span that just started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Started {
    /// Its `span_id`.
    pub id: i64,
    /// Its thread.
    pub thread: ThreadIx,
    /// Its function.
    pub function: FnIx,
    /// Start, `CLOCK_MONOTONIC` ns.
    pub start_ns: i64,
    /// Stack depth below it on its thread (0: a root).
    pub depth: u32,
}

/// A span that just ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ended {
    /// Its `span_id`.
    pub id: i64,
    /// Its thread.
    pub thread: ThreadIx,
    /// Its function.
    pub function: FnIx,
    /// Start, `CLOCK_MONOTONIC` ns.
    pub start_ns: i64,
    /// End, `CLOCK_MONOTONIC` ns (never before `start_ns`).
    pub end_ns: i64,
    /// How it ended.
    pub status: Status,
    /// Duration minus the durations of its traced direct children.
    pub self_ns: u64,
    /// Stack depth below it on its thread (0: a root; 0 for orphans).
    pub depth: u32,
    /// The duration shown: as measured less ferret's probe time inside it
    /// (`overhead_ns`), or as measured with `--raw`.
    pub duration_ns: u64,
    /// ferret's probe time inside it as recorded (`overhead_ns`), even
    /// with `--raw`.
    pub overhead_ns: u64,
    /// Where its time went (`cpu_ns`, `runnable_ns`, `blocked_ns`,
    /// `blocked_in`), if recorded; `cpu_ns` as shown (less ferret's probe
    /// time inside it unless `--raw`, so the three add up to
    /// [`Self::duration_ns`]).
    pub split: Option<SchedSplit>,
}

impl Ended {
    /// The duration shown. With times corrected it is exact, while
    /// `end_ns - start_ns` places the span on a corrected timeline that
    /// keeps children inside their parents, so the two can differ by an
    /// entry probe's share.
    pub fn duration_ns(&self) -> u64 {
        self.duration_ns
    }
}

/// What a replay consumer does with spans.
pub trait Visitor {
    /// State kept for each open span (a tree node, a stack path…).
    type Frame;

    /// A span started; `parent` is the state of the span enclosing it on
    /// its thread. Returns the state to keep for it.
    fn start(
        &mut self,
        names: &Names,
        span: &Started,
        parent: Option<&mut Self::Frame>,
    ) -> Self::Frame;

    /// A span ended; `frame` is what [`Self::start`] returned for it and
    /// `parent` the enclosing span's state. Children always end first.
    fn end(
        &mut self,
        names: &Names,
        span: &Ended,
        frame: Self::Frame,
        parent: Option<&mut Self::Frame>,
    );

    /// A `SPAN_END` with no `SPAN_START` before it: a call whose duration
    /// is known but whose place in the stack is not.
    fn orphan(&mut self, names: &Names, span: &Ended) {
        let _ = (names, span);
    }
}

/// What a replay saw.
#[derive(Clone, Debug, Default)]
pub struct Summary {
    /// Rows read.
    pub rows: u64,
    /// Spans replayed (started and ended), over the selected threads.
    pub spans: u64,
    /// `SPAN_END`s without a `SPAN_START` (see `Visitor::orphan`).
    pub orphans: u64,
    /// Spans ended by the replay because an enclosing span ended first.
    pub forced: u64,
    /// Spans with no `SPAN_END`, ended at the last timestamp.
    pub cut: u64,
    /// Span rows without a thread id or span id, skipped.
    pub malformed: u64,
    /// The earliest `ts_ns` of any row.
    pub first_ts_ns: Option<i64>,
    /// The latest `ts_ns` of any row.
    pub last_ts_ns: Option<i64>,
    /// Every thread id seen, when replaying one thread (to suggest others
    /// when it has none).
    pub other_tids: Vec<i32>,
    /// The functions and threads of the replayed spans.
    pub names: Names,
}

/// A row's kind, resolved once per distinct value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Start,
    End,
    Other,
}

/// An open span on a thread's stack.
struct Frame<F> {
    id: i64,
    function: FnIx,
    /// As recorded (what places the span in the stack).
    start_ns: i64,
    /// As shown: `start_ns` less the probe time taken out before it.
    shown_start_ns: i64,
    /// Durations (as shown) of its ended direct children.
    child_ns: u64,
    /// Probe time inside it charged to its ended children: their
    /// `overhead_ns + overhead_outside_ns`.
    child_overhead_ns: u64,
    user: F,
}

/// A thread's shown clock when times are corrected: the probe time to take
/// out of its timeline, and how much of it has been taken out by the
/// thread's latest event. Time is taken out at most as fast as it passes,
/// so the shown clock never runs backwards: spans keep their order and
/// nesting exactly, and a span's place on the timeline is off from its
/// exact (shown) duration only while the clock catches up.
#[derive(Clone, Copy, Debug, Default)]
struct ShownClock {
    /// Probe time owed to the timeline, ns.
    owed: u64,
    /// Probe time taken out so far, ns.
    taken: u64,
    /// The thread's latest event, ns as recorded.
    last_ns: i64,
}

impl ShownClock {
    /// Where the thread's event at `ts_ns` (as recorded) goes on the shown
    /// timeline.
    fn at(&mut self, ts_ns: i64) -> i64 {
        let elapsed = ts_ns.saturating_sub(self.last_ns).max(0) as u64;
        self.taken = self.owed.min(self.taken.saturating_add(elapsed));
        self.last_ns = self.last_ns.max(ts_ns);
        ts_ns.saturating_sub(self.taken as i64)
    }
}

/// ferret's probe time recorded for one `SPAN_END`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Overhead {
    /// Inside the span (`overhead_ns`).
    pub inside_ns: u64,
    /// The span's own probes outside it (`overhead_outside_ns`).
    pub outside_ns: u64,
    /// Its recorded split, `cpu_ns` as measured.
    pub split: Option<SchedSplit>,
}

/// The replay state machine, separate from the file so tests can drive it
/// row by row.
pub(crate) struct Replayer<F> {
    thread_filter: Option<i32>,
    /// Indexed by [`ThreadIx`].
    stacks: Vec<Vec<Frame<F>>>,
    /// Per thread: the `thread_name` dictionary key last checked in this
    /// batch (renames are looked for once per batch and name).
    name_seen: Vec<Option<(u64, usize)>>,
    batch_no: u64,
    /// Spans the replay ended early, whose own `SPAN_END` is still to come.
    forced: HashSet<i64>,
    other_tids: HashSet<i32>,
    /// Per thread ([`ThreadIx`]): its shown clock; never moves when
    /// replaying raw.
    clocks: Vec<ShownClock>,
    /// Times as measured (`--raw`): the overhead columns are ignored.
    raw: bool,
    summary: Summary,
}

/// One span row by strings, for tests that drive the replayer by hand.
#[cfg(test)]
#[derive(Clone, Copy, Debug)]
pub(crate) struct SpanRow<'a> {
    pub start: bool,
    pub ts_ns: i64,
    pub pid: i32,
    pub tid: i32,
    pub thread_name: &'a str,
    pub span_id: i64,
    pub function: &'a str,
    pub module: &'a str,
    pub start_ns: Option<i64>,
    pub status: Option<&'a str>,
    pub overhead: Overhead,
}

impl<F> Replayer<F> {
    pub(crate) fn new(thread_filter: Option<i32>) -> Self {
        Self {
            thread_filter,
            stacks: Vec::new(),
            name_seen: Vec::new(),
            batch_no: 0,
            forced: HashSet::new(),
            other_tids: HashSet::new(),
            clocks: Vec::new(),
            raw: false,
            summary: Summary::default(),
        }
    }

    /// Replays times as measured, leaving ferret's probe time in.
    pub(crate) fn raw(mut self, raw: bool) -> Self {
        self.raw = raw;
        self
    }

    fn batch<V: Visitor<Frame = F>>(&mut self, c: &Columns, visitor: &mut V) {
        self.batch_no += 1;
        // Per distinct value, not per row.
        let kinds = c.kind.map(|k| match k {
            KIND_SPAN_START => Kind::Start,
            KIND_SPAN_END => Kind::End,
            _ => Kind::Other,
        });
        let statuses = c.status.as_ref().map(|s| s.map(|v| Status::parse(Some(v))));
        // (function key, module key) → function, filled as met.
        let mut functions: FxHashMap<(usize, usize), FnIx> = FxHashMap::default();
        let module_key = |i: usize| c.module.as_ref().and_then(|m| m.key(i));
        let mut function_of = |names: &mut Names, i: usize| -> FnIx {
            let f = c.function.key(i);
            let m = module_key(i);
            let key = (f.unwrap_or(usize::MAX), m.unwrap_or(usize::MAX));
            *functions.entry(key).or_insert_with(|| {
                let name = f.map_or("?", |k| c.function.value(k));
                let module = m.map_or("", |k| c.module.as_ref().map_or("", |s| s.value(k)));
                names.intern_function(name, module)
            })
        };
        for i in 0..c.len {
            if !c.ts_ns.is_valid(i) {
                continue;
            }
            let ts_ns = c.ts_ns.value(i);
            self.saw_time(ts_ns);
            let kind = c.kind.key(i).map_or(Kind::Other, |k| kinds[k]);
            if kind == Kind::Other {
                continue;
            }
            if !(c.tid.is_valid(i) && c.span_id.is_valid(i)) {
                self.summary.malformed += 1;
                continue;
            }
            let tid = c.tid.value(i);
            let goroutine = c
                .goroutine
                .as_ref()
                .filter(|a| a.is_valid(i))
                .map(|a| a.value(i));
            // A Go program's calls nest per goroutine: `--thread` names one.
            let selector = goroutine.map_or(i64::from(tid), |g| g);
            if self.thread_filter.is_some_and(|t| i64::from(t) != selector) {
                self.other_tids
                    .insert(i32::try_from(selector).unwrap_or(tid));
                continue;
            }
            let pid = c
                .pid
                .as_ref()
                .filter(|a| a.is_valid(i))
                .map_or(0, |a| a.value(i));
            let thread = if let Some(goid) = goroutine {
                self.summary.names.goroutine_ix(pid, goid, tid)
            } else {
                let name_key = c.thread_name.as_ref().and_then(|n| n.key(i));
                self.thread(pid, tid, name_key, |k| {
                    c.thread_name.as_ref().map_or("", |n| n.value(k))
                })
            };
            let span_id = c.span_id.value(i);
            if kind == Kind::Start {
                let function = function_of(&mut self.summary.names, i);
                self.start(thread, function, span_id, ts_ns, visitor);
            } else {
                let status = match (&statuses, c.status.as_ref().and_then(|s| s.key(i))) {
                    (Some(statuses), Some(k)) => statuses[k],
                    _ => Status::Ok,
                };
                let start_ns = opt_i64(c.start_ns.as_ref(), i);
                let overhead = Overhead {
                    inside_ns: opt_i64(c.overhead_ns.as_ref(), i).map_or(0, |v| v.max(0) as u64),
                    outside_ns: opt_i64(c.overhead_outside_ns.as_ref(), i)
                        .map_or(0, |v| v.max(0) as u64),
                    split: split_at(c, i),
                };
                self.end(
                    thread,
                    span_id,
                    ts_ns,
                    start_ns,
                    status,
                    overhead,
                    visitor,
                    |names| function_of(names, i),
                );
            }
        }
    }

    /// The thread's index; its name is checked for a change once per batch
    /// and dictionary key.
    fn thread<'n>(
        &mut self,
        pid: i32,
        tid: i32,
        name_key: Option<usize>,
        name: impl FnOnce(usize) -> &'n str,
    ) -> ThreadIx {
        let ix = self.summary.names.thread_ix(pid, tid);
        let t = ix.0 as usize;
        if t >= self.name_seen.len() {
            self.name_seen.resize(t + 1, None);
        }
        if let Some(k) = name_key
            && self.name_seen[t] != Some((self.batch_no, k))
        {
            self.name_seen[t] = Some((self.batch_no, k));
            self.summary.names.rename_thread(ix, name(k));
        }
        ix
    }

    fn saw_time(&mut self, ts: i64) {
        let s = &mut self.summary;
        s.first_ts_ns = Some(s.first_ts_ns.map_or(ts, |f| f.min(ts)));
        s.last_ts_ns = Some(s.last_ts_ns.map_or(ts, |l| l.max(ts)));
    }

    /// Feed one span row given by strings (its `ts_ns` must already have
    /// gone through [`Self::saw_time`] when it matters for cut spans).
    #[cfg(test)]
    pub(crate) fn row<V: Visitor<Frame = F>>(&mut self, row: &SpanRow<'_>, visitor: &mut V) {
        if self.thread_filter.is_some_and(|t| t != row.tid) {
            self.other_tids.insert(row.tid);
            return;
        }
        let thread = self
            .summary
            .names
            .intern_thread(row.pid, row.tid, row.thread_name);
        if row.start {
            let function = self.summary.names.intern_function(row.function, row.module);
            self.start(thread, function, row.span_id, row.ts_ns, visitor);
        } else {
            let status = Status::parse(row.status);
            self.end(
                thread,
                row.span_id,
                row.ts_ns,
                row.start_ns,
                status,
                row.overhead,
                visitor,
                |names| names.intern_function(row.function, row.module),
            );
        }
    }

    fn stack(&mut self, thread: ThreadIx) -> &mut Vec<Frame<F>> {
        let t = thread.0 as usize;
        if t >= self.stacks.len() {
            self.stacks.resize_with(t + 1, Vec::new);
        }
        &mut self.stacks[t]
    }

    fn start<V: Visitor<Frame = F>>(
        &mut self,
        thread: ThreadIx,
        function: FnIx,
        span_id: i64,
        ts_ns: i64,
        visitor: &mut V,
    ) {
        self.stack(thread);
        let shown_start_ns = self.clock(thread).at(ts_ns);
        let stack = &mut self.stacks[thread.0 as usize];
        let span = Started {
            id: span_id,
            thread,
            function,
            start_ns: shown_start_ns,
            depth: stack.len() as u32,
        };
        let user = visitor.start(
            &self.summary.names,
            &span,
            stack.last_mut().map(|f| &mut f.user),
        );
        stack.push(Frame {
            id: span_id,
            function,
            start_ns: ts_ns,
            shown_start_ns,
            child_ns: 0,
            child_overhead_ns: 0,
            user,
        });
    }

    #[expect(clippy::too_many_arguments, reason = "one row's fields")]
    fn end<V: Visitor<Frame = F>>(
        &mut self,
        thread: ThreadIx,
        span_id: i64,
        ts_ns: i64,
        start_ns: Option<i64>,
        status: Status,
        overhead: Overhead,
        visitor: &mut V,
        function: impl FnOnce(&mut Names) -> FnIx,
    ) {
        let stack = self.stack(thread);
        // Almost always the top; a scan only for ends that skip frames.
        let pos = match stack.last() {
            Some(top) if top.id == span_id => Some(stack.len() - 1),
            _ => stack.iter().rposition(|f| f.id == span_id),
        };
        let Some(pos) = pos else {
            if self.forced.remove(&span_id) {
                return;
            }
            self.summary.orphans += 1;
            let function = function(&mut self.summary.names);
            let start_ns = start_ns.unwrap_or(ts_ns).min(ts_ns);
            // Nothing else of it is known: its own overhead comes off its
            // end.
            let inside = if self.raw { 0 } else { overhead.inside_ns };
            let end_ns = ts_ns
                .saturating_sub(inside.min(ts_ns.abs_diff(start_ns)) as i64)
                .max(start_ns);
            let span = Ended {
                id: span_id,
                thread,
                function,
                start_ns,
                end_ns,
                status,
                self_ns: end_ns.abs_diff(start_ns),
                depth: 0,
                duration_ns: end_ns.abs_diff(start_ns),
                overhead_ns: overhead.inside_ns,
                split: shown_split(overhead.split, inside),
            };
            visitor.orphan(&self.summary.names, &span);
            return;
        };
        while self.stacks[thread.0 as usize].len() > pos + 1 {
            let id = self.pop(thread, ts_ns, Status::Unwound, Overhead::default(), visitor);
            self.forced.insert(id);
            self.summary.forced += 1;
        }
        self.pop(thread, ts_ns, status, overhead, visitor);
    }

    /// `thread`'s shown clock.
    fn clock(&mut self, thread: ThreadIx) -> &mut ShownClock {
        let t = thread.0 as usize;
        if t >= self.clocks.len() {
            self.clocks.resize(t + 1, ShownClock::default());
        }
        &mut self.clocks[t]
    }

    /// End the top span of `thread` at `end_ns` (as recorded); returns its
    /// id.
    ///
    /// Unless replaying raw, durations are shown with ferret's probe time
    /// taken out: a span's is its measured duration less its `overhead_ns`
    /// (never below 0), its self time that less its children's. Its place
    /// on the timeline ([`ShownClock`]) takes out the same probe time, the
    /// part its children did not when it ends and its `overhead_outside_ns`
    /// after it.
    fn pop<V: Visitor<Frame = F>>(
        &mut self,
        thread: ThreadIx,
        end_ns: i64,
        status: Status,
        overhead: Overhead,
        visitor: &mut V,
    ) -> i64 {
        let recorded_overhead = overhead.inside_ns;
        let overhead = if self.raw {
            Overhead {
                split: overhead.split,
                ..Overhead::default()
            }
        } else {
            overhead
        };
        self.clock(thread);
        let stack = &mut self.stacks[thread.0 as usize];
        let Some(frame) = stack.pop() else {
            return 0;
        };
        // The start is the SPAN_START's time (a SPAN_END's start_ns is the
        // same in any file ferret wrote): it is what placed the span in
        // the stack, so children and parents stay consistent even in a
        // file that disagrees with itself. A clock that ran backwards must
        // not make a negative duration.
        let recorded_end = end_ns.max(frame.start_ns);
        let duration = recorded_end
            .abs_diff(frame.start_ns)
            .saturating_sub(overhead.inside_ns);
        let clock = &mut self.clocks[thread.0 as usize];
        clock.owed += overhead.inside_ns.saturating_sub(frame.child_overhead_ns);
        let end_ns = clock.at(recorded_end).max(frame.shown_start_ns);
        clock.owed += overhead.outside_ns;
        let start_ns = frame.shown_start_ns;
        let span = Ended {
            id: frame.id,
            thread,
            function: frame.function,
            start_ns,
            end_ns,
            status,
            self_ns: duration.saturating_sub(frame.child_ns),
            depth: stack.len() as u32,
            duration_ns: duration,
            overhead_ns: recorded_overhead,
            split: shown_split(overhead.split, overhead.inside_ns),
        };
        let parent = stack.last_mut().map(|p| {
            p.child_ns = p.child_ns.saturating_add(duration);
            p.child_overhead_ns = p
                .child_overhead_ns
                .saturating_add(overhead.inside_ns + overhead.outside_ns);
            &mut p.user
        });
        visitor.end(&self.summary.names, &span, frame.user, parent);
        self.summary.spans += 1;
        frame.id
    }

    /// End every span still open at the last timestamp and return the summary.
    pub(crate) fn finish<V: Visitor<Frame = F>>(mut self, visitor: &mut V) -> Summary {
        let last = self.summary.last_ts_ns.unwrap_or(0);
        for t in 0..self.stacks.len() {
            while let Some(top) = self.stacks[t].last() {
                let end = last.max(top.start_ns);
                self.pop(
                    ThreadIx(t as u32),
                    end,
                    Status::Cut,
                    Overhead::default(),
                    visitor,
                );
                self.summary.cut += 1;
            }
        }
        let mut other: Vec<i32> = self.other_tids.into_iter().collect();
        other.sort_unstable();
        self.summary.other_tids = other;
        self.summary
    }
}

/// The split a `SPAN_END` row recorded, if all three times are there.
fn split_at(c: &Columns, i: usize) -> Option<SchedSplit> {
    let ns = |a: Option<&arrow::array::Int64Array>| opt_i64(a, i).map(|v| v.max(0) as u64);
    Some(SchedSplit {
        cpu_ns: ns(c.cpu_ns.as_ref())?,
        runnable_ns: ns(c.runnable_ns.as_ref())?,
        blocked_ns: ns(c.blocked_ns.as_ref())?,
        blocked_in: c
            .blocked_in
            .as_ref()
            .and_then(|s| s.key(i).map(|k| s.value(k)))
            .and_then(BlockedIn::from_name),
    })
}

/// The split as shown: ferret's probe time inside the span (`overhead`,
/// 0 with `--raw`) comes off its CPU time, as off its duration.
fn shown_split(split: Option<SchedSplit>, overhead: u64) -> Option<SchedSplit> {
    split.map(|s| SchedSplit {
        cpu_ns: s.cpu_ns.saturating_sub(overhead),
        ..s
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::HashMap;

    use super::*;

    /// Records every callback as text, and checks nesting as it goes.
    #[derive(Default)]
    pub(crate) struct Log(pub Vec<String>);

    impl Visitor for Log {
        type Frame = i64;
        fn start(&mut self, n: &Names, s: &Started, parent: Option<&mut i64>) -> i64 {
            self.0.push(format!(
                "start {} {} d{} p{:?}",
                n.function(s.function).name,
                s.id,
                s.depth,
                parent.map(|p| *p)
            ));
            s.id
        }
        fn end(&mut self, n: &Names, s: &Ended, frame: i64, _parent: Option<&mut i64>) {
            assert_eq!(frame, s.id, "frames come back to their span");
            self.0.push(format!(
                "end {} {} {}..{} self {} {}",
                n.function(s.function).name,
                s.id,
                s.start_ns,
                s.end_ns,
                s.self_ns,
                s.status.as_str()
            ));
        }
        fn orphan(&mut self, n: &Names, s: &Ended) {
            self.0
                .push(format!("orphan {} {}", n.function(s.function).name, s.id));
        }
    }

    /// A row: `(start?, ts, tid, span, function, status)`.
    pub(crate) type Spec<'a> = (bool, i64, i32, i64, &'a str, &'a str);

    /// Replays hand-written rows (start rows ignore the status).
    pub(crate) fn replay<V: Visitor>(
        rows: &[Spec<'_>],
        thread: Option<i32>,
        visitor: &mut V,
    ) -> Summary {
        let mut r = Replayer::new(thread);
        let mut starts = HashMap::new();
        for &(start, ts, tid, id, function, status) in rows {
            r.saw_time(ts);
            if start {
                starts.insert(id, ts);
            }
            r.row(
                &SpanRow {
                    start,
                    ts_ns: ts,
                    pid: 1,
                    tid,
                    thread_name: "t",
                    span_id: id,
                    function,
                    module: "/bin/x",
                    start_ns: if start {
                        None
                    } else {
                        starts.get(&id).copied()
                    },
                    status: (!start).then_some(status),
                    overhead: Overhead::default(),
                },
                visitor,
            );
        }
        r.finish(visitor)
    }

    const S: bool = true;
    const E: bool = false;

    #[test]
    fn self_time_subtracts_direct_children_only() {
        let mut log = Log::default();
        let summary = replay(
            &[
                (S, 0, 1, 1, "a", ""),
                (S, 10, 1, 2, "b", ""),
                (S, 20, 1, 3, "c", ""),
                (E, 30, 1, 3, "c", "ok"),
                (E, 50, 1, 2, "b", "ok"),
                (S, 60, 1, 4, "b", ""),
                (E, 70, 1, 4, "b", "unwound"),
                (E, 100, 1, 1, "a", "ok"),
            ],
            None,
            &mut log,
        );
        assert_eq!(
            log.0,
            [
                "start a 1 d0 pNone",
                "start b 2 d1 pSome(1)",
                "start c 3 d2 pSome(2)",
                "end c 3 20..30 self 10 ok",
                "end b 2 10..50 self 30 ok",
                "start b 4 d1 pSome(1)",
                "end b 4 60..70 self 10 unwound",
                // 100 - (40 + 10): c's time is b's child time, not a's.
                "end a 1 0..100 self 50 ok",
            ]
        );
        assert_eq!((summary.spans, summary.orphans, summary.cut), (4, 0, 0));
    }

    #[test]
    fn spans_without_an_end_close_at_the_last_timestamp_innermost_first() {
        let mut log = Log::default();
        let summary = replay(
            &[
                (S, 0, 1, 1, "a", ""),
                (S, 10, 1, 2, "b", ""),
                (S, 15, 2, 3, "c", ""),
                (E, 40, 2, 3, "c", "open"),
            ],
            None,
            &mut log,
        );
        assert_eq!(
            &log.0[3..],
            [
                "end c 3 15..40 self 25 open",
                "end b 2 10..40 self 30 cut",
                "end a 1 0..40 self 10 cut",
            ]
        );
        assert_eq!(summary.cut, 2);
        assert_eq!(summary.last_ts_ns, Some(40));
    }

    #[test]
    fn an_end_below_the_top_ends_the_spans_above_it_first() {
        let mut log = Log::default();
        let summary = replay(
            &[
                (S, 0, 1, 1, "a", ""),
                (S, 10, 1, 2, "b", ""),
                (E, 20, 1, 1, "a", "unwound"),
                // b's own end, late: already ended by the replay.
                (E, 25, 1, 2, "b", "ok"),
            ],
            None,
            &mut log,
        );
        assert_eq!(
            &log.0[2..],
            [
                "end b 2 10..20 self 10 unwound",
                "end a 1 0..20 self 10 unwound"
            ]
        );
        assert_eq!((summary.forced, summary.orphans), (1, 0));
    }

    #[test]
    fn an_end_without_a_start_is_an_orphan_outside_the_stack() {
        let mut log = Log::default();
        let summary = replay(
            &[
                (S, 0, 1, 1, "a", ""),
                (E, 5, 1, 9, "x", "ok"),
                (E, 10, 1, 1, "a", "ok"),
            ],
            None,
            &mut log,
        );
        assert_eq!(
            log.0,
            [
                "start a 1 d0 pNone",
                "orphan x 9",
                "end a 1 0..10 self 10 ok"
            ]
        );
        assert_eq!(summary.orphans, 1);
    }

    #[test]
    fn thread_filter_keeps_one_thread_and_lists_the_others() {
        let mut log = Log::default();
        let summary = replay(
            &[
                (S, 0, 1, 1, "a", ""),
                (S, 1, 2, 2, "b", ""),
                (E, 2, 2, 2, "b", "ok"),
                (E, 3, 1, 1, "a", "ok"),
            ],
            Some(2),
            &mut log,
        );
        assert_eq!(log.0, ["start b 2 d0 pNone", "end b 2 1..2 self 1 ok"]);
        assert_eq!(summary.other_tids, [1]);
    }

    /// Writes spans of a Go program: goroutine 7 starts `a` on thread 1,
    /// goroutine 8 starts `a` on thread 1 too, goroutine 7 moves to thread
    /// 2 and calls `b`, then both return.
    fn go_recording(path: &std::path::Path) {
        use crate::sink::{RecordingMeta, RecordingWriter};
        use crate::trace::{FunctionInfo, SpanEnd, SpanEvent, SpanStart, SpanStatus, ThreadName};
        let functions: std::sync::Arc<[FunctionInfo]> = ["main.a", "main.b"]
            .map(|name| FunctionInfo {
                name: name.into(),
                module: "/bin/go".into(),
            })
            .into();
        let mut w = RecordingWriter::create(
            path,
            functions,
            RecordingMeta {
                target: "go".into(),
                probes: "-s main.*".into(),
                realtime_offset_ns: 0,
            },
        )
        .unwrap();
        let start = |span_id, parent, depth, tid, function, ts_ns, goid| {
            SpanEvent::Start(SpanStart {
                span_id,
                parent_span_id: parent,
                depth,
                pid: 5,
                tid,
                thread_name: ThreadName::new("go"),
                function,
                ts_ns,
                before_attach: false,
                goroutine: Some(goid),
            })
        };
        let end = |span_id, parent, depth, tid, function, start_ns, ts_ns, goid| {
            SpanEvent::End(SpanEnd {
                span_id,
                parent_span_id: parent,
                depth,
                pid: 5,
                tid,
                thread_name: ThreadName::new("go"),
                function,
                start_ns,
                ts_ns,
                status: SpanStatus::Ok,
                overhead_ns: 0,
                overhead_outside_ns: 0,
                goroutine: Some(goid),
                sched: None,
            })
        };
        for ev in [
            start(1, None, 0, 1, 0, 10, 7),
            start(2, None, 0, 1, 0, 20, 8),
            start(3, Some(1), 1, 2, 1, 30, 7),
            end(2, None, 0, 1, 0, 20, 40, 8),
            end(3, Some(1), 1, 3, 1, 30, 50, 7),
            end(1, None, 0, 2, 0, 10, 60, 7),
        ] {
            w.write_span(&ev).unwrap();
        }
        w.finish(0, &[]).unwrap();
    }

    #[test]
    fn a_go_recording_replays_per_goroutine_whatever_threads_ran_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("go.parquet");
        go_recording(&path);
        let recording = crate::analyze::Recording::open(&path).unwrap();
        let mut log = Log::default();
        let summary = recording.replay(None, &mut log, &mut |_| {}).unwrap();
        assert_eq!(
            log.0,
            [
                "start main.a 1 d0 pNone",
                "start main.a 2 d0 pNone",
                "start main.b 3 d1 pSome(1)",
                "end main.a 2 20..40 self 20 ok",
                "end main.b 3 30..50 self 20 ok",
                "end main.a 1 10..60 self 30 ok",
            ]
        );
        let tracks: Vec<(Option<i64>, i32, &str)> = summary
            .names
            .threads()
            .iter()
            .map(|t| (t.goroutine, t.tid, t.name.as_str()))
            .collect();
        assert_eq!(
            tracks,
            [(Some(7), 1, "goroutine 7"), (Some(8), 1, "goroutine 8")]
        );
        // `--thread` names a goroutine.
        let mut log = Log::default();
        recording.replay(Some(8), &mut log, &mut |_| {}).unwrap();
        assert_eq!(
            log.0,
            ["start main.a 2 d0 pNone", "end main.a 2 20..40 self 20 ok"]
        );
    }

    /// A span row with ferret's probe times, for the correction tests.
    fn costed(start: bool, ts: i64, id: i64, function: &str, overhead: (u64, u64)) -> SpanRow<'_> {
        SpanRow {
            start,
            ts_ns: ts,
            pid: 1,
            tid: 1,
            thread_name: "t",
            span_id: id,
            function,
            module: "/bin/x",
            start_ns: None,
            status: (!start).then_some("ok"),
            overhead: Overhead {
                inside_ns: overhead.0,
                outside_ns: overhead.1,
                split: None,
            },
        }
    }

    /// A parent calling two children, each of whose probes cost 10 ns
    /// inside them and 20 ns outside; the parent's own exit bias is 5.
    fn corrected_tree(raw: bool) -> Vec<String> {
        let mut r = Replayer::new(None).raw(raw);
        let mut log = Log::default();
        let rows = [
            costed(true, 0, 1, "parent", (0, 0)),
            costed(true, 100, 2, "child", (0, 0)),
            costed(false, 150, 2, "child", (10, 20)),
            costed(true, 200, 3, "child", (0, 0)),
            costed(false, 260, 3, "child", (10, 20)),
            // 5 of its own + both children's 30.
            costed(false, 400, 1, "parent", (65, 0)),
        ];
        for row in &rows {
            r.saw_time(row.ts_ns);
            r.row(row, &mut log);
        }
        r.finish(&mut log);
        log.0
    }

    #[test]
    fn corrected_times_take_each_spans_overhead_out_of_its_thread() {
        let log = corrected_tree(false);
        assert_eq!(
            log,
            [
                "start parent 1 d0 pNone",
                "start child 2 d1 pSome(1)",
                // 50 measured, 10 of it probes.
                "end child 2 100..140 self 40 ok",
                // Starts after the first child's 10 inside and 20 outside.
                "start child 3 d1 pSome(1)",
                "end child 3 170..220 self 50 ok",
                // 400 measured less 65: children 40 + 50, self 245.
                "end parent 1 0..335 self 245 ok",
            ]
        );
        // Measured, every time is as recorded.
        let raw = corrected_tree(true);
        assert_eq!(raw[2], "end child 2 100..150 self 50 ok");
        assert_eq!(raw[5], "end parent 1 0..400 self 290 ok");
    }

    #[test]
    fn corrected_times_never_run_backwards_or_out_of_their_parent() {
        // Overheads larger than what was measured: a span shrinks to
        // nothing at worst, and its parent still holds it.
        let mut r = Replayer::new(None);
        let mut log = Log::default();
        for row in [
            costed(true, 0, 1, "parent", (0, 0)),
            costed(true, 10, 2, "child", (0, 0)),
            costed(false, 20, 2, "child", (500, 500)),
            costed(false, 30, 1, "parent", (10, 0)),
        ] {
            r.saw_time(row.ts_ns);
            r.row(&row, &mut log);
        }
        assert_eq!(log.0[2], "end child 2 10..10 self 0 ok");
        // Its duration stays exact (30 measured less 10), though the child's
        // excess squeezed its place on the timeline.
        assert_eq!(log.0[3], "end parent 1 0..10 self 20 ok");
    }
}
