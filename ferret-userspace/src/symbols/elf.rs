//! One ELF file: its functions, their file offsets, its exits, its
//! dependencies and whether exceptions may unwind through it.
//!
//! The only place `svma` (address in the ELF) becomes `file_offset` (what a
//! uprobe is attached at) is [`LoadSegment`]: through the `PT_LOAD` segment
//! that maps it, because section headers may be stripped or lie, while the
//! program headers are what the kernel actually maps.
//!
//! A binary without a `.symtab` takes its function symbols from its
//! separate debug file (see [`super::debuginfo`]), looked up the first time
//! they are needed: the addresses there are the binary's own, while code
//! bytes, segments and file offsets still come from the binary, since the
//! debug file has no code (its `.text` is `NOBITS`).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use object::Endianness;
use object::elf;
use object::read::elf::{ElfFile64, FileHeader, ProgramHeader, SectionHeader, Sym};

use super::SymbolError;
use super::debuginfo::{self, DebugFile, DebugIds, DebugSearch, Missing, Seen};
use super::demangle::{demangle, demangle_without_params};
use super::exits::{Exits, scan_exits};
use super::go::{self, GoBinary};

type Elf<'data> = ElfFile64<'data, Endianness, &'data [u8]>;

/// Offsets in `e_ident`, read before the header can be parsed as 64-bit.
const EI_CLASS: usize = 4;
const EI_DATA: usize = 5;

/// A probe-able function.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Function {
    /// Demangled: Rust hash suffix removed (legacy `::h0123…` and v0), C++
    /// demangled with its parameter list.
    pub name: String,
    /// The symbol as written in the ELF.
    pub raw_name: String,
    /// Path of the ELF file the function lives in.
    pub module: Arc<Path>,
    /// Address of the first instruction in the ELF.
    pub svma: u64,
    /// Size in bytes, from the symbol table.
    pub size: u64,
    /// Offset of the first instruction in the file: where the entry uprobe goes.
    pub file_offset: u64,
}

/// Why a function symbol cannot be probed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SkipReason {
    /// The symbol table gives it no size, so its exits cannot be found.
    NoSize,
    /// Its address is outside every executable, file-backed `PT_LOAD` segment.
    NotExecutable,
    /// It is an `STT_GNU_IFUNC` resolver, run once by the loader; the
    /// implementation it picks has its own name.
    Ifunc,
    /// It is only imported here; it lives in a shared library.
    Undefined,
    /// It is a part (`.cold`, or BOLT's `.warm`) that the compiler or a
    /// post-link optimizer split out of another function; it is entered by a
    /// jump, not a call, and is probed as part of that function.
    Fragment,
    /// Go: written in assembly, so r14 need not hold its goroutine.
    GoAssembly,
    /// Go: switches stacks, or runs on the system stack or without a
    /// goroutine (stack growth, the scheduler, signal handling).
    GoNoGoroutine,
    /// Go: an ABI wrapper (`.abi0`) between assembly and Go code; the
    /// function it wraps has a name of its own.
    GoAbiWrapper,
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SkipReason::NoSize => "no size in the symbol table",
            SkipReason::NotExecutable => "not in an executable segment",
            SkipReason::Ifunc => "ifunc resolver (probe the implementation it selects)",
            SkipReason::Undefined => "imported, not defined here (use LIB:NAME)",
            SkipReason::Fragment => "split-off part of another function (probed with it)",
            SkipReason::GoAssembly => "Go assembly (no goroutine register to read)",
            SkipReason::GoNoGoroutine => "Go runtime: switches stacks or runs without a goroutine",
            SkipReason::GoAbiWrapper => "Go ABI wrapper (trace the function it wraps)",
        })
    }
}

/// A function symbol that matched but cannot be probed.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Skipped {
    /// Demangled name.
    pub name: String,
    /// Path of the ELF file whose symbol table lists it.
    pub module: Arc<Path>,
    /// Why it is skipped.
    pub reason: SkipReason,
}

/// Whether an exception, a panic or a thread cancellation may unwind through
/// this module's frames. A uretprobe on a frame that is unwound through makes
/// the target call `std::terminate`, so only a module that cannot unwind may
/// use them.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum UnwindPolicy {
    /// No unwinding machinery is referenced.
    CannotUnwind,
    /// Unwinding is possible; `reason` says what gave it away, for humans.
    MayUnwind {
        /// E.g. `C++ exception tables (.gcc_except_table)`.
        reason: String,
    },
}

/// One `PT_LOAD` program header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct LoadSegment {
    svma: u64,
    file_offset: u64,
    file_size: u64,
    executable: bool,
}

impl LoadSegment {
    /// The file offset of `[svma, svma + size)` if this segment maps all of it
    /// from the file.
    fn file_offset_of(&self, svma: u64, size: u64) -> Option<u64> {
        let start = svma.checked_sub(self.svma)?;
        let end = start.checked_add(size)?;
        if start < self.file_size && end <= self.file_size {
            self.file_offset.checked_add(start)
        } else {
            None
        }
    }
}

/// The file's bytes, at an address `object` can read ELF structures from in
/// place: it refuses misaligned headers unless built with its `unaligned`
/// feature, which this crate does not control. A file is mapped (page
/// aligned, and only the pages read are loaded: a 200 MB binary costs
/// what its symbol table and probed functions take); bytes handed over in
/// memory are copied only if misaligned.
enum Bytes {
    Mapped(memmap2::Mmap),
    Aligned(Vec<u8>),
    Copied { words: Vec<u64>, len: usize },
}

impl Bytes {
    fn new(data: Vec<u8>) -> Bytes {
        if data.as_ptr().align_offset(std::mem::align_of::<u64>()) == 0 {
            Bytes::Aligned(data)
        } else {
            Bytes::copied(&data)
        }
    }

    fn copied(data: &[u8]) -> Bytes {
        let mut words = vec![0u64; data.len().div_ceil(8)];
        for (word, chunk) in words.iter_mut().zip(data.chunks(8)) {
            let mut bytes = [0u8; 8];
            bytes[..chunk.len()].copy_from_slice(chunk);
            *word = u64::from_ne_bytes(bytes);
        }
        Bytes::Copied {
            words,
            len: data.len(),
        }
    }

    fn as_slice(&self) -> &[u8] {
        match self {
            Bytes::Mapped(map) => map,
            Bytes::Aligned(data) => data,
            Bytes::Copied { words, len } => &object::bytes_of_slice(words)[..*len],
        }
    }
}

/// What a pattern can be matched against, for one function.
#[derive(Debug)]
pub(super) struct Entry {
    pub function: Function,
    /// Every name the function answers to: its own, raw and demangled, its
    /// aliases', and C++ names without parameter lists.
    pub names: Vec<String>,
    /// The raw names of the function and its aliases, as in the ELF.
    pub raw_names: Vec<String>,
}

/// The symbol tables digested once per module, on first use.
#[derive(Debug, Default)]
pub(super) struct Catalog {
    /// Sorted by `svma`, one per address.
    pub entries: Vec<Entry>,
    pub skipped: Vec<Skipped>,
    /// Raw name of a function -> the `svma` ranges of its split-off parts.
    fragments: HashMap<String, Vec<Range<u64>>>,
    /// Go binaries: the entry of every function the Go toolchain compiled
    /// (listed in `.gopclntab`), sorted; C code linked in by cgo is not.
    go_functions: Vec<u64>,
    /// Go binaries: the runtime's scheduler functions that are never traced
    /// (they run on `g0`, see [`go::skip_reason`]) but whose entries the
    /// per-goroutine accounting probes ([`go::HAND_OFFS`]).
    go_hand_offs: Vec<Function>,
}

/// An ELF executable or shared library, mapped.
pub struct Module {
    /// Path the module was read from; shared by its [`Function`]s.
    pub path: Arc<Path>,
    bytes: Bytes,
    summary: Summary,
    /// Where the target sees the file, for finding its debug file.
    seen: Seen,
    search: Arc<DebugSearch>,
    debug: OnceLock<Result<DebugFile, Box<Missing>>>,
    catalog: OnceLock<Catalog>,
}

impl fmt::Debug for Module {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Module")
            .field("path", &self.path)
            .field("len", &self.bytes.as_slice().len())
            .field("seen", &self.seen)
            .field("summary", &self.summary)
            .finish_non_exhaustive()
    }
}

/// What [`Module::from_bytes`] extracts eagerly, so that the accessors that
/// cannot fail need not re-parse.
#[derive(Debug)]
struct Summary {
    segments: Vec<LoadSegment>,
    /// `e_entry`: where the kernel starts the program (0 for most
    /// libraries).
    entry_svma: u64,
    has_symtab: bool,
    has_dwarf: bool,
    ids: DebugIds,
    needed: Vec<String>,
    rpath: Vec<String>,
    runpath: Vec<String>,
    has_except_table: bool,
    referenced: HashSet<(&'static str, &'static str)>,
    unwind: UnwindPolicy,
    go: Option<GoBinary>,
}

impl Module {
    /// Maps and validates an ELF file; its debug file, if it needs one, is
    /// looked up with the installed [`DebugSearch`], and a path under
    /// `/proc/PID/root` is looked up in that root first.
    pub fn open(path: &Path) -> Result<Module, SymbolError> {
        Module::open_seen(
            path,
            debuginfo::seen_from_real(path),
            DebugSearch::current(),
        )
    }

    /// Maps and validates the ELF file at `real`, which its process sees as
    /// `seen` (the stall symbolizer reads `/proc/PID/map_files/…`), finding
    /// its debug file with `search`.
    pub fn open_seen(
        real: &Path,
        seen: Seen,
        search: Arc<DebugSearch>,
    ) -> Result<Module, SymbolError> {
        let io = |source| SymbolError::Io {
            path: real.to_owned(),
            source,
        };
        let empty = std::fs::metadata(real).map_err(io)?.len() == 0;
        // An empty file cannot be mapped; it is not ELF either way.
        let bytes = if empty {
            Bytes::Aligned(Vec::new())
        } else {
            Bytes::Mapped(debuginfo::map(real).map_err(io)?)
        };
        Module::from_parts(Arc::from(real), bytes, seen, search)
    }

    /// Validates `data` as an x86-64 executable or shared library read from
    /// `path`. Never panics on arbitrary bytes. Bytes in memory have no
    /// debug file looked up for them.
    pub fn from_bytes(path: Arc<Path>, data: Vec<u8>) -> Result<Module, SymbolError> {
        let seen = Seen {
            roots: Vec::new(),
            path: path.to_path_buf(),
            canonical_dir: None,
        };
        let search = Arc::new(DebugSearch {
            dirs: Vec::new(),
            debuginfod: None,
        });
        Module::from_parts(path, Bytes::new(data), seen, search)
    }

    fn from_parts(
        path: Arc<Path>,
        bytes: Bytes,
        seen: Seen,
        search: Arc<DebugSearch>,
    ) -> Result<Module, SymbolError> {
        let data = bytes.as_slice();
        if !data.starts_with(&elf::ELFMAG) {
            return Err(SymbolError::NotElf {
                path: path.to_path_buf(),
            });
        }
        if data.get(EI_CLASS) != Some(&elf::ELFCLASS64) {
            return Err(SymbolError::UnsupportedArch {
                path: path.to_path_buf(),
                arch: describe_machine(data),
            });
        }
        let summary = summarize(&path, data)?;
        Ok(Module {
            path,
            bytes,
            summary,
            seen,
            search,
            debug: OnceLock::new(),
            catalog: OnceLock::new(),
        })
    }

    /// The module's path as its process sees it (`/usr/bin/app`, not
    /// `/proc/PID/root/usr/bin/app`), for messages.
    pub fn shown_path(&self) -> &Path {
        &self.seen.path
    }

    /// The build id, in hex.
    pub fn build_id(&self) -> Option<String> {
        self.summary.ids.build_id.as_deref().map(debuginfo::hex)
    }

    /// True if the file carries DWARF line and function information.
    pub fn has_dwarf(&self) -> bool {
        self.summary.has_dwarf
    }

    /// The separate debug file (looked up on first use, then kept), or
    /// why there is none. Looked up whether or not the module needs one.
    pub fn debug_lookup(&self) -> Result<&DebugFile, &Missing> {
        self.debug
            .get_or_init(|| {
                debuginfo::find(
                    &self.summary.ids,
                    &self.seen,
                    &self.search,
                    &self.seen.path.display().to_string(),
                )
            })
            .as_ref()
            .map_err(AsRef::as_ref)
    }

    /// The debug file the function symbols come from: `Some` for a
    /// module without `.symtab` whose debug file was found.
    pub fn symbols_debug_file(&self) -> Option<&DebugFile> {
        if self.summary.has_symtab {
            return None;
        }
        self.debug_lookup().ok()
    }

    /// `Some` when only the exported (`.dynsym`) functions are known: no
    /// `.symtab` and no debug file; says what was searched.
    pub fn missing_symbols(&self) -> Option<&Missing> {
        // A Go binary's runtime names every function in `.gopclntab`.
        if self.summary.has_symtab || self.summary.go.is_some() {
            return None;
        }
        self.debug_lookup().err()
    }

    /// The one-line error for a module whose functions were wanted but
    /// that has no symbols anywhere.
    pub fn stripped_error(&self) -> Option<SymbolError> {
        self.missing_symbols().map(|missing| SymbolError::Stripped {
            module: self.seen.path.display().to_string(),
            missing: Box::new(missing.clone()),
        })
    }

    /// All defined function symbols (`.symtab` merged with `.dynsym`), one
    /// per address, sorted by `svma`; and the function symbols that cannot be
    /// probed, with the reason.
    ///
    /// Of several names for one address, the one kept is global rather than
    /// weak rather than local, then does not start with `_`, then is the
    /// shortest: `malloc` over `__libc_malloc`. [`super::select`] still
    /// matches the other names.
    pub fn functions(&self) -> Result<(Vec<Function>, Vec<Skipped>), SymbolError> {
        let catalog = self.catalog()?;
        Ok((
            catalog.entries.iter().map(|e| e.function.clone()).collect(),
            catalog.skipped.clone(),
        ))
    }

    /// The function whose body contains `svma`, for symbolizing addresses.
    pub fn function_containing(&self, svma: u64) -> Result<Option<Function>, SymbolError> {
        let entries = &self.catalog()?.entries;
        let after = entries.partition_point(|e| e.function.svma <= svma);
        Ok(after
            .checked_sub(1)
            .map(|i| &entries[i].function)
            .filter(|f| svma < f.svma.saturating_add(f.size))
            .cloned())
    }

    /// True if the file has no `.symtab`: unless its debug file is found
    /// (see [`Module::missing_symbols`]), only exported (`.dynsym`)
    /// functions are visible.
    pub fn is_stripped(&self) -> bool {
        !self.summary.has_symtab
    }

    /// Whether `f` is where the kernel starts the program (`e_entry`,
    /// `_start`): entered with no return address on the stack.
    pub fn is_entry_point(&self, f: &Function) -> bool {
        self.summary.entry_svma != 0 && f.svma == self.summary.entry_svma
    }

    /// File offsets of every instruction `f` leaves through; see [`Module::exits`].
    pub fn exit_points(&self, f: &Function) -> Result<Vec<u64>, SymbolError> {
        Ok(self
            .exits(f)?
            .points
            .iter()
            .map(|p| p.file_offset)
            .collect())
    }

    /// File offset of the entry probe of `f`: its first instruction, or
    /// the first later one the kernel accepts (see [`super::entry_probe_offset`]).
    pub fn entry_probe(&self, f: &Function) -> Result<u64, super::EntryRefusal> {
        let (code, file_offset) = self
            .code(f.svma, f.size)
            .ok_or(super::EntryRefusal::Undecodable)?;
        if self.is_go_function(f)
            && let Some(after) = go::entry_after_stack_check(code, f.svma)
            && usize::try_from(after)
                .ok()
                .and_then(|at| code.get(at..))
                .is_some_and(super::kernel_accepts)
        {
            return Ok(file_offset + after);
        }
        Ok(file_offset + super::entry_probe_offset(code, f.svma)?)
    }

    /// Go binaries: the scheduler hand-off function `name` (one of
    /// [`go::HAND_OFFS`]), if the binary has it.
    pub fn go_hand_off(&self, name: &str) -> Option<Function> {
        let catalog = self.catalog().ok()?;
        catalog
            .go_hand_offs
            .iter()
            .find(|f| f.name == name)
            .cloned()
    }

    /// The Go toolchain built this file (see [`super::go`]).
    pub fn go(&self) -> Option<&GoBinary> {
        self.summary.go.as_ref()
    }

    /// Go binaries: whether `f` is Go code (compiled by the Go toolchain,
    /// so r14 holds its goroutine), not C linked in by cgo.
    pub fn is_go_function(&self, f: &Function) -> bool {
        self.summary.go.is_some()
            && self
                .catalog()
                .is_ok_and(|c| c.go_functions.binary_search(&f.svma).is_ok())
    }

    /// Go binaries: where in `runtime.g` the goroutine's id (and status and
    /// wait reason) are, from DWARF or else the release's known layout.
    pub fn go_layout(&self) -> Option<go::GLayout> {
        let release = self.summary.go.as_ref()?.release();
        self.parse()
            .ok()
            .and_then(|elf| go::GLayout::from_dwarf(&elf))
            .or_else(|| go::GLayout::for_version(release?))
    }

    /// Go binaries: the address in the ELF of a data symbol of the runtime
    /// (`runtime.allgs`), from `.symtab`.
    pub fn go_data_symbol(&self, name: &str) -> Option<u64> {
        self.summary.go.as_ref()?;
        go::data_symbol(&self.parse().ok()?, name).map(|(svma, _)| svma)
    }

    /// Go binaries: the runtime's wait reasons by number (see
    /// [`go::wait_reasons`]).
    pub fn go_wait_reasons(&self) -> Option<Vec<String>> {
        self.summary.go.as_ref()?;
        go::wait_reasons(&self.parse().ok()?)
    }

    /// Whether the kernel accepts a uprobe at file offset `file_offset`.
    pub fn accepts_probe_at(&self, file_offset: u64) -> bool {
        usize::try_from(file_offset)
            .ok()
            .and_then(|start| self.bytes.as_slice().get(start..))
            .is_some_and(super::kernel_accepts)
    }

    /// Whether `f` calls itself directly (see [`super::calls_itself`]).
    pub fn calls_itself(&self, f: &Function) -> bool {
        self.code(f.svma, f.size)
            .is_some_and(|(code, _)| super::calls_itself(code, f.svma))
    }

    /// its exits: every `ret`, every jump or conditional jump out of it (a
    /// tail call), and every memory-indirect jump without an index register
    /// (a tail call through the GOT or a vtable). Jumps through a register
    /// are `switch` jump tables and are not exits; see [`Exits`].
    pub fn exits(&self, f: &Function) -> Result<Exits, SymbolError> {
        let no_code = || SymbolError::NoCode {
            path: self.path.to_path_buf(),
            name: f.name.clone(),
            svma: f.svma,
        };
        if *f.module != *self.path {
            return Err(no_code());
        }
        let (code, file_offset) = self.code(f.svma, f.size).ok_or_else(no_code)?;
        if file_offset != f.file_offset {
            return Err(no_code());
        }
        let parts = self.fragments_of(f)?;
        let inside: Vec<Range<u64>> = std::iter::once(f.svma..f.svma.saturating_add(f.size))
            .chain(parts.iter().cloned())
            .collect();

        // A jump to a function's first instruction is a tail call to itself,
        // except in Go, which makes none: there it restarts the function
        // after its stack grew, and the entry probe sits after the stack
        // check (see `go::entry_after_stack_check`).
        let entry = if self.is_go_function(f) {
            u64::MAX
        } else {
            f.svma
        };
        let mut exits = scan_exits(code, f.svma, file_offset, &inside, entry);
        for part in &parts {
            let Some((code, file_offset)) = self.code(part.start, part.end - part.start) else {
                continue;
            };
            let more = scan_exits(code, part.start, file_offset, &inside, entry);
            exits.points.extend(more.points);
            exits.indirect_jumps.extend(more.indirect_jumps);
            exits.undecodable_at = exits.undecodable_at.or(more.undecodable_at);
        }
        exits.points.sort_by_key(|p| p.svma);
        exits.indirect_jumps.sort_unstable();
        Ok(exits)
    }

    /// The split-off parts of `f`, found under any of its aliases' names:
    /// gcc names `foo.cold` after whichever alias it compiled.
    fn fragments_of(&self, f: &Function) -> Result<Vec<Range<u64>>, SymbolError> {
        let catalog = self.catalog()?;
        let at = catalog
            .entries
            .partition_point(|e| e.function.svma < f.svma);
        let raw_names = catalog
            .entries
            .get(at)
            .filter(|e| e.function.svma == f.svma)
            .map_or(&[][..], |e| e.raw_names.as_slice());
        let mut parts: Vec<Range<u64>> = std::iter::once(&f.raw_name)
            .chain(raw_names)
            .filter_map(|raw| catalog.fragments.get(raw))
            .flatten()
            .cloned()
            .collect();
        parts.sort_by_key(|r| (r.start, r.end));
        parts.dedup();
        Ok(parts)
    }

    /// Whether exceptions may unwind through this module's frames. A
    /// stripped module's personality routines are named in its debug
    /// file's `.symtab` only.
    pub fn unwind_policy(&self) -> UnwindPolicy {
        let Some(debug) = self.symbols_debug_file() else {
            return self.summary.unwind.clone();
        };
        let Ok(elf) = Elf::parse(debug.data()) else {
            return self.summary.unwind.clone();
        };
        let mut referenced = self.summary.referenced.clone();
        referenced.extend(unwinders_named(&elf, &[elf.elf_symbol_table()]));
        unwind_policy(
            &file_name_of(&self.path),
            self.summary.has_except_table,
            &referenced,
        )
    }

    /// The `DT_NEEDED` entries: sonames of the libraries this module links.
    pub fn needed(&self) -> Vec<String> {
        self.summary.needed.clone()
    }

    /// `DT_RPATH` and `DT_RUNPATH` directories, `$ORIGIN` expanded to the
    /// directory holding this file (after resolving symlinks, as ld.so does
    /// for the main program).
    pub fn run_paths(&self) -> (Vec<String>, Vec<String>) {
        let origin = std::fs::canonicalize(&self.path)
            .ok()
            .and_then(|p| p.parent().map(Path::to_path_buf))
            .or_else(|| self.path.parent().map(Path::to_path_buf))
            .unwrap_or_else(|| PathBuf::from("."));
        let origin = origin.to_string_lossy();
        let expand = |dirs: &[String]| {
            dirs.iter()
                .map(|d| d.replace("${ORIGIN}", &origin).replace("$ORIGIN", &origin))
                .collect()
        };
        (expand(&self.summary.rpath), expand(&self.summary.runpath))
    }

    /// True if the module has a `DT_RUNPATH`, which turns off its `DT_RPATH`.
    pub(super) fn has_runpath(&self) -> bool {
        !self.summary.runpath.is_empty()
    }

    /// The file offset an `svma` is loaded from, through the `PT_LOAD`
    /// segment that maps it.
    pub fn file_offset(&self, svma: u64) -> Option<u64> {
        self.summary
            .segments
            .iter()
            .find_map(|s| s.file_offset_of(svma, 0))
    }

    /// The `svma` a file offset is loaded at: the inverse of
    /// [`Module::file_offset`], for turning a sampled `avma` (via
    /// `/proc/PID/maps`) back into a symbol.
    pub fn svma(&self, file_offset: u64) -> Option<u64> {
        self.summary.segments.iter().find_map(|s| {
            let within = file_offset.checked_sub(s.file_offset)?;
            if within < s.file_size {
                s.svma.checked_add(within)
            } else {
                None
            }
        })
    }

    /// The file offset of `[svma, svma + size)` if an executable segment
    /// maps all of it from the file.
    fn code_offset(&self, svma: u64, size: u64) -> Option<u64> {
        self.summary
            .segments
            .iter()
            .filter(|s| s.executable)
            .find_map(|s| s.file_offset_of(svma, size))
    }

    /// The bytes of `[svma, svma + size)` and their file offset, if an
    /// executable segment maps them from the file.
    fn code(&self, svma: u64, size: u64) -> Option<(&[u8], u64)> {
        let file_offset = self.code_offset(svma, size)?;
        let start = usize::try_from(file_offset).ok()?;
        let end = start.checked_add(usize::try_from(size).ok()?)?;
        Some((self.bytes.as_slice().get(start..end)?, file_offset))
    }

    pub(super) fn catalog(&self) -> Result<&Catalog, SymbolError> {
        if let Some(catalog) = self.catalog.get() {
            return Ok(catalog);
        }
        let catalog = self.build_catalog()?;
        Ok(self.catalog.get_or_init(|| catalog))
    }

    fn parse(&self) -> Result<Elf<'_>, SymbolError> {
        Elf::parse(self.bytes.as_slice()).map_err(|e| malformed(&self.path, &e))
    }

    fn build_catalog(&self) -> Result<Catalog, SymbolError> {
        let elf = self.parse()?;
        let endian = elf.endian();
        let sections = elf.elf_section_table();
        let debug_elf = self
            .symbols_debug_file()
            .map(|debug| Elf::parse(debug.data()).map_err(|e| malformed(&debug.path, &e)))
            .transpose()?;
        // The debug file's `.symtab` stands in for the missing one.
        let symtab = debug_elf
            .as_ref()
            .map_or((elf.elf_symbol_table(), false), |d| {
                (d.elf_symbol_table(), true)
            });

        let mut by_svma: BTreeMap<u64, Vec<Candidate>> = BTreeMap::new();
        let mut unsized_: BTreeMap<String, u64> = BTreeMap::new();
        let mut skipped: BTreeSet<(String, SkipReason)> = BTreeSet::new();
        let mut imported: HashSet<String> = HashSet::new();
        let mut fragments: HashMap<String, Vec<Range<u64>>> = HashMap::new();
        // Go: the runtime's own function table, for source files (assembly
        // is skipped) and for names when `.symtab` was stripped.
        let go_table: Vec<go::GoFunc> = match self.summary.go.as_ref().and(go::functions(&elf)) {
            Some(Ok(table)) => table,
            Some(Err(e)) => {
                eprintln!("ferret: warning: {}: {e}", self.path.display());
                Vec::new()
            }
            None => Vec::new(),
        };
        let go_file = |svma: u64| -> (bool, Option<&str>) {
            let at = go_table.binary_search_by_key(&svma, |f| f.svma);
            at.map_or((false, None), |i| (true, go_table[i].file.as_deref()))
        };

        for (table, from_debug_file) in [symtab, (elf.elf_dynamic_symbol_table(), false)] {
            for (index, sym) in table.enumerate() {
                let st_type = sym.st_type();
                if st_type != elf::STT_FUNC && st_type != elf::STT_GNU_IFUNC {
                    continue;
                }
                // One unreadable name should not hide every other function.
                let Ok(raw) = table.symbol_name(endian, sym) else {
                    continue;
                };
                if raw.is_empty() {
                    continue;
                }
                let raw = String::from_utf8_lossy(raw).into_owned();
                if sym.st_shndx(endian) == elf::SHN_UNDEF {
                    imported.insert(unversioned(&raw).to_owned());
                    continue;
                }
                if st_type == elf::STT_GNU_IFUNC {
                    skipped.insert((raw, SkipReason::Ifunc));
                    continue;
                }
                let svma = sym.st_value(endian);
                let size = sym.st_size(endian);
                // The debug file's sections are all NOBITS: ask the
                // binary's, by address, instead.
                let in_nobits = if from_debug_file {
                    nobits_at(&elf, svma)
                } else {
                    table
                        .symbol_section(endian, sym, index)
                        .ok()
                        .flatten()
                        .and_then(|i| sections.section(i).ok())
                        .is_some_and(|s| s.sh_type(endian) == elf::SHT_NOBITS)
                };
                let file_offset = self.code_offset(svma, size);
                let Some(file_offset) = file_offset.filter(|_| !in_nobits) else {
                    skipped.insert((raw, SkipReason::NotExecutable));
                    continue;
                };
                if size == 0 {
                    unsized_.insert(raw, svma);
                    continue;
                }
                if self.summary.go.is_some() {
                    let (listed, file) = go_file(svma);
                    if let Some(reason) = go::skip_reason(&raw, file, listed) {
                        skipped.insert((raw, reason));
                        continue;
                    }
                } else if let Some(parent) = fragment_parent(&raw) {
                    fragments
                        .entry(parent.to_owned())
                        .or_default()
                        .push(svma..svma.saturating_add(size));
                    skipped.insert((raw, SkipReason::Fragment));
                    continue;
                }
                let group = by_svma.entry(svma).or_default();
                if group.iter().all(|c| c.raw != raw) {
                    group.push(Candidate {
                        name: demangle(unversioned(&raw)),
                        raw,
                        bind: sym.st_bind(),
                        size,
                        file_offset,
                    });
                }
            }
        }

        if !self.summary.has_symtab && debug_elf.is_none() {
            // A stripped Go binary still has its runtime's table.
            for f in &go_table {
                let Some(file_offset) = self.code_offset(f.svma, f.size) else {
                    continue;
                };
                if let Some(reason) = go::skip_reason(&f.name, f.file.as_deref(), true) {
                    skipped.insert((f.name.clone(), reason));
                    continue;
                }
                let group = by_svma.entry(f.svma).or_default();
                if group.is_empty() {
                    group.push(Candidate {
                        name: f.name.clone(),
                        raw: f.name.clone(),
                        bind: elf::STB_GLOBAL,
                        size: f.size,
                        file_offset,
                    });
                }
            }
        }
        for (raw, svma) in unsized_ {
            // A size-less alias of a sized function is just another name.
            if !by_svma.contains_key(&svma) {
                skipped.insert((raw, SkipReason::NoSize));
            }
        }
        let defined: HashSet<&str> = by_svma
            .values()
            .flatten()
            .map(|c| unversioned(&c.raw))
            .collect();
        for raw in imported {
            if !defined.contains(raw.as_str()) {
                skipped.insert((raw, SkipReason::Undefined));
            }
        }

        let entries = by_svma
            .into_iter()
            .filter_map(|(svma, mut group)| {
                group.sort_by(|a, b| a.preference().cmp(&b.preference()));
                let best = group.first()?;
                let mut names: Vec<String> = Vec::new();
                for c in &group {
                    let base = unversioned(&c.raw);
                    // Only C++ names have parameter lists to drop; skipping
                    // the second demangling elsewhere halves the cost on
                    // large Rust binaries.
                    let short = (base.starts_with("_Z") && c.name.contains('('))
                        .then(|| demangle_without_params(base));
                    let all = [Some(&c.name), Some(&c.raw)]
                        .into_iter()
                        .flatten()
                        .map(String::as_str)
                        .chain([base])
                        .chain(short.as_deref());
                    for name in all {
                        if !names.iter().any(|n| n == name) {
                            names.push(name.to_owned());
                        }
                    }
                }
                Some(Entry {
                    raw_names: group.iter().map(|c| c.raw.clone()).collect(),
                    function: Function {
                        name: best.name.clone(),
                        raw_name: best.raw.clone(),
                        module: Arc::clone(&self.path),
                        svma,
                        size: best.size,
                        file_offset: best.file_offset,
                    },
                    names,
                })
            })
            .collect();
        let skipped = skipped
            .into_iter()
            .map(|(raw, reason)| Skipped {
                name: demangle(unversioned(&raw)),
                module: Arc::clone(&self.path),
                reason,
            })
            .collect();
        Ok(Catalog {
            entries,
            skipped,
            fragments,
            go_functions: go_table.iter().map(|f| f.svma).collect(),
            go_hand_offs: go_table
                .iter()
                .filter(|f| go::HAND_OFFS.iter().any(|&(name, _)| name == f.name))
                .filter_map(|f| {
                    Some(Function {
                        name: f.name.clone(),
                        raw_name: f.name.clone(),
                        module: Arc::clone(&self.path),
                        svma: f.svma,
                        size: f.size,
                        file_offset: self.code_offset(f.svma, f.size)?,
                    })
                })
                .collect(),
        })
    }
}

/// A defined, sized, executable function symbol, before aliases are merged.
struct Candidate {
    raw: String,
    name: String,
    bind: u8,
    size: u64,
    file_offset: u64,
}

impl Candidate {
    /// Smaller is preferred; see [`Module::functions`].
    fn preference(&self) -> (u8, bool, usize, &str, usize, &str) {
        let binding = match self.bind {
            elf::STB_GLOBAL | elf::STB_GNU_UNIQUE => 0,
            elf::STB_WEAK => 1,
            _ => 2,
        };
        (
            binding,
            self.name.starts_with('_'),
            self.name.len(),
            &self.name,
            self.raw.len(),
            &self.raw,
        )
    }
}

/// `memcpy@@GLIBC_2.14` -> `memcpy`: binutils writes symbol versions into
/// `.symtab` names, while `.dynsym` keeps them apart.
fn unversioned(raw: &str) -> &str {
    raw.split('@').next().unwrap_or(raw)
}

/// `foo.cold`, `foo.cold.3` or `foo.warm` -> `foo`: the function a part was
/// split from. Rust, C++ and C names never contain `.`, so a dot always
/// starts a compiler suffix (`.part.0`, `.llvm.123`, `.cold`).
fn fragment_parent(raw: &str) -> Option<&str> {
    raw.match_indices('.').rev().find_map(|(at, _)| {
        let suffix = &raw[at + 1..];
        let rest = suffix
            .strip_prefix("cold")
            .or_else(|| suffix.strip_prefix("warm"))?;
        let numbered = rest
            .strip_prefix('.')
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
        (at > 0 && (rest.is_empty() || numbered)).then(|| &raw[..at])
    })
}

/// Whether an allocated `NOBITS` section (`.bss`) of the binary holds `svma`.
fn nobits_at(elf: &Elf<'_>, svma: u64) -> bool {
    let endian = elf.endian();
    elf.elf_section_table().iter().any(|s| {
        let start = s.sh_addr(endian);
        s.sh_type(endian) == elf::SHT_NOBITS
            && s.sh_flags(endian) & u64::from(elf::SHF_ALLOC) != 0
            && (start..start.saturating_add(s.sh_size(endian))).contains(&svma)
    })
}

fn malformed(path: &Path, error: &object::Error) -> SymbolError {
    SymbolError::Malformed {
        path: path.to_path_buf(),
        reason: error.to_string(),
    }
}

/// Names the machine of an ELF file ferret cannot handle, from the raw
/// header (it may be 32-bit, which the 64-bit parser rejects).
fn describe_machine(data: &[u8]) -> String {
    let class = match data.get(EI_CLASS) {
        Some(&elf::ELFCLASS32) => "32-bit",
        Some(&elf::ELFCLASS64) => "64-bit",
        _ => "unknown-class",
    };
    let machine = data.get(18..20).map(|b| {
        if data.get(EI_DATA) == Some(&elf::ELFDATA2MSB) {
            u16::from_be_bytes([b[0], b[1]])
        } else {
            u16::from_le_bytes([b[0], b[1]])
        }
    });
    let name = match machine {
        Some(elf::EM_386) => "x86 (i386)".to_owned(),
        Some(elf::EM_X86_64) => "x86-64 (x32 ABI)".to_owned(),
        Some(elf::EM_ARM) => "ARM".to_owned(),
        Some(elf::EM_AARCH64) => "AArch64".to_owned(),
        Some(elf::EM_RISCV) => "RISC-V".to_owned(),
        Some(elf::EM_PPC | elf::EM_PPC64) => "PowerPC".to_owned(),
        Some(elf::EM_S390) => "s390".to_owned(),
        Some(elf::EM_MIPS) => "MIPS".to_owned(),
        Some(elf::EM_LOONGARCH) => "LoongArch".to_owned(),
        Some(other) => format!("machine {other}"),
        None => "unknown machine".to_owned(),
    };
    format!("{class} {name}")
}

fn summarize(path: &Path, data: &[u8]) -> Result<Summary, SymbolError> {
    let elf = Elf::parse(data).map_err(|e| malformed(path, &e))?;
    let endian = elf.endian();
    let header = elf.elf_header();
    let machine = header.e_machine(endian);
    if machine != elf::EM_X86_64 {
        return Err(SymbolError::UnsupportedArch {
            path: path.to_path_buf(),
            arch: describe_machine(data),
        });
    }
    match header.e_type(endian) {
        elf::ET_EXEC | elf::ET_DYN => {}
        elf::ET_REL => {
            return Err(SymbolError::NotLoadable {
                path: path.to_path_buf(),
                kind: "a relocatable object (.o)",
            });
        }
        elf::ET_CORE => {
            return Err(SymbolError::NotLoadable {
                path: path.to_path_buf(),
                kind: "a core dump",
            });
        }
        _ => {
            return Err(SymbolError::NotLoadable {
                path: path.to_path_buf(),
                kind: "an ELF file of unknown type",
            });
        }
    }

    let segments = elf
        .elf_program_headers()
        .iter()
        .filter(|ph| ph.p_type(endian) == elf::PT_LOAD)
        .map(|ph| LoadSegment {
            svma: ph.p_vaddr(endian),
            file_offset: ph.p_offset(endian),
            file_size: ph.p_filesz(endian),
            executable: ph.p_flags(endian) & elf::PF_X != 0,
        })
        .collect();

    let sections = elf.elf_section_table();
    let has_symtab = sections
        .iter()
        .any(|s| s.sh_type(endian) == elf::SHT_SYMTAB);

    let mut needed = Vec::new();
    let mut rpath = Vec::new();
    let mut runpath = Vec::new();
    let dynamic = elf.elf_dynamic_table().map_err(|e| malformed(path, &e))?;
    for entry in &dynamic {
        let list = match entry.tag {
            elf::DT_NEEDED => &mut needed,
            elf::DT_RPATH => &mut rpath,
            elf::DT_RUNPATH => &mut runpath,
            _ => continue,
        };
        let value = dynamic.string(entry).map_err(|e| malformed(path, &e))?;
        let value = String::from_utf8_lossy(value);
        if entry.tag == elf::DT_NEEDED {
            list.push(value.into_owned());
        } else {
            list.extend(
                value
                    .split(':')
                    .filter(|d| !d.is_empty())
                    .map(str::to_owned),
            );
        }
    }

    let has_section = |name: &[u8]| sections.section_by_name(endian, name).is_some();
    let referenced = unwinders_named(
        &elf,
        &[elf.elf_symbol_table(), elf.elf_dynamic_symbol_table()],
    );
    let has_except_table = has_section(b".gcc_except_table");
    let unwind = unwind_policy(&file_name_of(path), has_except_table, &referenced);

    let has_dwarf = sections
        .section_by_name(endian, b".debug_info")
        .is_some_and(|(_, s)| s.sh_type(endian) != elf::SHT_NOBITS);
    // A build id that cannot be read is as good as none: it only serves
    // to find the debug file.
    let build_id = object::Object::build_id(&elf)
        .ok()
        .flatten()
        .map(<[u8]>::to_vec);
    let debuglink = sections
        .section_by_name(endian, b".gnu_debuglink")
        .and_then(|(_, s)| s.data(endian, data).ok())
        .and_then(|bytes| debuginfo::parse_debuglink(bytes, object::Endian::is_big_endian(endian)));

    Ok(Summary {
        entry_svma: header.e_entry(endian),
        segments,
        has_symtab,
        has_dwarf,
        ids: DebugIds {
            build_id,
            debuglink,
        },
        needed,
        rpath,
        runpath,
        has_except_table,
        referenced,
        unwind,
        go: GoBinary::detect(&elf),
    })
}

fn file_name_of(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The [`UNWINDERS`] named (defined or imported) in `tables`.
fn unwinders_named<'data>(
    elf: &Elf<'data>,
    tables: &[&object::read::elf::SymbolTable<'data, elf::FileHeader64<Endianness>, &'data [u8]>],
) -> HashSet<(&'static str, &'static str)> {
    let endian = elf.endian();
    let mut referenced = HashSet::new();
    for table in tables {
        for sym in table.iter() {
            if let Ok(name) = table.symbol_name(endian, sym)
                && let Ok(name) = std::str::from_utf8(name)
                && let Some(&known) = UNWINDERS.iter().find(|(n, _)| *n == unversioned(name))
            {
                referenced.insert(known);
            }
        }
    }
    referenced
}

/// Symbols whose presence (defined or imported) means frames of this module
/// may be unwound through, with the phrase shown to the user.
const UNWINDERS: [(&str, &str); 5] = [
    (
        "rust_eh_personality",
        "Rust panics unwind (rust_eh_personality)",
    ),
    (
        "__gxx_personality_v0",
        "C++ exception personality (__gxx_personality_v0)",
    ),
    ("__cxa_throw", "throws C++ exceptions (__cxa_throw)"),
    (
        "_Unwind_RaiseException",
        "raises exceptions (_Unwind_RaiseException)",
    ),
    (
        "pthread_cancel",
        "thread cancellation unwinds threads (pthread_cancel)",
    ),
];

/// Runtimes that unwind by their very nature, by file-name prefix.
const RUNTIMES: [(&str, &str); 5] = [
    ("libstdc++.so", "is the C++ runtime (libstdc++)"),
    ("libgcc_s.so", "is the unwinder (libgcc_s)"),
    ("libc++.so", "is the C++ runtime (libc++)"),
    ("libc++abi.so", "is the C++ runtime (libc++abi)"),
    ("libunwind.so", "is the unwinder (libunwind)"),
];

/// Pure decision over the facts [`summarize`] gathered; the first reason in
/// order of specificity wins.
fn unwind_policy(
    file_name: &str,
    has_except_table: bool,
    referenced: &HashSet<(&'static str, &'static str)>,
) -> UnwindPolicy {
    let may = |reason: &str| UnwindPolicy::MayUnwind {
        reason: reason.to_owned(),
    };
    if let Some((_, reason)) = RUNTIMES.iter().find(|(p, _)| file_name.starts_with(p)) {
        return may(reason);
    }
    if referenced.contains(&UNWINDERS[0]) {
        return may(UNWINDERS[0].1);
    }
    if has_except_table {
        return may("C++ exception tables (.gcc_except_table)");
    }
    UNWINDERS
        .iter()
        .find(|u| referenced.contains(*u))
        .map_or(UnwindPolicy::CannotUnwind, |(_, reason)| may(reason))
}

#[cfg(test)]
mod tests;
