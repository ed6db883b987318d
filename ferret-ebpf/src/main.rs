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
        bpf_probe_read_user,
        generated::{bpf_get_current_task_btf, bpf_task_pt_regs},
    },
    macros::{map, perf_event, raw_tracepoint, uprobe, uretprobe},
    maps::{Array, HashMap, PerCpuArray, RingBuf},
    programs::{PerfEventContext, ProbeContext, RawTracePointContext, RetProbeContext},
};
use ferret_common::{
    COOKIE_GENERATION_BIT, COOKIE_GOID_OFFSET_SHIFT, COOKIE_KIND_MASK, DEFAULT_RING_BYTES,
    GO_G_STACK_HI_OFFSET, GO_G_WORDS, MAX_TARGETS, ProbeEvent, SAMPLE_PAGE, SAMPLE_RING_BYTES,
    SAMPLE_STACK_PAGES, SampleEvent, config, kind, lost, sample_flags,
};

#[map(name = "FERRET_EVENTS")]
static FERRET_EVENTS: RingBuf = RingBuf::with_byte_size(DEFAULT_RING_BYTES, 0);

#[map(name = "FERRET_LOST")]
static FERRET_LOST: PerCpuArray<u64> = PerCpuArray::with_max_entries(lost::LEN, 0);

#[map(name = "FERRET_SAMPLES")]
static FERRET_SAMPLES: RingBuf = RingBuf::with_byte_size(SAMPLE_RING_BYTES, 0);

#[map(name = "FERRET_TARGETS")]
static FERRET_TARGETS: HashMap<u32, u8> = HashMap::with_max_entries(MAX_TARGETS, 0);

#[map(name = "FERRET_CONFIG")]
static FERRET_CONFIG: Array<u32> = Array::with_max_entries(config::LEN, 0);

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
    emit(pid_tgid, kind::THREAD_EXIT, 0, 0, 0);
    let (tgid, tid) = ((pid_tgid >> 32) as u32, pid_tgid as u32);
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
    let goid_offset = cookie >> COOKIE_GOID_OFFSET_SHIFT;
    let goroutine = if goid_offset == 0 {
        (0, 0)
    } else {
        goroutine(r14, goid_offset, sp)
    };
    let event_kind = (cookie & COOKIE_KIND_MASK) as u32;
    write_event(pid, pid_tgid as u32, event_kind, cookie, sp, ip, goroutine);
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
    // SAFETY: bpf_probe_read_user copies from user memory and fails cleanly
    // on a bad address; the pointer is never dereferenced here.
    #[allow(clippy::cast_ptr_alignment, reason = "read by copy, see above")]
    let Ok(words) = (unsafe { bpf_probe_read_user(from.cast::<[u64; GO_G_WORDS]>()) }) else {
        return (0, 0);
    };
    let (hi, goid) = (words[0], words[word]);
    hi.checked_sub(sp)
        .and_then(|depth| u32::try_from(depth).ok())
        .filter(|&depth| depth > 0)
        .map_or((0, 0), |depth| (goid, depth))
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
    write_event(pid, pid_tgid as u32, event_kind, cookie, sp, ip, (0, 0));
}

/// Emits an event about process `pid` from another task's context (fork).
#[inline(always)]
fn emit_for(pid: u32, tid: u32, event_kind: u32, cookie: u64) {
    write_event(pid, tid, event_kind, cookie, 0, 0, (0, 0));
}

#[inline(always)]
fn write_event(
    pid: u32,
    tid: u32,
    event_kind: u32,
    cookie: u64,
    sp: u64,
    ip: u64,
    (goid, go_stack_depth): (u64, u32),
) {
    let Some(mut entry) = FERRET_EVENTS.reserve::<ProbeEvent>(0) else {
        count_lost(lost::EVENTS);
        return;
    };
    // SAFETY: reads the monotonic clock; no memory is touched.
    let ts_ns = unsafe { bpf_ktime_get_ns() };
    entry.write(ProbeEvent {
        ts_ns,
        cookie,
        sp,
        ip,
        goid,
        kind: event_kind,
        pid,
        tid,
        go_stack_depth,
        comm: bpf_get_current_comm().unwrap_or([0; 16]),
    });
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
