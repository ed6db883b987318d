//! Everything that crosses the kernel/user boundary, defined once.
//!
//! The eBPF programs in `ferret-ebpf` write [`ProbeEvent`] records into the
//! [`EVENTS_MAP`] ring buffer and CPU samples ([`SampleEvent`]) into the
//! [`SAMPLES_MAP`] one; the userspace agent reads them back. Both sides
//! compile this crate, so the layout cannot drift. The `user` feature adds
//! `aya::Pod` so userspace can read the maps.
#![no_std]

/// Name of the BPF ring buffer carrying [`ProbeEvent`]s.
pub const EVENTS_MAP: &str = "FERRET_EVENTS";
/// Name of the per-CPU `u64` array counting failed ring-buffer reservations
/// (slots in [`lost`]).
pub const LOST_MAP: &str = "FERRET_LOST";

/// Slots of the [`LOST_MAP`] array.
pub mod lost {
    /// Probe events ([`super::EVENTS_MAP`] full).
    pub const EVENTS: u32 = 0;
    /// CPU samples ([`super::SAMPLES_MAP`] full).
    pub const SAMPLES: u32 = 1;
    /// Number of slots.
    pub const LEN: u32 = 2;
}
/// Name of the per-CPU `u64` array of what the kernel side counts besides
/// losses (slots in [`counts`]).
pub const COUNTS_MAP: &str = "FERRET_COUNTS";

/// Slots of the [`COUNTS_MAP`] array.
pub mod counts {
    /// Runs of the scheduler programs that found a traced thread (a switch
    /// out, a switch in, a wakeup): what the overhead budget charges the
    /// split of time for.
    pub const SCHED_HOOKS: u32 = 0;
    /// Times a thread's scheduler state was restarted because a switch of
    /// it had gone unseen (see [`super::SchedState::restart`]).
    pub const SCHED_RESTARTS: u32 = 1;
    /// Times an unreported switch in was put back from the stretch the
    /// thread ran (see [`super::SchedState::repair_switch_in`]).
    pub const SCHED_REPAIRS: u32 = 2;
    /// Hits of the Go scheduler's hand-off probes (see
    /// [`super::go_sched`]): a uprobe each, charged by the overhead budget.
    pub const GO_HAND_OFFS: u32 = 3;
    /// Number of slots.
    pub const LEN: u32 = 4;
}
/// Name of the hash map of traced process ids (`tgid -> 1`).
pub const TARGETS_MAP: &str = "FERRET_TARGETS";
/// Name of the probe program, attached to function entries and exits alike.
pub const PROBE_PROGRAM: &str = "ferret_probe";
/// Name of the `u32` array of settings userspace writes (see [`config`]).
pub const CONFIG_MAP: &str = "FERRET_CONFIG";
/// Name of the `sched_process_fork` raw tracepoint program (`--follow-forks`).
pub const FORK_PROGRAM: &str = "ferret_fork";
/// Name of the `sched_process_exec` raw tracepoint program.
pub const EXEC_PROGRAM: &str = "ferret_exec";
/// Name of the `sched_switch` raw tracepoint program (per-thread CPU,
/// runnable and blocked time; see [`SchedState`]).
pub const SCHED_SWITCH_PROGRAM: &str = "ferret_sched_switch";
/// Name of the `sched_wakeup` raw tracepoint program (a blocked thread
/// becomes runnable).
pub const SCHED_WAKEUP_PROGRAM: &str = "ferret_sched_wakeup";
/// Name of the hash map of traced threads' scheduler state (`tid ->`
/// [`SchedState`]).
pub const SCHED_MAP: &str = "FERRET_SCHED";
/// How many threads' scheduler state the kernel side keeps at once; a
/// thread beyond it has no counters (its spans' split is null).
pub const MAX_SCHED_THREADS: u32 = 16384;

/// Slots of the [`CONFIG_MAP`] array.
pub mod config {
    /// Byte offset of `tgid` in the kernel's `task_struct` (from BTF).
    pub const TASK_TGID_OFFSET: u32 = 0;
    /// 1: children of traced processes are traced too.
    pub const FOLLOW_FORKS: u32 = 1;
    /// The probe generation whose events are delivered (0 or 1): probes are
    /// re-attached under the other generation, then this flips, so no event
    /// is delivered twice or by a link being replaced.
    pub const GENERATION: u32 = 2;
    /// Wake the reader once this many bytes wait in the ring buffer (an
    /// eighth of its size); below that, the reader's timer drains it.
    pub const WAKEUP_BYTES: u32 = 3;
    /// Byte offset of `pid` (the thread id) in the kernel's `task_struct`
    /// (from BTF); 0: unknown, the scheduler programs do nothing.
    pub const TASK_PID_OFFSET: u32 = 4;
    /// 1: the scheduler tracepoints are attached, so probes keep and send
    /// their thread's counters; 0: they send none (a split would be wrong).
    pub const SCHED_ON: u32 = 5;
    /// Byte offset of `se.sum_exec_runtime` (the task's time on a CPU, as
    /// the scheduler counts it) in the kernel's `task_struct` (from BTF);
    /// 0: unknown, a switch the kernel did not report restarts the
    /// thread's counters instead of being repaired (see
    /// [`super::SchedState::out_exec_ns`]).
    pub const TASK_SUM_EXEC_OFFSET: u32 = 6;
    /// Number of slots.
    pub const LEN: u32 = 7;
}

/// Name of the same probe in a `uretprobe` section (per-probe fallback only).
pub const PROBE_RET_PROGRAM: &str = "ferret_probe_ret";
/// Name of an empty uprobe program, the floor the benchmarks compare against.
pub const EMPTY_PROGRAM: &str = "ferret_empty";
/// Name of the `sched_process_exit` raw tracepoint program (thread exits).
pub const THREAD_EXIT_PROGRAM: &str = "ferret_thread_exit";

/// Name of the `perf_event` program that samples the traced processes'
/// threads on CPU (attached to a cpu-clock event on every CPU).
pub const SAMPLE_PROGRAM: &str = "ferret_sample";
/// Name of the ring buffer carrying [`SampleEvent`]s (apart from the probe
/// events, so samples never crowd out calls).
pub const SAMPLES_MAP: &str = "FERRET_SAMPLES";
/// Size of [`SAMPLES_MAP`] in bytes: about 250 samples.
pub const SAMPLE_RING_BYTES: u32 = 4 << 20;
/// The page size the stack copy is cut in.
pub const SAMPLE_PAGE: usize = 4096;
/// Pages of user stack a sample copies, from the page holding the stack
/// pointer up: 12 to 16 KiB above the stack pointer.
pub const SAMPLE_STACK_PAGES: usize = 4;
/// Bytes of [`SampleEvent::stack`].
pub const SAMPLE_STACK_BYTES: usize = SAMPLE_PAGE * SAMPLE_STACK_PAGES;

/// Bits of [`SampleEvent::flags`].
pub mod sample_flags {
    /// The CPU was in the kernel (a system call, a fault) when sampled; the
    /// registers are the thread's user registers as it entered the kernel.
    pub const IN_KERNEL: u32 = 1;
}

/// Default ring-buffer size in bytes (a power of two, a multiple of the page size).
pub const DEFAULT_RING_BYTES: u32 = 16 << 20;
/// Maximum number of traced processes (`--follow-forks` adds children).
pub const MAX_TARGETS: u32 = 1024;

/// How a probe fired, carried in the low bits of the attach cookie and in
/// [`ProbeEvent::kind`].
pub mod kind {
    /// Function entry. The stack pointer points at the return address.
    pub const ENTRY: u32 = 0;
    /// A return (or tail-call jump) instruction of the function, probed
    /// before it executes: the stack pointer equals the one at entry.
    pub const EXIT_INSN: u32 = 1;
    /// A uretprobe: the return address was already popped, so the stack
    /// pointer is eight bytes above the one at entry.
    pub const EXIT_URET: u32 = 2;
    /// Go: the entry of the runtime's `deferreturn`, which a function that
    /// recovered a panic calls as it resumes: the goroutine's frames below
    /// that function were left without returning.
    pub const GO_UNWIND: u32 = 3;
    /// A thread of a traced process exited (from the tracepoint). Not a
    /// cookie kind.
    pub const THREAD_EXIT: u32 = 4;
    /// A traced process replaced its program (exec). Not a cookie kind.
    pub const EXEC: u32 = 5;
    /// A traced process forked a child that is now traced too
    /// (`--follow-forks`); `pid` is the child, `cookie` the parent. Not a
    /// cookie kind.
    pub const FORK: u32 = 6;
    /// A traced thread is back on a CPU after blocking: `cookie` holds how
    /// long it was blocked (ns, up to its wakeup), [`ProbeEvent::syscall`]
    /// what it was blocked in. Emitted by the `sched_switch` program, so
    /// `comm` is not the thread's. Not a cookie kind.
    pub const BLOCKED: u32 = 7;
}

/// [`ProbeEvent::syscall`] / [`SchedState::syscall`] when the thread blocked
/// outside a system call (a page fault, a stop).
pub const NO_SYSCALL: u32 = u32::MAX;

/// Set in [`ProbeEvent::syscall`] of a [`kind::BLOCKED`] event of a parked
/// goroutine: the low bits hold its `g.waitreason` (an index into the
/// binary's `runtime.waitReasonStrings`), or [`GO_WAIT_UNKNOWN`].
pub const GO_WAIT_FLAG: u32 = 1 << 30;
/// The wait reason of a goroutine parked when its `waitreason` offset is
/// unknown.
pub const GO_WAIT_UNKNOWN: u32 = 0xffff;

/// One traced thread's scheduler bookkeeping, the value of [`SCHED_MAP`].
///
/// Created by the thread's first probe hit (it is on a CPU then), updated
/// by the `sched_switch` and `sched_wakeup` programs, removed when the
/// thread exits. Each hook only adds its own timestamp to its own sum, so
/// the result does not depend on the order in which hooks running on
/// different CPUs land: while the thread runs, `in_count == out_count + 1`
/// and its time on a CPU since `created_ns` is `now + out_sum - in_sum`;
/// once every block has ended (`block_ends == block_starts`) its blocked
/// time is `block_end_sum - block_start_sum`; the rest of the elapsed time
/// it was runnable. Sums wrap; differences are exact.
///
/// `#[repr(C)]`, largest fields first, no implicit padding: 9 × `u64` +
/// 8 × `u32` = 104 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SchedState {
    /// When the counters started (`CLOCK_MONOTONIC` ns): the epoch. Never 0.
    pub created_ns: u64,
    /// Sum of the times it was switched in (its creation counts as one).
    pub in_sum: u64,
    /// Sum of the times it was switched out.
    pub out_sum: u64,
    /// Sum of the times it blocked (switched out not runnable).
    pub block_start_sum: u64,
    /// Sum of the times its blocks ended (woken, or switched in unwoken).
    pub block_end_sum: u64,
    /// Blocked time already reported in [`kind::BLOCKED`] events.
    pub reported_blocked_ns: u64,
    /// The task's `se.sum_exec_runtime` at its last switch out (0: none
    /// seen). At a switch out the scheduler has just brought it up to date,
    /// so the difference to the next switch out is the stretch on a CPU
    /// between them: when the kernel reported no switch in (see
    /// [`Self::restart`]), that stretch says when it was, give or take the
    /// interrupt and steal time inside it (the scheduler's clock leaves
    /// them out).
    pub out_exec_ns: u64,
    /// When it last switched out.
    pub last_out_ns: u64,
    /// Go: the goroutine on this thread ([`GoState`]), so the thread's
    /// blocked time (a system call) is charged to it; 0 for none.
    pub goid: u64,
    /// Switches in (with its creation).
    pub in_count: u32,
    /// Switches out.
    pub out_count: u32,
    /// Blocks begun.
    pub block_starts: u32,
    /// Blocks ended.
    pub block_ends: u32,
    /// The system call it last blocked in, or [`NO_SYSCALL`].
    pub syscall: u32,
    /// Events of this thread the ring buffer had no room for.
    pub lost: u32,
    /// The thread's process id (tgid), for events emitted from another
    /// task's context.
    pub pid: u32,
    /// Zero.
    pub pad: u32,
}

impl SchedState {
    /// Whether the thread is on a CPU now (as the hooks have seen it).
    #[inline]
    pub const fn running(&self) -> bool {
        self.in_count == self.out_count.wrapping_add(1)
    }

    /// Whether the thread is blocked now.
    #[inline]
    pub const fn blocked(&self) -> bool {
        self.block_starts != self.block_ends
    }

    /// On-CPU ns since `created_ns`, at `now`: the closed stretches, and the
    /// current one while it runs.
    #[inline]
    pub const fn cpu_ns_at(&self, now: u64) -> u64 {
        let closed = self.out_sum.wrapping_sub(self.in_sum);
        if self.running() {
            closed.wrapping_add(now)
        } else {
            closed
        }
    }

    /// Starts the counters over at `now`, a time the thread is on a CPU
    /// (a new epoch: spans begun before it get no split), keeping its
    /// losses and process. For a switch the hooks did not see: a switch out
    /// of a thread they hold off a CPU, or a switch in of one they hold on
    /// one, means one of its switches went unseen; used when
    /// [`Self::repair_switch_in`] cannot say when it was.
    /// This kernel (6.18) does not always fire `sched_switch` as a thread
    /// goes back on a CPU: bpftrace counting the tracepoint alone saw a
    /// spinning process switched out 365 times and in 360 in 4 s, with two
    /// busy loops sharing both CPUs (one more out than in is its running
    /// start). Left as it was, the state stayed "off a CPU" while the
    /// thread ran, and every later span of the thread had a null split.
    #[inline]
    pub const fn restart(&mut self, now: u64) {
        *self = Self {
            created_ns: now,
            in_sum: now,
            in_count: 1,
            syscall: NO_SYSCALL,
            lost: self.lost,
            pid: self.pid,
            out_sum: 0,
            block_start_sum: 0,
            block_end_sum: 0,
            reported_blocked_ns: 0,
            out_exec_ns: 0,
            last_out_ns: 0,
            // The goroutine on the thread is still on it.
            goid: self.goid,
            out_count: 0,
            block_starts: 0,
            block_ends: 0,
            pad: 0,
        };
    }

    /// At a switch out at `now` of a thread the hooks hold off a CPU (its
    /// switch in went unreported), with the task's `sum_exec_runtime`
    /// `exec_ns` now: puts the missing switch in where the stretch since
    /// the last switch out says it was (ending a block still open there,
    /// as an unseen wakeup would be), so the counters stay whole. `false`
    /// when the stretch is unknown or does not fit (no earlier switch out,
    /// a stretch longer than the time since the last switch out): then
    /// [`Self::restart`].
    #[inline]
    pub const fn repair_switch_in(&mut self, now: u64, exec_ns: u64) -> bool {
        if self.out_exec_ns == 0 || exec_ns < self.out_exec_ns || self.out_count == 0 {
            return false;
        }
        let stretch = exec_ns - self.out_exec_ns;
        let Some(switched_in) = now.checked_sub(stretch) else {
            return false;
        };
        if switched_in < self.last_out_ns {
            return false;
        }
        if self.blocked() {
            self.block_end_sum = self.block_end_sum.wrapping_add(switched_in);
            self.block_ends = self.block_ends.wrapping_add(1);
        }
        self.in_sum = self.in_sum.wrapping_add(switched_in);
        self.in_count = self.in_count.wrapping_add(1);
        true
    }

    /// `(cpu, runnable, blocked)` ns since `created_ns`, at `now`, for a
    /// thread on a CPU with every block ended; `None` otherwise (a hook is
    /// still to land).
    #[inline]
    pub const fn counters_at(&self, now: u64) -> Option<(u64, u64, u64)> {
        if !self.running() || self.blocked() {
            return None;
        }
        let cpu = self.cpu_ns_at(now);
        let blocked = self.block_end_sum.wrapping_sub(self.block_start_sum);
        let Some(elapsed) = now.checked_sub(self.created_ns) else {
            return None;
        };
        let Some(off) = elapsed.checked_sub(cpu) else {
            return None;
        };
        let Some(runnable) = off.checked_sub(blocked) else {
            return None;
        };
        Some((cpu, runnable, blocked))
    }
}

#[cfg(feature = "user")]
// SAFETY: `SchedState` is `repr(C)`, `Copy`, made only of integers and has no
// padding, so every bit pattern is a valid value.
unsafe impl aya::Pod for SchedState {}

const _: () = assert!(core::mem::size_of::<SchedState>() == 104);

/// Name of the hash map of Go goroutines' scheduler state (`[pid, goid] ->`
/// [`GoState`]).
pub const GO_MAP: &str = "FERRET_GO";
/// How many goroutines' state the kernel side keeps at once. The map is an
/// LRU: a goroutine evicted gets a fresh state (a new epoch), so a span
/// across the eviction has a null split, never a wrong one.
pub const MAX_GOROUTINES: u32 = 65536;

/// What a hand-off probe in the Go scheduler does to goroutine `gp` (the
/// function's first argument, in RAX), carried in the cookie's function id
/// with [`COOKIE_GO_SCHED_BIT`] set.
pub mod go_sched {
    /// `runtime.execute`: `gp` goes on this thread.
    pub const ON: u32 = 1;
    /// `runtime.park_m`: `gp` blocks (waiting to be readied).
    pub const PARK: u32 = 2;
    /// `runtime.gosched_m`, `gopreempt_m`, `goyield_m`, `preemptPark`,
    /// `exitsyscall0`: `gp` is runnable, waiting for a P.
    pub const YIELD: u32 = 3;
    /// `runtime.goexit0`: `gp` is dead.
    pub const EXIT: u32 = 4;
}

/// Set in a cookie whose probe is a Go scheduler hand-off point (see
/// [`go_sched`]): the function id field holds the operation. Function ids
/// are `u32`, so this bit (below the goid offset) is never one of theirs.
pub const COOKIE_GO_SCHED_BIT: u32 = 47;

/// Why a goroutine is off its thread ([`GoState::off_why`]).
pub mod go_off {
    /// It is on a thread, or was never seen off one.
    pub const NONE: u32 = 0;
    /// Waiting for a P (yielded, preempted, back from a system call).
    pub const RUNNABLE: u32 = 1;
    /// Parked: blocked until readied.
    pub const BLOCKED: u32 = 2;
}

/// One goroutine's scheduler bookkeeping, the value of [`GO_MAP`].
///
/// Go multiplexes goroutines onto threads, so a thread's counters
/// ([`SchedState`]) do not split a goroutine's call. While the goroutine is
/// on thread `tid`, its time grows with that thread's counters (a goroutine
/// blocked in a system call stays on its thread, so the thread's blocked
/// time is the goroutine's); while off, parked time is blocked and time
/// waiting for a P is runnable. The closed stretches are summed in `cpu_ns`,
/// `runnable_ns`, `blocked_ns`; the open one is the thread's counters now
/// minus `on_*`. Keyed by goid, not by `g` pointer: the runtime reuses a
/// dead goroutine's `g` for a new one, whose id differs.
///
/// `#[repr(C)]`, no implicit padding: 10 × `u64` + 4 × `u32` = 96 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GoState {
    /// When the state was created (`CLOCK_MONOTONIC` ns): the epoch the
    /// goroutine's events carry. Never 0.
    pub created_ns: u64,
    /// On-CPU ns of the closed stretches.
    pub cpu_ns: u64,
    /// Runnable ns of the closed stretches.
    pub runnable_ns: u64,
    /// Blocked ns of the closed stretches.
    pub blocked_ns: u64,
    /// The thread's cpu counter when the goroutine went on it.
    pub on_cpu_ns: u64,
    /// The thread's runnable counter then.
    pub on_runnable_ns: u64,
    /// The thread's blocked counter then.
    pub on_blocked_ns: u64,
    /// The thread's counters' epoch then.
    pub on_epoch: u64,
    /// When it went off its thread ([`go_off`] says why).
    pub off_ns: u64,
    /// Zero.
    pub pad64: u64,
    /// The thread it is on; 0 while off.
    pub tid: u32,
    /// One of [`go_off`].
    pub off_why: u32,
    /// Inconsistencies and lost events of this goroutine so far: a span
    /// whose start and end differ here has a null split.
    pub lost: u32,
    /// While parked: `g.waitreason` as it parked, or [`GO_WAIT_UNKNOWN`].
    pub wait_reason: u32,
}

/// A thread's counters as a goroutine's accounting reads them: `(cpu,
/// runnable, blocked, epoch)` ns ([`SchedState::counters_at`]); epoch 0:
/// unavailable.
pub type ThreadCounters = (u64, u64, u64, u64);

impl GoState {
    /// Goes on thread `tid` at `now` (`runtime.execute`), whose counters
    /// are `thread`. Returns how long it was parked (0 if it was not), for
    /// its blocked-in record.
    #[inline]
    pub fn go_on(&mut self, now: u64, tid: u32, thread: ThreadCounters) -> u64 {
        if self.tid != 0 {
            // Went off a thread unseen: that stretch is unknown.
            self.lost = self.lost.wrapping_add(1);
        }
        let off = now.saturating_sub(self.off_ns);
        let parked = match self.off_why {
            go_off::RUNNABLE => {
                self.runnable_ns = self.runnable_ns.wrapping_add(off);
                0
            }
            go_off::BLOCKED => {
                self.blocked_ns = self.blocked_ns.wrapping_add(off);
                off
            }
            _ => 0,
        };
        self.off_why = go_off::NONE;
        self.seat(tid, thread);
        parked
    }

    /// Goes off thread `tid` at `now` (parked if `parked`, else runnable),
    /// whose counters are `thread`: the stretch on it is closed.
    #[inline]
    pub fn go_off(&mut self, now: u64, tid: u32, thread: ThreadCounters, parked: bool) {
        if self.tid == tid {
            if let Some((cpu, runnable, blocked)) = self.stretch(thread) {
                self.cpu_ns = self.cpu_ns.wrapping_add(cpu);
                self.runnable_ns = self.runnable_ns.wrapping_add(runnable);
                self.blocked_ns = self.blocked_ns.wrapping_add(blocked);
            } else {
                self.lost = self.lost.wrapping_add(1);
            }
        } else if self.tid != 0 || self.off_why != go_off::NONE {
            // On another thread, or already off: a switch went unseen.
            self.lost = self.lost.wrapping_add(1);
        }
        self.tid = 0;
        self.off_ns = now;
        self.off_why = if parked {
            go_off::BLOCKED
        } else {
            go_off::RUNNABLE
        };
        self.wait_reason = GO_WAIT_UNKNOWN;
    }

    /// Its cumulative `(cpu, runnable, blocked)` ns, read by a probe of a
    /// Go function it runs on thread `tid` (counters `thread`). A state
    /// just made (`fresh`) goes on the thread now; one that places the
    /// goroutine elsewhere is re-seated here with one more inconsistency,
    /// and gives none.
    #[inline]
    pub fn running_on(
        &mut self,
        tid: u32,
        thread: ThreadCounters,
        fresh: bool,
    ) -> Option<(u64, u64, u64)> {
        if fresh || self.tid != tid {
            if !fresh {
                self.lost = self.lost.wrapping_add(1);
                self.off_why = go_off::NONE;
            }
            self.seat(tid, thread);
            if !fresh {
                return None;
            }
        }
        let (cpu, runnable, blocked) = self.stretch(thread)?;
        Some((
            self.cpu_ns.wrapping_add(cpu),
            self.runnable_ns.wrapping_add(runnable),
            self.blocked_ns.wrapping_add(blocked),
        ))
    }

    /// Puts it on thread `tid`, whose counters are `thread` now; off any
    /// thread (and one more inconsistency) if they are unavailable.
    #[inline]
    fn seat(&mut self, tid: u32, (cpu, runnable, blocked, epoch): ThreadCounters) {
        if epoch == 0 {
            self.tid = 0;
            self.lost = self.lost.wrapping_add(1);
            return;
        }
        self.tid = tid;
        self.on_cpu_ns = cpu;
        self.on_runnable_ns = runnable;
        self.on_blocked_ns = blocked;
        self.on_epoch = epoch;
    }

    /// The thread's time since it went on it, by the thread's counters
    /// now: `None` if unavailable, of another epoch, or gone backwards.
    #[inline]
    fn stretch(&self, (cpu, runnable, blocked, epoch): ThreadCounters) -> Option<(u64, u64, u64)> {
        if epoch == 0 || epoch != self.on_epoch {
            return None;
        }
        Some((
            cpu.checked_sub(self.on_cpu_ns)?,
            runnable.checked_sub(self.on_runnable_ns)?,
            blocked.checked_sub(self.on_blocked_ns)?,
        ))
    }
}

#[cfg(feature = "user")]
// SAFETY: `GoState` is `repr(C)`, `Copy`, made only of integers and has no
// padding, so every bit pattern is a valid value.
unsafe impl aya::Pod for GoState {}

const _: () = assert!(core::mem::size_of::<GoState>() == 96);

/// Bits of the attach cookie that hold the probe kind.
pub const COOKIE_KIND_BITS: u32 = 2;
/// Mask selecting the kind from a cookie.
pub const COOKIE_KIND_MASK: u64 = (1 << COOKIE_KIND_BITS) - 1;
/// The cookie bit holding the probe generation (see [`config::GENERATION`]).
pub const COOKIE_GENERATION_BIT: u32 = COOKIE_KIND_BITS;
/// Bits below the function id.
pub const COOKIE_ID_SHIFT: u32 = COOKIE_KIND_BITS + 1;
/// The cookie's top 16 bits: for a function of a Go program, the byte offset
/// of `goid` in the runtime's `g` struct (never 0: `stack` comes first), so
/// the probe reads the current goroutine through r14; 0 for every other
/// function, which then pays nothing for it. The function id sits below.
pub const COOKIE_GOID_OFFSET_SHIFT: u32 = 48;

/// Builds the attach cookie for function `function_id`, probe `kind` and
/// probe generation `generation` (0 or 1).
#[inline]
pub const fn cookie(function_id: u32, kind: u32, generation: u32) -> u64 {
    ((function_id as u64) << COOKIE_ID_SHIFT)
        | (((generation & 1) as u64) << COOKIE_GENERATION_BIT)
        | (kind as u64 & COOKIE_KIND_MASK)
}

/// The cookie of a Go scheduler hand-off probe doing `op` (one of
/// [`go_sched`]) in a module whose `goid` is at `goid_offset` and
/// `waitreason` at `waitreason_offset` (0: unknown) in `runtime.g`.
#[inline]
pub const fn go_sched_cookie(
    op: u32,
    generation: u32,
    goid_offset: u16,
    waitreason_offset: u16,
) -> u64 {
    go_cookie(
        op | ((waitreason_offset as u32) << GO_SCHED_WAITREASON_SHIFT),
        kind::ENTRY,
        generation,
        goid_offset,
    ) | (1 << COOKIE_GO_SCHED_BIT)
}

/// In a hand-off probe's function id: the bits above the operation hold
/// the `waitreason` offset (see [`go_sched_cookie`]).
pub const GO_SCHED_WAITREASON_SHIFT: u32 = 8;

/// [`cookie`] for a function of a Go program: its probes also read the
/// current goroutine's id at `goid_offset` bytes into `runtime.g` (see
/// [`COOKIE_GOID_OFFSET_SHIFT`]).
#[inline]
pub const fn go_cookie(function_id: u32, kind: u32, generation: u32, goid_offset: u16) -> u64 {
    cookie(function_id, kind, generation) | ((goid_offset as u64) << COOKIE_GOID_OFFSET_SHIFT)
}

/// Byte offset of `stack.hi` (the top of the goroutine's stack) in Go's
/// `runtime.g`: `stack` is its first field, `lo` then `hi`, in every Go
/// version.
pub const GO_G_STACK_HI_OFFSET: u64 = 8;

/// How many 8-byte words of `runtime.g` the probe reads, from `stack.hi`
/// on: one copy from user memory is cheaper than one per field, and this
/// many reach `goid` in every Go release (at 152 or 160). A goid offset
/// beyond [`GO_G_MAX_GOID_OFFSET`] is not read.
pub const GO_G_WORDS: usize = 24;

/// The largest `goid` offset the probe's read of `runtime.g` covers.
pub const GO_G_MAX_GOID_OFFSET: u64 = GO_G_STACK_HI_OFFSET + 8 * (GO_G_WORDS as u64 - 1);

/// Length of a kernel task name (`TASK_COMM_LEN`).
pub const COMM_LEN: usize = 16;

/// One ring-buffer record: a probe hit or a thread exit.
///
/// `#[repr(C)]` with fields ordered largest first, so there is no implicit
/// padding: 9 × `u64` + 6 × `u32` + 16 bytes = 112 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProbeEvent {
    /// `bpf_ktime_get_ns()`: `CLOCK_MONOTONIC` nanoseconds.
    pub ts_ns: u64,
    /// The attach cookie (see [`cookie`]); 0 for thread exits.
    pub cookie: u64,
    /// The user stack pointer when the probe fired.
    pub sp: u64,
    /// The user instruction pointer when the probe fired.
    pub ip: u64,
    /// Go programs (the cookie carries a goid offset): the id of the
    /// goroutine running, `g.goid` read through r14, which holds the current
    /// `g` at every function entry and return of Go ≥ 1.17 on amd64. 0 when
    /// not read: another program, a system stack (`g0`, whose id is 0), or
    /// `g` unreadable.
    pub goid: u64,
    /// The thread's cumulative time on a CPU at `ts_ns` (see
    /// [`SchedState`]); with `runnable_ns` and `blocked_ns`, meaningful
    /// only as a difference between two events of the same `sched_epoch`.
    pub cpu_ns: u64,
    /// The thread's cumulative time ready but waiting for a CPU.
    pub runnable_ns: u64,
    /// The thread's cumulative time blocked.
    pub blocked_ns: u64,
    /// [`SchedState::epoch`] of the counters; 0: the event carries none (a
    /// Go probe, no room for the thread's state, an event of no thread).
    pub sched_epoch: u64,
    /// One of [`kind`].
    pub kind: u32,
    /// Process id (tgid).
    pub pid: u32,
    /// Thread id.
    pub tid: u32,
    /// With [`Self::goid`]: how far `sp` is below the top of the goroutine's
    /// stack (`g.stack.hi - sp`). The runtime moves a goroutine's stack when
    /// it grows or shrinks, changing every frame's `sp` but not this, so it
    /// is what matches a Go function's exit to its entry. 0 otherwise.
    pub go_stack_depth: u32,
    /// [`SchedState::lost`] at the event: events of this thread lost so far.
    pub sched_lost: u32,
    /// [`kind::BLOCKED`]: the system call the thread was blocked in
    /// ([`NO_SYSCALL`] if none); 0 otherwise.
    pub syscall: u32,
    /// The thread's name, NUL-padded.
    pub comm: [u8; COMM_LEN],
}

impl ProbeEvent {
    /// Function id encoded in the cookie.
    #[inline]
    pub const fn function_id(&self) -> u32 {
        (self.cookie >> COOKIE_ID_SHIFT) as u32
    }

    /// Whether the probe was one of a Go program's (its cookie carries a
    /// goid offset), so [`Self::goid`] was read.
    #[inline]
    pub const fn is_go(&self) -> bool {
        self.cookie >> COOKIE_GOID_OFFSET_SHIFT != 0
    }
}

#[cfg(feature = "user")]
// SAFETY: `ProbeEvent` is `repr(C)`, `Copy`, made only of integers and has no
// padding, so every bit pattern is a valid value.
unsafe impl aya::Pod for ProbeEvent {}

const _: () = assert!(core::mem::size_of::<ProbeEvent>() == 112);

/// One CPU sample of a traced thread: its user registers and a copy of the
/// top of its user stack, for userspace to unwind (with the modules' CFI)
/// and symbolize.
///
/// `#[repr(C)]` with fields ordered largest first, so there is no implicit
/// padding: 6 × `u64` + 4 × `u32` + 16 + [`SAMPLE_STACK_BYTES`] bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SampleEvent {
    /// `bpf_ktime_get_ns()` when the sample was taken.
    pub ts_ns: u64,
    /// User instruction pointer.
    pub ip: u64,
    /// User stack pointer.
    pub sp: u64,
    /// User frame pointer (`rbp`).
    pub bp: u64,
    /// The address `stack[0]` was copied from: the start of the page
    /// holding `sp`.
    pub stack_base: u64,
    /// Nanoseconds the program took to take the sample (its own clock,
    /// copy included; the timer interrupt around it is not counted).
    pub cost_ns: u64,
    /// Process id (tgid).
    pub pid: u32,
    /// Thread id.
    pub tid: u32,
    /// Whole pages of `stack` copied (0 to [`SAMPLE_STACK_PAGES`]); the copy
    /// stops at the first page that cannot be read (the stack's top).
    pub stack_pages: u32,
    /// [`sample_flags`].
    pub flags: u32,
    /// The thread's name, NUL-padded.
    pub comm: [u8; COMM_LEN],
    /// The user stack from `stack_base` up.
    pub stack: [u8; SAMPLE_STACK_BYTES],
}

#[cfg(feature = "user")]
// SAFETY: `SampleEvent` is `repr(C)`, `Copy`, made only of integers and byte
// arrays and has no padding, so every bit pattern is a valid value.
unsafe impl aya::Pod for SampleEvent {}

const _: () =
    assert!(core::mem::size_of::<SampleEvent>() == 6 * 8 + 4 * 4 + 16 + SAMPLE_STACK_BYTES);

#[cfg(test)]
mod tests {
    use super::*;

    /// A thread created at 1000 (running), out at 1500, in at 1700.
    fn state() -> SchedState {
        SchedState {
            created_ns: 1000,
            in_sum: 1000 + 1700,
            out_sum: 1500,
            in_count: 2,
            out_count: 1,
            lost: 3,
            pid: 42,
            syscall: NO_SYSCALL,
            ..SchedState::default()
        }
    }

    #[test]
    fn counters_of_a_running_thread_add_up_to_its_elapsed_time() {
        assert_eq!(state().counters_at(2000), Some((800, 200, 0)));
    }

    #[test]
    fn a_missed_switch_in_is_put_back_from_the_stretch_the_thread_ran() {
        // Out at 1500 having run 500 ns in all (sum_exec 500); in at 1700
        // unreported; out at 2000 with sum_exec 800: it ran 300 ns.
        let mut s = state();
        s.in_sum = 1000;
        s.in_count = 1;
        s.out_exec_ns = 500;
        s.last_out_ns = 1500;
        assert!(s.repair_switch_in(2000, 800));
        assert!(s.running());
        assert_eq!(s.counters_at(2000), Some((800, 200, 0)), "as if seen");
        // The same while blocked since 1500: the block ends at the switch in.
        let mut s = state();
        s.in_sum = 1000;
        s.in_count = 1;
        s.out_exec_ns = 500;
        s.last_out_ns = 1500;
        s.block_start_sum = 1500;
        s.block_starts = 1;
        assert!(s.repair_switch_in(2000, 800));
        assert_eq!(s.counters_at(2000), Some((800, 0, 200)));
    }

    #[test]
    fn a_stretch_that_does_not_fit_is_no_repair() {
        let mut s = state();
        s.in_sum = 1000;
        s.in_count = 1;
        s.last_out_ns = 1500;
        assert!(
            !s.repair_switch_in(2000, 800),
            "no sum_exec at the last out"
        );
        s.out_exec_ns = 500;
        assert!(
            !s.repair_switch_in(2000, 1200),
            "ran 700 ns in a 500 ns gap"
        );
        assert!(!s.repair_switch_in(2000, 400), "sum_exec went back");
        assert!(!s.running(), "left as it was");
    }

    #[test]
    fn a_missed_switch_in_leaves_no_counters_until_the_state_restarts() {
        // The switch in at 1700 went unseen.
        let mut s = state();
        s.in_sum = 1000;
        s.in_count = 1;
        assert!(!s.running());
        assert_eq!(s.counters_at(2000), None);
        s.restart(2100);
        assert!(s.running());
        assert_eq!(s.counters_at(2600), Some((500, 0, 0)));
        assert_eq!((s.created_ns, s.lost, s.pid), (2100, 3, 42), "a new epoch");
    }

    /// A state made at `now` the way the kernel side makes one.
    fn fresh(now: u64) -> GoState {
        GoState {
            created_ns: now,
            off_ns: now,
            wait_reason: super::GO_WAIT_UNKNOWN,
            ..GoState::default()
        }
    }

    #[test]
    fn a_goroutine_that_moves_threads_mid_call_adds_each_threads_share() {
        let mut g = fresh(1_000);
        // Goes on thread 10 (counters 5 000 cpu, 7 runnable, 9 blocked, epoch 1).
        assert_eq!(g.go_on(1_000, 10, (5_000, 7, 9, 1)), 0);
        let at_entry = g.running_on(10, (5_100, 7, 9, 1), false).unwrap();
        assert_eq!(at_entry, (100, 0, 0));
        // Preempted: runnable from 1 300 on; thread 10 ran it 300 more,
        // 20 of them blocked in a system call.
        g.go_off(1_300, 10, (5_280, 7, 29, 1), false);
        // Runs on thread 11 (another epoch) after 200 waiting for a P.
        assert_eq!(g.go_on(1_500, 11, (80, 3, 4, 2)), 0);
        // Parked at 1 600 after 100 on thread 11, 5 of them preempted.
        g.go_off(1_600, 11, (175, 8, 4, 2), true);
        // Readied and run on thread 10 again, 400 later.
        assert_eq!(g.go_on(2_000, 10, (6_000, 50, 60, 1)), 400);
        let at_exit = g.running_on(10, (6_010, 50, 60, 1), false).unwrap();
        assert_eq!(at_exit, (280 + 95 + 10, 200 + 5, 20 + 400));
        let (cpu, runnable, blocked) = (
            at_exit.0 - at_entry.0,
            at_exit.1 - at_entry.1,
            at_exit.2 - at_entry.2,
        );
        // The call ran from 1 100 to 2 010: every nanosecond is in one.
        assert_eq!(cpu + runnable + blocked, 2_010 - 1_100);
        assert_eq!(g.lost, 0);
    }

    #[test]
    fn a_missed_switch_or_unavailable_counters_count_as_inconsistencies() {
        let mut g = fresh(0);
        g.go_on(0, 10, (0, 0, 0, 1));
        // Its off went unseen: the runtime executes it on thread 11.
        g.go_on(100, 11, (0, 0, 0, 2));
        assert_eq!(g.lost, 1);
        // A probe finds it on thread 12: re-seated, and no counters.
        assert_eq!(g.running_on(12, (0, 0, 0, 3), false), None);
        assert_eq!((g.lost, g.tid), (2, 12));
        // Thread counters unavailable when it goes on: off any thread.
        g.go_off(200, 12, (50, 0, 0, 3), false);
        g.go_on(300, 13, (0, 0, 0, 0));
        assert_eq!((g.lost, g.tid), (3, 0));
        assert_eq!(g.running_on(13, (10, 0, 0, 4), false), None);
        // Counters of another epoch than the ones it went on with.
        let mut h = fresh(0);
        h.go_on(0, 10, (0, 0, 0, 1));
        assert_eq!(h.running_on(10, (5, 0, 0, 9), false), None);
        h.go_off(10, 10, (5, 0, 0, 9), true);
        assert_eq!((h.lost, h.off_why), (1, go_off::BLOCKED));
    }

    #[test]
    fn a_goroutine_first_seen_at_a_probe_starts_on_that_thread() {
        let mut g = fresh(500);
        assert_eq!(g.running_on(10, (40, 1, 2, 1), true), Some((0, 0, 0)));
        assert_eq!(g.running_on(10, (90, 1, 2, 1), false), Some((50, 0, 0)));
        assert_eq!(g.lost, 0);
    }
}
