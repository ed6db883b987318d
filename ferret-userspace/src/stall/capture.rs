//! Capturing where one thread is: its scheduler state, the system call it
//! is blocked in, the kernel function it sleeps in, the lock it waits for,
//! and its user stack.
//!
//! A blocked thread cannot move, and the kernel publishes its stack and
//! instruction pointers, so its stack is read without touching it. Its
//! `/proc` files are read again after the walk: if the thread woke up
//! meanwhile, the walk is retried. A thread running in user space publishes
//! no registers; it is stopped for the instant the walk takes (see
//! [`super::ptrace`]).

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant},
};

use super::{
    futex::{self, LockHolder, LockWords, MUTEX_PREFIX_LEN},
    memory::ProcessMemory,
    procfs::{self, SchedState, SyscallState, ThreadProc},
    ptrace,
    symbolize::Symbolizer,
    syscalls::{self, ArgReader},
    unwind::{self, ProcessUnwinder, Registers, StackEnd, Unwound},
};
use crate::stall::Frame;

/// Walks of a blocked thread retried when it moved during the walk.
const WALK_ATTEMPTS: usize = 3;
/// Owners followed from a waiting thread when looking for a cycle.
const MAX_CHAIN: usize = 16;
/// Bytes of a thread's stack, from its stack pointer up, searched for a
/// reference to a lock: a guard lives in the frame that took the lock,
/// normally close to where the holder is now blocked.
const REFERENCE_SCAN: usize = 64 * 1024;
/// Threads searched for a lock's probable holder.
const MAX_SCANNED_THREADS: usize = 512;
/// A lock's probable holder, once searched for, is taken as known this
/// long: a thousand threads waiting on one lock search for it once.
const HOLDER_KEPT: Duration = Duration::from_millis(500);
/// Symbolized stacks kept per process; more are forgotten all at once.
const MAX_SYMBOLIZED: usize = 4096;

/// How the registers the walk started from were obtained.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegisterSource {
    /// From `/proc/.../syscall` (a blocked thread; untouched).
    Kernel,
    /// The running thread was stopped for this many microseconds.
    Stopped {
        /// How long.
        micros: u64,
    },
}

/// One thread, as captured.
#[derive(Clone, Debug)]
pub struct Capture {
    /// Thread id.
    pub tid: u32,
    /// The thread's `/proc` files.
    pub proc: ThreadProc,
    /// The system call rendered strace-like, when blocked in one.
    pub call: Option<String>,
    /// The lock it waits for, when it waits on a futex.
    pub lock: Option<LockHolder>,
    /// The walked stack, or why it could not be walked.
    pub stack: Result<Unwound, String>,
    /// Where the walk's registers came from.
    pub registers: Option<RegisterSource>,
}

/// A walked stack, symbolized.
#[derive(Debug)]
pub struct Symbolized {
    /// The frames of each walked frame: its function and the calls inlined
    /// into it there, innermost first.
    pub per_frame: Vec<Vec<Frame>>,
    /// All of them, innermost first.
    pub frames: Arc<[Frame]>,
}

/// What a capturer did, for measurements.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CaptureStats {
    /// Threads captured in full.
    pub captures: u64,
    /// Looks at a lasting stall that found it where it was.
    pub unmoved: u64,
    /// Stacks symbolized (the others had the addresses of one before).
    pub symbolized: u64,
    /// Stacks whose symbols were those of a stack before.
    pub symbols_shared: u64,
    /// Searches for a lock's probable holder.
    pub holder_searches: u64,
    /// The walks.
    pub walks: super::unwind::WalkStats,
}

/// Captures threads of one process.
#[derive(Debug)]
pub struct Capturer {
    pid: u32,
    memory: ProcessMemory,
    unwinder: ProcessUnwinder,
    symbolizer: Symbolizer,
    /// Symbolized stacks by their addresses: threads stuck alike share one.
    symbols: HashMap<Vec<u64>, Arc<Symbolized>>,
    /// The unwinder's code generation `symbols` belong to.
    symbols_of: u64,
    /// The blocked state each thread was last captured in, with its span.
    seen: HashMap<u32, (u64, SyscallState)>,
    /// Probable holders searched for lately, by lock address.
    holders: HashMap<u64, (Instant, Option<u32>)>,
    /// The unwinder's code generation last warmed up.
    warmed: Option<u64>,
    stats: CaptureStats,
}

impl Capturer {
    /// A capturer for `pid`.
    pub fn new(pid: u32) -> Self {
        Self {
            pid,
            memory: ProcessMemory::new(pid),
            unwinder: ProcessUnwinder::new(pid),
            symbolizer: Symbolizer::new(pid),
            symbols: HashMap::new(),
            symbols_of: 0,
            seen: HashMap::new(),
            holders: HashMap::new(),
            warmed: None,
            stats: CaptureStats::default(),
        }
    }

    /// What it did so far.
    pub fn stats(&self) -> CaptureStats {
        CaptureStats {
            walks: self.unwinder.stats(),
            ..self.stats
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The unwinder (its mappings serve address → module lookups).
    pub fn unwinder(&self) -> &ProcessUnwinder {
        &self.unwinder
    }

    /// Reads the modules' unwind tables and has the symbolizer read their
    /// symbols and debug information, by symbolizing an address in each;
    /// again only when the process mapped or unmapped something since (its
    /// mappings are reread if older than [`unwind::MAPS_MAX_AGE`]).
    pub fn warm_up(&mut self) {
        let _ = self.unwinder.refresh_if_older(unwind::MAPS_MAX_AGE);
        let generation = self.unwinder.code_generation();
        if self.warmed == Some(generation) {
            return;
        }
        self.warmed = Some(generation);
        let addresses: Vec<unwind::RawFrame> = self
            .unwinder
            .maps()
            .iter()
            .filter(|m| m.executable() && m.path.is_some())
            .map(|m| unwind::RawFrame {
                address: m.avma.start,
                is_return: false,
                entry_sp: None,
                scanned: false,
            })
            .collect();
        let _ = self.symbolizer.symbolize(&addresses);
    }

    /// Captures thread `tid`; `None` if it is gone.
    pub fn capture(&mut self, tid: u32) -> Option<Capture> {
        let proc = procfs::read_thread(self.pid, tid)?;
        let (proc, stack, registers) = self.walk_thread(tid, proc)?;
        self.stats.captures += 1;
        let (call, lock) = match proc.syscall {
            Some(SyscallState::InSyscall { nr, args, .. }) => {
                let reader = ProcArgs {
                    pid: self.pid,
                    memory: self.memory,
                };
                (
                    Some(syscalls::describe(nr, &args, &reader)),
                    self.lock_of(nr, &args),
                )
            }
            _ => (None, None),
        };
        Some(Capture {
            tid,
            proc,
            call,
            lock,
            stack,
            registers,
        })
    }

    /// Thread `tid`'s name and walked stack, and nothing else (what the
    /// calls running at attach are found from); `None` if it is gone.
    pub fn walk(&mut self, tid: u32) -> Option<(String, Result<Unwound, String>)> {
        let dir = format!("/proc/{}/task/{tid}", self.pid);
        let stat = procfs::parse_stat(&std::fs::read_to_string(format!("{dir}/stat")).ok()?)?;
        let proc = ThreadProc {
            stat,
            syscall: procfs::read_syscall(self.pid, tid),
            wchan: None,
        };
        let (proc, stack, _) = self.walk_thread(tid, proc)?;
        Some((proc.stat.comm, stack))
    }

    /// Walks thread `tid`, `proc` just read: untouched if it is blocked
    /// (walked again if it moved meanwhile), stopped for an instant if it
    /// runs. `None` if it is gone.
    fn walk_thread(
        &mut self,
        tid: u32,
        mut proc: ThreadProc,
    ) -> Option<(ThreadProc, Result<Unwound, String>, Option<RegisterSource>)> {
        if matches!(proc.stat.state, SchedState::Zombie | SchedState::Dead) {
            return None;
        }
        let mut stack = Err("the kernel published no registers".to_owned());
        let mut registers = None;
        for _ in 0..WALK_ATTEMPTS {
            match proc.syscall {
                Some(state @ (SyscallState::InSyscall { .. } | SyscallState::Blocked { .. })) => {
                    let (sp, pc) = state.sp_pc().expect("blocked states carry sp and pc");
                    let regs = Registers { pc, sp, bp: None };
                    self.unwinder.refresh_for(regs);
                    stack = Ok(self.unwinder.unwind(regs));
                    registers = Some(RegisterSource::Kernel);
                    // The walk is exact if the thread did not move meanwhile.
                    let again = procfs::read_syscall(self.pid, tid);
                    if again == proc.syscall {
                        break;
                    }
                    proc = procfs::read_thread(self.pid, tid)?;
                }
                Some(SyscallState::Running) => {
                    let _ = self.unwinder.refresh_if_older(unwind::MAPS_MAX_AGE);
                    let unwinder = &mut self.unwinder;
                    let started = Instant::now();
                    match ptrace::with_thread_stopped(tid, |regs| unwinder.unwind(regs)) {
                        Ok(walked) => {
                            registers = Some(RegisterSource::Stopped {
                                micros: started.elapsed().as_micros() as u64,
                            });
                            stack = Ok(walked);
                        }
                        Err(e) => stack = Err(e.to_string()),
                    }
                    break;
                }
                None => break,
            }
        }
        // A thread that exited while it was being walked is gone, not stuck.
        if matches!(proc.stat.state, SchedState::Zombie | SchedState::Dead)
            || (stack.is_err()
                && !std::path::Path::new(&format!("/proc/{}/task/{tid}", self.pid)).exists())
        {
            return None;
        }
        Some((proc, stack, registers))
    }

    /// Whether thread `tid`, captured for span `span_id` before, is blocked
    /// exactly as it was then (the same system call, arguments, stack and
    /// instruction pointers): it has not moved, and capturing it again
    /// would find the same. One small read.
    pub fn unmoved(&mut self, tid: u32, span_id: u64) -> bool {
        let Some(&(span, before)) = self.seen.get(&tid) else {
            return false;
        };
        let unmoved = span == span_id && procfs::read_syscall(self.pid, tid) == Some(before);
        self.stats.unmoved += u64::from(unmoved);
        unmoved
    }

    /// Notes the state thread `tid` was captured in for span `span_id`,
    /// for [`Self::unmoved`] (only a blocked state says where it is).
    pub fn remember(&mut self, tid: u32, span_id: u64, state: Option<SyscallState>) {
        match state {
            Some(state @ (SyscallState::InSyscall { .. } | SyscallState::Blocked { .. })) => {
                if self.seen.len() >= 65_536 {
                    self.seen.clear();
                }
                self.seen.insert(tid, (span_id, state));
            }
            _ => {
                self.seen.remove(&tid);
            }
        }
    }

    /// Forgets thread `tid` (it is gone).
    pub fn forget(&mut self, tid: u32) {
        self.seen.remove(&tid);
    }

    /// Function, file and line of each walked frame.
    pub fn symbolize(&self, unwound: &Unwound) -> Vec<Frame> {
        self.symbolizer.symbolize(&unwound.frames)
    }

    /// Function, file and line of each of `raw`, inlined calls included
    /// (a stack found otherwise than by a walk: a goroutine's).
    pub fn symbolize_frames(&self, raw: &[super::unwind::RawFrame]) -> Vec<Frame> {
        self.symbolizer.symbolize(raw)
    }

    /// [`Self::symbolize`], grouped by walked frame, and kept: a stack of
    /// the same addresses (a thread stuck like another) is not symbolized
    /// again while the code mapped stays the same.
    pub fn symbolize_each(&mut self, unwound: &Unwound) -> Arc<Symbolized> {
        let generation = self.unwinder.code_generation();
        if generation != self.symbols_of || self.symbols.len() >= MAX_SYMBOLIZED {
            self.symbols.clear();
            self.symbols_of = generation;
        }
        let addresses: Vec<u64> = unwound
            .frames
            .iter()
            .map(unwind::RawFrame::lookup_address)
            .collect();
        if let Some(known) = self.symbols.get(&addresses) {
            self.stats.symbols_shared += 1;
            return Arc::clone(known);
        }
        self.stats.symbolized += 1;
        let per_frame = self.symbolizer.symbolize_each(&unwound.frames);
        let frames: Arc<[Frame]> = per_frame.iter().flatten().cloned().collect();
        let symbolized = Arc::new(Symbolized { per_frame, frames });
        self.symbols.insert(addresses, Arc::clone(&symbolized));
        symbolized
    }

    /// The lock thread `tid` waits for right now, if it waits on a futex
    /// (no stack walk); a lock that records no owner gets its probable
    /// holder (see [`Self::probable_holder`]).
    pub fn lock_wait(&mut self, tid: u32) -> Option<LockHolder> {
        let text =
            std::fs::read_to_string(format!("/proc/{}/task/{tid}/syscall", self.pid)).ok()?;
        match procfs::parse_syscall(&text)? {
            SyscallState::InSyscall { nr, args, .. } => {
                let lock = self.lock_of(nr, &args)?;
                Some(self.with_probable_holder(tid, lock))
            }
            _ => None,
        }
    }

    /// `lock`, or for a lock locked without a recorded owner, its probable
    /// holder if exactly one is found.
    pub fn with_probable_holder(&mut self, waiter: u32, lock: LockHolder) -> LockHolder {
        match lock {
            LockHolder::Unknown { addr, .. } if lock.looks_locked_without_owner() => {
                // Many waiters of one lock: the search is done once for all.
                let known = self
                    .holders
                    .get(&addr)
                    .filter(|(at, holder)| at.elapsed() < HOLDER_KEPT && *holder != Some(waiter))
                    .map(|&(_, holder)| holder);
                let holder = known.unwrap_or_else(|| {
                    self.stats.holder_searches += 1;
                    let found = self.probable_holder(waiter, addr);
                    if self.holders.len() >= 4096 {
                        self.holders.clear();
                    }
                    self.holders.insert(addr, (Instant::now(), found));
                    found
                });
                holder.map_or(lock, |owner| LockHolder::Probable { addr, owner })
            }
            other => other,
        }
    }

    /// The one blocked thread other than `waiter`, not itself waiting on
    /// `addr`, whose stack near its top holds the address `addr`: a lock
    /// guard refers to its lock, so that thread probably holds it. `None`
    /// when no thread, or more than one, does.
    pub fn probable_holder(&self, waiter: u32, addr: u64) -> Option<u32> {
        let maps = self.unwinder.maps();
        let mut found = None;
        let mut stack = vec![0u8; REFERENCE_SCAN];
        for tid in procfs::thread_ids(self.pid)
            .into_iter()
            .take(MAX_SCANNED_THREADS)
        {
            if tid == waiter {
                continue;
            }
            let Some(state) =
                std::fs::read_to_string(format!("/proc/{}/task/{tid}/syscall", self.pid))
                    .ok()
                    .and_then(|t| procfs::parse_syscall(&t))
            else {
                continue;
            };
            if let SyscallState::InSyscall { nr, args, .. } = state
                && syscalls::futex_wait_address(nr, &args) == Some(addr)
            {
                continue;
            }
            let Some((sp, _)) = state.sp_pc() else {
                continue;
            };
            let Some(end) = unwind::mapping_at(maps, sp).map(|m| m.avma.end) else {
                continue;
            };
            let len = usize::try_from(end - sp)
                .unwrap_or(usize::MAX)
                .min(REFERENCE_SCAN);
            let Ok(got) = self.memory.read_some(sp, &mut stack[..len]) else {
                continue;
            };
            let refers = stack[..got]
                .chunks_exact(8)
                .any(|w| u64::from_le_bytes(w.try_into().unwrap_or_default()) == addr);
            if refers {
                if found.is_some() {
                    return None;
                }
                found = Some(tid);
            }
        }
        found
    }

    /// Follows lock owners from `tid` (which waits for `owner`) and returns
    /// the deadlock cycle through `tid`, if the owners' waits lead back to
    /// it, and whether any link of it is only probable.
    pub fn deadlock_cycle(&mut self, tid: u32, owner: u32) -> Option<(Vec<u32>, bool)> {
        let mut waits: HashMap<u32, u32> = HashMap::from([(tid, owner)]);
        let mut probable = false;
        let mut at = owner;
        for _ in 0..MAX_CHAIN {
            if at == tid || waits.contains_key(&at) {
                break;
            }
            let Some(lock) = self.lock_wait(at) else {
                break;
            };
            let Some(next) = lock.owner() else {
                break;
            };
            probable |= matches!(lock, LockHolder::Probable { .. });
            waits.insert(at, next);
            at = next;
        }
        futex::cycle_through(tid, &waits).map(|cycle| (cycle, probable))
    }

    fn lock_of(&self, nr: u64, args: &[u64; 6]) -> Option<LockHolder> {
        let addr = syscalls::futex_wait_address(nr, args)?;
        let mut bytes = [0u8; MUTEX_PREFIX_LEN];
        if self.memory.read(addr, &mut bytes).is_err() {
            // A futex at the end of a mapping: the word alone still tells
            // a PI owner and the value.
            let mut word = [0u8; 4];
            self.memory.read(addr, &mut word).ok()?;
            bytes[..4].copy_from_slice(&word);
        }
        let pid = self.pid;
        let is_thread =
            |tid: u32| std::path::Path::new(&format!("/proc/{pid}/task/{tid}")).exists();
        Some(futex::lock_holder(
            &LockWords {
                addr,
                bytes,
                pi: syscalls::is_pi_lock(nr, args),
            },
            &is_thread,
        ))
    }
}

impl Unwound {
    /// A short note on how the walk ended, when it did not reach the
    /// outermost frame.
    pub fn end_note(&self) -> Option<String> {
        match &self.end {
            StackEnd::Complete => None,
            StackEnd::UretprobeTrampoline => Some(
                "[callers hidden: a uretprobe replaced the return address; \
                 --exit-probes ret keeps the stack intact]"
                    .to_owned(),
            ),
            StackEnd::Truncated(why) => Some(format!("[stack walk stopped: {why}]")),
        }
    }
}

/// Reads the arguments' targets for [`syscalls::describe`].
struct ProcArgs {
    pid: u32,
    memory: ProcessMemory,
}

impl ArgReader for ProcArgs {
    fn timespec(&self, avma: u64) -> Option<(i64, i64)> {
        let mut bytes = [0u8; 16];
        self.memory.read(avma, &mut bytes).ok()?;
        let (secs, nanos) = bytes.split_at(8);
        Some((
            i64::from_le_bytes(secs.try_into().ok()?),
            i64::from_le_bytes(nanos.try_into().ok()?),
        ))
    }

    fn fd(&self, fd: u64) -> Option<String> {
        procfs::fd_target(self.pid, fd)
    }
}
