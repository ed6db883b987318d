//! Raw samples → [`Sample`]s: the copied stack walked with the modules' CFI
//! (the stall watchdog's [`ProcessUnwinder`], over the copy), each address
//! symbolized once (blazesym, through the stall watchdog's
//! [`Symbolizer`]) and remembered, so a program that spends its time in a
//! few places costs a few hash lookups per sample.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use rustc_hash::FxHashMap;

use super::{CodeAt, Location, RawSample, Sample};
use crate::stall::{
    Frame,
    symbolize::Symbolizer,
    unwind::{ProcessUnwinder, RawFrame, Registers},
};

/// How often at most a process's mappings are read again for an address
/// they do not cover (a library loaded since).
const REFRESH_AT_MOST_EVERY: Duration = Duration::from_millis(250);

/// Addresses remembered per process before the cache starts over (a JIT
/// could otherwise grow it without bound).
const CACHE_MAX: usize = 200_000;

/// What is kept per sampled process.
struct Process {
    unwinder: ProcessUnwinder,
    symbolizer: Symbolizer,
    /// By (address, is a return address).
    cache: FxHashMap<(u64, bool), Arc<Location>>,
    refreshed: Option<Instant>,
}

/// Unwinds and symbolizes the samples of every traced process.
#[derive(Default)]
pub struct Resolver {
    processes: FxHashMap<u32, Process>,
    /// Frames walked, and samples whose walk stopped early.
    pub frames: u64,
    /// Samples whose walk ended before the outermost frame.
    pub cut: u64,
}

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resolver")
            .field("processes", &self.processes.len())
            .finish_non_exhaustive()
    }
}

impl Resolver {
    /// A resolver with nothing read yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Walks and symbolizes one sample.
    pub fn resolve(&mut self, raw: &RawSample) -> Sample {
        let process = self.processes.entry(raw.pid).or_insert_with(|| Process {
            unwinder: ProcessUnwinder::new(raw.pid),
            symbolizer: Symbolizer::new(raw.pid),
            cache: FxHashMap::default(),
            refreshed: None,
        });
        let stale = process
            .refreshed
            .is_none_or(|at| at.elapsed() >= REFRESH_AT_MOST_EVERY);
        if stale && (process.refreshed.is_none() || !process.unwinder.is_mapped(raw.ip)) {
            process.refreshed = Some(Instant::now());
            if process.unwinder.refresh().unwrap_or(false) {
                // Addresses may mean other code now.
                process.cache.clear();
            }
        }
        let regs = Registers {
            pc: raw.ip,
            sp: raw.sp,
            bp: Some(raw.bp),
        };
        let mut walked = process
            .unwinder
            .unwind_copy(regs, raw.stack_base, &raw.stack);
        // An address in no mapping read so far: a library loaded since, or
        // the kernel's `[uprobes]` page (a function just traced with a
        // uretprobe), which the walk must know to stop at.
        let unmapped = walked
            .frames
            .iter()
            .any(|f| !process.unwinder.is_mapped(f.address));
        if unmapped
            && process
                .refreshed
                .is_none_or(|at| at.elapsed() >= REFRESH_AT_MOST_EVERY)
        {
            process.refreshed = Some(Instant::now());
            if process.unwinder.refresh().unwrap_or(false) {
                process.cache.clear();
                walked = process
                    .unwinder
                    .unwind_copy(regs, raw.stack_base, &raw.stack);
            }
        }
        if process.cache.len() > CACHE_MAX {
            process.cache.clear();
        }
        let missing: Vec<RawFrame> = walked
            .frames
            .iter()
            .filter(|f| !process.cache.contains_key(&(f.address, f.is_return)))
            .copied()
            .collect();
        if !missing.is_empty() {
            let symbolized = process.symbolizer.symbolize_each(&missing);
            for (raw_frame, frames) in missing.iter().zip(symbolized) {
                let code = code_at(&process.unwinder, raw_frame.lookup_address());
                let frames = if process.unwinder.in_uprobes(raw_frame.address) {
                    vec![probe_frame(raw_frame.address)]
                } else {
                    frames
                };
                process.cache.insert(
                    (raw_frame.address, raw_frame.is_return),
                    Arc::new(Location::new(frames_or_unknown(frames, raw_frame), code)),
                );
            }
        }
        let stack: Vec<Arc<Location>> = walked
            .frames
            .iter()
            .filter_map(|f| process.cache.get(&(f.address, f.is_return)).cloned())
            .collect();
        self.frames += stack.len() as u64;
        let note = walked.end_note();
        self.cut += u64::from(note.is_some());
        Sample {
            ts_ns: raw.ts_ns,
            pid: raw.pid,
            tid: raw.tid,
            thread_name: raw.thread_name,
            stack,
            stack_note: note.map(Arc::from),
            in_kernel: raw.in_kernel,
        }
    }

    /// Forgets process `pid` (it exited).
    pub fn forget(&mut self, pid: u32) {
        self.processes.remove(&pid);
    }
}

/// What a thread sampled inside the kernel's `[uprobes]` page is doing:
/// running one of ferret's probes (an instruction stepped out of line, or
/// a uretprobe's trampoline). Named so the Hot pane shows probe cost as
/// such.
pub const PROBE_FRAME: &str = "(ferret probe)";

fn probe_frame(address: u64) -> Frame {
    Frame {
        function: Some(PROBE_FRAME.to_owned()),
        file: None,
        line: None,
        address,
        module: Some("[uprobes]".to_owned()),
        inlined: false,
    }
}

/// An address's frames; one nameless frame when blazesym had none.
fn frames_or_unknown(frames: Vec<Frame>, raw: &RawFrame) -> Vec<Frame> {
    if frames.is_empty() {
        vec![Frame {
            function: None,
            file: None,
            line: None,
            address: raw.address,
            module: None,
            inlined: false,
        }]
    } else {
        frames
    }
}

/// Where `avma` is in the file the process mapped there.
fn code_at(unwinder: &ProcessUnwinder, avma: u64) -> Option<CodeAt> {
    let entry = unwinder
        .maps()
        .iter()
        .find(|m| m.executable() && m.avma.contains(&avma))?;
    let path = entry.path.as_ref()?;
    Some(CodeAt {
        module: Arc::from(path.display().to_string()),
        file_offset: avma - entry.avma.start + entry.file_offset,
    })
}
