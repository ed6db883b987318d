//! Walking a stopped or blocked thread's user stack with DWARF CFI.
//!
//! framehop does the unwinding from each mapped module's `.eh_frame` (with
//! `.eh_frame_hdr` as its index) and `.debug_frame`; this module feeds it
//! the process's executable mappings, read once per module and kept while
//! the mapping stays, and a snapshot of the stack.
//!
//! A thread blocked in a system call publishes only its stack and
//! instruction pointers, not its frame pointer (`rbp`). Most frames do not
//! need it: their CFI computes the frame from the stack pointer, or says
//! where an inner frame saved `rbp`. A frame compiled with frame pointers
//! whose `rbp` was never saved further in, though, can only be found by
//! looking: the unwinder starts with an impossible `rbp`, and when a frame
//! needs it, the stack above is scanned for the frame record the prologue
//! pushed (saved `rbp`, then a return address just after a call
//! instruction). Frames found that way are marked [`RawFrame::scanned`].
//!
//! A function with a pending uretprobe has its return address replaced by
//! the kernel's trampoline (the `[uprobes]` mapping); the caller cannot be
//! known from the stack, so the walk stops there and says so.
//!
//! Threads of a pool blocked in the same place are walked once. A walk is
//! a function of its registers and of the stack words it reads, nothing
//! else (the code it reads is the same for every thread). So a walk of a
//! thread blocked at an instruction, at a depth below the top of its stack,
//! is kept as a [`Shape`]: the words it read, as offsets from the stack's
//! top. Another thread blocked at the same instruction and depth has its
//! stack read at those offsets alone (one `process_vm_readv`); if every
//! word is the same (a pointer into the stack, the same offset from its
//! top), its walk is the kept one, moved to its stack, exactly as walking
//! it would have found. Otherwise it is walked.

use std::{
    cell::RefCell,
    collections::HashMap,
    ops::Range,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use framehop::{
    ExplicitModuleSectionInfo, FrameAddress, Unwinder as _,
    x86_64::{CacheX86_64, UnwindRegsX86_64, UnwinderX86_64},
};
use object::{Object as _, ObjectSection as _, ObjectSegment as _};

use super::memory::ProcessMemory;
use crate::symbols::{MapsEntry, parse_maps};

/// Most frames walked; deeper stacks are cut (and say so).
pub const MAX_FRAMES: usize = 256;
/// Bytes of stack copied in one read from the stack pointer up; frames
/// beyond are read word by word.
const STACK_SNAPSHOT: usize = 256 * 1024;
/// How far above a frame the scan for a frame record looks.
const SCAN_BYTES: u64 = 64 * 1024;
/// A frame pointer no frame can have: odd, and below any stack. A frame
/// whose CFI needs the frame pointer fails on it instead of ending the walk.
const UNKNOWN_BP: u64 = 1;
/// Most stack words a [`Shape`] may hold (one `process_vm_readv` reads
/// them; the kernel takes at most 1024 pieces).
const SHAPE_WORDS: usize = 1024;
/// Shapes kept per process; more are forgotten all at once.
const MAX_SHAPES: usize = 4096;
/// `/proc/PID/maps` is reread at most this often, or sooner when a walk
/// starts outside every mapping known (a thread created since, a library
/// loaded since), but never more often than [`MAPS_SOONEST`]: a process
/// with thousands of threads has a maps file of hundreds of KiB, which
/// the kernel writes out anew at each read.
pub const MAPS_MAX_AGE: Duration = Duration::from_secs(1);
/// See [`MAPS_MAX_AGE`].
pub const MAPS_SOONEST: Duration = Duration::from_millis(250);

/// The registers a walk starts from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Registers {
    /// Instruction pointer.
    pub pc: u64,
    /// Stack pointer.
    pub sp: u64,
    /// Frame pointer, when known (ptrace, perf); `None` from `/proc/.../syscall`.
    pub bp: Option<u64>,
}

/// One frame of a walked stack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RawFrame {
    /// The instruction pointer (innermost frame) or the return address.
    pub address: u64,
    /// `address` is a return address: symbolize `address - 1`, the call.
    pub is_return: bool,
    /// The stack pointer at this function's entry (pointing at its return
    /// address), where the walk found it: what the reconstructor's spans
    /// are keyed by.
    pub entry_sp: Option<u64>,
    /// Found by scanning the stack for a frame record, not by CFI.
    pub scanned: bool,
}

impl RawFrame {
    /// The address to look up: inside the call instruction for return addresses.
    pub fn lookup_address(&self) -> u64 {
        if self.is_return {
            self.address.saturating_sub(1)
        } else {
            self.address
        }
    }
}

/// How a walk ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StackEnd {
    /// The outermost frame was reached.
    Complete,
    /// A return address had been replaced by a uretprobe: the callers are hidden.
    UretprobeTrampoline,
    /// The walk stopped early.
    Truncated(String),
}

/// A walked stack, innermost frame first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unwound {
    /// Frames, innermost first.
    pub frames: Vec<RawFrame>,
    /// How the walk ended.
    pub end: StackEnd,
}

/// A walk kept for threads stuck alike (see the module doc): what it read
/// and found, relative to the top of the stack walked.
#[derive(Clone, Debug)]
struct Shape {
    /// The words read: (offset from the stack's top, value).
    reads: Vec<(i64, Word)>,
    /// The frames, `entry_sp` as an offset from the stack's top.
    frames: Vec<(RawFrame, Option<i64>)>,
    end: StackEnd,
}

/// A stack word a kept walk read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Word {
    /// A value that is no address in the stack walked.
    Plain(u64),
    /// An address in the stack walked, as an offset from its top.
    InStack(i64),
}

impl Shape {
    /// The walk of the thread whose stack top is `end`, if its stack holds
    /// the same words where this one's did.
    fn replay(&self, memory: ProcessMemory, end: u64) -> Option<Unwound> {
        let addresses: Vec<u64> = self
            .reads
            .iter()
            .map(|&(offset, _)| end.wrapping_add_signed(offset))
            .collect();
        let mut words = vec![0u64; addresses.len()];
        if memory.read_words(&addresses, &mut words).ok()? != words.len() {
            return None;
        }
        let same = self
            .reads
            .iter()
            .zip(&words)
            .all(|(&(_, want), &got)| match want {
                Word::Plain(value) => got == value,
                Word::InStack(offset) => got == end.wrapping_add_signed(offset),
            });
        same.then(|| Unwound {
            frames: self
                .frames
                .iter()
                .map(|&(frame, entry)| RawFrame {
                    entry_sp: entry.map(|o| end.wrapping_add_signed(o)),
                    ..frame
                })
                .collect(),
            end: self.end.clone(),
        })
    }
}

/// How a process's walks went, for measurements.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WalkStats {
    /// Stacks walked frame by frame.
    pub walked: u64,
    /// Walks that were a kept one, checked against the stack's words.
    pub shared: u64,
    /// Reads of `/proc/PID/maps`.
    pub maps_reads: u64,
}

/// A module's unwind data, shared by every walk while it stays mapped.
type FrameModule = framehop::Module<Vec<u8>>;

/// Identifies one mapping of one file.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct ModuleKey {
    path: PathBuf,
    inode: u64,
    start: u64,
}

/// A process's modules as the unwinder sees them; refreshed from
/// `/proc/PID/maps` when it changes.
pub struct ProcessUnwinder {
    pid: u32,
    memory: ProcessMemory,
    maps_text: String,
    maps: Vec<MapsEntry>,
    /// The `[uprobes]` trampoline page, if the kernel mapped it.
    uprobes: Option<Range<u64>>,
    modules: HashMap<ModuleKey, Option<FrameModule>>,
    unwinder: UnwinderX86_64<Vec<u8>>,
    cache: Box<CacheX86_64>,
    /// When `/proc/PID/maps` was last read.
    refreshed: Option<Instant>,
    /// Changes when the modules (the code mapped) change.
    code_generation: u64,
    /// Walks kept for threads stuck alike, by (instruction pointer, depth
    /// below the stack's top).
    shapes: HashMap<(u64, u64), Shape>,
    stats: WalkStats,
}

impl std::fmt::Debug for ProcessUnwinder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessUnwinder")
            .field("pid", &self.pid)
            .field("modules", &self.modules.len())
            .finish_non_exhaustive()
    }
}

impl ProcessUnwinder {
    /// An unwinder for `pid`; modules are read on the first walk.
    pub fn new(pid: u32) -> Self {
        Self {
            pid,
            memory: ProcessMemory::new(pid),
            maps_text: String::new(),
            maps: Vec::new(),
            uprobes: None,
            modules: HashMap::new(),
            unwinder: UnwinderX86_64::new(),
            cache: Box::new(CacheX86_64::new()),
            refreshed: None,
            code_generation: 0,
            shapes: HashMap::new(),
            stats: WalkStats::default(),
        }
    }

    /// The process's mappings as last read.
    pub fn maps(&self) -> &[MapsEntry] {
        &self.maps
    }

    /// The mapping holding `avma`, as last read.
    pub fn mapping_at(&self, avma: u64) -> Option<&MapsEntry> {
        mapping_at(&self.maps, avma)
    }

    /// Changes each time the code mapped (the modules) changes: what was
    /// symbolized before may mean something else now.
    pub fn code_generation(&self) -> u64 {
        self.code_generation
    }

    /// How the walks went so far.
    pub fn stats(&self) -> WalkStats {
        self.stats
    }

    /// [`Self::refresh`] if the mappings were read longer than `age` ago.
    pub fn refresh_if_older(&mut self, age: Duration) -> std::io::Result<bool> {
        if self.refreshed.is_some_and(|at| at.elapsed() < age) {
            return Ok(false);
        }
        self.refresh()
    }

    /// Makes sure the mappings are recent enough for a walk from `regs`:
    /// read within [`MAPS_MAX_AGE`], or within [`MAPS_SOONEST`] if the
    /// stack or the instruction is in no mapping known (a thread or a
    /// library new since).
    pub fn refresh_for(&mut self, regs: Registers) {
        let known = self.mapping_at(regs.sp).is_some() && self.mapping_at(regs.pc).is_some();
        let age = if known { MAPS_MAX_AGE } else { MAPS_SOONEST };
        let _ = self.refresh_if_older(age);
    }

    /// Rereads `/proc/PID/maps`; rebuilds the module list if it changed.
    /// Returns whether it did.
    pub fn refresh(&mut self) -> std::io::Result<bool> {
        self.refreshed = Some(Instant::now());
        self.stats.maps_reads += 1;
        let text = std::fs::read_to_string(format!("/proc/{}/maps", self.pid))?;
        if text == self.maps_text {
            return Ok(false);
        }
        self.maps = parse_maps(&text);
        self.uprobes = pseudo_mapping(&text, "[uprobes]");
        self.maps_text = text;
        let mut unwinder = UnwinderX86_64::new();
        let mut live = HashMap::new();
        for (key, entries) in file_groups(&self.maps) {
            let module = match self.modules.remove(&key) {
                Some(module) => module,
                None => load_module(self.pid, &key.path, &entries),
            };
            if let Some(m) = &module {
                unwinder.add_module(m.clone());
            }
            live.insert(key, module);
        }
        // The vDSO (clock_gettime and friends) is code without a file: its
        // ELF image is read from the process. A thread stopped inside it
        // is walked like any other.
        if let Some(vdso) = pseudo_mapping(&self.maps_text, "[vdso]") {
            let key = ModuleKey {
                path: PathBuf::from("[vdso]"),
                inode: 0,
                start: vdso.start,
            };
            let module = match self.modules.remove(&key) {
                Some(module) => module,
                None => self.load_vdso(&vdso),
            };
            if let Some(m) = &module {
                unwinder.add_module(m.clone());
            }
            live.insert(key, module);
        }
        // New thread stacks change the maps all the time; only new code
        // makes earlier walks and symbols stale.
        let mut before: Vec<&ModuleKey> = self.modules.keys().collect();
        let mut after: Vec<&ModuleKey> = live.keys().collect();
        before.sort_unstable_by_key(|k| k.start);
        after.sort_unstable_by_key(|k| k.start);
        if before != after {
            self.code_generation += 1;
            self.shapes.clear();
        }
        self.modules = live;
        self.unwinder = unwinder;
        Ok(true)
    }

    /// Walks the stack from `regs`. The thread must not run meanwhile for
    /// the result to be exact (it is blocked, or stopped for the walk); a
    /// running thread gives a best-effort walk. A thread blocked where
    /// another was walked, in the same way, is not walked again (see the
    /// module doc).
    pub fn unwind(&mut self, regs: Registers) -> Unwound {
        let end = self.stack_end(regs.sp);
        // Registers from the kernel (no frame pointer) are all a blocked
        // walk depends on, besides the stack; a stopped thread's `rbp`
        // would be one more input.
        let depth = end.saturating_sub(regs.sp);
        let shape_key = (regs.bp.is_none() && depth > 0).then_some((regs.pc, depth));
        if let Some(key) = shape_key
            && let Some(shape) = self.shapes.get(&key)
            && let Some(unwound) = shape.replay(self.memory, end)
        {
            self.stats.shared += 1;
            return unwound;
        }
        let stack = StackSnapshot::read(self.memory, regs.sp, end);
        let unwound = self.walk(regs, &stack);
        self.stats.walked += 1;
        if let Some(key) = shape_key
            && let Some(shape) = stack.shape(&unwound)
        {
            if self.shapes.len() >= MAX_SHAPES {
                self.shapes.clear();
            }
            self.shapes.insert(key, shape);
        }
        unwound
    }

    /// Walks a copy of a stack taken when the thread had `regs` (a CPU
    /// sample): `bytes` held the memory from `base` up. The thread has
    /// moved on since, so nothing beyond the copy is read; a walk that
    /// needs more ends there ([`StackEnd::Truncated`]).
    pub fn unwind_copy(&mut self, regs: Registers, base: u64, bytes: &[u8]) -> Unwound {
        let stack = StackSnapshot::copied(base, bytes);
        self.walk(regs, &stack)
    }

    /// Whether `avma` is in the kernel's `[uprobes]` page (a uretprobe's
    /// trampoline, or an instruction a uprobe runs out of line).
    pub fn in_uprobes(&self, avma: u64) -> bool {
        self.uprobes.as_ref().is_some_and(|r| r.contains(&avma))
    }

    /// Whether `avma` lies in a mapping as last read.
    pub fn is_mapped(&self, avma: u64) -> bool {
        self.maps.iter().any(|m| m.avma.contains(&avma))
    }

    fn walk(&mut self, regs: Registers, stack: &StackSnapshot<'_>) -> Unwound {
        let mut read = |avma: u64| stack.word(avma).ok_or(());
        let mut frames = vec![RawFrame {
            address: regs.pc,
            is_return: false,
            entry_sp: None,
            scanned: false,
        }];
        let mut uregs = UnwindRegsX86_64::new(regs.pc, regs.sp, regs.bp.unwrap_or(UNKNOWN_BP));
        let mut address = FrameAddress::from_instruction_pointer(regs.pc);
        let end = loop {
            if frames.len() >= MAX_FRAMES {
                break StackEnd::Truncated(format!("deeper than {MAX_FRAMES} frames"));
            }
            let sp_before = uregs.sp();
            let (return_address, scanned) =
                match self
                    .unwinder
                    .unwind_frame(address, &mut uregs, &mut self.cache, &mut read)
                {
                    Ok(Some(ra)) => (ra, false),
                    Ok(None) => break StackEnd::Complete,
                    Err(e) => match self.scan_for_frame_record(stack, sp_before) {
                        Some((cfa, ra, bp)) => {
                            uregs.set_sp(cfa);
                            uregs.set_bp(bp);
                            uregs.set_ip(ra);
                            (ra, true)
                        }
                        None => break StackEnd::Truncated(e.to_string()),
                    },
                };
            // The frame just unwound began at its caller's stack pointer
            // minus the return address.
            if let Some(last) = frames.last_mut() {
                last.entry_sp = uregs.sp().checked_sub(8);
                last.scanned |= scanned;
            }
            if self
                .uprobes
                .as_ref()
                .is_some_and(|r| r.contains(&return_address))
            {
                break StackEnd::UretprobeTrampoline;
            }
            let Some(next) = FrameAddress::from_return_address(return_address) else {
                break StackEnd::Complete;
            };
            frames.push(RawFrame {
                address: return_address,
                is_return: true,
                entry_sp: None,
                scanned: false,
            });
            address = next;
        };
        Unwound { frames, end }
    }

    fn load_vdso(&self, range: &Range<u64>) -> Option<FrameModule> {
        let len = usize::try_from(range.end - range.start).ok()?;
        let mut data = vec![0u8; len];
        self.memory.read(range.start, &mut data).ok()?;
        let entry = MapsEntry {
            avma: range.clone(),
            perms: *b"r-xp",
            file_offset: 0,
            inode: 0,
            path: None,
            deleted: false,
        };
        module_from_elf("[vdso]", &data, &[entry])
    }

    /// The end of the mapping holding `sp` (the stack's top).
    fn stack_end(&self, sp: u64) -> u64 {
        self.mapping_at(sp).map_or(sp, |m| m.avma.end)
    }

    /// Looks above `sp` for a frame record: a saved frame pointer followed
    /// by a return address that follows a call instruction in mapped code.
    /// A record whose saved frame pointer also points up the stack (or is
    /// 0, the outermost) is preferred; failing that, the first plausible
    /// return address is taken (the caller may use `rbp` for data).
    /// Returns (the frame's CFA, the return address, the caller's `rbp`).
    fn scan_for_frame_record(&self, stack: &StackSnapshot<'_>, sp: u64) -> Option<(u64, u64, u64)> {
        let top = stack.end.min(sp.saturating_add(SCAN_BYTES));
        let candidates = (sp.saturating_add(16)..=top).step_by(8).filter_map(|cfa| {
            let ra = stack.word(cfa - 8)?;
            let saved_bp = stack.word(cfa - 16)?;
            self.follows_call(ra).then_some((cfa, ra, saved_bp))
        });
        let mut first = None;
        for (cfa, ra, saved_bp) in candidates {
            if saved_bp == 0 || (saved_bp > cfa && saved_bp < stack.end) {
                return Some((cfa, ra, saved_bp));
            }
            first.get_or_insert((cfa, ra, saved_bp));
        }
        first
    }

    /// Whether `ra` is in executable file-backed code right after a call.
    fn follows_call(&self, ra: u64) -> bool {
        let in_code = self
            .mapping_at(ra)
            .is_some_and(|m| m.executable() && m.path.is_some() && ra >= m.avma.start + 7);
        if !in_code {
            return false;
        }
        let mut before = [0u8; 7];
        if self.memory.read(ra - 7, &mut before).is_err() {
            return false;
        }
        is_call_before(before)
    }
}

/// Whether the 7 bytes before a return address end with a call
/// instruction: `call rel32`, or `call r/m64` (`ff /2`) in its 2- to
/// 7-byte encodings.
pub fn is_call_before(before: [u8; 7]) -> bool {
    if before[2] == 0xe8 {
        return true;
    }
    // `ff /2` with a ModRM byte right after; length 2 (register), 3 (disp8
    // or SIB), 4 (SIB + disp8), 6 (disp32 / RIP-relative), 7 (SIB + disp32).
    [2usize, 3, 4, 6, 7].iter().any(|&len| {
        let at = 7 - len;
        before[at] == 0xff && (before[at + 1] >> 3) & 7 == 2
    })
}

/// The mapping of `maps` (sorted by address, as the kernel lists them)
/// holding `avma`.
pub fn mapping_at(maps: &[MapsEntry], avma: u64) -> Option<&MapsEntry> {
    let after = maps.partition_point(|m| m.avma.start <= avma);
    after
        .checked_sub(1)
        .map(|i| &maps[i])
        .filter(|m| m.avma.contains(&avma))
}

/// The address range of a pseudo mapping such as `[uprobes]` or `[vdso]`.
pub fn pseudo_mapping(maps: &str, name: &str) -> Option<Range<u64>> {
    maps.lines()
        .find(|line| line.trim_end().ends_with(name))
        .and_then(|line| {
            let range = line.split_whitespace().next()?;
            let (start, end) = range.split_once('-')?;
            Some(u64::from_str_radix(start, 16).ok()?..u64::from_str_radix(end, 16).ok()?)
        })
}

/// The executable mappings, grouped by the file they map (each group keyed
/// by the file's first mapping).
fn file_groups(maps: &[MapsEntry]) -> Vec<(ModuleKey, Vec<MapsEntry>)> {
    let mut groups: Vec<(ModuleKey, Vec<MapsEntry>)> = Vec::new();
    for entry in maps {
        let Some(path) = &entry.path else { continue };
        if let Some((_, entries)) = groups.iter_mut().find(|(k, entries)| {
            &k.path == path && k.inode == entry.inode && contiguous(entries, entry)
        }) {
            entries.push(entry.clone());
        } else {
            groups.push((
                ModuleKey {
                    path: path.clone(),
                    inode: entry.inode,
                    start: entry.avma.start,
                },
                vec![entry.clone()],
            ));
        }
    }
    groups.retain(|(_, entries)| entries.iter().any(MapsEntry::executable));
    groups
}

/// A file mapped twice (rare, but `dlopen` of a copy does it) forms two
/// modules: a mapping belongs to a group if it follows the group's last one.
fn contiguous(entries: &[MapsEntry], next: &MapsEntry) -> bool {
    entries.last().is_some_and(|last| {
        next.avma.start >= last.avma.start && next.file_offset >= last.file_offset
    })
}

/// Reads one module's unwind sections and places it where the process
/// mapped it. `None` if the file cannot be read or has no unwind data.
fn load_module(pid: u32, path: &Path, entries: &[MapsEntry]) -> Option<FrameModule> {
    let first = entries.first()?;
    // map_files names the mapped inode even if the path was replaced or is
    // in another mount namespace.
    let data = std::fs::read(format!(
        "/proc/{pid}/map_files/{:x}-{:x}",
        first.avma.start, first.avma.end
    ))
    .or_else(|_| std::fs::read(crate::target::path_in_process(pid, path)))
    .ok()?;
    module_from_elf(&path.display().to_string(), &data, entries)
}

/// A module from its ELF image and the mappings of it (`file_offset`s as
/// mapped), placed where the executable one is.
fn module_from_elf(name: &str, data: &[u8], entries: &[MapsEntry]) -> Option<FrameModule> {
    let file = object::File::parse(data).ok()?;
    let exec = entries.iter().find(|e| e.executable())?;
    // The load bias: where the executable mapping's file offset sits in
    // the process minus where the ELF says it goes.
    let exec_svma = file.segments().find_map(|s| {
        let (offset, size) = s.file_range();
        // Sizes and addresses come from the file: never trust them to add up.
        (exec.file_offset >= offset && exec.file_offset < offset.saturating_add(size))
            .then(|| s.address().wrapping_add(exec.file_offset - offset))
    })?;
    let bias = exec.avma.start.wrapping_sub(exec_svma);
    let section = |name: &str| -> (Option<Range<u64>>, Option<Vec<u8>>) {
        let Some(s) = file.section_by_name(name) else {
            return (None, None);
        };
        let uncompressed = s
            .compressed_data()
            .is_ok_and(|c| c.format == object::CompressionFormat::None);
        let data = if uncompressed {
            s.data().ok().map(<[u8]>::to_vec)
        } else {
            None
        };
        (
            Some(s.address()..s.address().saturating_add(s.size())),
            data,
        )
    };
    let (text_svma, text) = section(".text");
    let (eh_frame_svma, eh_frame) = section(".eh_frame");
    let (eh_frame_hdr_svma, eh_frame_hdr) = section(".eh_frame_hdr");
    let (got_svma, _) = section(".got");
    let (_, debug_frame) = section(".debug_frame");
    if eh_frame.is_none() && debug_frame.is_none() {
        return None;
    }
    let code = entries.iter().filter(|e| e.executable());
    let start = code.clone().map(|e| e.avma.start).min()?;
    let end = code.map(|e| e.avma.end).max()?;
    let exec_range = start..end;
    let info = ExplicitModuleSectionInfo {
        base_svma: 0,
        text_svma,
        text,
        got_svma,
        eh_frame_svma,
        eh_frame,
        eh_frame_hdr_svma,
        eh_frame_hdr,
        debug_frame,
        ..Default::default()
    };
    Some(framehop::Module::new(
        name.to_owned(),
        exec_range,
        bias,
        info,
    ))
}

/// A copy of the stack from the stack pointer up, with word reads beyond it
/// (from the live process, unless the copy is all there is).
struct StackSnapshot<'a> {
    memory: Option<ProcessMemory>,
    base: u64,
    bytes: std::borrow::Cow<'a, [u8]>,
    /// The stack's top: no frame lies above.
    end: u64,
    /// Every word read, in order (`None`: unreadable), for a [`Shape`].
    log: RefCell<Vec<(u64, Option<u64>)>>,
}

impl<'a> StackSnapshot<'a> {
    fn read(memory: ProcessMemory, sp: u64, end: u64) -> Self {
        let len = usize::try_from(end.saturating_sub(sp))
            .unwrap_or(usize::MAX)
            .min(STACK_SNAPSHOT);
        let mut bytes = vec![0u8; len];
        let got = memory.read_some(sp, &mut bytes).unwrap_or(0);
        bytes.truncate(got);
        Self {
            memory: Some(memory),
            base: sp,
            bytes: bytes.into(),
            end: end.max(sp),
            log: RefCell::new(Vec::new()),
        }
    }

    /// A copy taken earlier: nothing outside it can be read.
    fn copied(base: u64, bytes: &'a [u8]) -> Self {
        Self {
            memory: None,
            base,
            bytes: bytes.into(),
            end: base.saturating_add(bytes.len() as u64),
            log: RefCell::new(Vec::new()),
        }
    }

    fn word(&self, avma: u64) -> Option<u64> {
        let word = self.read_word(avma);
        self.log.borrow_mut().push((avma, word));
        word
    }

    fn read_word(&self, avma: u64) -> Option<u64> {
        if let Some(at) = avma.checked_sub(self.base)
            && let Ok(at) = usize::try_from(at)
            && let Some(word) = self.bytes.get(at..at.checked_add(8)?)
        {
            return Some(u64::from_le_bytes(word.try_into().ok()?));
        }
        // Below the stack pointer is dead; above the copy, read directly.
        if avma < self.base || avma >= self.end {
            return None;
        }
        self.memory?.u64(avma)
    }

    /// The walk `unwound` made of this stack, kept for threads stuck
    /// alike; `None` if it read a word it could not (a walk that depends on
    /// a failed read is not worth checking against) or too many.
    fn shape(&self, unwound: &Unwound) -> Option<Shape> {
        let log = self.log.borrow();
        let mut reads: Vec<(i64, Word)> = Vec::with_capacity(log.len());
        let offset = |avma: u64| avma.wrapping_sub(self.end) as i64;
        for &(avma, value) in log.iter() {
            let value = value?;
            let word = if (self.base..self.end).contains(&value) {
                Word::InStack(offset(value))
            } else {
                Word::Plain(value)
            };
            let read = (offset(avma), word);
            if !reads.contains(&read) {
                reads.push(read);
            }
        }
        if reads.len() > SHAPE_WORDS {
            return None;
        }
        Some(Shape {
            reads,
            frames: unwound
                .frames
                .iter()
                .map(|f| (*f, f.entry_sp.map(offset)))
                .collect(),
            end: unwound.end.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn call_instructions_before_a_return_address() {
        // call rel32
        assert!(is_call_before([0x90, 0x90, 0xe8, 1, 2, 3, 4]));
        // call *%rax (ff d0)
        assert!(is_call_before([0, 0, 0, 0, 0, 0xff, 0xd0]));
        // call *0x8(%rax) (ff 50 08)
        assert!(is_call_before([0, 0, 0, 0, 0xff, 0x50, 0x08]));
        // call *0x1234(%rip) (ff 15 disp32)
        assert!(is_call_before([0, 0xff, 0x15, 0x34, 0x12, 0, 0]));
        // jmp *%rax (ff e0) is not a call; nor are plain bytes.
        assert!(!is_call_before([0, 0, 0, 0, 0, 0xff, 0xe0]));
        assert!(!is_call_before([0x48, 0x89, 0xe5, 0x5d, 0xc3, 0x90, 0x90]));
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_before_a_return_address_are_judged(before in proptest::array::uniform7(proptest::num::u8::ANY)) {
            let _ = is_call_before(before);
        }

        #[test]
        fn any_maps_text_is_searched(text in ".{0,300}") {
            let _ = pseudo_mapping(&text, "[uprobes]");
        }
    }

    #[test]
    fn pseudo_mappings_are_found_by_name() {
        let maps = "\
5581c7a02000-5581c7a07000 r-xp 00002000 08:01 1311234  /usr/bin/app
7fffd1e00000-7fffd1e01000 --xp 00000000 00:00 0        [uprobes]
7ffd4e7d8000-7ffd4e7da000 r-xp 00000000 00:00 0        [vdso]
";
        assert_eq!(
            pseudo_mapping(maps, "[uprobes]"),
            Some(0x7fff_d1e0_0000..0x7fff_d1e0_1000)
        );
        assert_eq!(
            pseudo_mapping(maps, "[vdso]"),
            Some(0x7ffd_4e7d_8000..0x7ffd_4e7d_a000)
        );
        assert_eq!(pseudo_mapping(maps, "[vsyscall]"), None);
    }

    #[test]
    fn mappings_group_by_file() {
        let maps = parse_maps(
            "\
5581c7a00000-5581c7a02000 r--p 00000000 08:01 11  /usr/bin/app
5581c7a02000-5581c7a07000 r-xp 00002000 08:01 11  /usr/bin/app
5581c8b3e000-5581c8b5f000 rw-p 00000000 00:00 0   [heap]
7f3a1d028000-7f3a1d04e000 r--p 00000000 08:01 22  /usr/lib/libc.so.6
7f3a1d04e000-7f3a1d1a3000 r-xp 00026000 08:01 22  /usr/lib/libc.so.6
7f3a1e000000-7f3a1e001000 r--p 00000000 08:01 33  /usr/share/locale.bin
",
        );
        let groups = file_groups(&maps);
        let names: Vec<(&str, usize)> = groups
            .iter()
            .map(|(k, e)| (k.path.to_str().unwrap(), e.len()))
            .collect();
        assert_eq!(names, [("/usr/bin/app", 2), ("/usr/lib/libc.so.6", 2)]);
        assert_eq!(groups[1].0.start, 0x7f3a_1d02_8000);
    }
}
