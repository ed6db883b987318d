//! Walked stack addresses → function, file and line, with blazesym: it
//! reads the process's mappings, the modules' DWARF (or their separate
//! debug files) and symbol tables, and expands inlined calls.
//!
//! One [`Symbolizer`] serves every capture of a session: blazesym keeps
//! each module's parsed debug information, so the second capture costs
//! little.

use blazesym::{
    Pid,
    symbolize::{
        Input, Symbolized, Symbolizer as Blaze,
        source::{Process, Source},
    },
};

use super::{Frame, unwind::RawFrame};

/// Symbolizes the stacks of one process.
pub struct Symbolizer {
    pid: u32,
    inner: Blaze,
}

impl std::fmt::Debug for Symbolizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Symbolizer")
            .field("pid", &self.pid)
            .finish_non_exhaustive()
    }
}

impl Symbolizer {
    /// A symbolizer for `pid`.
    pub fn new(pid: u32) -> Self {
        Self {
            pid,
            inner: Blaze::new(),
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
