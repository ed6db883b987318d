//! ferret's kernel side: one probe program for every function entry and exit,
//! tracepoint programs for thread exits, execs and forks, and a perf-event
//! program that samples the traced threads on CPU.
//!
//! The programs do as little as possible: they filter on the traced process,
//! stamp the time and stack pointer, and hand a [`ProbeEvent`] to userspace
//! through the ring buffer. What a probe means (which function, entry or exit)
//! travels in the attach cookie, so one program serves every probe and the
//! userspace agent rebuilds the call stacks.
// Built for the BPF target by ferret-userspace's build.rs. On the host (a
// plain `cargo clippy --workspace`) it is an empty std program, so the
// workspace lints as a whole.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]
#![allow(
    clippy::inline_always,
    reason = "BPF-to-BPF calls cost verifier complexity and stack; the helpers are meant to vanish"
)]
#![allow(
    clippy::needless_pass_by_value,
    reason = "aya's program macros hand the context over by value"
)]

use aya_ebpf::{
    bindings::{BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP, pt_regs},
    helpers::{
        bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_ktime_get_ns, bpf_probe_read_kernel,
        bpf_probe_read_user, bpf_probe_read_user_buf,
        generated::{bpf_get_current_task_btf, bpf_task_pt_regs},
    },
    macros::{map, perf_event, raw_tracepoint, uprobe, uretprobe},
    maps::{Array, HashMap, LruHashMap, PerCpuArray, RingBuf},
    programs::{PerfEventContext, ProbeContext, RawTracePointContext, RetProbeContext},
};
use ferret_common::{
    COOKIE_GENERATION_BIT, COOKIE_GO_SCHED_BIT, COOKIE_GOID_OFFSET_SHIFT, COOKIE_ID_SHIFT,
    COOKIE_KIND_MASK, DEFAULT_RING_BYTES, GO_G_STACK_HI_OFFSET, GO_G_WORDS,
    GO_SCHED_WAITREASON_SHIFT, GO_WAIT_FLAG, GO_WAIT_UNKNOWN, GoState, MAX_GOROUTINES,
    MAX_SCHED_THREADS, MAX_TARGETS, NO_SYSCALL, ProbeEvent, SAMPLE_PAGE, SAMPLE_RING_BYTES,
    SAMPLE_STACK_PAGES, SampleEvent, SchedState, config, counts, go_off, go_sched, kind, lost,
    sample_flags,
};

#[map(name = "FERRET_EVENTS")]
static FERRET_EVENTS: RingBuf = RingBuf::with_byte_size(DEFAULT_RING_BYTES, 0);

#[map(name = "FERRET_LOST")]
static FERRET_LOST: PerCpuArray<u64> = PerCpuArray::with_max_entries(lost::LEN, 0);

#[map(name = "FERRET_COUNTS")]
static FERRET_COUNTS: PerCpuArray<u64> = PerCpuArray::with_max_entries(counts::LEN, 0);

#[map(name = "FERRET_SAMPLES")]
static FERRET_SAMPLES: RingBuf = RingBuf::with_byte_size(SAMPLE_RING_BYTES, 0);

#[map(name = "FERRET_TARGETS")]
static FERRET_TARGETS: HashMap<u32, u8> = HashMap::with_max_entries(MAX_TARGETS, 0);

#[map(name = "FERRET_CONFIG")]
static FERRET_CONFIG: Array<u32> = Array::with_max_entries(config::LEN, 0);

/// Traced threads' scheduler state, by tid: only threads that hit a probe
/// have an entry, so the scheduler programs do one lookup for any other.
#[map(name = "FERRET_SCHED")]
static FERRET_SCHED: HashMap<u32, SchedState> = HashMap::with_max_entries(MAX_SCHED_THREADS, 0);

/// Traced goroutines' scheduler state, by `[pid, goid]` (see [`GoState`]).
#[map(name = "FERRET_GO")]
static FERRET_GO: LruHashMap<[u64; 2], GoState> = LruHashMap::with_max_entries(MAX_GOROUTINES, 0);

/// What an event says about its thread's scheduler counters.
#[derive(Clone, Copy)]
struct Counters {
    cpu_ns: u64,
    runnable_ns: u64,
    blocked_ns: u64,
    epoch: u64,
    lost: u32,
}

const NO_COUNTERS: Counters = Counters {
    cpu_ns: 0,
    runnable_ns: 0,
    blocked_ns: 0,
    epoch: 0,
    lost: 0,
};

#[uprobe]
pub fn ferret_probe(ctx: ProbeContext) -> u32 {
    try_probe(&ctx);
    0
}

/// The same probe as a `uretprobe` section, for the per-probe perf-link
/// fallback (aya decides entry/return from the section). With `uprobe_multi`
/// links the return flag is on the link, so `ferret_probe` serves both.
#[uretprobe]
pub fn ferret_probe_ret(ctx: RetProbeContext) -> u32 {
    try_probe(&ProbeContext::new(ctx.regs.cast()));
    0
}

/// Does nothing: the benchmarks' floor (`cargo xtask bench`). Attached at the
/// same probe points as `ferret_probe`, it measures what the kernel's uprobe
/// machinery costs before any program does work; never attached by ferret.
#[uprobe]
pub fn ferret_empty(_ctx: ProbeContext) -> u32 {
    0
}

/// `sched_process_exit` fires once per exiting thread, in its own context.
/// A raw tracepoint needs no tracefs mount (this machine has none).
#[raw_tracepoint(tracepoint = "sched_process_exit")]
pub fn ferret_thread_exit(_ctx: RawTracePointContext) -> i32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    let (tgid, tid) = ((pid_tgid >> 32) as u32, pid_tgid as u32);
    if traced(tgid) {
        let state = FERRET_SCHED.get_ptr_mut(tid);
        let (ts_ns, counters) = state.map_or_else(|| (now_ns(), NO_COUNTERS), read_counters);
        write_event(
            tgid,
            tid,
            kind::THREAD_EXIT,
            0,
            0,
            0,
            (0, 0),
            ts_ns,
            counters,
            state,
        );
        let _ = FERRET_SCHED.remove(tid);
    }
    if tgid == tid && setting(config::FOLLOW_FORKS) == 1 {
        // A followed process is gone; forget it so a later process reusing
        // the pid is not traced.
        let _ = FERRET_TARGETS.remove(tgid);
    }
    0
}

/// A traced process replaced its program: its old frames are gone.
#[raw_tracepoint(tracepoint = "sched_process_exec")]
pub fn ferret_exec(_ctx: RawTracePointContext) -> i32 {
    emit(bpf_get_current_pid_tgid(), kind::EXEC, 0, 0, 0);
    0
}

/// `--follow-forks`: a traced process's new child process is traced too.
/// Runs in the parent; `TP_PROTO(struct task_struct *parent, struct
/// task_struct *child)`. The child's tgid is read at the offset userspace
/// found in the kernel's BTF.
#[raw_tracepoint(tracepoint = "sched_process_fork")]
pub fn ferret_fork(ctx: RawTracePointContext) -> i32 {
    try_fork(&ctx);
    0
}

#[inline(always)]
fn try_fork(ctx: &RawTracePointContext) {
    if setting(config::FOLLOW_FORKS) != 1 {
        return;
    }
    let parent = (bpf_get_current_pid_tgid() >> 32) as u32;
    // SAFETY: a lookup in a map of plain integers.
    if unsafe { FERRET_TARGETS.get(parent) }.is_none() {
        return;
    }
    let child: *const u8 = ctx.arg(1);
    let offset = setting(config::TASK_TGID_OFFSET) as usize;
    if offset == 0 {
        return;
    }
    // SAFETY: reads 4 bytes of the child task_struct through the checked helper.
    // The kernel reads it with bpf_probe_read_kernel, which copies bytes:
    // the pointer's alignment does not matter.
    #[allow(clippy::cast_ptr_alignment, reason = "read by copy, see above")]
    let Ok(child_tgid) = (unsafe { bpf_probe_read_kernel(child.add(offset).cast::<u32>()) }) else {
        return;
    };
    if child_tgid == parent {
        return; // a new thread, already covered by its process
    }
    if FERRET_TARGETS.insert(child_tgid, 1, 0).is_ok() {
        emit_for(child_tgid, child_tgid, kind::FORK, u64::from(parent));
    }
}

/// A cpu-clock tick on some CPU (userspace opens one event per CPU at the
/// sampling rate): if the thread it interrupted belongs to a traced
/// process, its user registers and the top of its user stack go to
/// userspace, which unwinds and symbolizes them.
#[perf_event]
pub fn ferret_sample(ctx: PerfEventContext) -> u32 {
    try_sample(&ctx);
    0
}

#[inline(always)]
fn try_sample(ctx: &PerfEventContext) {
    let pid_tgid = bpf_get_current_pid_tgid();
    let pid = (pid_tgid >> 32) as u32;
    // SAFETY: a lookup in a map of plain integers.
    if unsafe { FERRET_TARGETS.get(pid) }.is_none() {
        return;
    }
    // SAFETY: reads the monotonic clock.
    let start = unsafe { bpf_ktime_get_ns() };
    // The privilege level the interrupt came from: 3 is user space.
    // SAFETY: `ctx` points at the registers the interrupt saved.
    let ring = unsafe { (*ctx.ctx).regs.cs } & 3;
    let in_kernel = ring != 3;
    // The thread's user registers, as saved when it last entered the
    // kernel (this interrupt, if it was in user space).
    // SAFETY: the helpers take the current task, which the verifier knows
    // is a valid `task_struct`; the registers are then read by copy.
    let (ip, sp, bp) = unsafe {
        let regs = bpf_task_pt_regs(bpf_get_current_task_btf()) as *const pt_regs;
        (
            bpf_probe_read_kernel(&raw const (*regs).rip).unwrap_or(0),
            bpf_probe_read_kernel(&raw const (*regs).rsp).unwrap_or(0),
            bpf_probe_read_kernel(&raw const (*regs).rbp).unwrap_or(0),
        )
    };
    let Some(mut entry) = FERRET_SAMPLES.reserve::<SampleEvent>(0) else {
        count_lost(lost::SAMPLES);
        return;
    };
    let event = entry.as_mut_ptr();
    let base = sp & !(SAMPLE_PAGE as u64 - 1);
    // SAFETY: `event` is the reserved record, `size_of::<SampleEvent>()`
    // bytes; every write below stays inside it, and the stack is read
    // from user memory through the checked helper, whole pages at
    // constant offsets.
    unsafe {
        let stack = (&raw mut (*event).stack).cast::<u8>();
        let mut pages = 0;
        while pages < SAMPLE_STACK_PAGES {
            let offset = pages * SAMPLE_PAGE;
            let from = (base + offset as u64) as *const core::ffi::c_void;
            if aya_ebpf::helpers::generated::bpf_probe_read_user(
                stack.add(offset).cast(),
                SAMPLE_PAGE as u32,
                from,
            ) != 0
            {
                break;
            }
            pages += 1;
        }
        (*event).ts_ns = start;
        (*event).ip = ip;
        (*event).sp = sp;
        (*event).bp = bp;
        (*event).stack_base = base;
        (*event).pid = pid;
        (*event).tid = pid_tgid as u32;
        (*event).stack_pages = pages as u32;
        (*event).flags = if in_kernel {
            sample_flags::IN_KERNEL
        } else {
            0
        };
        (*event).comm = bpf_get_current_comm().unwrap_or([0; 16]);
        (*event).cost_ns = bpf_ktime_get_ns().saturating_sub(start);
    }
    // Userspace drains this ring on a timer: samples come a few hundred a
    // second at most, so no wakeup is worth its cost.
    entry.submit(u64::from(BPF_RB_NO_WAKEUP));
}

#[inline(always)]
fn count_lost(slot: u32) {
    if let Some(lost) = FERRET_LOST.get_ptr_mut(slot) {
        // SAFETY: per-CPU slot; the program runs with preemption disabled.
        unsafe { *lost += 1 };
    }
}

/// Adds one to slot `slot` of [`FERRET_COUNTS`] (only from the scheduler
/// programs, which run with preemption disabled).
#[inline(always)]
fn count(slot: u32) {
    if let Some(n) = FERRET_COUNTS.get_ptr_mut(slot) {
        // SAFETY: per-CPU slot; the program runs with preemption disabled.
        unsafe { *n += 1 };
    }
}

#[inline(always)]
fn setting(slot: u32) -> u32 {
    FERRET_CONFIG.get(slot).copied().unwrap_or(0)
}

#[inline(always)]
fn try_probe(ctx: &ProbeContext) {
    let pid_tgid = bpf_get_current_pid_tgid();
    // SAFETY: the attach-cookie helper only reads the run context of this program.
    let cookie = unsafe { aya_ebpf::helpers::generated::bpf_get_attach_cookie(ctx.regs.cast()) };
    // SAFETY: `regs` points at the user registers the kernel saved for this probe.
    let (sp, ip, r14) = unsafe {
        let regs: *const pt_regs = ctx.regs;
        ((*regs).rsp, (*regs).rip, (*regs).r14)
    };
    // Probes of a generation being replaced (or not yet current) stay silent,
    // so a function is never reported twice while links are swapped.
    if ((cookie >> COOKIE_GENERATION_BIT) & 1) as u32 != setting(config::GENERATION) {
        return;
    }
    let pid = (pid_tgid >> 32) as u32;
    if !traced(pid) {
        return;
    }
    // SAFETY: reads the monotonic clock; no memory is touched.
    let ts_ns = unsafe { bpf_ktime_get_ns() };
    let tid = pid_tgid as u32;
    let goid_offset = cookie >> COOKIE_GOID_OFFSET_SHIFT;
    if (cookie >> COOKIE_GO_SCHED_BIT) & 1 == 1 {
        count(counts::GO_HAND_OFFS);
        // SAFETY: as above; RAX holds a Go function's first argument.
        let gp = unsafe { (*ctx.regs).rax };
        let id = (cookie >> COOKIE_ID_SHIFT) as u32;
        go_hand_off(id, gp, goid_offset, pid_tgid, ts_ns);
        return;
    }
    // Go: goroutines move between threads, so a thread's counters do not
    // split a goroutine's call: the goroutine's own counters do (see
    // [`GoState`]).
    let (goroutine, state, ts_ns, counters) = if goid_offset != 0 {
        let mut goroutine = (0, 0);
        read_goroutine(r14, goid_offset, sp, &mut goroutine);
        let mut at = ts_ns;
        let counters = if goroutine.0 != 0 && setting(config::SCHED_ON) == 1 {
            go_counters(pid, tid, goroutine.0, &mut at)
        } else {
            NO_COUNTERS
        };
        (goroutine, None, at, counters)
    } else if setting(config::SCHED_ON) == 1 {
        let state = sched_state(tid, pid, ts_ns);
        // The event's time is the counters' own, so a span's split adds up
        // to its duration exactly.
        let (ts_ns, counters) = state.map_or((ts_ns, NO_COUNTERS), read_counters);
        ((0, 0), state, ts_ns, counters)
    } else {
        ((0, 0), None, ts_ns, NO_COUNTERS)
    };
    let event_kind = (cookie & COOKIE_KIND_MASK) as u32;
    let written = write_event(
        pid, tid, event_kind, cookie, sp, ip, goroutine, ts_ns, counters, state,
    );
    if !written && goroutine.0 != 0 {
        // A goroutine's event lost: its spans' splits become null.
        if let Some(g) = FERRET_GO.get_ptr_mut([u64::from(pid), goroutine.0]) {
            // SAFETY: a pointer into the map's value, valid for this program run.
            unsafe { (*g).lost = (*g).lost.wrapping_add(1) };
        }
    }
}

/// Goroutine `goid` of `pid` goes on, or off, thread `tid`, at `ts_ns`: a
/// hand-off probe in the Go scheduler (`op`, one of [`go_sched`]) with the
/// goroutine's `g` in `gp`. Every inconsistency (it was on another thread,
/// a switch was missed, the thread's counters are unavailable or went
/// backwards) counts in [`GoState::lost`], so a span across it has a null
/// split.
///
/// A BPF-to-BPF call, not inlined: its frame (a fresh state is built on
/// the stack) would not fit in the probe's beside the copy of `runtime.g`.
#[inline(never)]
fn go_hand_off(id: u32, gp: u64, goid_offset: u64, pid_tgid: u64, ts_ns: u64) {
    let (pid, tid) = ((pid_tgid >> 32) as u32, pid_tgid as u32);
    let op = id & ((1 << GO_SCHED_WAITREASON_SHIFT) - 1);
    let waitreason_offset = (id >> GO_SCHED_WAITREASON_SHIFT) & 0xffff;
    if setting(config::SCHED_ON) != 1 || goid_offset == 0 || goid_offset >= 4096 {
        return;
    }
    // SAFETY: bpf_probe_read_user copies from user memory and fails cleanly
    // on a bad address; the pointer is never dereferenced here.
    #[allow(clippy::cast_ptr_alignment, reason = "read by copy, see above")]
    let Ok(goid) = (unsafe {
        bpf_probe_read_user(
            (gp as *const u8)
                .wrapping_add(goid_offset as usize)
                .cast::<u64>(),
        )
    }) else {
        return;
    };
    if goid == 0 {
        return;
    }
    let key = [u64::from(pid), goid];
    if op == go_sched::EXIT {
        let _ = FERRET_GO.remove(key);
        return;
    }
    let Some(state) = go_state(&key, ts_ns) else {
        return;
    };
    // SAFETY: a pointer into the map's value, valid for this program run.
    let g = unsafe { &mut *state };
    let thread = sched_state(tid, pid, ts_ns);
    // The counters' own time, so the stretches add up exactly.
    let (ts_ns, c) = thread.map_or((ts_ns, NO_COUNTERS), read_counters);
    let thread_counters = (c.cpu_ns, c.runnable_ns, c.blocked_ns, c.epoch);
    if op == go_sched::ON {
        let parked = g.go_on(ts_ns, tid, thread_counters);
        if parked > 0 {
            // What it was parked on, for the span's `blocked_in`.
            let why = GO_WAIT_FLAG | g.wait_reason;
            let lost = &raw mut g.lost;
            let _ = write_blocked_event(pid, tid, goid, parked, why, ts_ns, NO_COUNTERS, lost);
        }
        if let Some(s) = thread {
            // SAFETY: a pointer into the map's value, valid for this program run.
            unsafe { (*s).goid = if g.tid == tid { goid } else { 0 } };
        }
        return;
    }
    if let Some(s) = thread {
        // SAFETY: a pointer into the map's value, valid for this program run.
        unsafe { (*s).goid = 0 };
    }
    g.go_off(ts_ns, tid, thread_counters, op == go_sched::PARK);
    if op == go_sched::PARK && waitreason_offset != 0 {
        // SAFETY: bpf_probe_read_user copies from user memory and fails
        // cleanly on a bad address; the pointer is never dereferenced here.
        let reason = unsafe {
            bpf_probe_read_user((gp as *const u8).wrapping_add(waitreason_offset as usize))
        };
        if let Ok(reason) = reason {
            g.wait_reason = u32::from(reason);
        }
    }
}

/// The state of goroutine `key`, created at `ts_ns` (off, never seen on a
/// thread) if it has none; `None` if it cannot be created.
#[inline(always)]
fn go_state(key: &[u64; 2], ts_ns: u64) -> Option<*mut GoState> {
    if let Some(state) = FERRET_GO.get_ptr_mut(key) {
        return Some(state);
    }
    // Inserted from a zeroed template, not a value built on the stack: the
    // probe's frames would not fit the verifier's 512 bytes.
    #[allow(
        clippy::needless_borrows_for_generic_args,
        reason = "by reference: a copy of the template on the stack is what this avoids"
    )]
    FERRET_GO.insert(key, &GO_FRESH, 0).ok()?;
    let state = FERRET_GO.get_ptr_mut(key)?;
    // SAFETY: a pointer into the map's value, valid for this program run.
    unsafe {
        (*state).created_ns = ts_ns;
        (*state).off_ns = ts_ns;
    }
    Some(state)
}

/// A goroutine's state before anything is known (see [`go_state`]).
static GO_FRESH: GoState = GoState {
    created_ns: 0,
    cpu_ns: 0,
    runnable_ns: 0,
    blocked_ns: 0,
    on_cpu_ns: 0,
    on_runnable_ns: 0,
    on_blocked_ns: 0,
    on_epoch: 0,
    off_ns: 0,
    pad64: 0,
    tid: 0,
    off_why: go_off::NONE,
    lost: 0,
    wait_reason: GO_WAIT_UNKNOWN,
};

/// The counters of goroutine `goid` of `pid`, running on thread `tid` (a
/// probe of a Go function fired on it), at `*at`, which becomes the time
/// they were taken at. A goroutine first seen here goes on this thread
/// now; one the state places elsewhere is
/// re-seated here with one more inconsistency, and sends none. Not
/// inlined, for the stack (see [`go_hand_off`]).
#[inline(never)]
fn go_counters(pid: u32, tid: u32, goid: u64, at: &mut u64) -> Counters {
    let ts_ns = *at;
    let key = [u64::from(pid), goid];
    let fresh = FERRET_GO.get_ptr_mut(key).is_none();
    let Some(state) = go_state(&key, ts_ns) else {
        return NO_COUNTERS;
    };
    // SAFETY: a pointer into the map's value, valid for this program run.
    let g = unsafe { &mut *state };
    let thread = sched_state(tid, pid, ts_ns);
    // The event's time is the counters' own (see `read_counters`).
    let (now, c) = thread.map_or((ts_ns, NO_COUNTERS), read_counters);
    *at = now;
    let running = g.running_on(tid, (c.cpu_ns, c.runnable_ns, c.blocked_ns, c.epoch), fresh);
    if let Some(s) = thread {
        // The thread's system calls are this goroutine's from now on.
        // SAFETY: a pointer into the map's value, valid for this program run.
        unsafe { (*s).goid = if g.tid == tid { goid } else { 0 } };
    }
    match running {
        Some((cpu_ns, runnable_ns, blocked_ns)) => Counters {
            cpu_ns,
            runnable_ns,
            blocked_ns,
            epoch: g.created_ns,
            lost: g.lost,
        },
        None => NO_COUNTERS,
    }
}

/// The scheduler state of thread `tid`, which is on a CPU running a probe
/// now: created on its first probe hit (running since `ts_ns`). `None` if
/// the map is full.
#[inline(always)]
fn sched_state(tid: u32, pid: u32, ts_ns: u64) -> Option<*mut SchedState> {
    if let Some(state) = FERRET_SCHED.get_ptr_mut(tid) {
        return Some(state);
    }
    let fresh = SchedState {
        created_ns: ts_ns,
        in_sum: ts_ns,
        in_count: 1,
        syscall: NO_SYSCALL,
        pid,
        ..SchedState::default()
    };
    FERRET_SCHED.insert(tid, fresh, 0).ok()?;
    FERRET_SCHED.get_ptr_mut(tid)
}

/// The counters of a thread that is on a CPU now (it runs the probe), and
/// the time they are taken at; none if a hook of its is still to land (see
/// [`SchedState::counters_at`]), so no span is split across the gap.
///
/// A uprobe's program runs preemptible (only migration is disabled), so the
/// thread can be switched out and back in while it reads its own state, and
/// the hooks change it between two of the reads. Every such switch bumps
/// `in_count` (or restarts the state, a new `created_ns`) before the thread
/// runs on, so a read between two equal `(in_count, created_ns)`, with the
/// clock read inside them, is whole: the seqcount pattern. Torn twice in a
/// row, the event carries none.
#[inline(always)]
fn read_counters(state: *mut SchedState) -> (u64, Counters) {
    for _ in 0..2 {
        // The state is read between two helper calls (the clock, then a
        // checked copy of `in_count`): the compiler moves no load of the
        // map's value across a call that may write it, and a fence has no
        // BPF instruction.
        // SAFETY: a pointer into the map's value, valid for this program
        // run; the fields are plain integers.
        let (count, epoch) = unsafe {
            (
                core::ptr::read_volatile(&raw const (*state).in_count),
                core::ptr::read_volatile(&raw const (*state).created_ns),
            )
        };
        let now = now_ns();
        // SAFETY: as above.
        let s = unsafe { &*state };
        let counters = match s.counters_at(now) {
            Some((cpu_ns, runnable_ns, blocked_ns)) => Counters {
                cpu_ns,
                runnable_ns,
                blocked_ns,
                epoch,
                lost: s.lost,
            },
            None => NO_COUNTERS,
        };
        // SAFETY: copies 4 bytes of the map's value through the checked
        // helper; then a plain read, after that call.
        let (count_after, epoch_after) = unsafe {
            (
                bpf_probe_read_kernel(&raw const (*state).in_count),
                core::ptr::read_volatile(&raw const (*state).created_ns),
            )
        };
        if count_after == Ok(count) && epoch_after == epoch {
            return (now, counters);
        }
    }
    (now_ns(), NO_COUNTERS)
}

/// The monotonic clock (`CLOCK_MONOTONIC` ns).
#[inline(always)]
fn now_ns() -> u64 {
    // SAFETY: reads the monotonic clock; no memory is touched.
    unsafe { bpf_ktime_get_ns() }
}

/// `sched_switch`: `TP_PROTO(bool preempt, struct task_struct *prev, struct
/// task_struct *next, unsigned int prev_state)`, in `prev`'s context. Two
/// map lookups for threads that are not traced (and a read of `next`'s
/// tid), nothing else.
#[raw_tracepoint(tracepoint = "sched_switch")]
pub fn ferret_sched_switch(ctx: RawTracePointContext) -> i32 {
    try_sched_switch(&ctx);
    0
}

#[inline(always)]
fn try_sched_switch(ctx: &RawTracePointContext) {
    let prev_task: *const u8 = ctx.arg(1);
    // The idle task (tid 0) is never traced; the other side still counts.
    if let Some(state) = task_tid(prev_task).and_then(|tid| FERRET_SCHED.get_ptr_mut(tid)) {
        // SAFETY: reads the monotonic clock; no memory is touched.
        let now = unsafe { bpf_ktime_get_ns() };
        // SAFETY: a pointer into the map's value, valid for this program run.
        let s = unsafe { &mut *state };
        count(counts::SCHED_HOOKS);
        let exec_ns = task_u64(prev_task, config::TASK_SUM_EXEC_OFFSET);
        if !s.running() {
            // Its switch in went unreported: the stretch it ran says when.
            if exec_ns.is_some_and(|exec| s.repair_switch_in(now, exec)) {
                count(counts::SCHED_REPAIRS);
            } else {
                s.restart(now);
                count(counts::SCHED_RESTARTS);
            }
        }
        s.out_sum = s.out_sum.wrapping_add(now);
        s.out_count = s.out_count.wrapping_add(1);
        s.out_exec_ns = exec_ns.unwrap_or(0);
        s.last_out_ns = now;
        let preempt: u64 = ctx.arg(0);
        let prev_state: u64 = ctx.arg(3);
        // Preempted (or still TASK_RUNNING): it stays on the run queue;
        // otherwise it blocks until woken.
        if preempt as u8 == 0 && prev_state as u32 != 0 {
            s.syscall = current_syscall();
            s.block_start_sum = s.block_start_sum.wrapping_add(now);
            s.block_starts = s.block_starts.wrapping_add(1);
        }
    }
    let next_task: *const u8 = ctx.arg(2);
    let Some(next_tid) = task_tid(next_task) else {
        return;
    };
    if let Some(state) = FERRET_SCHED.get_ptr_mut(next_tid) {
        // SAFETY: reads the monotonic clock; no memory is touched.
        let now = unsafe { bpf_ktime_get_ns() };
        // SAFETY: a pointer into the map's value, valid for this program run.
        let s = unsafe { &mut *state };
        count(counts::SCHED_HOOKS);
        if s.running() {
            // Its switch out went unseen: it is on a CPU from now.
            s.restart(now);
            count(counts::SCHED_RESTARTS);
            return;
        }
        if s.block_starts == s.block_ends.wrapping_add(1) {
            // Woken unseen: its block ends now.
            s.block_end_sum = s.block_end_sum.wrapping_add(now);
            s.block_ends = s.block_ends.wrapping_add(1);
        }
        s.in_sum = s.in_sum.wrapping_add(now);
        s.in_count = s.in_count.wrapping_add(1);
        if s.block_starts != s.block_ends {
            return;
        }
        let blocked_total = s.block_end_sum.wrapping_sub(s.block_start_sum);
        let pending = blocked_total.wrapping_sub(s.reported_blocked_ns);
        if pending > 0 && pending < (1 << 62) {
            s.reported_blocked_ns = blocked_total;
            let counters = match s.counters_at(now) {
                Some((cpu_ns, runnable_ns, blocked_ns)) => Counters {
                    cpu_ns,
                    runnable_ns,
                    blocked_ns,
                    epoch: s.created_ns,
                    lost: s.lost,
                },
                None => NO_COUNTERS,
            };
            let (pid, syscall, goid) = (s.pid, s.syscall, s.goid);
            let lost = &raw mut s.lost;
            if !write_blocked_event(pid, next_tid, goid, pending, syscall, now, counters, lost)
                && goid != 0
                && let Some(g) = FERRET_GO.get_ptr_mut([u64::from(pid), goid])
            {
                // The goroutine's `blocked_in` would miss it: null instead.
                // SAFETY: a pointer into the map's value, valid for this program run.
                unsafe { (*g).lost = (*g).lost.wrapping_add(1) };
            }
        }
    }
}

/// `sched_wakeup`: `TP_PROTO(struct task_struct *p)`, in the waker's
/// context: a blocked traced thread is runnable from now.
#[raw_tracepoint(tracepoint = "sched_wakeup")]
pub fn ferret_sched_wakeup(ctx: RawTracePointContext) -> i32 {
    try_sched_wakeup(&ctx);
    0
}

#[inline(always)]
fn try_sched_wakeup(ctx: &RawTracePointContext) {
    let task: *const u8 = ctx.arg(0);
    let Some(tid) = task_tid(task) else {
        return;
    };
    let Some(state) = FERRET_SCHED.get_ptr_mut(tid) else {
        return;
    };
    // SAFETY: a pointer into the map's value, valid for this program run.
    let s = unsafe { &mut *state };
    count(counts::SCHED_HOOKS);
    if s.block_starts != s.block_ends.wrapping_add(1) {
        return; // a wakeup of a thread that is not blocked
    }
    // SAFETY: reads the monotonic clock; no memory is touched.
    let now = unsafe { bpf_ktime_get_ns() };
    s.block_end_sum = s.block_end_sum.wrapping_add(now);
    s.block_ends = s.block_ends.wrapping_add(1);
}

/// The thread id (`task_struct.pid`) of `task`, at the offset userspace
/// found in the kernel's BTF; `None` when unknown.
#[inline(always)]
fn task_tid(task: *const u8) -> Option<u32> {
    let offset = setting(config::TASK_PID_OFFSET) as usize;
    if offset == 0 {
        return None;
    }
    // SAFETY: reads 4 bytes of a task_struct through the checked helper,
    // which copies bytes: the pointer's alignment does not matter.
    #[allow(clippy::cast_ptr_alignment, reason = "read by copy, see above")]
    let tid = unsafe { bpf_probe_read_kernel(task.wrapping_add(offset).cast::<u32>()) }.ok()?;
    (tid != 0).then_some(tid)
}

/// The `u64` at the offset in config slot `slot` of `task`; `None` when
/// the offset is unknown or the read fails.
#[inline(always)]
fn task_u64(task: *const u8, slot: u32) -> Option<u64> {
    let offset = setting(slot) as usize;
    if offset == 0 {
        return None;
    }
    // SAFETY: reads 8 bytes of a task_struct through the checked helper,
    // which copies bytes: the pointer's alignment does not matter.
    #[allow(clippy::cast_ptr_alignment, reason = "read by copy, see above")]
    unsafe { bpf_probe_read_kernel(task.wrapping_add(offset).cast::<u64>()) }.ok()
}

/// The system call the current task is in: its saved user registers hold
/// the number (`orig_ax`), and `ax` holds `-ENOSYS` until the call returns
/// (the entry code puts it there). Otherwise (a page fault, a signal stop)
/// [`NO_SYSCALL`].
#[inline(always)]
fn current_syscall() -> u32 {
    const ENOSYS: u64 = 38;
    // SAFETY: the helpers return the current task and its saved user
    // registers; the registers are only read through the checked helper.
    unsafe {
        let task = bpf_get_current_task_btf();
        let regs = bpf_task_pt_regs(task) as *const pt_regs;
        if regs.is_null() {
            return NO_SYSCALL;
        }
        let (Ok(ax), Ok(nr)) = (
            bpf_probe_read_kernel(&raw const (*regs).rax),
            bpf_probe_read_kernel(&raw const (*regs).orig_rax),
        ) else {
            return NO_SYSCALL;
        };
        if ax == ENOSYS.wrapping_neg() && nr < 1024 {
            nr as u32
        } else {
            NO_SYSCALL
        }
    }
}

/// A Go function's probe: r14 holds the running goroutine's `g` (Go ≥ 1.17,
/// amd64, at every entry and return of a Go function). Returns its id and
/// how far `sp` is below its stack's top, or zeros if `g` cannot be read.
/// One copy covers both fields (`stack.hi` first, `goid` further on).
#[inline(always)]
fn goroutine(g: u64, goid_offset: u64, sp: u64) -> (u64, u32) {
    let from = (g as *const u8).wrapping_add(GO_G_STACK_HI_OFFSET as usize);
    let word = ((goid_offset.wrapping_sub(GO_G_STACK_HI_OFFSET)) / 8) as usize;
    if word == 0 || word >= GO_G_WORDS {
        return (0, 0);
    }
    // Read in place: a `Result` of the array by value would take its room
    // on the stack twice.
    let mut words = [0u64; GO_G_WORDS];
    // SAFETY: the helper copies from user memory into `words`' own bytes
    // and fails cleanly on a bad address; the pointer is never dereferenced.
    let read = unsafe {
        bpf_probe_read_user_buf(
            from,
            core::slice::from_raw_parts_mut(words.as_mut_ptr().cast::<u8>(), 8 * GO_G_WORDS),
        )
    };
    if read.is_err() {
        return (0, 0);
    }
    let (hi, goid) = (words[0], words[word]);
    hi.checked_sub(sp)
        .and_then(|depth| u32::try_from(depth).ok())
        .filter(|&depth| depth > 0)
        .map_or((0, 0), |depth| (goid, depth))
}

/// [`goroutine`] as a BPF-to-BPF call writing to `out`: its copy of
/// `runtime.g` then lives in its own frame, not in the probe's beside the
/// goroutine-state calls (together over the verifier's 512 bytes).
#[inline(never)]
fn read_goroutine(g: u64, goid_offset: u64, sp: u64, out: &mut (u64, u32)) {
    *out = goroutine(g, goid_offset, sp);
}

#[inline(always)]
fn traced(pid: u32) -> bool {
    // SAFETY: a lookup in a map of plain integers.
    unsafe { FERRET_TARGETS.get(pid) }.is_some()
}

#[inline(always)]
fn emit(pid_tgid: u64, event_kind: u32, cookie: u64, sp: u64, ip: u64) {
    let pid = (pid_tgid >> 32) as u32;
    if !traced(pid) {
        return;
    }
    // SAFETY: reads the monotonic clock; no memory is touched.
    let ts_ns = unsafe { bpf_ktime_get_ns() };
    write_event(
        pid,
        pid_tgid as u32,
        event_kind,
        cookie,
        sp,
        ip,
        (0, 0),
        ts_ns,
        NO_COUNTERS,
        None,
    );
}

/// Emits an event about process `pid` from another task's context (fork).
#[inline(always)]
fn emit_for(pid: u32, tid: u32, event_kind: u32, cookie: u64) {
    // SAFETY: reads the monotonic clock; no memory is touched.
    let ts_ns = unsafe { bpf_ktime_get_ns() };
    write_event(
        pid,
        tid,
        event_kind,
        cookie,
        0,
        0,
        (0, 0),
        ts_ns,
        NO_COUNTERS,
        None,
    );
}

/// Counts an event of the thread with scheduler state `state` that found
/// no room: its spans' splits become null rather than wrong.
#[inline(always)]
fn count_lost_of(state: Option<*mut SchedState>) {
    count_lost(lost::EVENTS);
    if let Some(state) = state {
        // SAFETY: a pointer into the map's value, valid for this program run.
        unsafe { (*state).lost += 1 };
    }
}

/// Writes the fields every record has into the reserved record `e`.
///
/// # Safety
/// `e` must point at a reserved, writable `ProbeEvent`.
#[inline(always)]
unsafe fn fill(e: *mut ProbeEvent, ts_ns: u64, event_kind: u32, pid: u32, tid: u32, c: Counters) {
    // SAFETY: the caller's promise.
    unsafe {
        (*e).ts_ns = ts_ns;
        (*e).kind = event_kind;
        (*e).pid = pid;
        (*e).tid = tid;
        (*e).cpu_ns = c.cpu_ns;
        (*e).runnable_ns = c.runnable_ns;
        (*e).blocked_ns = c.blocked_ns;
        (*e).sched_epoch = c.epoch;
        (*e).sched_lost = c.lost;
    }
}

/// A [`kind::BLOCKED`] event for thread `tid` of `pid` (and goroutine
/// `goid` on it, 0 for none): from the `sched_switch` program (another
/// task's context: no `comm`), or from a Go hand-off probe for a goroutine
/// that was parked. `lost` counts it if there is no room.
#[allow(clippy::too_many_arguments, reason = "one record's fields; inlined")]
#[inline(always)]
fn write_blocked_event(
    pid: u32,
    tid: u32,
    goid: u64,
    blocked_ns: u64,
    syscall: u32,
    ts_ns: u64,
    counters: Counters,
    lost: *mut u32,
) -> bool {
    let Some(mut entry) = FERRET_EVENTS.reserve::<ProbeEvent>(0) else {
        count_lost(lost::EVENTS);
        // SAFETY: a pointer into a map's value, valid for this program run.
        unsafe { *lost = (*lost).wrapping_add(1) };
        return false;
    };
    let e = entry.as_mut_ptr();
    // SAFETY: `e` points at the reserved record, written field by field in
    // place (a whole `ProbeEvent` on the BPF stack would not fit beside the
    // rest).
    unsafe {
        fill(e, ts_ns, kind::BLOCKED, pid, tid, counters);
        (*e).cookie = blocked_ns;
        (*e).sp = 0;
        (*e).ip = 0;
        (*e).goid = goid;
        (*e).go_stack_depth = 0;
        (*e).syscall = syscall;
        (*e).comm = [0; 16];
    }
    // Never a forced wakeup from inside the scheduler: the reader's timer
    // or the next probe's event wakes the reader.
    entry.submit(u64::from(BPF_RB_NO_WAKEUP));
    true
}

#[allow(clippy::too_many_arguments, reason = "one record's fields; inlined")]
#[inline(always)]
fn write_event(
    pid: u32,
    tid: u32,
    event_kind: u32,
    cookie: u64,
    sp: u64,
    ip: u64,
    (goid, go_stack_depth): (u64, u32),
    ts_ns: u64,
    counters: Counters,
    state: Option<*mut SchedState>,
) -> bool {
    let Some(mut entry) = FERRET_EVENTS.reserve::<ProbeEvent>(0) else {
        count_lost_of(state);
        return false;
    };
    let e = entry.as_mut_ptr();
    // SAFETY: `e` points at the reserved record, written field by field in
    // place (a whole `ProbeEvent` on the BPF stack would not fit beside a Go
    // probe's copy of `runtime.g`).
    unsafe {
        fill(e, ts_ns, event_kind, pid, tid, counters);
        (*e).cookie = cookie;
        (*e).sp = sp;
        (*e).ip = ip;
        (*e).goid = goid;
        (*e).go_stack_depth = go_stack_depth;
        (*e).syscall = 0;
        (*e).comm = bpf_get_current_comm().unwrap_or([0; 16]);
    }
    // Wake the reader only once enough data waits (userspace sets an eighth
    // of the ring); its timer drains the rest, so a lone event is never
    // stranded. Batched wakeups keep the cost per event low under load.
    let flags = if FERRET_EVENTS.query(u64::from(BPF_RB_AVAIL_DATA))
        >= u64::from(setting(config::WAKEUP_BYTES))
    {
        BPF_RB_FORCE_WAKEUP
    } else {
        BPF_RB_NO_WAKEUP
    };
    entry.submit(u64::from(flags));
    true
}

#[cfg(target_arch = "bpf")]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";

#[cfg(not(target_arch = "bpf"))]
fn main() {}
