//! Walked stack addresses → function, file and line, with blazesym: it
//! reads the process's mappings, the modules' DWARF (or their separate
//! debug files) and symbol tables, and expands inlined calls.
//!
//! One [`Symbolizer`] serves every capture of a session: blazesym keeps
//! each module's parsed debug information, so the second capture costs
//! little.
//!
//! A module without its own symbols and DWARF is symbolized from the
//! debug file ferret's symbol selection finds for it (by build id, debug
//! link or debuginfod; see [`crate::symbols::debuginfo`]), through a
//! process dispatcher: blazesym alone follows only `.gnu_debuglink`, and
//! the debug file's own program headers map no file bytes (its `.text` is
//! `NOBITS`), so file offsets are turned into addresses with the binary's.

use std::{
    ffi::OsString,
    path::{Path, PathBuf},
    sync::Arc,
};

use blazesym::{
    Addr, Pid,
    helper::ElfResolver,
    symbolize::{
        FindSymOpts, Input, ProcessMemberInfo, ProcessMemberType, Reason, Resolve, ResolvedSym,
        Symbolize, Symbolized, Symbolizer as Blaze, TranslateFileOffset,
        source::{Process, Source},
    },
};

use super::{Frame, unwind::RawFrame};
use crate::symbols::{
    Module,
    debuginfo::{self, DebugSearch},
};

/// Symbolizes the stacks of one process.
pub struct Symbolizer {
    pid: u32,
    inner: Blaze,
}

/// A stripped module, symbolized from its debug file at its own addresses.
struct DebugFileResolver {
    /// The binary: its segments turn file offsets into addresses.
    binary: Module,
    /// The debug file's symbols and DWARF.
    debug: ElfResolver,
    /// The binary's path as the process sees it, reported as the module.
    shown: OsString,
}

impl std::fmt::Debug for DebugFileResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DebugFileResolver")
            .field("binary", &self.binary.path)
            .finish_non_exhaustive()
    }
}

impl Symbolize for DebugFileResolver {
    fn find_sym(
        &self,
        addr: Addr,
        opts: &FindSymOpts,
    ) -> blazesym::Result<Result<ResolvedSym<'_>, Reason>> {
        Ok(self.debug.find_sym(addr, opts)?.map(|mut sym| {
            sym.module = Some(self.shown.as_os_str());
            sym
        }))
    }
}

impl TranslateFileOffset for DebugFileResolver {
    fn file_offset_to_virt_offset(&self, file_offset: u64) -> blazesym::Result<Option<Addr>> {
        Ok(self.binary.svma(file_offset))
    }
}

impl DebugFileResolver {
    /// `None` when the module carries its own symbols and DWARF (blazesym
    /// reads those itself) or no debug file is found for it.
    fn new(
        real: &Path,
        shown: &Path,
        root: &Path,
        search: &Arc<DebugSearch>,
    ) -> Option<DebugFileResolver> {
        let seen = debuginfo::seen_in(root, shown.to_path_buf());
        let binary = Module::open_seen(real, seen, Arc::clone(search)).ok()?;
        if !binary.is_stripped() && binary.has_dwarf() {
            return None;
        }
        let path = binary.debug_lookup().ok()?.path.clone();
        let debug = ElfResolver::open_with_debug_dirs(&path, Vec::<PathBuf>::new()).ok()?;
        Some(DebugFileResolver {
            binary,
            debug,
            shown: shown.as_os_str().to_owned(),
        })
    }
}

impl std::fmt::Debug for Symbolizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Symbolizer")
            .field("pid", &self.pid)
            .finish_non_exhaustive()
    }
}

impl Symbolizer {
    /// A symbolizer for `pid`, finding debug files with the installed
    /// [`DebugSearch`].
    pub fn new(pid: u32) -> Self {
        Self::with_search(pid, DebugSearch::current())
    }

    /// A symbolizer for `pid` that finds the debug files of modules
    /// without symbols with `search`.
    pub fn with_search(pid: u32, search: Arc<DebugSearch>) -> Self {
        let root = PathBuf::from(format!("/proc/{pid}/root"));
        let dispatch = move |info: ProcessMemberInfo<'_>| {
            let ProcessMemberType::Path(entry) = info.member_entry else {
                return Ok(None);
            };
            // Never an error: that would fail the whole stack, while
            // `None` leaves this module to blazesym's own reading.
            Ok(
                DebugFileResolver::new(&entry.maps_file, &entry.symbolic_path, &root, &search)
                    .map(|r| Box::new(r) as Box<dyn Resolve>),
            )
        };
        Self {
            pid,
            inner: Blaze::builder().set_process_dispatcher(dispatch).build(),
        }
    }

    /// One [`Frame`] per walked frame, plus one per inlined call inside it
    /// (innermost first). An address that cannot be symbolized keeps its
    /// address and no name.
    pub fn symbolize(&self, raw: &[RawFrame]) -> Vec<Frame> {
        self.symbolize_each(raw).into_iter().flatten().collect()
    }

    /// Like [`Self::symbolize`], grouped by walked frame: the frames of
    /// `raw[i]` (its function and the calls inlined into it at that
    /// address, innermost first) are element `i`.
    pub fn symbolize_each(&self, raw: &[RawFrame]) -> Vec<Vec<Frame>> {
        let addresses: Vec<u64> = raw.iter().map(RawFrame::lookup_address).collect();
        let source = Source::Process(Process::new(Pid::from(self.pid)));
        let symbolized = self
            .inner
            .symbolize(&source, Input::AbsAddr(&addresses))
            .unwrap_or_default();
        let mut all = Vec::with_capacity(raw.len());
        for (i, frame) in raw.iter().enumerate() {
            let mut frames = Vec::new();
            let unknown = Frame {
                function: None,
                file: None,
                line: None,
                address: frame.address,
                module: None,
                inlined: false,
            };
            let Some(Symbolized::Sym(sym)) = symbolized.get(i) else {
                all.push(vec![unknown]);
                continue;
            };
            let module = sym
                .module
                .as_ref()
                .map(|m| m.to_string_lossy().into_owned());
            // blazesym lists the function and the calls inlined into it
            // outermost first, each with the location inside itself (the
            // next inlined call, or for the last one the address itself).
            let chain = std::iter::once((&sym.name, sym.code_info.as_deref()))
                .chain(sym.inlined.iter().map(|f| (&f.name, f.code_info.as_ref())));
            let chain: Vec<_> = chain.collect();
            for (k, (name, location)) in chain.iter().enumerate().rev() {
                frames.push(Frame {
                    function: Some(name.to_string()),
                    file: location.map(|c| c.to_path().display().to_string()),
                    line: location.and_then(|c| c.line),
                    address: frame.address,
                    module: module.clone(),
                    inlined: k > 0,
                });
            }
            all.push(frames);
        }
        all
    }
}
