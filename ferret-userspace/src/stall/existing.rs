//! "Stuck before ferret came": the traced functions each thread was
//! already inside when the probes were attached.
//!
//! Their entries happened before any probe existed, so no event will ever
//! open their spans. Right after attaching, every thread's stack is walked
//! (see [`super::capture`]; on the watchdog's thread, so a process of
//! thousands of threads does not hold up the session, and threads blocked
//! alike are walked once, see [`super::unwind`]); each frame whose address
//! lies in a probed function is a call already running. The reconstructor adopts those
//! frames with the stack pointer of their entry, so their exits (where a
//! return-instruction probe sees them) close them as usual, and the
//! watchdog reports them as stalled if they never return: a process that
//! deadlocked before ferret attached shows its deadlocked functions.

use std::{collections::HashMap, ops::Range, os::unix::fs::MetadataExt as _};

use super::capture::Capturer;
use crate::{
    probe::ProbePoint,
    symbols::{MapsEntry, Module},
    trace::{Reconstructor, SpanEvent, ThreadName},
};

/// The probed functions' code, as file-offset ranges per file, for telling
/// which stack frames are inside a probed function.
#[derive(Clone, Debug, Default)]
pub struct ProbedRanges {
    /// By inode of the file: (file-offset range, function index, file name).
    by_inode: HashMap<u64, Vec<(Range<u64>, u32, std::ffi::OsString)>>,
}

impl ProbedRanges {
    /// The ranges of `points` (function `i` is `points[i]`). A module that
    /// cannot be read contributes nothing.
    pub fn new(points: &[ProbePoint]) -> Self {
        let mut by_inode: HashMap<u64, Vec<(Range<u64>, u32, std::ffi::OsString)>> = HashMap::new();
        let mut modules: HashMap<&std::path::Path, Option<(Module, u64)>> = HashMap::new();
        for (index, point) in points.iter().enumerate() {
            let module = modules.entry(&point.path).or_insert_with(|| {
                let inode = std::fs::metadata(&point.path).ok()?.ino();
                Some((Module::open(&point.path).ok()?, inode))
            });
            let Some((module, inode)) = module else {
                continue;
            };
            let Some(function) = module
                .svma(point.entry)
                .and_then(|svma| module.function_containing(svma).ok().flatten())
            else {
                continue;
            };
            let name = point.path.file_name().unwrap_or_default().to_owned();
            by_inode.entry(*inode).or_default().push((
                function.file_offset..function.file_offset.saturating_add(function.size),
                index as u32,
                name,
            ));
        }
        Self { by_inode }
    }

    /// The probed function containing process address `avma`, given the
    /// process's mappings.
    pub fn function_at(&self, maps: &[MapsEntry], avma: u64) -> Option<u32> {
        let entry = super::unwind::mapping_at(maps, avma)?;
        let path = entry.path.as_ref()?;
        let offset = entry.file_offset_of(avma)?;
        self.by_inode
            .get(&entry.inode)?
            .iter()
            .find(|(range, _, name)| {
                range.contains(&offset) && path.file_name() == Some(name.as_os_str())
            })
            .map(|&(_, function, _)| function)
    }

    /// Whether no function could be placed.
    pub fn is_empty(&self) -> bool {
        self.by_inode.is_empty()
    }
}

/// A thread with probed functions on its stack when tracing began.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunningBefore {
    /// Thread id.
    pub tid: u32,
    /// Thread name.
    pub thread_name: String,
    /// (function index, stack pointer at its entry), outermost first.
    pub frames: Vec<(u32, u64)>,
}

/// Walks every thread of `pid` and returns those inside probed functions.
/// Threads that cannot be walked are left out (their calls stay unknown, as
/// without this scan).
pub fn running_before_attach(capturer: &mut Capturer, ranges: &ProbedRanges) -> Vec<RunningBefore> {
    if ranges.is_empty() {
        return Vec::new();
    }
    let pid = capturer.pid();
    let mut found = Vec::new();
    for tid in super::procfs::thread_ids(pid) {
        let Some((thread_name, Ok(stack))) = capturer.walk(tid) else {
            continue;
        };
        let maps = capturer.unwinder().maps();
        let mut frames: Vec<(u32, u64)> = stack
            .frames
            .iter()
            .filter_map(|f| {
                let sp = f.entry_sp?;
                Some((ranges.function_at(maps, f.lookup_address())?, sp))
            })
            .collect();
        if frames.is_empty() {
            continue;
        }
        frames.reverse();
        found.push(RunningBefore {
            tid,
            thread_name,
            frames,
        });
    }
    // This thread goes on with other work: a thread that stopped too late
    // for its walk is let go now.
    super::ptrace::release_late_within(std::time::Duration::from_secs(1));
    found
}

/// "Stuck before ferret came": the probed calls found on the threads'
/// stacks right after attaching to a running process, to be adopted by the
/// reconstructor once the events of the attach window are in (see
/// [`super::Watchdog::adopt_when_drained`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunningCalls {
    pid: u32,
    ts_ns: u64,
    threads: Vec<RunningBefore>,
}

impl RunningCalls {
    /// Walks every thread of `capturer`'s process for the probed functions
    /// (`points`, indexed like the probe table); `ts_ns` is when tracing
    /// began, the adopted spans' start.
    pub fn find(capturer: &mut Capturer, points: &[ProbePoint], ts_ns: u64) -> Self {
        let ranges = ProbedRanges::new(points);
        Self {
            pid: capturer.pid(),
            ts_ns,
            threads: running_before_attach(capturer, &ranges),
        }
    }

    /// How many threads were found inside probed functions.
    pub fn threads(&self) -> usize {
        self.threads.len()
    }

    /// Opens a span for each call (marked
    /// [`crate::trace::OpenSpan::before_attach`]), appending the starts to
    /// `out`, except for calls the reconstructor already saw enter: call it
    /// after draining the events that arrived while the stacks were read.
    /// Returns how many were adopted.
    pub fn adopt(self, reconstructor: &mut Reconstructor, out: &mut Vec<SpanEvent>) -> usize {
        let mut adopted = 0;
        for thread in self.threads {
            let name = ThreadName::from(thread.thread_name.as_str());
            adopted += reconstructor
                .adopt(self.pid, thread.tid, &name, &thread.frames, self.ts_ns, out)
                .len();
        }
        adopted
    }
}
