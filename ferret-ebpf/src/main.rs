//! ferret's kernel side: one probe program for every function entry and exit,
//! and one tracepoint program for thread exits.
//!
//! The programs do as little as possible: they filter on the traced process,
//! stamp the time and stack pointer, and hand a [`ProbeEvent`] to userspace
//! through the ring buffer. What a probe means (which function, entry or exit)
//! travels in the attach cookie, so one program serves every probe and the
//! userspace agent rebuilds the call stacks.
#![no_std]
#![no_main]

use aya_ebpf::{
    bindings::{BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP, pt_regs},
    helpers::{bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_ktime_get_ns},
    macros::{map, raw_tracepoint, uprobe, uretprobe},
    maps::{HashMap, PerCpuArray, RingBuf},
    programs::{ProbeContext, RawTracePointContext, RetProbeContext},
};
use ferret_common::{COOKIE_KIND_MASK, DEFAULT_RING_BYTES, MAX_TARGETS, ProbeEvent, kind};

#[map(name = "FERRET_EVENTS")]
static FERRET_EVENTS: RingBuf = RingBuf::with_byte_size(DEFAULT_RING_BYTES, 0);

#[map(name = "FERRET_LOST")]
static FERRET_LOST: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

#[map(name = "FERRET_TARGETS")]
static FERRET_TARGETS: HashMap<u32, u8> = HashMap::with_max_entries(MAX_TARGETS, 0);

/// Wake the reader only once this much data is waiting; the reader also
/// drains on a short timer, so a lone event is never stranded. Batching the
/// wakeups keeps the reader's cost per event low under heavy load.
const WAKEUP_BYTES: u64 = 256 * 1024;

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

/// `sched_process_exit` fires once per exiting thread, in its own context.
/// A raw tracepoint needs no tracefs mount (this machine has none).
#[raw_tracepoint(tracepoint = "sched_process_exit")]
pub fn ferret_thread_exit(_ctx: RawTracePointContext) -> i32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    emit(pid_tgid, kind::THREAD_EXIT, 0, 0, 0);
    0
}

#[inline(always)]
fn try_probe(ctx: &ProbeContext) {
    let pid_tgid = bpf_get_current_pid_tgid();
    // SAFETY: the attach-cookie helper only reads the run context of this program.
    let cookie = unsafe { aya_ebpf::helpers::generated::bpf_get_attach_cookie(ctx.regs.cast()) };
    // SAFETY: `regs` points at the user registers the kernel saved for this probe.
    let (sp, ip) = unsafe {
        let regs: *const pt_regs = ctx.regs;
        ((*regs).rsp, (*regs).rip)
    };
    emit(pid_tgid, (cookie & COOKIE_KIND_MASK) as u32, cookie, sp, ip);
}

#[inline(always)]
fn emit(pid_tgid: u64, event_kind: u32, cookie: u64, sp: u64, ip: u64) {
    let pid = (pid_tgid >> 32) as u32;
    // SAFETY: a lookup in a map of plain integers.
    if unsafe { FERRET_TARGETS.get(&pid) }.is_none() {
        return;
    }
    let Some(mut entry) = FERRET_EVENTS.reserve::<ProbeEvent>(0) else {
        if let Some(lost) = FERRET_LOST.get_ptr_mut(0) {
            // SAFETY: per-CPU slot; the program runs with preemption disabled.
            unsafe { *lost += 1 };
        }
        return;
    };
    // SAFETY: reads the monotonic clock; no memory is touched.
    let ts_ns = unsafe { bpf_ktime_get_ns() };
    entry.write(ProbeEvent {
        ts_ns,
        cookie,
        sp,
        ip,
        kind: event_kind,
        pid,
        tid: pid_tgid as u32,
        reserved: 0,
        comm: bpf_get_current_comm().unwrap_or([0; 16]),
    });
    let flags = if FERRET_EVENTS.query(u64::from(BPF_RB_AVAIL_DATA)) >= WAKEUP_BYTES {
        BPF_RB_FORCE_WAKEUP
    } else {
        BPF_RB_NO_WAKEUP
    };
    entry.submit(u64::from(flags));
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
