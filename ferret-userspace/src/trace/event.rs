//! The values flowing into and out of the reconstructor.

use std::collections::HashSet;
use std::sync::{Mutex, OnceLock};

/// A thread's name as the kernel reported it (`comm`), interned: every span
/// carries its thread's name, and copying a pointer costs nothing where the
/// reference counting of a shared `Arc<str>` (an atomic increment and
/// decrement per copy) was a fifth of the pipeline's time.
///
/// Interned names live as long as the process. What that keeps is bounded by
/// the distinct names seen, each at most 15 bytes as the kernel stores them.
#[derive(Clone, Copy, Default)]
pub struct ThreadName(&'static str);

impl ThreadName {
    /// The interned copy of `name`.
    pub fn new(name: &str) -> Self {
        static NAMES: OnceLock<Mutex<HashSet<&'static str>>> = OnceLock::new();
        let mut names = NAMES
            .get_or_init(Mutex::default)
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(&known) = names.get(name) {
            return Self(known);
        }
        let leaked: &'static str = Box::leak(Box::from(name));
        names.insert(leaked);
        Self(leaked)
    }

    /// The name.
    pub const fn as_str(self) -> &'static str {
        self.0
    }

    /// Whether `a` and `b` are the same interned string (and so equal);
    /// cheaper than comparing the text.
    pub fn ptr_eq(a: Self, b: Self) -> bool {
        std::ptr::eq(a.0, b.0)
    }
}

impl From<&str> for ThreadName {
    fn from(name: &str) -> Self {
        Self::new(name)
    }
}

impl std::ops::Deref for ThreadName {
    type Target = str;

    fn deref(&self) -> &str {
        self.0
    }
}

impl AsRef<str> for ThreadName {
    fn as_ref(&self) -> &str {
        self.0
    }
}

impl PartialEq for ThreadName {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}

impl Eq for ThreadName {}

impl std::hash::Hash for ThreadName {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.hash(state);
    }
}

impl std::fmt::Debug for ThreadName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self.0, f)
    }
}

impl std::fmt::Display for ThreadName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

/// One entry of the probe table: what a span's `function` index names.
/// Function `i` of a session is the one whose probes carry id `i`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FunctionInfo {
    /// Demangled function name.
    pub name: String,
    /// Path of the binary or library the function lives in, as the target
    /// sees it.
    pub module: String,
}

/// What one traced call of a function costs the thread it runs on, from
/// the calibration ([`crate::cost`]), in nanoseconds. All zero (the
/// default) means uncorrected.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FunctionCost {
    /// A call that returned: its entry and exit probes, all of it charged to
    /// the enclosing span.
    pub hit_ns: u64,
    /// The part of those probes that falls inside the call's own measured
    /// duration (between the two timestamps).
    pub bias_ns: u64,
    /// A call left without its exit probe (unwound): its entry probe alone.
    pub entry_ns: u64,
}

/// What a raw probe hit says happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RawKind {
    /// The thread entered function `function`.
    Entry,
    /// The thread left function `function` by returning (or by a tail-call jump).
    Exit,
    /// A Go goroutine resumed after a recovered panic in the frame just
    /// above `sp`: its frames at or below `sp` were unwound by the panic.
    GoUnwind,
    /// The thread exited; every span it still has open is abandoned.
    ThreadExit,
    /// The process replaced its program (exec): every span of every one of
    /// its threads is abandoned.
    Exec,
    /// The process (`pid`) was forked from traced process `parent` and is
    /// traced too (`--follow-forks`).
    Fork {
        /// The parent's pid.
        parent: u32,
    },
    /// Thread `tid` is back on a CPU after being blocked for `ns` in
    /// system call `syscall` (see [`BlockedIn`]); the event's
    /// [`RawEvent::sched`] counters include that time.
    Blocked {
        /// How long it was blocked, up to its wakeup.
        ns: u64,
        /// What it was blocked in.
        syscall: BlockedIn,
    },
}

/// What a thread was blocked in: an x86-64 system call number, or
/// [`BlockedIn::NOT_A_SYSCALL`] (a page fault, a stop), or why a Go
/// goroutine was parked: the runtime's number for it as the kernel side
/// read it (`GO_WAIT_FLAG | N`), or, once named ([`Self::named`]), its
/// interned name (`GO_WAIT_FLAG | GO_NAMED | i`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlockedIn(pub u32);

/// Set, beside `GO_WAIT_FLAG`, in a Go wait reason that has a name: the
/// low bits index [`GoWaits::names`]. Userspace only; the kernel side never
/// sets it.
const GO_NAMED: u32 = 1 << 29;

/// The Go wait reasons' names, interned like [`ThreadName`]s (bounded by the
/// distinct reasons of the binaries seen, about 40 each), and the traced
/// binary's numbering of them.
#[derive(Default)]
struct GoWaits {
    /// `go:<reason>`, by interned index.
    names: Vec<&'static str>,
    /// The runtime's reason N → its interned form; empty if no table was
    /// read, or if two traced binaries number their reasons differently.
    numbering: Vec<Option<BlockedIn>>,
    /// Whether a table was registered (a second must agree with it).
    registered: bool,
}

impl GoWaits {
    fn get() -> std::sync::MutexGuard<'static, Self> {
        static WAITS: OnceLock<Mutex<GoWaits>> = OnceLock::new();
        WAITS
            .get_or_init(Mutex::default)
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn intern(&mut self, name: &str) -> BlockedIn {
        let index = self
            .names
            .iter()
            .position(|n| *n == name)
            .unwrap_or_else(|| {
                self.names.push(Box::leak(Box::from(name)));
                self.names.len() - 1
            });
        BlockedIn(ferret_common::GO_WAIT_FLAG | GO_NAMED | index as u32)
    }

    /// The name of an interned reason.
    fn name(&self, named: BlockedIn) -> Option<&'static str> {
        (named.0 & (ferret_common::GO_WAIT_FLAG | GO_NAMED)
            == ferret_common::GO_WAIT_FLAG | GO_NAMED)
            .then(|| {
                let index = named.0 & !(ferret_common::GO_WAIT_FLAG | GO_NAMED);
                self.names.get(index as usize).copied()
            })
            .flatten()
    }

    fn register(&mut self, names: &[String]) {
        let numbering: Vec<Option<BlockedIn>> = names
            .iter()
            .map(|name| (!name.is_empty()).then(|| self.intern(&format!("go:{name}"))))
            .collect();
        if !self.registered {
            self.numbering = numbering;
            self.registered = true;
        } else if self.numbering != numbering {
            self.numbering.clear();
        }
    }

    fn named(&self, raw: BlockedIn) -> BlockedIn {
        match raw.go_wait_reason() {
            Some(n) if n != ferret_common::GO_WAIT_UNKNOWN => self
                .numbering
                .get(n as usize)
                .copied()
                .flatten()
                .unwrap_or(raw),
            _ => raw,
        }
    }
}

impl BlockedIn {
    /// Blocked outside a system call.
    pub const NOT_A_SYSCALL: Self = Self(ferret_common::NO_SYSCALL);

    /// The name stored in the `blocked_in` column: the system call's name
    /// (`futex`, `read`, `clock_nanosleep`…), `fault` outside one, or
    /// `syscall_N` for a number without a name; for a parked Go goroutine
    /// `go:` and the runtime's reason (`go:chan receive`, `go:sleep`,
    /// `go:semacquire`), or, where the binary's names could not be read,
    /// `go_wait_N`, N its `g.waitreason` (the index into the binary's
    /// `runtime.waitReasonStrings`, whose numbering changes between Go
    /// releases), or `go_wait` when the reason itself was not read.
    pub fn name(self) -> std::borrow::Cow<'static, str> {
        if self == Self::NOT_A_SYSCALL {
            return "fault".into();
        }
        if self.0 & GO_NAMED != 0 && self.0 & ferret_common::GO_WAIT_FLAG != 0 {
            return GoWaits::get().name(self).unwrap_or("go_wait").into();
        }
        if let Some(reason) = self.go_wait_reason() {
            return match reason {
                ferret_common::GO_WAIT_UNKNOWN => "go_wait".into(),
                n => format!("go_wait_{n}").into(),
            };
        }
        match syscalls::x86_64::Sysno::new(self.0 as usize) {
            Some(sysno) => sysno.name().into(),
            None => format!("syscall_{}", self.0).into(),
        }
    }

    /// A parked Go goroutine's wait reason (see [`Self::name`]), or `None`
    /// for a system call.
    pub fn go_wait_reason(self) -> Option<u32> {
        (self != Self::NOT_A_SYSCALL
            && self.0 & (ferret_common::GO_WAIT_FLAG | GO_NAMED) == ferret_common::GO_WAIT_FLAG)
            .then_some(self.0 & !ferret_common::GO_WAIT_FLAG)
    }

    /// Registers a traced Go binary's wait reasons, by the runtime's number
    /// (see [`crate::symbols::go::wait_reasons`]). Were two binaries to
    /// number them differently, the reasons stay numbers (`go_wait_N`):
    /// an event does not say which binary parked its goroutine.
    pub fn register_go_wait_reasons(names: &[String]) {
        GoWaits::get().register(names);
    }

    /// A Go wait reason by the runtime's number named, if its binary's names
    /// were registered; anything else as it is.
    #[must_use]
    pub fn named(self) -> Self {
        if self.go_wait_reason().is_none() {
            return self; // a system call: no lock
        }
        GoWaits::get().named(self)
    }

    /// The inverse of [`Self::name`].
    pub fn from_name(name: &str) -> Option<Self> {
        if name == "fault" {
            return Some(Self::NOT_A_SYSCALL);
        }
        if name.starts_with("go:") {
            return Some(GoWaits::get().intern(name));
        }
        if name == "go_wait" {
            return Some(Self(
                ferret_common::GO_WAIT_FLAG | ferret_common::GO_WAIT_UNKNOWN,
            ));
        }
        if let Some(n) = name.strip_prefix("go_wait_") {
            return n
                .parse::<u32>()
                .ok()
                .filter(|&n| n < ferret_common::GO_WAIT_FLAG)
                .map(|n| Self(ferret_common::GO_WAIT_FLAG | n));
        }
        if let Some(nr) = name.strip_prefix("syscall_") {
            return nr.parse().ok().map(Self);
        }
        name.parse::<syscalls::x86_64::Sysno>()
            .ok()
            .map(|s| Self(s.id() as u32))
    }
}

/// A thread's cumulative scheduler counters as an event carried them (see
/// [`ferret_common::SchedState`]). Only differences between two events with
/// the same `epoch` and `lost` mean anything.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SchedCounters {
    /// Time on a CPU.
    pub cpu_ns: u64,
    /// Time ready, waiting for a CPU.
    pub runnable_ns: u64,
    /// Time blocked.
    pub blocked_ns: u64,
    /// When the counters started; 0: the event carries no counters.
    pub epoch: u64,
    /// Events of the thread lost so far.
    pub lost: u32,
}

impl SchedCounters {
    /// No counters (a Go probe, a synthetic event, a thread the kernel had
    /// no room for).
    pub const NONE: Self = Self {
        cpu_ns: 0,
        runnable_ns: 0,
        blocked_ns: 0,
        epoch: 0,
        lost: 0,
    };

    /// The split of the interval from `self` (its start) to `end`; `None`
    /// unless both carry counters of the same epoch with no event of the
    /// thread lost in between: a split is null, never wrong.
    pub fn until(&self, end: &Self) -> Option<(u64, u64, u64)> {
        if self.epoch == 0 || self.epoch != end.epoch || self.lost != end.lost {
            return None;
        }
        Some((
            end.cpu_ns.checked_sub(self.cpu_ns)?,
            end.runnable_ns.checked_sub(self.runnable_ns)?,
            end.blocked_ns.checked_sub(self.blocked_ns)?,
        ))
    }
}

/// Where a span's time went: on a CPU, ready but waiting for one, blocked.
/// `cpu_ns + runnable_ns + blocked_ns` is the span's measured duration; the
/// probes' own time (`overhead_ns`) is inside `cpu_ns`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SchedSplit {
    /// Time on a CPU.
    pub cpu_ns: u64,
    /// Time ready, waiting for a CPU.
    pub runnable_ns: u64,
    /// Time blocked.
    pub blocked_ns: u64,
    /// What most of the blocked time was spent in; `None` if the span never
    /// blocked.
    pub blocked_in: Option<BlockedIn>,
}

/// One decoded probe hit: plain values, no kernel types.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawEvent {
    /// Entry, exit or thread exit.
    pub kind: RawKind,
    /// `CLOCK_MONOTONIC` nanoseconds.
    pub ts_ns: u64,
    /// Process id.
    pub pid: u32,
    /// Thread id.
    pub tid: u32,
    /// Index into the probe table (meaningless for `ThreadExit`).
    pub function: u32,
    /// The stack pointer as it was at the function's entry (pointing at the
    /// return address). Exit events are normalized to this by the decoder, so
    /// an exit matches its entry by `(function, sp)`. For a goroutine
    /// (`goroutine` set) it is a position on the goroutine's stack that
    /// survives the runtime moving the stack: ordered like a stack pointer
    /// (lower is deeper), not an address.
    pub sp: u64,
    /// The thread's name at the time of the event.
    pub thread_name: ThreadName,
    /// A Go program's goroutine (its `goid`) that made the call: its stack,
    /// not the thread's, holds the frame. `None` for other programs.
    pub goroutine: Option<u64>,
    /// The thread's scheduler counters at `ts_ns` ([`SchedCounters::NONE`]
    /// if the event carries none).
    pub sched: SchedCounters,
}

/// How a span ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SpanStatus {
    /// The function returned.
    Ok,
    /// The function was left without a return: exception, panic, longjmp,
    /// thread or process exit, or its exit was lost.
    Unwound,
    /// Still running when the recording stopped; the duration counts to the stop.
    Open,
}

impl SpanStatus {
    /// The string stored in the Parquet `status` column.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Unwound => "unwound",
            Self::Open => "open",
        }
    }
}

/// A span began.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpanStart {
    /// Unique per span in a recording; the matching [`SpanEnd`] has the same id.
    pub span_id: u64,
    /// The enclosing open span on the same thread (goroutine), if any.
    pub parent_span_id: Option<u64>,
    /// 0 for a span with no open parent on its thread (goroutine).
    pub depth: u32,
    /// Process id.
    pub pid: u32,
    /// Thread id.
    pub tid: u32,
    /// Thread name.
    pub thread_name: ThreadName,
    /// Index into the probe table.
    pub function: u32,
    /// Start time, `CLOCK_MONOTONIC` ns.
    pub ts_ns: u64,
    /// The call was already running when tracing began (found on its
    /// thread's stack and adopted): no entry probe fired for it.
    pub before_attach: bool,
    /// The goroutine whose call this is (Go programs); `None` otherwise.
    pub goroutine: Option<u64>,
}

/// A span ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpanEnd {
    /// Same id as the span's [`SpanStart`].
    pub span_id: u64,
    /// Same as the span's start.
    pub parent_span_id: Option<u64>,
    /// Same as the span's start.
    pub depth: u32,
    /// Process id.
    pub pid: u32,
    /// Thread id: the thread the span ended on (a goroutine's span may
    /// start on another).
    pub tid: u32,
    /// Thread name (as at the span's start).
    pub thread_name: ThreadName,
    /// Index into the probe table.
    pub function: u32,
    /// The span's start, `CLOCK_MONOTONIC` ns.
    pub start_ns: u64,
    /// End time, `CLOCK_MONOTONIC` ns (`start_ns + duration`).
    pub ts_ns: u64,
    /// How it ended.
    pub status: SpanStatus,
    /// ferret's own probe time estimated inside the span: its exit probe's
    /// share of its measured duration plus every traced descendant's probes
    /// (see [`FunctionCost`]). `ts_ns - start_ns` stays as measured.
    pub overhead_ns: u64,
    /// The call's own probe time outside its measured duration (its entry
    /// probe's part before `start_ns`, its exit probe's after `ts_ns`),
    /// charged to the enclosing span: with [`Self::overhead_ns`] it lets a
    /// timeline be corrected exactly, call by call.
    pub overhead_outside_ns: u64,
    /// Same as the span's start.
    pub goroutine: Option<u64>,
    /// Where the span's time went; `None` when unknown (events lost, a Go
    /// program, a span adopted at attach or still open at the stop).
    pub sched: Option<SchedSplit>,
}

impl SpanEnd {
    /// `ts_ns - start_ns`.
    pub const fn duration_ns(&self) -> u64 {
        self.ts_ns.saturating_sub(self.start_ns)
    }

    /// The duration with ferret's own probe time taken out, never below 0.
    pub const fn corrected_ns(&self) -> u64 {
        self.duration_ns().saturating_sub(self.overhead_ns)
    }
}

/// One step of the span lifecycle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SpanEvent {
    /// A span began.
    Start(SpanStart),
    /// A span ended.
    End(SpanEnd),
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferret_common::{GO_WAIT_FLAG, GO_WAIT_UNKNOWN};

    fn table(names: &[&str]) -> Vec<String> {
        names.iter().map(|&n| n.to_owned()).collect()
    }

    #[test]
    fn go_wait_reasons_are_named_by_the_binary_s_numbering() {
        let mut waits = GoWaits::default();
        let raw = |n| BlockedIn(GO_WAIT_FLAG | n);
        // Before any table: numbers stay numbers.
        assert_eq!(waits.named(raw(2)), raw(2));
        waits.register(&table(&["", "GC assist marking", "chan receive", "sleep"]));
        let receive = waits.named(raw(2));
        assert_ne!(receive, raw(2));
        assert_eq!(waits.name(receive), Some("go:chan receive"));
        assert_eq!(receive.go_wait_reason(), None, "named, not a number");
        // Reason 0 (none), past the table, unknown, and system calls: as they are.
        for same in [raw(0), raw(9), raw(GO_WAIT_UNKNOWN), BlockedIn(202)] {
            assert_eq!(waits.named(same), same);
        }
        // The same table again (another process of the binary) agrees.
        waits.register(&table(&["", "GC assist marking", "chan receive", "sleep"]));
        assert_eq!(waits.named(raw(3)), waits.intern("go:sleep"));
        // Another numbering: an event cannot say whose, so numbers again.
        waits.register(&table(&["", "GC assist marking", "sleep", "chan receive"]));
        assert_eq!(waits.named(raw(2)), raw(2));
        // Names already handed out keep theirs.
        assert_eq!(waits.name(receive), Some("go:chan receive"));
    }

    #[test]
    fn a_named_go_wait_reason_round_trips_through_its_column_text() {
        let named = BlockedIn::from_name("go:sync.Mutex.Lock").unwrap();
        assert_eq!(named.name(), "go:sync.Mutex.Lock");
        assert_eq!(BlockedIn::from_name("go:sync.Mutex.Lock"), Some(named));
        assert_ne!(BlockedIn::from_name("go:select"), Some(named));
        // Not the `select` system call.
        assert_ne!(
            BlockedIn::from_name("go:select"),
            BlockedIn::from_name("select")
        );
        assert_eq!(BlockedIn(GO_WAIT_FLAG + 19).name(), "go_wait_19");
    }
}
