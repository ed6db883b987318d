//! The reconstructor: per-thread open call stacks rebuilt from raw entry/exit
//! hits, emitted as the span lifecycle.
//!
//! Probes can be lost (ring buffer full, the kernel's cap on pending
//! uretprobes), tracing can begin while functions are already running, and
//! functions can be left without a return (exceptions, panics, `longjmp`). The
//! stack pointer is what keeps the stacks honest: on x86-64 the stack grows
//! down, and every event carries the stack pointer as it was at the function's
//! entry, so a frame whose `sp` is below the current event's `sp` cannot still
//! be running. Such frames end as [`SpanStatus::Unwound`]. Exits match their
//! entry by `(function, sp)`; an exit with no matching entry is counted and
//! ignored.
//!
//! Invariant: on every thread the open frames' `sp` never increases from the
//! outermost to the innermost frame (an entry first retires every frame below
//! its `sp`). So frames sharing an event's `sp` form a block at the top of the
//! stack, and matching an exit costs O(block), not O(depth).
//!
//! Go programs keep a stack per goroutine, not per thread ([`StackKey`]):
//! a goroutine moves between threads, and its calls stay on its stack. The
//! runtime also moves a goroutine's stack when it grows or shrinks, so a Go
//! event's `sp` is not an address but the distance from the top of the
//! goroutine's stack (made by the decoder), which the move preserves; with
//! it the rules above hold unchanged. One more holds for goroutines: Go
//! makes no tail calls between traced functions (a wrapper's jump is its
//! exit, probed before the jump), so an entry at or above an open frame's
//! `sp` means that frame was left without a return: a panic unwound it,
//! and it ends as [`SpanStatus::Unwound`].
//!
//! Where a span's time went (on a CPU, runnable, blocked) is the difference
//! between the thread's (Go: the goroutine's) cumulative scheduler counters
//! at its start and at its end, carried by the events (see [`SchedCounters::until`]: a split
//! across lost events or restarted counters is null, never wrong). What
//! the blocked time was spent in comes from [`RawKind::Blocked`] records,
//! each charged to the thread's innermost open span and handed to the
//! parent when that span ends, so every span holds its descendants' too.
//!
//! Memory is bounded by the open frames: a thread with nothing open is
//! forgotten, and no history of ended spans is kept.

use std::collections::BTreeMap;

use std::sync::Arc;

use super::event::{
    BlockedIn, FunctionCost, RawEvent, RawKind, SchedCounters, SchedSplit, SpanEnd, SpanEvent,
    SpanStart, SpanStatus, ThreadName,
};

/// How many emptied frame vectors are kept for reuse, so threads that keep
/// entering and leaving their outermost traced function do not allocate.
const SPARE_STACKS: usize = 64;

/// Capacity above which an emptied frame vector is shrunk before reuse, so one
/// deep recursion does not pin its memory for the rest of the recording.
const SPARE_CAPACITY: usize = 256;

/// A span that has started and not yet ended, as held on its thread's stack.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenSpan {
    /// The span's id (shared by its start and end events).
    pub span_id: u64,
    /// The enclosing open span on the same thread, if any.
    pub parent_span_id: Option<u64>,
    /// Index into the probe table.
    pub function: u32,
    /// Start time, `CLOCK_MONOTONIC` ns.
    pub start_ns: u64,
    /// 0 for the outermost open span of its thread.
    pub depth: u32,
    /// The stack pointer at the function's entry.
    pub sp: u64,
    /// The thread's name as carried by the span's start event.
    pub thread_name: ThreadName,
    /// The function was already running when tracing began: the span was
    /// adopted from the thread's stack ([`Reconstructor::adopt`]) and its
    /// `start_ns` is when tracing began, not when the call was made.
    pub before_attach: bool,
    /// ferret's probe time inside the span so far: the probes of its traced
    /// descendants that have ended (see [`FunctionCost`]).
    pub overhead_ns: u64,
    /// The thread's scheduler counters at the span's start
    /// ([`SchedCounters::NONE`]: unknown, so the span gets no split).
    pub sched: SchedCounters,
    /// Blocked time inside the span so far, by what it was blocked in: the
    /// thread's blocked intervals while this was its innermost span, and its
    /// ended children's.
    pub blocked: Vec<(BlockedIn, u64)>,
}

/// Whose stack a frame is on: a thread's, or in a Go program a goroutine's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum StackKey {
    /// Thread `tid`.
    Thread(u32),
    /// Goroutine `goid`.
    Goroutine(u64),
}

impl StackKey {
    /// The key of the stack `ev` belongs to.
    #[inline]
    fn of(ev: &RawEvent) -> Self {
        match ev.goroutine {
            None => Self::Thread(ev.tid),
            Some(goid) => Self::Goroutine(goid),
        }
    }

    /// The goroutine, if a goroutine's.
    pub const fn goroutine(self) -> Option<u64> {
        match self {
            Self::Thread(_) => None,
            Self::Goroutine(goid) => Some(goid),
        }
    }
}

/// One thread's (or goroutine's) open call stack, for a live view.
#[derive(Clone, Copy, Debug)]
pub struct ThreadStack<'a> {
    /// Process id.
    pub pid: u32,
    /// Thread id; for a goroutine, the thread it last ran a traced call on.
    pub tid: u32,
    /// The goroutine whose stack this is (Go programs); `None` for a
    /// thread's.
    pub goroutine: Option<u64>,
    /// The thread's name as carried by its most recent event.
    pub thread_name: &'a ThreadName,
    /// Open spans, outermost first.
    pub frames: &'a [OpenSpan],
    /// Events were lost while some of these frames were open, so frames may
    /// be missing from (or left over on) this stack. Cleared once the thread
    /// has nothing open.
    pub maybe_incomplete: bool,
    /// When this thread last entered or left a traced function (or had
    /// frames adopted): how long it has been quiet inside its innermost span.
    pub last_event_ns: u64,
}

/// One thread's (goroutine's) state: only exists while it has open frames.
#[derive(Debug)]
struct ThreadState {
    /// The thread of the latest event (a goroutine's changes).
    tid: u32,
    name: ThreadName,
    frames: Vec<OpenSpan>,
    suspect: bool,
    last_event_ns: u64,
}

/// Rebuilds per-thread open stacks from raw events.
///
/// Feed events in the order the ring buffer delivered them; the output is the
/// span lifecycle in causal order (a span's end never precedes its start, and
/// on each thread spans nest properly: children end before their parent).
#[derive(Debug)]
pub struct Reconstructor {
    /// Keyed by (pid, thread or goroutine); ordered so that bulk
    /// operations (process exit, finish) and the live view are
    /// deterministic.
    threads: BTreeMap<(u32, StackKey), ThreadState>,
    next_span_id: u64,
    open: usize,
    orphan_exits: u64,
    lost_events: u64,
    spare: Vec<Vec<OpenSpan>>,
    /// What a call of each function costs, by function id; empty: nothing
    /// is corrected.
    costs: Arc<[FunctionCost]>,
}

impl Default for Reconstructor {
    fn default() -> Self {
        Self::new()
    }
}

impl Reconstructor {
    /// An empty reconstructor; span ids start at 1.
    pub fn new() -> Self {
        Self {
            threads: BTreeMap::new(),
            next_span_id: 1,
            open: 0,
            orphan_exits: 0,
            lost_events: 0,
            spare: Vec::new(),
            costs: Arc::from([]),
        }
    }

    /// What a call of each function costs (by function id), for the
    /// [`SpanEnd::overhead_ns`] of spans that end from now on.
    pub fn set_costs(&mut self, costs: Arc<[FunctionCost]>) {
        self.costs = costs;
    }

    /// Feed one raw event; append the resulting span events to `out` in
    /// causal order.
    pub fn push(&mut self, ev: &RawEvent, out: &mut Vec<SpanEvent>) {
        match ev.kind {
            RawKind::Entry => self.entry(ev, out),
            RawKind::Exit => self.exit(ev, out),
            // A goroutine outlives the thread it ran on; only the thread's
            // own stack ends.
            RawKind::ThreadExit => {
                let key = StackKey::Thread(ev.tid);
                if let Some(thread) = self.threads.remove(&(ev.pid, key)) {
                    let end = ev.sched;
                    self.close_thread(
                        ev.pid,
                        key,
                        thread,
                        ev.ts_ns,
                        SpanStatus::Unwound,
                        &end,
                        out,
                    );
                }
            }
            RawKind::Blocked { ns, syscall } => self.blocked(ev, ns, syscall),
            RawKind::Exec => self.process_exit(ev.pid, ev.ts_ns, out),
            RawKind::GoUnwind => self.go_unwind(ev, out),
            // A forked child starts with a copy of its parent's stack, but
            // only the calls it makes from now on are seen: nothing to do.
            RawKind::Fork { .. } => {}
        }
    }

    /// Close every open span of process `pid` (the process exited) as
    /// [`SpanStatus::Unwound`] at `ts_ns`, innermost first, thread by thread
    /// (then goroutine by goroutine).
    pub fn process_exit(&mut self, pid: u32, ts_ns: u64, out: &mut Vec<SpanEvent>) {
        let keys: Vec<StackKey> = self
            .threads
            .range((pid, StackKey::Thread(0))..=(pid, StackKey::Goroutine(u64::MAX)))
            .map(|(&(_, key), _)| key)
            .collect();
        for key in keys {
            if let Some(thread) = self.threads.remove(&(pid, key)) {
                let none = SchedCounters::NONE;
                self.close_thread(pid, key, thread, ts_ns, SpanStatus::Unwound, &none, out);
            }
        }
    }

    /// The recording stopped: end every open span with status
    /// [`SpanStatus::Open`] at `ts_ns`, innermost first, thread by thread.
    ///
    /// The reconstructor is empty afterwards and can keep going; span ids
    /// keep counting up.
    pub fn finish(&mut self, ts_ns: u64, out: &mut Vec<SpanEvent>) {
        for ((pid, key), thread) in std::mem::take(&mut self.threads) {
            let none = SchedCounters::NONE;
            self.close_thread(pid, key, thread, ts_ns, SpanStatus::Open, &none, out);
        }
    }

    /// The kernel reported `count` lost events: every stack open right now
    /// may be missing frames or hold frames that already ended. The stacks
    /// heal by themselves (the stack-pointer rule retires dead frames, exits
    /// without an entry are ignored); until a thread's stack empties, the
    /// live view flags it with [`ThreadStack::maybe_incomplete`].
    ///
    /// A thread first seen after the loss cannot be flagged: if its earliest
    /// events were the lost ones, its outer frames are simply never known.
    pub fn mark_lost(&mut self, count: u64) {
        self.lost_events = self.lost_events.saturating_add(count);
        for thread in self.threads.values_mut() {
            thread.suspect = true;
        }
    }

    /// Total lost events reported through [`Self::mark_lost`].
    pub fn lost_events(&self) -> u64 {
        self.lost_events
    }

    /// Exits that matched no open entry and were ignored: the function was
    /// already running when tracing began, or its entry was lost.
    pub fn orphan_exits(&self) -> u64 {
        self.orphan_exits
    }

    /// Number of currently open spans, over all threads.
    pub fn open_spans(&self) -> usize {
        self.open
    }

    /// Every thread with open spans, ordered by (pid, tid). Goroutines'
    /// stacks are not among them (see [`Self::goroutines`]): a goroutine is
    /// not stuck where its last thread is.
    pub fn threads(&self) -> impl Iterator<Item = ThreadStack<'_>> {
        self.stacks().filter(|s| s.goroutine.is_none())
    }

    /// Every goroutine with open spans (Go programs), ordered by (pid, goid).
    pub fn goroutines(&self) -> impl Iterator<Item = ThreadStack<'_>> {
        self.stacks().filter(|s| s.goroutine.is_some())
    }

    /// Every open stack: per process, threads by tid, then goroutines by id.
    pub fn stacks(&self) -> impl Iterator<Item = ThreadStack<'_>> {
        self.threads
            .iter()
            .map(|(&(pid, key), thread)| ThreadStack {
                pid,
                tid: thread.tid,
                goroutine: key.goroutine(),
                thread_name: &thread.name,
                frames: &thread.frames,
                maybe_incomplete: thread.suspect,
                last_event_ns: thread.last_event_ns,
            })
    }

    /// Thread `ev.tid` (or Go goroutine `ev.goroutine`, in a system call
    /// on it or parked) was blocked for `ns` in `syscall`: charged to its
    /// innermost open span (which was open throughout: the thread, or the
    /// goroutine, ran nothing while blocked).
    fn blocked(&mut self, ev: &RawEvent, ns: u64, syscall: BlockedIn) {
        let Some(thread) = self.threads.get_mut(&(ev.pid, StackKey::of(ev))) else {
            return;
        };
        if let Some(top) = thread.frames.last_mut() {
            add_blocked(&mut top.blocked, syscall, ns);
        }
    }

    fn entry(&mut self, ev: &RawEvent, out: &mut Vec<SpanEvent>) {
        let spare = &mut self.spare;
        let thread = self
            .threads
            .entry((ev.pid, StackKey::of(ev)))
            .or_insert_with(|| ThreadState {
                tid: ev.tid,
                name: ev.thread_name,
                frames: spare.pop().unwrap_or_default(),
                suspect: false,
                last_event_ns: ev.ts_ns,
            });
        thread.tid = ev.tid;
        thread.name = ev.thread_name;
        thread.last_event_ns = ev.ts_ns;
        // No tail calls in Go: a goroutine's frame at or above the entry's
        // sp was left without returning.
        let at_or_above = ev.goroutine.is_some();
        self.open -= retire_dead(&mut thread.frames, ev, at_or_above, &self.costs, out);

        let span_id = self.next_span_id;
        self.next_span_id += 1;
        let parent_span_id = thread.frames.last().map(|f| f.span_id);
        let depth = thread.frames.len() as u32;
        out.push(SpanEvent::Start(SpanStart {
            span_id,
            parent_span_id,
            depth,
            pid: ev.pid,
            tid: ev.tid,
            thread_name: ev.thread_name,
            function: ev.function,
            ts_ns: ev.ts_ns,
            before_attach: false,
            goroutine: ev.goroutine,
        }));
        // A frame at the top's own sp is pushed, not substituted: a tail call
        // keeps the caller's stack slot, and with uretprobes both exits come.
        thread.frames.push(OpenSpan {
            span_id,
            parent_span_id,
            function: ev.function,
            start_ns: ev.ts_ns,
            depth,
            sp: ev.sp,
            thread_name: ev.thread_name,
            before_attach: false,
            overhead_ns: 0,
            // A Go probe carries its goroutine's counters (the kernel side
            // follows the goroutine across threads), a thread's probe its
            // thread's: either way the span's stack is theirs.
            sched: ev.sched,
            blocked: Vec::new(),
        });
        self.open += 1;
    }

    /// A goroutine resumed after a recovered panic: its frames at or below
    /// the event's `sp` (the resuming function's callees) were unwound.
    fn go_unwind(&mut self, ev: &RawEvent, out: &mut Vec<SpanEvent>) {
        if ev.goroutine.is_none() {
            return;
        }
        let key = (ev.pid, StackKey::of(ev));
        let Some(thread) = self.threads.get_mut(&key) else {
            return;
        };
        thread.tid = ev.tid;
        thread.name = ev.thread_name;
        thread.last_event_ns = ev.ts_ns;
        self.open -= retire_dead(&mut thread.frames, ev, true, &self.costs, out);
        if thread.frames.is_empty() {
            let thread = self.threads.remove(&key).expect("thread present");
            self.recycle(thread.frames);
        }
    }

    fn exit(&mut self, ev: &RawEvent, out: &mut Vec<SpanEvent>) {
        let key = (ev.pid, StackKey::of(ev));
        let Some(thread) = self.threads.get_mut(&key) else {
            self.orphan_exits += 1;
            return;
        };
        thread.tid = ev.tid;
        thread.name = ev.thread_name;
        thread.last_event_ns = ev.ts_ns;
        self.open -= retire_dead(&mut thread.frames, ev, false, &self.costs, out);

        // After retiring, every frame has sp >= ev.sp, and those equal to it
        // are the top block (see the module invariant).
        let matched = thread
            .frames
            .iter()
            .rev()
            .take_while(|f| f.sp == ev.sp)
            .position(|f| f.function == ev.function)
            .map(|from_top| thread.frames.len() - 1 - from_top);
        match matched {
            Some(index) => {
                // Frames above the match were left without their own exit
                // (lost, or unwound past): they end now, innermost first.
                while thread.frames.len() > index + 1 {
                    out.push(end_top(
                        &mut thread.frames,
                        &self.costs,
                        ev.pid,
                        ev.tid,
                        ev.goroutine,
                        ev.ts_ns,
                        SpanStatus::Unwound,
                        &ev.sched,
                    ));
                    self.open -= 1;
                }
                out.push(end_top(
                    &mut thread.frames,
                    &self.costs,
                    ev.pid,
                    ev.tid,
                    ev.goroutine,
                    ev.ts_ns,
                    SpanStatus::Ok,
                    &ev.sched,
                ));
                self.open -= 1;
            }
            None => self.orphan_exits += 1,
        }
        if thread.frames.is_empty() {
            let thread = self.threads.remove(&key).expect("thread present");
            self.recycle(thread.frames);
        }
    }

    /// Opens spans for calls that were already running when tracing began,
    /// found on thread `tid`'s stack: `frames` are (function, stack pointer
    /// at the function's entry), outermost first. Their start is `ts_ns`
    /// (when tracing began) and they are marked
    /// [`OpenSpan::before_attach`]; their exits match by `(function, sp)`
    /// like any other.
    ///
    /// A frame that matches a span already open (its entry was traced
    /// between attaching and reading the stack) is that span and is
    /// skipped; so is one that would not sit outside every open frame
    /// (the stack moved while it was read). Adopted spans go below the open
    /// ones, at depths 0, 1, …; spans opened before the adoption keep the
    /// depth they started with. Returns the adopted span ids, outermost
    /// first.
    pub fn adopt(
        &mut self,
        pid: u32,
        tid: u32,
        thread_name: &ThreadName,
        frames: &[(u32, u64)],
        ts_ns: u64,
        out: &mut Vec<SpanEvent>,
    ) -> Vec<u64> {
        let spare = &mut self.spare;
        let thread = self
            .threads
            .entry((pid, StackKey::Thread(tid)))
            .or_insert_with(|| ThreadState {
                tid,
                name: *thread_name,
                frames: spare.pop().unwrap_or_default(),
                suspect: false,
                last_event_ns: ts_ns,
            });
        let outermost = thread.frames.first().map(|f| f.sp);
        let mut adopted: Vec<OpenSpan> = Vec::new();
        for &(function, sp) in frames {
            let known = thread
                .frames
                .iter()
                .any(|f| f.function == function && f.sp == sp);
            let outside = outermost.is_none_or(|o| sp > o);
            let nested = adopted.last().is_none_or(|a| sp <= a.sp);
            if known || !outside || !nested {
                continue;
            }
            let span_id = self.next_span_id;
            self.next_span_id += 1;
            let parent_span_id = adopted.last().map(|a| a.span_id);
            let depth = adopted.len() as u32;
            out.push(SpanEvent::Start(SpanStart {
                span_id,
                parent_span_id,
                depth,
                pid,
                tid,
                thread_name: *thread_name,
                function,
                ts_ns,
                before_attach: true,
                goroutine: None,
            }));
            adopted.push(OpenSpan {
                span_id,
                parent_span_id,
                function,
                start_ns: ts_ns,
                depth,
                sp,
                thread_name: *thread_name,
                before_attach: true,
                overhead_ns: 0,
                sched: SchedCounters::NONE,
                blocked: Vec::new(),
            });
        }
        let ids: Vec<u64> = adopted.iter().map(|a| a.span_id).collect();
        self.open += adopted.len();
        thread.last_event_ns = thread.last_event_ns.max(ts_ns);
        thread.frames.splice(0..0, adopted);
        if thread.frames.is_empty() {
            let thread = self
                .threads
                .remove(&(pid, StackKey::Thread(tid)))
                .expect("thread present");
            self.recycle(thread.frames);
        }
        ids
    }

    /// Span `span_id` of thread (or goroutine) `key` is known to have
    /// ended unseen (its frame is no longer on the stack: an adopted call
    /// whose exit carried no probe, a lost exit, a goroutine that is gone).
    /// Ends it and every span opened inside it as [`SpanStatus::Unwound`]
    /// at `ts_ns`, innermost first. Returns whether the span was open.
    pub fn retire(
        &mut self,
        pid: u32,
        key: StackKey,
        span_id: u64,
        ts_ns: u64,
        out: &mut Vec<SpanEvent>,
    ) -> bool {
        let key = (pid, key);
        let Some(thread) = self.threads.get_mut(&key) else {
            return false;
        };
        let Some(index) = thread.frames.iter().position(|f| f.span_id == span_id) else {
            return false;
        };
        while thread.frames.len() > index {
            out.push(end_top(
                &mut thread.frames,
                &self.costs,
                pid,
                thread.tid,
                key.1.goroutine(),
                ts_ns,
                SpanStatus::Unwound,
                &SchedCounters::NONE,
            ));
            self.open -= 1;
        }
        if thread.frames.is_empty() {
            let thread = self.threads.remove(&key).expect("thread present");
            self.recycle(thread.frames);
        }
        true
    }

    /// End all of a removed thread's (goroutine's) frames, innermost first.
    #[expect(clippy::too_many_arguments, reason = "one end of a stack; private")]
    fn close_thread(
        &mut self,
        pid: u32,
        key: StackKey,
        mut thread: ThreadState,
        ts_ns: u64,
        status: SpanStatus,
        end: &SchedCounters,
        out: &mut Vec<SpanEvent>,
    ) {
        self.open -= thread.frames.len();
        while !thread.frames.is_empty() {
            out.push(end_top(
                &mut thread.frames,
                &self.costs,
                pid,
                thread.tid,
                key.goroutine(),
                ts_ns,
                status,
                end,
            ));
        }
        self.recycle(thread.frames);
    }

    fn recycle(&mut self, mut frames: Vec<OpenSpan>) {
        debug_assert!(frames.is_empty());
        if self.spare.len() < SPARE_STACKS {
            frames.shrink_to(SPARE_CAPACITY);
            self.spare.push(frames);
        }
    }
}

/// End, as unwound at the event's time, every frame below the event's stack
/// pointer (and with `at_or_above`, at it too): execution is now shallower
/// than those frames, so they are gone. Returns how many were ended.
fn retire_dead(
    frames: &mut Vec<OpenSpan>,
    ev: &RawEvent,
    at_or_above: bool,
    costs: &[FunctionCost],
    out: &mut Vec<SpanEvent>,
) -> usize {
    let mut ended = 0;
    while frames
        .last()
        .is_some_and(|f| f.sp < ev.sp || (at_or_above && f.sp == ev.sp))
    {
        out.push(end_top(
            frames,
            costs,
            ev.pid,
            ev.tid,
            ev.goroutine,
            ev.ts_ns,
            SpanStatus::Unwound,
            &ev.sched,
        ));
        ended += 1;
    }
    ended
}

/// Ends the innermost open frame at `ts_ns` and charges what its probes
/// cost to the frame it was called from.
///
/// A call that returned carries its exit probe's share of its own duration
/// (`bias_ns`) plus its descendants' probes; its parent is charged all of
/// its probes (`hit_ns`) plus the same descendants. A call left without an
/// exit (unwound, or still open at the stop) had only its entry probe.
///
/// `end` holds the thread's scheduler counters at `ts_ns`, if known; the
/// span's blocked time by system call goes to its parent.
#[expect(
    clippy::too_many_arguments,
    reason = "the end of one span; one caller shape"
)]
fn end_top(
    frames: &mut Vec<OpenSpan>,
    costs: &[FunctionCost],
    pid: u32,
    tid: u32,
    goroutine: Option<u64>,
    ts_ns: u64,
    status: SpanStatus,
    end: &SchedCounters,
) -> SpanEvent {
    let mut frame = frames.pop().expect("a frame to end");
    let sched = frame
        .sched
        .until(end)
        .map(|(cpu_ns, runnable_ns, blocked_ns)| SchedSplit {
            cpu_ns,
            runnable_ns,
            blocked_ns,
            blocked_in: (blocked_ns > 0)
                .then(|| {
                    frame
                        .blocked
                        .iter()
                        .max_by_key(|&&(syscall, ns)| (ns, std::cmp::Reverse(syscall)))
                        .map(|&(syscall, _)| syscall)
                })
                .flatten(),
        });
    let cost = costs
        .get(frame.function as usize)
        .copied()
        .unwrap_or_default();
    let (own, charged) = match status {
        SpanStatus::Ok => (cost.bias_ns, cost.hit_ns),
        SpanStatus::Unwound | SpanStatus::Open => (0, cost.entry_ns),
    };
    if let Some(parent) = frames.last_mut() {
        parent.overhead_ns += charged + frame.overhead_ns;
        for (syscall, ns) in frame.blocked.drain(..) {
            add_blocked(&mut parent.blocked, syscall, ns);
        }
    }
    SpanEvent::End(SpanEnd {
        span_id: frame.span_id,
        parent_span_id: frame.parent_span_id,
        depth: frame.depth,
        pid,
        tid,
        thread_name: frame.thread_name,
        function: frame.function,
        start_ns: frame.start_ns,
        ts_ns,
        status,
        overhead_ns: own + frame.overhead_ns,
        overhead_outside_ns: charged.saturating_sub(own),
        goroutine,
        sched,
    })
}

/// Adds `ns` blocked in `syscall` to a span's tally.
fn add_blocked(tally: &mut Vec<(BlockedIn, u64)>, syscall: BlockedIn, ns: u64) {
    match tally.iter_mut().find(|(s, _)| *s == syscall) {
        Some((_, total)) => *total += ns,
        None => tally.push((syscall, ns)),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use ferret_common::ProbeEvent;
    use proptest::prelude::*;

    use super::*;

    /// Stack top of every synthetic thread; frames go down from here.
    const BASE_SP: u64 = 0x7fff_0000_0000;

    fn name(s: &str) -> ThreadName {
        ThreadName::from(s)
    }

    fn raw(kind: RawKind, ts_ns: u64, tid: u32, function: u32, sp: u64) -> RawEvent {
        RawEvent {
            kind,
            ts_ns,
            pid: 1,
            tid,
            function,
            sp,
            thread_name: name("main"),
            goroutine: None,
            sched: SchedCounters::NONE,
        }
    }

    fn entry(ts: u64, tid: u32, function: u32, sp: u64) -> RawEvent {
        raw(RawKind::Entry, ts, tid, function, sp)
    }

    fn exit(ts: u64, tid: u32, function: u32, sp: u64) -> RawEvent {
        raw(RawKind::Exit, ts, tid, function, sp)
    }

    fn run(r: &mut Reconstructor, events: &[RawEvent]) -> Vec<SpanEvent> {
        let mut out = Vec::new();
        for ev in events {
            r.push(ev, &mut out);
        }
        out
    }

    /// `(span_id, function, start, end, status)` of every end, in output order.
    fn ends(out: &[SpanEvent]) -> Vec<(u64, u32, u64, u64, SpanStatus)> {
        out.iter()
            .filter_map(|e| match e {
                SpanEvent::End(e) => Some((e.span_id, e.function, e.start_ns, e.ts_ns, e.status)),
                SpanEvent::Start(_) => None,
            })
            .collect()
    }

    /// `(span_id, parent, depth, function)` of every start, in output order.
    fn starts(out: &[SpanEvent]) -> Vec<(u64, Option<u64>, u32, u32)> {
        out.iter()
            .filter_map(|e| match e {
                SpanEvent::Start(s) => Some((s.span_id, s.parent_span_id, s.depth, s.function)),
                SpanEvent::End(_) => None,
            })
            .collect()
    }

    #[test]
    fn nesting_sets_parent_and_depth() {
        let mut r = Reconstructor::new();
        let out = run(
            &mut r,
            &[
                entry(10, 7, 0, 1000),
                entry(20, 7, 1, 900),
                entry(30, 7, 2, 800),
                exit(40, 7, 2, 800),
                entry(50, 7, 3, 800),
                exit(60, 7, 3, 800),
                exit(70, 7, 1, 900),
                exit(80, 7, 0, 1000),
            ],
        );
        assert_eq!(
            starts(&out),
            [
                (1, None, 0, 0),
                (2, Some(1), 1, 1),
                (3, Some(2), 2, 2),
                (4, Some(2), 2, 3)
            ]
        );
        assert_eq!(
            ends(&out),
            [
                (3, 2, 30, 40, SpanStatus::Ok),
                (4, 3, 50, 60, SpanStatus::Ok),
                (2, 1, 20, 70, SpanStatus::Ok),
                (1, 0, 10, 80, SpanStatus::Ok),
            ]
        );
        // Causal order: each start is emitted before the span's end.
        assert!(matches!(out[2], SpanEvent::Start(ref s) if s.span_id == 3));
        assert!(matches!(out[3], SpanEvent::End(ref e) if e.span_id == 3));
        assert_eq!(r.open_spans(), 0);
        assert_eq!(r.threads().count(), 0, "an idle thread is forgotten");
    }

    #[test]
    fn interleaved_threads_keep_separate_stacks() {
        let mut r = Reconstructor::new();
        let out = run(
            &mut r,
            &[
                entry(1, 1, 0, 1000),
                entry(2, 2, 0, 1000),
                entry(3, 1, 1, 900),
                entry(4, 2, 2, 900),
            ],
        );
        assert_eq!(
            starts(&out),
            [
                (1, None, 0, 0),
                (2, None, 0, 0),
                (3, Some(1), 1, 1),
                (4, Some(2), 1, 2)
            ]
        );
        assert_eq!(r.open_spans(), 4);
        let stacks: Vec<_> = r
            .threads()
            .map(|t| {
                (
                    t.tid,
                    t.frames.iter().map(|f| f.function).collect::<Vec<_>>(),
                )
            })
            .collect();
        assert_eq!(stacks, [(1, vec![0, 1]), (2, vec![0, 2])]);

        let out = run(
            &mut r,
            &[exit(5, 1, 1, 900), exit(6, 2, 2, 900), exit(7, 2, 0, 1000)],
        );
        assert_eq!(
            ends(&out),
            [
                (3, 1, 3, 5, SpanStatus::Ok),
                (4, 2, 4, 6, SpanStatus::Ok),
                (2, 0, 2, 7, SpanStatus::Ok),
            ]
        );
        assert_eq!(r.open_spans(), 1);
    }

    #[test]
    fn same_tid_in_two_processes_is_two_threads() {
        let mut r = Reconstructor::new();
        let mut a = entry(1, 5, 0, 1000);
        a.pid = 1;
        let mut b = entry(2, 5, 0, 1000);
        b.pid = 2;
        let out = run(&mut r, &[a, b]);
        assert_eq!(starts(&out), [(1, None, 0, 0), (2, None, 0, 0)]);
    }

    #[test]
    fn deep_recursion_round_trips() {
        const DEPTH: u64 = 10_000;
        let mut r = Reconstructor::new();
        let mut events = Vec::new();
        for i in 0..DEPTH {
            events.push(entry(i, 1, 4, BASE_SP - 64 * i));
        }
        for i in (0..DEPTH).rev() {
            events.push(exit(2 * DEPTH - i, 1, 4, BASE_SP - 64 * i));
        }
        let out = run(&mut r, &events);
        assert_eq!(out.len(), 2 * DEPTH as usize);
        let starts = starts(&out);
        assert_eq!(starts[9_999], (10_000, Some(9_999), 9_999, 4));
        let ends = ends(&out);
        assert!(ends.iter().all(|e| e.4 == SpanStatus::Ok));
        // Innermost first, each matched to its own entry.
        assert_eq!(ends[0], (10_000, 4, 9_999, DEPTH + 1, SpanStatus::Ok));
        assert_eq!(ends[9_999], (1, 4, 0, 2 * DEPTH, SpanStatus::Ok));
    }

    #[test]
    fn deep_recursion_unwound_at_once() {
        // A panic thrown 10 000 frames down and caught at the top: only the
        // outermost call returns; everything under it ends unwound.
        let mut r = Reconstructor::new();
        let mut events: Vec<_> = (0..10_000)
            .map(|i| entry(i, 1, 4, BASE_SP - 64 * i))
            .collect();
        events.push(exit(20_000, 1, 4, BASE_SP));
        let out = run(&mut r, &events);
        let ends = ends(&out);
        assert_eq!(ends.len(), 10_000);
        assert!(
            ends[..9_999]
                .iter()
                .all(|e| e.4 == SpanStatus::Unwound && e.3 == 20_000)
        );
        assert_eq!(ends[9_999], (1, 4, 0, 20_000, SpanStatus::Ok));
        assert_eq!(ends[0].0, 10_000, "innermost ends first");
    }

    #[test]
    fn missing_exit_is_unwound_when_outer_returns() {
        // f calls g, g throws, f catches and returns: g has no exit.
        let mut r = Reconstructor::new();
        let out = run(
            &mut r,
            &[
                entry(1, 1, 0, 1000),
                entry(2, 1, 1, 900),
                exit(3, 1, 0, 1000),
            ],
        );
        assert_eq!(
            ends(&out),
            [
                (2, 1, 2, 3, SpanStatus::Unwound),
                (1, 0, 1, 3, SpanStatus::Ok)
            ]
        );
        assert_eq!(r.orphan_exits(), 0);
    }

    #[test]
    fn entry_at_higher_sp_retires_dead_frames() {
        // main (sp 1000) calls f (900) which calls g (800); g and f are left
        // by a longjmp; main then calls h, whose entry sp is again 900.
        let mut r = Reconstructor::new();
        let out = run(
            &mut r,
            &[
                entry(1, 1, 0, 1000),
                entry(2, 1, 1, 900),
                entry(3, 1, 2, 800),
                entry(4, 1, 3, 900),
            ],
        );
        // g (sp 800 < 900) is dead; f shares h's sp and stays (tail-call rule).
        assert_eq!(ends(&out), [(3, 2, 3, 4, SpanStatus::Unwound)]);
        assert_eq!(starts(&out).last(), Some(&(4, Some(2), 2, 3)));

        // An entry shallower than f retires f and h, innermost first.
        let out = run(&mut r, &[entry(5, 1, 5, 950)]);
        assert_eq!(
            ends(&out),
            [
                (4, 3, 4, 5, SpanStatus::Unwound),
                (2, 1, 2, 5, SpanStatus::Unwound)
            ]
        );
        assert_eq!(starts(&out), [(5, Some(1), 1, 5)]);
    }

    #[test]
    fn tail_call_at_same_sp_nests_and_both_exits_match() {
        let mut r = Reconstructor::new();
        let out = run(
            &mut r,
            &[
                entry(1, 1, 0, 1000),
                entry(2, 1, 1, 1000),
                exit(3, 1, 1, 1000),
                exit(4, 1, 0, 1000),
            ],
        );
        assert_eq!(starts(&out), [(1, None, 0, 0), (2, Some(1), 1, 1)]);
        assert_eq!(
            ends(&out),
            [(2, 1, 2, 3, SpanStatus::Ok), (1, 0, 1, 4, SpanStatus::Ok)]
        );
    }

    #[test]
    fn tail_call_with_lost_inner_exit_ends_it_unwound() {
        let mut r = Reconstructor::new();
        let out = run(
            &mut r,
            &[
                entry(1, 1, 0, 1000),
                entry(2, 1, 1, 1000),
                exit(4, 1, 0, 1000),
            ],
        );
        assert_eq!(
            ends(&out),
            [
                (2, 1, 2, 4, SpanStatus::Unwound),
                (1, 0, 1, 4, SpanStatus::Ok)
            ]
        );
    }

    #[test]
    fn orphan_exit_is_counted_and_ignored() {
        let mut r = Reconstructor::new();
        // Exit of a function already running when tracing began (outer sp).
        let out = run(&mut r, &[exit(1, 1, 9, 2000)]);
        assert!(out.is_empty());
        assert_eq!(r.orphan_exits(), 1);

        // A wrong function at the right sp does not match either.
        let out = run(&mut r, &[entry(2, 1, 0, 1000), exit(3, 1, 1, 1000)]);
        assert_eq!(starts(&out), [(1, None, 0, 0)]);
        assert!(ends(&out).is_empty());
        assert_eq!(r.orphan_exits(), 2);
        assert_eq!(r.open_spans(), 1);

        // An orphan exit deeper than the open frame leaves it alone.
        let out = run(&mut r, &[exit(4, 1, 7, 500)]);
        assert!(out.is_empty());
        assert_eq!(r.orphan_exits(), 3);
        assert_eq!(r.open_spans(), 1);

        // An orphan exit shallower than it still proves it dead.
        let out = run(&mut r, &[exit(5, 1, 7, 1500)]);
        assert_eq!(ends(&out), [(1, 0, 2, 5, SpanStatus::Unwound)]);
        assert_eq!(r.orphan_exits(), 4);
    }

    #[test]
    fn thread_exit_unwinds_that_thread_only() {
        let mut r = Reconstructor::new();
        run(
            &mut r,
            &[
                entry(1, 1, 0, 1000),
                entry(2, 1, 1, 900),
                entry(3, 2, 0, 1000),
            ],
        );
        let out = run(&mut r, &[raw(RawKind::ThreadExit, 9, 1, 0, 0)]);
        assert_eq!(
            ends(&out),
            [
                (2, 1, 2, 9, SpanStatus::Unwound),
                (1, 0, 1, 9, SpanStatus::Unwound)
            ]
        );
        assert_eq!(r.open_spans(), 1);
        assert_eq!(r.threads().map(|t| t.tid).collect::<Vec<_>>(), [2]);
        // A second thread exit for a forgotten thread is harmless.
        assert!(run(&mut r, &[raw(RawKind::ThreadExit, 10, 1, 0, 0)]).is_empty());
    }

    #[test]
    fn process_exit_unwinds_all_its_threads() {
        let mut r = Reconstructor::new();
        let mut other = entry(3, 1, 0, 1000);
        other.pid = 2;
        run(&mut r, &[entry(1, 1, 0, 1000), entry(2, 2, 0, 1000), other]);
        let mut out = Vec::new();
        r.process_exit(1, 9, &mut out);
        assert_eq!(
            ends(&out),
            [
                (1, 0, 1, 9, SpanStatus::Unwound),
                (2, 0, 2, 9, SpanStatus::Unwound)
            ]
        );
        assert_eq!(r.open_spans(), 1);
        assert_eq!(r.threads().map(|t| t.pid).collect::<Vec<_>>(), [2]);
    }

    #[test]
    fn finish_ends_everything_open() {
        let mut r = Reconstructor::new();
        run(
            &mut r,
            &[
                entry(1, 1, 0, 1000),
                entry(2, 1, 1, 900),
                entry(3, 2, 0, 1000),
            ],
        );
        let mut out = Vec::new();
        r.finish(100, &mut out);
        assert_eq!(
            ends(&out),
            [
                (2, 1, 2, 100, SpanStatus::Open),
                (1, 0, 1, 100, SpanStatus::Open),
                (3, 0, 3, 100, SpanStatus::Open),
            ]
        );
        assert_eq!(r.open_spans(), 0);
        assert_eq!(r.threads().count(), 0);
        // Ids stay unique if the reconstructor is reused.
        let out = run(&mut r, &[entry(101, 1, 0, 1000)]);
        assert_eq!(starts(&out), [(4, None, 0, 0)]);
    }

    #[test]
    fn span_end_keeps_the_name_of_its_start() {
        let mut r = Reconstructor::new();
        let mut first = entry(1, 1, 0, 1000);
        first.thread_name = name("before");
        let mut second = exit(2, 1, 0, 1000);
        second.thread_name = name("after");
        let mut inner = entry(1, 1, 1, 900);
        inner.thread_name = name("after");
        let out = run(&mut r, &[first, inner]);
        assert_eq!(&**r.threads().next().unwrap().thread_name, "after");
        let out2 = run(&mut r, &[second]);
        let SpanEvent::End(end) = &out2[1] else {
            panic!("{out2:?}")
        };
        assert_eq!(&*end.thread_name, "before");
        assert!(matches!(&out[0], SpanEvent::Start(s) if &*s.thread_name == "before"));
    }

    #[test]
    fn lost_events_flag_open_stacks_until_they_empty() {
        let mut r = Reconstructor::new();
        run(&mut r, &[entry(1, 1, 0, 1000)]);
        r.mark_lost(3);
        assert_eq!(r.lost_events(), 3);
        assert!(r.threads().all(|t| t.maybe_incomplete));
        run(&mut r, &[exit(2, 1, 0, 1000), entry(3, 1, 0, 1000)]);
        assert!(r.threads().all(|t| !t.maybe_incomplete));
    }

    #[test]
    fn quiet_time_follows_the_last_event() {
        let mut r = Reconstructor::new();
        run(&mut r, &[entry(10, 1, 0, 1000), entry(20, 1, 1, 900)]);
        assert_eq!(r.threads().next().unwrap().last_event_ns, 20);
        run(&mut r, &[exit(35, 1, 1, 900)]);
        assert_eq!(r.threads().next().unwrap().last_event_ns, 35);
    }

    #[test]
    fn adopted_frames_open_below_and_close_by_their_exits() {
        let mut r = Reconstructor::new();
        let mut out = Vec::new();
        let ids = r.adopt(1, 7, &name("main"), &[(0, 1000), (1, 900)], 50, &mut out);
        assert_eq!(ids, [1, 2]);
        assert_eq!(starts(&out), [(1, None, 0, 0), (2, Some(1), 1, 1)]);
        let stack = r.threads().next().unwrap();
        assert!(
            stack
                .frames
                .iter()
                .all(|f| f.before_attach && f.start_ns == 50)
        );
        assert_eq!(stack.last_event_ns, 50);
        // A traced call inside, then the adopted frames' own exits.
        let out = run(
            &mut r,
            &[
                entry(60, 7, 2, 800),
                exit(70, 7, 2, 800),
                exit(80, 7, 1, 900),
                exit(90, 7, 0, 1000),
            ],
        );
        assert_eq!(starts(&out), [(3, Some(2), 2, 2)]);
        assert_eq!(
            ends(&out),
            [
                (3, 2, 60, 70, SpanStatus::Ok),
                (2, 1, 50, 80, SpanStatus::Ok),
                (1, 0, 50, 90, SpanStatus::Ok),
            ]
        );
        assert_eq!(r.open_spans(), 0);
        assert_eq!(r.orphan_exits(), 0);
    }

    #[test]
    fn adopting_skips_frames_already_traced_and_misplaced_ones() {
        let mut r = Reconstructor::new();
        // Entered after attach, before the stack was read.
        run(&mut r, &[entry(40, 7, 2, 800)]);
        let mut out = Vec::new();
        // (2, 800) is the traced one; (5, 700) cannot be outside it.
        let ids = r.adopt(
            1,
            7,
            &name("main"),
            &[(0, 1000), (1, 900), (2, 800), (5, 700)],
            30,
            &mut out,
        );
        assert_eq!(ids, [2, 3]);
        let frames: Vec<(u32, u64, bool)> = r
            .threads()
            .next()
            .unwrap()
            .frames
            .iter()
            .map(|f| (f.function, f.sp, f.before_attach))
            .collect();
        assert_eq!(frames, [(0, 1000, true), (1, 900, true), (2, 800, false)]);
        assert_eq!(r.threads().next().unwrap().last_event_ns, 40);
        // Nothing to adopt leaves no empty thread behind.
        assert!(r.adopt(1, 9, &name("x"), &[], 30, &mut out).is_empty());
        assert_eq!(r.threads().count(), 1);
    }

    #[test]
    fn retiring_a_span_ends_it_and_everything_inside() {
        let mut r = Reconstructor::new();
        run(
            &mut r,
            &[
                entry(1, 1, 0, 1000),
                entry(2, 1, 1, 900),
                entry(3, 1, 2, 800),
            ],
        );
        let mut out = Vec::new();
        assert!(r.retire(1, StackKey::Thread(1), 2, 10, &mut out));
        assert_eq!(
            ends(&out),
            [
                (3, 2, 3, 10, SpanStatus::Unwound),
                (2, 1, 2, 10, SpanStatus::Unwound)
            ]
        );
        assert_eq!(r.open_spans(), 1);
        assert!(
            !r.retire(1, StackKey::Thread(1), 2, 11, &mut out),
            "already gone"
        );
        assert!(r.retire(1, StackKey::Thread(1), 1, 12, &mut out));
        assert_eq!(r.threads().count(), 0);
    }

    /// What a synthetic program does next on one thread.
    #[derive(Clone, Copy, Debug)]
    enum Op {
        /// Call function n (a deeper frame).
        Call(u32),
        /// Jump to function n, keeping the current frame's stack slot.
        TailCall(u32),
        /// Return from the innermost frame (and from the frames it replaced
        /// by tail calls, whose exits fire at the same moment).
        Return,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0u32..6).prop_map(Op::Call),
            1 => (0u32..6).prop_map(Op::TailCall),
            4 => Just(Op::Return),
        ]
    }

    /// A span the synthetic program really executed.
    #[derive(Debug)]
    struct Truth {
        pid: u32,
        tid: u32,
        function: u32,
        start: u64,
        end: u64,
        /// Index into the truth list.
        parent: Option<usize>,
        depth: u32,
    }

    struct SimFrame {
        function: u32,
        sp: u64,
        tail: bool,
        truth: usize,
    }

    const THREADS: u8 = 4;

    fn thread_ids(t: u8) -> (u32, u32) {
        (100 + u32::from(t % 2), 1000 + u32::from(t))
    }

    /// Runs the ops and returns the raw event stream and the true call tree.
    /// Every thread returns from everything it entered, then some exit.
    fn simulate(ops: &[(u8, Op)], thread_exits: &[bool]) -> (Vec<RawEvent>, Vec<Truth>) {
        let names: Vec<ThreadName> = (0..THREADS).map(|t| name(&format!("t{t}"))).collect();
        let mut stacks: Vec<Vec<SimFrame>> = (0..THREADS).map(|_| Vec::new()).collect();
        let mut events = Vec::new();
        let mut truth = Vec::new();
        let mut ts = 0u64;
        let emit = |events: &mut Vec<RawEvent>, ts: &mut u64, t: u8, kind, function, sp| {
            *ts += 10;
            let (pid, tid) = thread_ids(t);
            events.push(RawEvent {
                kind,
                ts_ns: *ts,
                pid,
                tid,
                function,
                sp,
                thread_name: names[usize::from(t)],
                goroutine: None,
                sched: SchedCounters::NONE,
            });
        };
        let ret = |events: &mut Vec<RawEvent>,
                   truth: &mut Vec<Truth>,
                   ts: &mut u64,
                   t: u8,
                   stack: &mut Vec<SimFrame>| {
            while let Some(frame) = stack.pop() {
                emit(events, ts, t, RawKind::Exit, frame.function, frame.sp);
                truth[frame.truth].end = *ts;
                if !frame.tail {
                    break;
                }
            }
        };
        for &(t, op) in ops {
            let stack = &mut stacks[usize::from(t)];
            let (function, tail) = match op {
                Op::Return => {
                    ret(&mut events, &mut truth, &mut ts, t, stack);
                    continue;
                }
                Op::Call(f) => (f, false),
                Op::TailCall(f) => (f, !stack.is_empty()),
            };
            let sp = match stack.last() {
                None => BASE_SP,
                Some(top) if tail => top.sp,
                Some(top) => top.sp - 32 - 16 * u64::from(function % 3),
            };
            emit(&mut events, &mut ts, t, RawKind::Entry, function, sp);
            let (pid, tid) = thread_ids(t);
            truth.push(Truth {
                pid,
                tid,
                function,
                start: ts,
                end: 0,
                parent: stack.last().map(|f| f.truth),
                depth: stack.len() as u32,
            });
            stack.push(SimFrame {
                function,
                sp,
                tail,
                truth: truth.len() - 1,
            });
        }
        for t in 0..THREADS {
            let stack = &mut stacks[usize::from(t)];
            while !stack.is_empty() {
                ret(&mut events, &mut truth, &mut ts, t, stack);
            }
            if thread_exits[usize::from(t)] {
                emit(&mut events, &mut ts, t, RawKind::ThreadExit, 0, 0);
            }
        }
        (events, truth)
    }

    /// Checks what must hold for any input, and returns the spans in start
    /// order as (start, end) pairs.
    fn check_well_formed(out: &[SpanEvent]) -> Vec<(SpanStart, SpanEnd)> {
        let mut started: HashMap<u64, usize> = HashMap::new();
        let mut spans: Vec<(SpanStart, Option<SpanEnd>)> = Vec::new();
        // Per-thread (per-goroutine) model of the open stack, from the
        // output alone.
        let mut open: HashMap<(u32, StackKey), Vec<u64>> = HashMap::new();
        let key = |pid, tid, goroutine: Option<u64>| {
            (
                pid,
                goroutine.map_or(StackKey::Thread(tid), StackKey::Goroutine),
            )
        };
        for ev in out {
            match ev {
                SpanEvent::Start(s) => {
                    assert!(
                        started.insert(s.span_id, spans.len()).is_none(),
                        "dup {s:?}"
                    );
                    let stack = open.entry(key(s.pid, s.tid, s.goroutine)).or_default();
                    assert_eq!(s.parent_span_id, stack.last().copied(), "parent of {s:?}");
                    assert_eq!(s.depth as usize, stack.len(), "depth of {s:?}");
                    stack.push(s.span_id);
                    spans.push((s.clone(), None));
                }
                SpanEvent::End(e) => {
                    let &i = started.get(&e.span_id).expect("end without start");
                    let (s, end) = &mut spans[i];
                    assert!(end.is_none(), "second end for {e:?}");
                    assert_eq!(e.goroutine, s.goroutine, "{e:?}");
                    let stack = open
                        .get_mut(&key(e.pid, s.tid, s.goroutine))
                        .expect("thread");
                    assert_eq!(stack.pop(), Some(e.span_id), "not innermost: {e:?}");
                    // A goroutine's span may end on another thread.
                    let end_tid = if s.goroutine.is_some() { s.tid } else { e.tid };
                    assert_eq!(
                        (
                            e.parent_span_id,
                            e.depth,
                            e.pid,
                            end_tid,
                            e.function,
                            e.start_ns
                        ),
                        (s.parent_span_id, s.depth, s.pid, s.tid, s.function, s.ts_ns)
                    );
                    assert_eq!(e.thread_name, s.thread_name);
                    assert!(e.ts_ns >= e.start_ns, "ends before start: {e:?}");
                    *end = Some(e.clone());
                }
            }
        }
        spans
            .into_iter()
            .map(|(s, e)| {
                let e = e.unwrap_or_else(|| panic!("never ended: {s:?}"));
                (s, e)
            })
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn reconstructs_random_call_trees(
            ops in prop::collection::vec((0..THREADS, op()), 0..300),
            thread_exits in prop::collection::vec(any::<bool>(), usize::from(THREADS)),
            deleted in prop::collection::vec(prop::bool::weighted(0.1), 0..900),
            delete in any::<bool>(),
            cut in prop::option::weighted(0.2, any::<prop::sample::Index>()),
        ) {
            let (events, truth) = simulate(&ops, &thread_exits);
            let mut kept: Vec<RawEvent> = events
                .iter()
                .enumerate()
                .filter(|&(i, _)| !(delete && deleted.get(i).copied().unwrap_or(false)))
                .map(|(_, ev)| ev.clone())
                .collect();
            if let Some(cut) = cut {
                kept.truncate(cut.index(kept.len() + 1));
            }
            let intact = kept.len() == events.len();

            let mut r = Reconstructor::new();
            let mut out = Vec::new();
            for ev in &kept {
                r.push(ev, &mut out);
            }
            let stop = kept.last().map_or(0, |e| e.ts_ns) + 1;
            r.finish(stop, &mut out);
            prop_assert_eq!(r.open_spans(), 0);
            prop_assert_eq!(r.threads().count(), 0);

            let spans = check_well_formed(&out);
            if intact {
                prop_assert_eq!(spans.len(), truth.len());
                prop_assert_eq!(r.orphan_exits(), 0);
                for (i, ((s, e), t)) in spans.iter().zip(&truth).enumerate() {
                    prop_assert_eq!(s.span_id, i as u64 + 1);
                    prop_assert_eq!((s.pid, s.tid, s.function), (t.pid, t.tid, t.function));
                    prop_assert_eq!((s.ts_ns, e.ts_ns), (t.start, t.end));
                    prop_assert_eq!(s.depth, t.depth);
                    prop_assert_eq!(s.parent_span_id, t.parent.map(|p| p as u64 + 1));
                    prop_assert_eq!(e.status, SpanStatus::Ok);
                }
            }
        }
    }

    fn overheads(events: &[SpanEvent]) -> Vec<(u32, SpanStatus, u64)> {
        events
            .iter()
            .filter_map(|e| match e {
                SpanEvent::End(end) => Some((end.function, end.status, end.overhead_ns)),
                SpanEvent::Start(_) => None,
            })
            .collect()
    }

    fn costed() -> Reconstructor {
        let mut r = Reconstructor::new();
        r.set_costs(Arc::from([
            FunctionCost {
                hit_ns: 10,
                bias_ns: 4,
                entry_ns: 3,
            },
            FunctionCost {
                hit_ns: 20,
                bias_ns: 8,
                entry_ns: 6,
            },
        ]));
        r
    }

    #[test]
    fn overhead_is_the_own_bias_plus_every_descendants_probes() {
        let mut r = costed();
        let out = run(
            &mut r,
            &[
                entry(0, 1, 0, BASE_SP),
                entry(10, 1, 1, BASE_SP - 0x10),
                exit(20, 1, 1, BASE_SP - 0x10),
                entry(30, 1, 1, BASE_SP - 0x10),
                // Recursion: the child calls itself.
                entry(40, 1, 1, BASE_SP - 0x20),
                exit(50, 1, 1, BASE_SP - 0x20),
                exit(60, 1, 1, BASE_SP - 0x10),
                exit(100, 1, 0, BASE_SP),
            ],
        );
        assert_eq!(
            overheads(&out),
            [
                (1, SpanStatus::Ok, 8),
                (1, SpanStatus::Ok, 8),
                (1, SpanStatus::Ok, 20 + 8),
                // 4 of its own, two children's probes and a grandchild's.
                (0, SpanStatus::Ok, 4 + 20 + 20 + 20),
            ]
        );
    }

    #[test]
    fn an_unwound_call_charges_only_its_entry_probe() {
        let mut r = costed();
        let out = run(
            &mut r,
            &[
                entry(0, 1, 0, BASE_SP),
                entry(10, 1, 1, BASE_SP - 0x10),
                entry(20, 1, 1, BASE_SP - 0x20),
                exit(30, 1, 1, BASE_SP - 0x20),
                // The child is left by an exception: no exit of its own.
                exit(100, 1, 0, BASE_SP),
            ],
        );
        assert_eq!(
            overheads(&out),
            [
                (1, SpanStatus::Ok, 8),
                (1, SpanStatus::Unwound, 20),
                (0, SpanStatus::Ok, 4 + 6 + 20),
            ]
        );
        // Open at the stop: the same, no exit probe inside.
        let mut r = costed();
        let mut out = run(
            &mut r,
            &[entry(0, 2, 0, BASE_SP), entry(5, 2, 1, BASE_SP - 0x10)],
        );
        r.finish(50, &mut out);
        assert_eq!(
            overheads(&out),
            [(1, SpanStatus::Open, 0), (0, SpanStatus::Open, 6)]
        );
    }

    #[test]
    fn corrected_durations_never_go_below_zero() {
        let mut r = costed();
        let out = run(&mut r, &[entry(0, 1, 1, BASE_SP), exit(5, 1, 1, BASE_SP)]);
        let Some(SpanEvent::End(end)) = out.last() else {
            panic!("{out:?}");
        };
        assert_eq!(
            (end.duration_ns(), end.overhead_ns, end.corrected_ns()),
            (5, 8, 0)
        );
    }

    fn go_event(kind: RawKind, ts: u64, tid: u32, goid: u64, function: u32, sp: u64) -> RawEvent {
        RawEvent {
            goroutine: Some(goid),
            sched: SchedCounters::NONE,
            ..raw(kind, ts, tid, function, sp)
        }
    }

    fn go_entry(ts: u64, tid: u32, goid: u64, function: u32, sp: u64) -> RawEvent {
        go_event(RawKind::Entry, ts, tid, goid, function, sp)
    }

    fn go_exit(ts: u64, tid: u32, goid: u64, function: u32, sp: u64) -> RawEvent {
        go_event(RawKind::Exit, ts, tid, goid, function, sp)
    }

    /// `(span_id, tid, goroutine)` of every end, in output order.
    fn end_threads(out: &[SpanEvent]) -> Vec<(u64, u32, Option<u64>)> {
        out.iter()
            .filter_map(|e| match e {
                SpanEvent::End(e) => Some((e.span_id, e.tid, e.goroutine)),
                SpanEvent::Start(_) => None,
            })
            .collect()
    }

    /// A Go event carrying goroutine counters `(cpu, runnable, blocked)` of
    /// epoch 7 with `lost` inconsistencies so far.
    fn go_counted(
        mut ev: RawEvent,
        (cpu_ns, runnable_ns, blocked_ns): (u64, u64, u64),
        lost: u32,
    ) -> RawEvent {
        ev.sched = SchedCounters {
            cpu_ns,
            runnable_ns,
            blocked_ns,
            epoch: 7,
            lost,
        };
        ev
    }

    fn go_blocked(ts: u64, tid: u32, goid: u64, ns: u64, syscall: u32) -> RawEvent {
        go_event(
            RawKind::Blocked {
                ns,
                syscall: BlockedIn(syscall),
            },
            ts,
            tid,
            goid,
            0,
            0,
        )
    }

    /// `(function, split)` of every end, in output order.
    fn go_splits(out: &[SpanEvent]) -> Vec<(u32, Option<SchedSplit>)> {
        out.iter()
            .filter_map(|e| match e {
                SpanEvent::End(e) => Some((e.function, e.sched)),
                SpanEvent::Start(_) => None,
            })
            .collect()
    }

    #[test]
    fn a_go_call_that_moves_threads_mid_call_is_split_by_its_goroutine_counters() {
        let mut r = Reconstructor::new();
        // Goroutine 5 enters on thread 10, is parked 300 (a mutex: wait
        // reason 19) and runs on thread 11 from then, where it blocks 50 in
        // a system call (futex, 202); thread 10 meanwhile runs goroutine 6.
        let out = run(
            &mut r,
            &[
                go_counted(go_entry(100, 10, 5, 0, 1000), (40, 2, 0), 0),
                go_counted(go_entry(150, 10, 6, 1, 1000), (0, 0, 0), 0),
                go_blocked(500, 11, 5, 300, ferret_common::GO_WAIT_FLAG + 19),
                go_blocked(600, 11, 5, 50, 202),
                go_counted(go_exit(700, 10, 6, 1, 1000), (500, 50, 0), 0),
                go_counted(go_exit(800, 11, 5, 0, 1000), (340, 12, 350), 0),
            ],
        );
        let wait = BlockedIn(ferret_common::GO_WAIT_FLAG + 19);
        assert_eq!(
            go_splits(&out),
            [
                (
                    1,
                    Some(SchedSplit {
                        cpu_ns: 500,
                        runnable_ns: 50,
                        blocked_ns: 0,
                        blocked_in: None,
                    })
                ),
                (
                    0,
                    Some(SchedSplit {
                        cpu_ns: 300,
                        runnable_ns: 10,
                        blocked_ns: 350,
                        blocked_in: Some(wait),
                    })
                ),
            ]
        );
        assert_eq!(wait.name(), "go_wait_19");
        assert_eq!(BlockedIn::from_name("go_wait_19"), Some(wait));
    }

    #[test]
    fn a_go_call_across_an_inconsistency_of_its_goroutine_has_a_null_split() {
        let mut r = Reconstructor::new();
        // The kernel side saw goroutine 5 run where its state did not place
        // it (or lost one of its events): `lost` moved, so null, not wrong.
        let out = run(
            &mut r,
            &[
                go_counted(go_entry(100, 10, 5, 0, 1000), (40, 2, 0), 0),
                go_counted(go_entry(200, 11, 5, 1, 900), (90, 2, 0), 1),
                go_counted(go_exit(300, 11, 5, 1, 900), (190, 2, 0), 1),
                go_counted(go_exit(400, 11, 5, 0, 1000), (290, 2, 0), 1),
            ],
        );
        let splits = go_splits(&out);
        assert_eq!(splits[0].0, 1);
        assert_eq!(splits[0].1.map(|s| s.cpu_ns), Some(100), "inner: same lost");
        assert_eq!(splits[1], (0, None), "outer: across the inconsistency");
    }

    #[test]
    fn a_go_event_without_counters_leaves_the_split_null() {
        let mut r = Reconstructor::new();
        let out = run(
            &mut r,
            &[
                go_counted(go_entry(100, 10, 5, 0, 1000), (40, 2, 0), 0),
                go_exit(400, 11, 5, 0, 1000),
            ],
        );
        assert_eq!(go_splits(&out), [(0, None)]);
    }

    #[test]
    fn a_goroutine_keeps_its_stack_when_it_moves_to_another_thread() {
        let mut r = Reconstructor::new();
        let out = run(
            &mut r,
            &[
                go_entry(1, 10, 5, 0, 1000),
                // Goroutine 5 resumed on thread 11; goroutine 6 took thread 10.
                go_entry(2, 11, 5, 1, 900),
                go_entry(3, 10, 6, 2, 1000),
            ],
        );
        assert_eq!(
            starts(&out),
            [(1, None, 0, 0), (2, Some(1), 1, 1), (3, None, 0, 2)]
        );
        assert_eq!(
            r.threads().count(),
            0,
            "no thread holds a goroutine's calls"
        );
        let shown: Vec<(Option<u64>, u32, usize)> = r
            .goroutines()
            .map(|g| (g.goroutine, g.tid, g.frames.len()))
            .collect();
        assert_eq!(shown, [(Some(5), 11, 2), (Some(6), 10, 1)], "last thread");
        let out = run(
            &mut r,
            &[
                go_exit(4, 12, 5, 1, 900),
                go_exit(5, 10, 6, 2, 1000),
                go_exit(6, 11, 5, 0, 1000),
            ],
        );
        assert_eq!(
            ends(&out),
            [
                (2, 1, 2, 4, SpanStatus::Ok),
                (3, 2, 3, 5, SpanStatus::Ok),
                (1, 0, 1, 6, SpanStatus::Ok)
            ]
        );
        assert_eq!(
            end_threads(&out),
            [(2, 12, Some(5)), (3, 10, Some(6)), (1, 11, Some(5))],
            "each ends on the thread it returned on"
        );
        assert_eq!((r.open_spans(), r.orphan_exits()), (0, 0));
    }

    #[test]
    fn recursion_on_a_goroutine_matches_exits_innermost_first() {
        let mut r = Reconstructor::new();
        let mut events: Vec<RawEvent> = (0..100)
            .map(|i| go_entry(i, 10 + (i % 3) as u32, 7, 3, BASE_SP - 0x40 * i))
            .collect();
        events.extend(
            (0..100)
                .rev()
                .map(|i| go_exit(200 - i, 20, 7, 3, BASE_SP - 0x40 * i)),
        );
        let out = run(&mut r, &events);
        let ended = ends(&out);
        assert_eq!(ended.len(), 100);
        assert!(ended.iter().all(|e| e.4 == SpanStatus::Ok));
        assert_eq!(ended[0].0, 100, "the innermost call returns first");
        assert_eq!((r.open_spans(), r.orphan_exits()), (0, 0));
    }

    #[test]
    fn a_recovered_panic_ends_the_frames_it_unwound_when_the_goroutine_resumes() {
        let mut r = Reconstructor::new();
        let out = run(
            &mut r,
            &[
                go_entry(10, 1, 9, 0, 1000),
                go_entry(20, 1, 9, 1, 900),
                go_entry(30, 2, 9, 2, 800),
                // 0 recovered: it resumes, calling deferreturn at its callees' depth.
                go_event(RawKind::GoUnwind, 40, 3, 9, 0, 900),
                go_entry(50, 3, 9, 1, 900),
                go_exit(60, 3, 9, 1, 900),
                go_exit(70, 3, 9, 0, 1000),
            ],
        );
        assert_eq!(
            ends(&out),
            [
                (3, 2, 30, 40, SpanStatus::Unwound),
                (2, 1, 20, 40, SpanStatus::Unwound),
                (4, 1, 50, 60, SpanStatus::Ok),
                (1, 0, 10, 70, SpanStatus::Ok),
            ]
        );
        assert_eq!(
            starts(&out)[3],
            (4, Some(1), 1, 1),
            "a child of the survivor"
        );
        // A resumption with nothing below it, or for an unknown goroutine, ends nothing.
        let out = run(
            &mut r,
            &[
                go_entry(80, 1, 9, 0, 1000),
                go_event(RawKind::GoUnwind, 85, 1, 9, 0, 900),
                go_event(RawKind::GoUnwind, 86, 1, 10, 0, 900),
                go_exit(90, 1, 9, 0, 1000),
            ],
        );
        assert_eq!(ends(&out), [(5, 0, 80, 90, SpanStatus::Ok)]);
    }

    #[test]
    fn an_entry_at_an_open_frame_s_depth_means_a_panic_unwound_it() {
        // Without the resumption mark (recovered in an untraced frame whose
        // deferreturn was not seen), the next call at the dead frame's
        // depth still tells: Go has no tail calls between traced functions.
        let mut r = Reconstructor::new();
        let out = run(
            &mut r,
            &[
                go_entry(10, 1, 9, 0, 1000),
                go_entry(20, 1, 9, 1, 900),
                go_entry(30, 1, 9, 2, 900),
                go_exit(40, 1, 9, 2, 900),
                go_exit(50, 1, 9, 0, 1000),
            ],
        );
        assert_eq!(
            starts(&out),
            [(1, None, 0, 0), (2, Some(1), 1, 1), (3, Some(1), 1, 2)]
        );
        assert_eq!(
            ends(&out),
            [
                (2, 1, 20, 30, SpanStatus::Unwound),
                (3, 2, 30, 40, SpanStatus::Ok),
                (1, 0, 10, 50, SpanStatus::Ok),
            ]
        );
    }

    #[test]
    fn goroutines_outlive_their_threads_and_end_with_their_process() {
        let mut r = Reconstructor::new();
        let mut other = go_entry(2, 10, 5, 1, 1000);
        other.pid = 2;
        run(
            &mut r,
            &[go_entry(1, 10, 5, 0, 1000), other, entry(3, 10, 2, 500)],
        );
        let out = run(&mut r, &[raw(RawKind::ThreadExit, 4, 10, 0, 0)]);
        assert_eq!(
            ends(&out),
            [(3, 2, 3, 4, SpanStatus::Unwound)],
            "the thread's own"
        );
        assert_eq!(r.goroutines().count(), 2, "same goid, two processes");
        let mut out = Vec::new();
        r.process_exit(1, 9, &mut out);
        assert_eq!(ends(&out), [(1, 0, 1, 9, SpanStatus::Unwound)]);
        assert_eq!(end_threads(&out), [(1, 10, Some(5))]);
        assert_eq!(r.goroutines().map(|g| g.pid).collect::<Vec<_>>(), [2]);
    }

    /// What a synthetic goroutine does next.
    #[derive(Clone, Copy, Debug)]
    enum GoOp {
        /// Call function n; 0..GO_TRACED are traced, the rest are not.
        Call(u32),
        /// Return from the innermost frame.
        Return,
        /// The scheduler runs the goroutine on thread n from now on.
        Migrate(u32),
        /// The runtime copies the goroutine's stack elsewhere (growth or
        /// shrinking): every frame's address changes.
        MoveStack,
        /// A panic, recovered by the frame `n % depth` from the top; with
        /// `true`, a traced deferred call runs while it unwinds.
        Panic(usize, bool),
    }

    const GOROUTINES: u8 = 4;
    const GO_TRACED: u32 = 5;

    fn go_op() -> impl Strategy<Value = GoOp> {
        prop_oneof![
            5 => (0u32..GO_TRACED + 2).prop_map(GoOp::Call),
            4 => Just(GoOp::Return),
            1 => (0u32..3).prop_map(GoOp::Migrate),
            1 => Just(GoOp::MoveStack),
            1 => (any::<usize>(), any::<bool>()).prop_map(|(n, d)| GoOp::Panic(n, d)),
        ]
    }

    /// A Go function's frame: fixed in size, so every call it makes enters
    /// at the same depth.
    fn frame_size(function: u32) -> u64 {
        0x28 + 0x10 * u64::from(function)
    }

    struct GoFrame {
        function: u32,
        depth: u64,
        truth: Option<usize>,
    }

    struct Goroutine {
        frames: Vec<GoFrame>,
        thread: u32,
        stack_hi: u64,
    }

    /// A span the synthetic goroutines really executed.
    #[derive(Debug)]
    struct GoTruth {
        goid: u64,
        function: u32,
        start: u64,
        start_tid: u32,
        end: u64,
        end_tid: u32,
        parent: Option<usize>,
        depth: u32,
        status: SpanStatus,
    }

    /// Runs the goroutines and returns the ring-buffer records, as the
    /// probes write them (raw stack pointers, goroutine ids, depths), and
    /// the true call trees.
    fn simulate_goroutines(ops: &[(u8, GoOp)]) -> (Vec<ProbeEvent>, Vec<GoTruth>) {
        struct Sim {
            events: Vec<ProbeEvent>,
            truth: Vec<GoTruth>,
            ts: u64,
        }
        impl Sim {
            fn emit(&mut self, g: u8, gr: &Goroutine, kind: u32, function: u32, depth: u64) {
                self.ts += 10;
                let thread = 1000 + gr.thread;
                let mut comm = [0u8; ferret_common::COMM_LEN];
                comm[..2].copy_from_slice(format!("t{}", gr.thread).as_bytes());
                self.events.push(ProbeEvent {
                    ts_ns: self.ts,
                    cookie: ferret_common::go_cookie(function, kind, 0, 152),
                    sp: gr.stack_hi - depth,
                    ip: 0,
                    goid: 100 + u64::from(g),
                    kind,
                    pid: 7,
                    tid: thread,
                    go_stack_depth: depth as u32,
                    comm,
                    ..ProbeEvent::default()
                });
            }
            fn call(&mut self, g: u8, gr: &mut Goroutine, function: u32, depth: u64) {
                let traced = function < GO_TRACED;
                let truth = traced.then(|| {
                    self.emit(g, gr, ferret_common::kind::ENTRY, function, depth);
                    let below: Vec<usize> = gr.frames.iter().filter_map(|f| f.truth).collect();
                    self.truth.push(GoTruth {
                        goid: 100 + u64::from(g),
                        function,
                        start: self.ts,
                        start_tid: 1000 + gr.thread,
                        end: 0,
                        end_tid: 0,
                        parent: below.last().copied(),
                        depth: below.len() as u32,
                        status: SpanStatus::Ok,
                    });
                    self.truth.len() - 1
                });
                gr.frames.push(GoFrame {
                    function,
                    depth,
                    truth,
                });
            }
            fn ret(&mut self, g: u8, gr: &mut Goroutine) {
                let Some(frame) = gr.frames.pop() else {
                    return;
                };
                if let Some(t) = frame.truth {
                    self.emit(
                        g,
                        gr,
                        ferret_common::kind::EXIT_INSN,
                        frame.function,
                        frame.depth,
                    );
                    self.truth[t].end = self.ts;
                    self.truth[t].end_tid = 1000 + gr.thread;
                }
            }
        }
        let callee_depth = |gr: &Goroutine| {
            gr.frames
                .last()
                .map_or(0x60, |f| f.depth + frame_size(f.function) + 8)
        };
        let mut sim = Sim {
            events: Vec::new(),
            truth: Vec::new(),
            ts: 0,
        };
        let mut goroutines: Vec<Goroutine> = (0..GOROUTINES)
            .map(|g| Goroutine {
                frames: Vec::new(),
                thread: u32::from(g % 3),
                stack_hi: 0xc000_0000 + 0x10_0000 * u64::from(g),
            })
            .collect();
        for &(g, op) in ops {
            let gr = &mut goroutines[usize::from(g)];
            match op {
                GoOp::Call(function) => {
                    let depth = callee_depth(gr);
                    sim.call(g, gr, function, depth);
                }
                GoOp::Return => sim.ret(g, gr),
                GoOp::Migrate(thread) => gr.thread = thread,
                GoOp::MoveStack => gr.stack_hi += 0x40_0000,
                GoOp::Panic(n, deferred) => {
                    if gr.frames.is_empty() {
                        continue;
                    }
                    if deferred {
                        // gopanic (untraced, a big frame) calls the deferred
                        // function below the panicking frame.
                        let depth = callee_depth(gr) + 0x200;
                        sim.call(g, gr, 0, depth);
                        sim.ret(g, gr);
                    }
                    let survivor = gr.frames.len() - 1 - n % gr.frames.len();
                    let mark =
                        gr.frames[survivor].depth + frame_size(gr.frames[survivor].function) + 8;
                    let unwound: Vec<GoFrame> = gr.frames.drain(survivor + 1..).collect();
                    sim.emit(g, gr, ferret_common::kind::GO_UNWIND, 0, mark);
                    for frame in unwound {
                        if let Some(t) = frame.truth {
                            sim.truth[t].end = sim.ts;
                            sim.truth[t].end_tid = 1000 + gr.thread;
                            sim.truth[t].status = SpanStatus::Unwound;
                        }
                    }
                }
            }
        }
        for (g, gr) in goroutines.iter_mut().enumerate() {
            while !gr.frames.is_empty() {
                sim.ret(g as u8, gr);
            }
        }
        (sim.events, sim.truth)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn reconstructs_random_goroutine_call_trees(
            ops in prop::collection::vec((0..GOROUTINES, go_op()), 0..300),
            deleted in prop::collection::vec(prop::bool::weighted(0.1), 0..900),
            delete in any::<bool>(),
            cut in prop::option::weighted(0.2, any::<prop::sample::Index>()),
        ) {
            let (records, truth) = simulate_goroutines(&ops);
            let mut kept: Vec<ProbeEvent> = records
                .iter()
                .enumerate()
                .filter(|&(i, _)| !(delete && deleted.get(i).copied().unwrap_or(false)))
                .map(|(_, ev)| *ev)
                .collect();
            if let Some(cut) = cut {
                kept.truncate(cut.index(kept.len() + 1));
            }
            let intact = kept.len() == records.len();

            // Through the decoder, which turns a stack move into nothing.
            let mut decoder = crate::probe::decode::Decoder::new();
            let mut r = Reconstructor::new();
            let mut out = Vec::new();
            for record in &kept {
                let ev = decoder.decode(record).expect("decodes");
                r.push(&ev, &mut out);
            }
            let stop = kept.last().map_or(0, |e| e.ts_ns) + 1;
            r.finish(stop, &mut out);
            prop_assert_eq!(r.open_spans(), 0);

            let spans = check_well_formed(&out);
            if intact {
                prop_assert_eq!(spans.len(), truth.len());
                prop_assert_eq!(r.orphan_exits(), 0);
                for (i, ((s, e), t)) in spans.iter().zip(&truth).enumerate() {
                    prop_assert_eq!(s.span_id, i as u64 + 1);
                    prop_assert_eq!((s.goroutine, s.function), (Some(t.goid), t.function));
                    prop_assert_eq!((s.ts_ns, s.tid), (t.start, t.start_tid));
                    prop_assert_eq!((e.ts_ns, e.tid, e.status), (t.end, t.end_tid, t.status));
                    prop_assert_eq!(s.depth, t.depth);
                    prop_assert_eq!(s.parent_span_id, t.parent.map(|p| p as u64 + 1));
                }
            }
        }
    }

    // ---- Where a span's time went: synthetic scheduler counter streams ----

    /// One step of a simulated thread, as its scheduler sees it.
    #[derive(Clone, Debug)]
    enum SchedOp {
        /// Enter a function.
        Call(u32),
        /// Return from the innermost.
        Return,
        /// Compute for this long.
        Run(u64),
        /// Preempted: wait this long for a CPU.
        Preempt(u64),
        /// Block this long in a system call (its blocked record is sent).
        Block(u64, u32),
        /// The next record of the thread finds no room in the ring buffer.
        LoseNext,
    }

    fn sched_op() -> impl Strategy<Value = SchedOp> {
        prop_oneof![
            3 => (0u32..4).prop_map(SchedOp::Call),
            3 => Just(SchedOp::Return),
            3 => (1u64..1000).prop_map(SchedOp::Run),
            2 => (1u64..1000).prop_map(SchedOp::Preempt),
            2 => ((1u64..1000), prop::sample::select(vec![0u32, 35, 202, 232]))
                .prop_map(|(ns, s)| SchedOp::Block(ns, s)),
            1 => Just(SchedOp::LoseNext),
        ]
    }

    /// A span the simulated thread really executed, with its true split.
    #[derive(Debug)]
    struct SchedTruth {
        start_ns: u64,
        end_ns: u64,
        split: (u64, u64, u64),
        blocked_in: Option<BlockedIn>,
        /// A record of the thread was lost while it was open.
        lossy: bool,
    }

    /// A frame of the simulation: when it began, the counters then, and
    /// its blocked time by system call.
    struct SchedSimFrame {
        function: u32,
        start_ns: u64,
        at_start: (u64, u64, u64),
        lost_at_start: u32,
        blocked: Vec<(BlockedIn, u64)>,
    }

    /// Runs `ops` on one thread as the kernel side would report it: every
    /// record carries the cumulative counters; a lost record is not
    /// delivered and bumps the thread's lost count.
    fn simulate_sched(ops: &[SchedOp], exits: bool) -> (Vec<RawEvent>, Vec<SchedTruth>) {
        let (mut ts, mut cpu, mut runnable, mut blocked) = (1_000u64, 0u64, 0u64, 0u64);
        let (mut lost, mut lose_next) = (0u32, false);
        let mut stack: Vec<SchedSimFrame> = Vec::new();
        let mut events = Vec::new();
        let mut truth = Vec::new();
        let mut send = |ev: RawEvent, lost: &mut u32, lose_next: &mut bool| {
            if std::mem::take(lose_next) {
                *lost += 1;
            } else {
                events.push(ev);
            }
        };
        let counters = |cpu, runnable, blocked, lost| SchedCounters {
            cpu_ns: cpu,
            runnable_ns: runnable,
            blocked_ns: blocked,
            epoch: 7,
            lost,
        };
        let finish = |f: &SchedSimFrame, ts, now: (u64, u64, u64), lost| SchedTruth {
            start_ns: f.start_ns,
            end_ns: ts,
            split: (
                now.0 - f.at_start.0,
                now.1 - f.at_start.1,
                now.2 - f.at_start.2,
            ),
            blocked_in: f
                .blocked
                .iter()
                .max_by_key(|&&(s, ns)| (ns, std::cmp::Reverse(s)))
                .map(|&(s, _)| s),
            lossy: lost != f.lost_at_start,
        };
        for op in ops {
            match *op {
                SchedOp::Call(function) => {
                    // Probes run on the CPU: a call's entry costs a little.
                    ts += 3;
                    cpu += 3;
                    let sp = BASE_SP - 0x100 * stack.len() as u64;
                    let mut ev = entry(ts, 1, function, sp);
                    ev.sched = counters(cpu, runnable, blocked, lost);
                    send(ev, &mut lost, &mut lose_next);
                    stack.push(SchedSimFrame {
                        function,
                        start_ns: ts,
                        at_start: (cpu, runnable, blocked),
                        lost_at_start: lost,
                        blocked: Vec::new(),
                    });
                }
                SchedOp::Return => {
                    let Some(mut f) = stack.pop() else { continue };
                    ts += 2;
                    cpu += 2;
                    let sp = BASE_SP - 0x100 * stack.len() as u64;
                    let mut ev = exit(ts, 1, f.function, sp);
                    ev.sched = counters(cpu, runnable, blocked, lost);
                    send(ev, &mut lost, &mut lose_next);
                    truth.push(finish(&f, ts, (cpu, runnable, blocked), lost));
                    if let Some(parent) = stack.last_mut() {
                        for (s, ns) in f.blocked.drain(..) {
                            add_blocked(&mut parent.blocked, s, ns);
                        }
                    }
                }
                SchedOp::Run(ns) => {
                    ts += ns;
                    cpu += ns;
                }
                SchedOp::Preempt(ns) => {
                    ts += ns;
                    runnable += ns;
                }
                SchedOp::Block(ns, syscall) => {
                    ts += ns;
                    blocked += ns;
                    if let Some(top) = stack.last_mut() {
                        add_blocked(&mut top.blocked, BlockedIn(syscall), ns);
                    }
                    let mut ev = raw(
                        RawKind::Blocked {
                            ns,
                            syscall: BlockedIn(syscall),
                        },
                        ts,
                        1,
                        0,
                        0,
                    );
                    ev.sched = counters(cpu, runnable, blocked, lost);
                    send(ev, &mut lost, &mut lose_next);
                }
                SchedOp::LoseNext => lose_next = true,
            }
        }
        if exits {
            ts += 1;
            cpu += 1;
            let mut ev = raw(RawKind::ThreadExit, ts, 1, 0, 0);
            ev.sched = counters(cpu, runnable, blocked, lost);
            send(ev, &mut lost, &mut lose_next);
            while let Some(mut f) = stack.pop() {
                truth.push(finish(&f, ts, (cpu, runnable, blocked), lost));
                if let Some(parent) = stack.last_mut() {
                    for (s, ns) in f.blocked.drain(..) {
                        add_blocked(&mut parent.blocked, s, ns);
                    }
                }
            }
        }
        (events, truth)
    }

    fn sched_ends(out: &[SpanEvent]) -> Vec<&SpanEnd> {
        out.iter()
            .filter_map(|e| match e {
                SpanEvent::End(e) => Some(e),
                SpanEvent::Start(_) => None,
            })
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Whatever the interleaving of calls, switches, blocking and lost
        /// records: a split is exactly the truth or null, null whenever a
        /// record of the thread was lost while the span was open, and it
        /// always adds up to the span's duration.
        #[test]
        fn a_split_is_the_truth_or_null_never_wrong(
            ops in prop::collection::vec(sched_op(), 0..200),
            exits in any::<bool>(),
        ) {
            let (events, truth) = simulate_sched(&ops, exits);
            let mut r = Reconstructor::new();
            let mut out = run(&mut r, &events);
            r.finish(u64::MAX / 2, &mut out);
            for end in sched_ends(&out) {
                let Some(split) = end.sched else { continue };
                prop_assert_eq!(
                    split.cpu_ns + split.runnable_ns + split.blocked_ns,
                    end.duration_ns(),
                    "{:?}", end
                );
                let real = truth
                    .iter()
                    .find(|t| t.start_ns == end.start_ns && t.end_ns == end.ts_ns);
                let Some(real) = real else {
                    // Only a span with no real counterpart would be wrong:
                    // none may carry a split.
                    prop_assert!(false, "a split for a span that never ran: {:?}", end);
                    continue;
                };
                prop_assert!(!real.lossy, "a split across a loss: {:?}", end);
                prop_assert_eq!(
                    (split.cpu_ns, split.runnable_ns, split.blocked_ns),
                    real.split
                );
                prop_assert_eq!(split.blocked_in, real.blocked_in);
            }
            // Without any loss, every span that ended by an event has one.
            if !ops.iter().any(|op| matches!(op, SchedOp::LoseNext)) {
                let with_split = sched_ends(&out)
                    .iter()
                    .filter(|e| e.status != SpanStatus::Open)
                    .all(|e| e.sched.is_some());
                prop_assert!(with_split);
            }
        }
    }

    #[test]
    fn a_span_nested_across_many_switches_gets_the_sum_and_its_main_syscall() {
        // outer { compute 300; inner { sleep 300 in clock_nanosleep; } futex
        // 100; 50 × (run 2, preempted 1) }
        let mut ops = vec![
            SchedOp::Call(0),
            SchedOp::Run(300),
            SchedOp::Call(1),
            SchedOp::Block(300, 230),
            SchedOp::Return,
            SchedOp::Block(100, 202),
        ];
        for _ in 0..50 {
            ops.extend([SchedOp::Run(2), SchedOp::Preempt(1)]);
        }
        ops.push(SchedOp::Return);
        let (events, _) = simulate_sched(&ops, false);
        let out = run(&mut Reconstructor::new(), &events);
        let ends = sched_ends(&out);
        let inner = ends[0].sched.unwrap();
        let outer = ends[1].sched.unwrap();
        assert_eq!(
            (inner.cpu_ns, inner.blocked_ns, inner.blocked_in),
            (2, 300, Some(BlockedIn(230)))
        );
        assert_eq!(
            (outer.cpu_ns, outer.runnable_ns, outer.blocked_ns),
            (300 + 3 + 2 + 100 + 2, 50, 400)
        );
        assert_eq!(outer.blocked_in, Some(BlockedIn(230)), "300 ns beats 100");
    }

    #[test]
    fn spans_of_an_exiting_thread_are_split_up_to_its_exit_and_a_loss_makes_them_null() {
        let ops = [
            SchedOp::Call(0),
            SchedOp::Block(500, 202),
            SchedOp::Call(1),
            SchedOp::Run(40),
        ];
        let (events, _) = simulate_sched(&ops, true);
        let out = run(&mut Reconstructor::new(), &events);
        let ends = sched_ends(&out);
        assert_eq!(ends.len(), 2);
        assert!(ends.iter().all(|e| e.status == SpanStatus::Unwound));
        assert_eq!(ends[0].sched.unwrap().cpu_ns, 40 + 1);
        assert_eq!(ends[1].sched.unwrap().cpu_ns, 3 + 40 + 1);
        assert_eq!(ends[1].sched.unwrap().blocked_in, Some(BlockedIn(202)));

        // The blocked record is lost: the outer span's blocked_in would be
        // unknown, so its whole split is null; the inner one's stands.
        let ops = [
            SchedOp::Call(0),
            SchedOp::LoseNext,
            SchedOp::Block(500, 202),
            SchedOp::Call(1),
            SchedOp::Run(40),
            SchedOp::Return,
            SchedOp::Return,
        ];
        let (events, _) = simulate_sched(&ops, false);
        let out = run(&mut Reconstructor::new(), &events);
        let ends = sched_ends(&out);
        assert_eq!(ends[0].sched.unwrap().cpu_ns, 40 + 2);
        assert_eq!(ends[1].sched, None);
    }

    #[test]
    fn restarted_counters_or_an_event_without_counters_give_no_split() {
        let mut a = entry(10, 1, 0, BASE_SP);
        a.sched = SchedCounters {
            cpu_ns: 5,
            epoch: 3,
            ..SchedCounters::NONE
        };
        let mut b = exit(20, 1, 0, BASE_SP);
        b.sched = SchedCounters {
            cpu_ns: 1,
            epoch: 4,
            ..SchedCounters::NONE
        };
        let out = run(&mut Reconstructor::new(), &[a.clone(), b]);
        assert_eq!(sched_ends(&out)[0].sched, None, "another epoch");
        let out = run(&mut Reconstructor::new(), &[a, exit(20, 1, 0, BASE_SP)]);
        assert_eq!(sched_ends(&out)[0].sched, None, "no counters at the end");
    }
}
