//! CPU sampling: where the target's threads spend their time, without
//! naming a function first.
//!
//! A perf-event BPF program (`ferret_sample`, on a cpu-clock event on every
//! CPU at `--sample-hz`) copies the user registers and the top 12–16 KiB of
//! the user stack of whichever traced thread it interrupts into a ring
//! buffer of its own. On the sampler thread ([`thread`]) each copy is
//! unwound with the modules' DWARF CFI (the stall watchdog's unwinder,
//! walking the copy instead of live memory) and symbolized with blazesym
//! (addresses cached), so the session's loop only hands finished
//! [`Sample`]s to the consumers: the dashboard's Hot pane
//! ([`crate::live::HotProfile`]) and `SAMPLE` rows in the recording.
//!
//! Why a BPF program on per-CPU events rather than one perf event per
//! thread: the kernel-side target filter (the same map the probes use)
//! covers threads started later and followed forks without ferret finding
//! them, one event per CPU costs the same whatever the thread count, and
//! the program can thin the samples (the overhead budget) without
//! reopening anything. Why a copy of the stack rather than the kernel's
//! frame-pointer callchain: C and Rust release builds omit frame pointers
//! by default, and there the callchain is one true frame followed by
//! garbage; CFI unwinding of the copy walks frame-pointer code just as
//! well. A stack deeper than the copy ends where the copy ends (the walk
//! says so in the stack's last line).

pub mod resolve;
pub mod thread;

use std::sync::Arc;

use crate::{stall::Frame, trace::ThreadName};

/// One sample as the BPF program took it: plain values, no kernel types.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawSample {
    /// `CLOCK_MONOTONIC` ns.
    pub ts_ns: u64,
    /// Process id.
    pub pid: u32,
    /// Thread id.
    pub tid: u32,
    /// The thread's name.
    pub thread_name: ThreadName,
    /// User instruction, stack and frame pointers.
    pub ip: u64,
    /// User stack pointer.
    pub sp: u64,
    /// User frame pointer.
    pub bp: u64,
    /// The thread was in the kernel (a system call) when sampled.
    pub in_kernel: bool,
    /// Where `stack` was copied from (a page start at or below `sp`).
    pub stack_base: u64,
    /// The copied stack.
    pub stack: Vec<u8>,
    /// What taking the sample cost in the BPF program, ns.
    pub cost_ns: u64,
}

/// Where a frame's code is, as the process maps it: what a request to
/// trace the function there needs.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CodeAt {
    /// The module's path as `/proc/PID/maps` names it.
    pub module: Arc<str>,
    /// The address's offset in that file.
    pub file_offset: u64,
}

/// One walked address, symbolized: the function holding it and the calls
/// inlined there, innermost first (all at the same address).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Location {
    /// Innermost first; the last one is the function the symbol table
    /// names (the others were inlined into it).
    pub frames: Vec<Frame>,
    /// `frames[i].display()`: the lines of a `stack` column.
    pub lines: Vec<String>,
    /// Where the code is, when the address lies in a mapped file.
    pub code: Option<CodeAt>,
}

impl Location {
    /// A location of `frames` at `code`.
    pub fn new(frames: Vec<Frame>, code: Option<CodeAt>) -> Self {
        let lines = frames.iter().map(Frame::display).collect();
        Self {
            frames,
            lines,
            code,
        }
    }

    /// The function the symbol table names here (the outermost of the
    /// inlined chain), if known.
    pub fn symbol(&self) -> Option<&str> {
        self.frames.last().and_then(|f| f.function.as_deref())
    }
}

/// A sample unwound and symbolized: what consumers get.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sample {
    /// `CLOCK_MONOTONIC` ns.
    pub ts_ns: u64,
    /// Process id.
    pub pid: u32,
    /// Thread id.
    pub tid: u32,
    /// Thread name.
    pub thread_name: ThreadName,
    /// One per walked address, innermost first.
    pub stack: Vec<Arc<Location>>,
    /// Why the walk stopped before the outermost frame, if it did.
    pub stack_note: Option<Arc<str>>,
    /// The thread was in the kernel when sampled.
    pub in_kernel: bool,
}

impl Sample {
    /// Every frame, inlined calls included, innermost first.
    pub fn frames(&self) -> impl Iterator<Item = &Frame> {
        self.stack.iter().flat_map(|l| l.frames.iter())
    }

    /// The innermost frame's function, as the `function` column holds it.
    pub fn function(&self) -> Option<String> {
        self.frames().next().map(|f| {
            f.function
                .clone()
                .unwrap_or_else(|| unknown_name(f.address, f.module.as_deref()))
        })
    }

    /// The innermost frame's module.
    pub fn module(&self) -> Option<&str> {
        self.frames().next().and_then(|f| f.module.as_deref())
    }

    /// The `stack` column: one frame per line, innermost first, as in
    /// `STALL` rows; a last line says why the walk stopped early.
    pub fn stack_text(&self) -> String {
        let mut text = String::new();
        for line in self.stack.iter().flat_map(|l| l.lines.iter()) {
            if !text.is_empty() {
                text.push('\n');
            }
            text.push_str(line);
        }
        if let Some(note) = &self.stack_note {
            if !text.is_empty() {
                text.push('\n');
            }
            text.push_str(note);
        }
        text
    }
}

/// How a frame without a symbol is named: its address and module, as a
/// stack line shows it.
pub fn unknown_name(address: u64, module: Option<&str>) -> String {
    match module {
        Some(m) => format!("{address:#x} in {m}"),
        None => format!("{address:#x}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(function: Option<&str>, file: Option<&str>, inlined: bool) -> Frame {
        Frame {
            function: function.map(Into::into),
            file: file.map(Into::into),
            line: file.map(|_| 7),
            address: 0x1234,
            module: Some("/bin/prog".into()),
            inlined,
        }
    }

    #[test]
    fn a_sample_reads_like_a_stall_stack() {
        let sample = Sample {
            ts_ns: 1,
            pid: 2,
            tid: 3,
            thread_name: ThreadName::from("t"),
            stack: vec![
                Arc::new(Location::new(
                    vec![
                        frame(Some("inner"), Some("a.c"), true),
                        frame(Some("outer"), Some("a.c"), false),
                    ],
                    None,
                )),
                Arc::new(Location::new(vec![frame(None, None, false)], None)),
            ],
            stack_note: Some("[stack walk stopped: no unwind info]".into()),
            in_kernel: false,
        };
        assert_eq!(sample.function().as_deref(), Some("inner"));
        assert_eq!(
            sample.stack_text(),
            "inner (a.c:7) [inlined]\nouter (a.c:7)\n0x1234 in /bin/prog\n[stack walk stopped: no unwind info]"
        );
        assert_eq!(sample.stack[0].symbol(), Some("outer"));
    }
}
