//! A goroutine stuck inside a traced call, as the Go runtime describes it.
//!
//! A goroutine blocked on a channel, a lock, a timer or the network is on
//! no thread: the thread it last ran on went on to run others, so that
//! thread's state, system call and stack say nothing about it. The runtime
//! keeps what does. Every goroutine's `g` is listed in `runtime.allgs`, and
//! records its status (`atomicstatus`: running, runnable, waiting, in a
//! system call), why it waits (`waitreason`, an index into
//! `runtime.waitReasonStrings`), and, while it is off its thread, where it
//! stopped (`sched`: its program counter, stack and frame pointers, from
//! which the frame-pointer chain Go keeps on amd64 gives its stack). All of
//! it is read from the target's memory, without stopping it, at the offsets
//! the binary's DWARF describes; without DWARF or a symbol table the report
//! says only which call the goroutine is stuck in.

use super::{
    capture::Capturer,
    detector::{Outcome, Request},
    memory::ProcessMemory,
    procfs::SchedState,
    report::{Frame, StaleSpan, StallReport},
    unwind::RawFrame,
};
use crate::{
    symbols::{Module, go::GLayout},
    trace::FunctionInfo,
};

/// Frames read along a goroutine's frame-pointer chain, at most.
const MAX_FRAMES: usize = 64;

/// `_Gscan`: set on top of a status while the collector scans the stack.
const STATUS_SCAN: u32 = 0x1000;

/// What the runtime says of one goroutine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GoroutineState {
    /// `atomicstatus`, without the scan bit.
    pub status: u32,
    /// Why it waits, while it waits (`chan receive`, `sleep`, `select`).
    pub wait_reason: Option<String>,
    /// Where it stopped, innermost first: its saved program counter, then
    /// the return addresses of the frame-pointer chain (empty while it
    /// runs, whose saved state is stale).
    pub pcs: Vec<u64>,
}

/// The runtime's name for a goroutine status (`runtime2.go`).
pub fn status_name(status: u32) -> &'static str {
    match status & !STATUS_SCAN {
        0 => "idle",
        1 => "runnable",
        2 => "running",
        3 => "in a system call",
        4 => "waiting",
        6 => "dead",
        8 => "copying its stack",
        9 => "preempted",
        _ => "in an unknown state",
    }
}

/// The thread state a goroutine status is shown as.
fn sched_state(status: u32) -> SchedState {
    match status & !STATUS_SCAN {
        1 | 2 => SchedState::Running,
        3 | 4 | 9 => SchedState::Sleeping,
        6 => SchedState::Dead,
        _ => SchedState::Other('?'),
    }
}

/// The `wait` line of a stalled goroutine: `goroutine waiting (chan
/// receive)`, `goroutine running`, or without the runtime's say, why not.
pub fn wait_line(state: Option<&GoroutineState>) -> String {
    match state {
        Some(state) => {
            let mut out = format!("goroutine {}", status_name(state.status));
            if let Some(reason) = state.wait_reason.as_deref().filter(|r| !r.is_empty()) {
                out.push_str(" (");
                out.push_str(reason);
                out.push(')');
            }
            out
        }
        None => "goroutine (its state cannot be read: no DWARF description of runtime.g, \
                 or no runtime.allgs symbol)"
            .to_owned(),
    }
}

/// Reads `buf.len()` bytes of the target's memory at an address.
type Reader = Box<dyn Fn(u64, &mut [u8]) -> std::io::Result<()> + Send>;

/// Pointers of `runtime.allgs` read at once (a million goroutines are 8 MB
/// of them).
const ALLGS_CHUNK: u64 = 4096;

/// Reads goroutines from a Go program's memory.
pub struct GoRuntime {
    read: Reader,
    layout: GLayout,
    /// Where `runtime.allgs` (a `[]*g`) is, in the process.
    allgs: u64,
    /// The binary's wait reasons by number ([`Module::go_wait_reasons`]).
    wait_reasons: Vec<String>,
}

impl std::fmt::Debug for GoRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GoRuntime")
            .field("layout", &self.layout)
            .field("allgs", &self.allgs)
            .finish_non_exhaustive()
    }
}

impl GoRuntime {
    /// The runtime of process `pid`, if it is a Go program whose `g` layout
    /// (status and wait reason included) and `runtime.allgs` are known.
    pub fn open(pid: u32) -> Option<Self> {
        let exe = std::path::PathBuf::from(format!("/proc/{pid}/exe"));
        let module = Module::open(&exe).ok()?;
        module.go()?;
        let layout = module.go_layout()?;
        layout.atomicstatus?;
        // Where the executable is loaded: 0 unless position-independent.
        let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).ok()?;
        let exe_path = std::fs::read_link(&exe).ok()?;
        let bias = crate::symbols::parse_maps(&maps)
            .iter()
            .filter(|m| m.path.as_deref() == Some(exe_path.as_path()))
            .find_map(|m| Some(m.avma.start.wrapping_sub(module.svma(m.file_offset)?)))?;
        let allgs = module.go_data_symbol("runtime.allgs")?.wrapping_add(bias);
        let wait_reasons = module.go_wait_reasons().unwrap_or_default();
        let memory = ProcessMemory::new(pid);
        Some(Self {
            read: Box::new(move |avma, buf| memory.read(avma, buf)),
            layout,
            allgs,
            wait_reasons,
        })
    }

    /// A runtime reading through `read` (tests give it a buffer).
    #[cfg(test)]
    fn with_reader(
        read: impl Fn(u64, &mut [u8]) -> std::io::Result<()> + Send + 'static,
        layout: GLayout,
        allgs: u64,
        wait_reasons: Vec<String>,
    ) -> Self {
        Self {
            read: Box::new(read),
            layout,
            allgs,
            wait_reasons,
        }
    }

    fn u64(&self, avma: u64) -> Option<u64> {
        let mut word = [0u8; 8];
        (self.read)(avma, &mut word).ok()?;
        Some(u64::from_le_bytes(word))
    }

    /// What the runtime says of goroutine `goid`: `Ok(None)` if it is not
    /// among `runtime.allgs` (it ended), `Err` if memory could not be read.
    pub fn goroutine(&self, goid: u64) -> Result<Option<GoroutineState>, std::io::Error> {
        let unreadable = || std::io::Error::other("runtime.allgs unreadable");
        let array = self.u64(self.allgs).ok_or_else(unreadable)?;
        let len = self.u64(self.allgs + 8).ok_or_else(unreadable)?;
        let goid_at = u64::from(self.layout.goid);
        let mut start = 0;
        while start < len {
            let count = ALLGS_CHUNK.min(len - start);
            let mut pointers = vec![0u8; usize::try_from(count * 8).map_err(|_| unreadable())?];
            (self.read)(array + start * 8, &mut pointers)?;
            for g in pointers.chunks_exact(8) {
                let g = u64::from_le_bytes(g.try_into().expect("eight bytes"));
                if g != 0 && self.u64(g + goid_at) == Some(goid) {
                    return Ok(Some(self.state_at(g)));
                }
            }
            start += count;
        }
        Ok(None)
    }

    /// The state of the goroutine whose `g` is at `g`.
    fn state_at(&self, g: u64) -> GoroutineState {
        let status = self
            .layout
            .atomicstatus
            .and_then(|at| {
                let mut word = [0u8; 4];
                (self.read)(g + u64::from(at), &mut word).ok()?;
                Some(u32::from_le_bytes(word))
            })
            .unwrap_or(u32::MAX);
        let wait_reason = (status & !STATUS_SCAN == 4)
            .then(|| self.wait_reason(g))
            .flatten();
        let off_thread = matches!(status & !STATUS_SCAN, 1 | 4 | 9);
        let pcs = if off_thread {
            self.saved_stack(g)
        } else {
            Vec::new()
        };
        GoroutineState {
            status,
            wait_reason,
            pcs,
        }
    }

    fn wait_reason(&self, g: u64) -> Option<String> {
        let mut byte = [0u8; 1];
        (self.read)(g + u64::from(self.layout.waitreason?), &mut byte).ok()?;
        self.wait_reasons
            .get(usize::from(byte[0]))
            .filter(|name| !name.is_empty())
            .cloned()
    }

    /// The program counter saved in `g.sched` and the return addresses up
    /// the frame-pointer chain from its saved frame pointer.
    fn saved_stack(&self, g: u64) -> Vec<u64> {
        let Some((sched, gobuf)) = self.layout.sched.zip(self.layout.gobuf) else {
            return Vec::new();
        };
        let base = g + u64::from(sched);
        let (Some(pc), Some(mut bp)) = (
            self.u64(base + u64::from(gobuf.pc)),
            self.u64(base + u64::from(gobuf.bp)),
        ) else {
            return Vec::new();
        };
        let mut pcs = vec![pc];
        while bp != 0 && pcs.len() < MAX_FRAMES {
            let (Some(next), Some(ret)) = (self.u64(bp), self.u64(bp + 8)) else {
                break;
            };
            if ret == 0 {
                break;
            }
            pcs.push(ret);
            // The chain goes up the stack; anything else is not a chain.
            if next <= bp {
                break;
            }
            bp = next;
        }
        pcs
    }
}

/// The report of a goroutine stuck in the call `request` names, from what
/// `runtime` reads (if it could be opened); its stack symbolized by
/// `capturer`.
pub(super) fn capture_goroutine(
    runtime: Option<&GoRuntime>,
    capturer: &Capturer,
    request: &Request,
    functions: &[FunctionInfo],
) -> Outcome {
    let goid = request.goroutine.expect("a goroutine's request");
    let captured_ns = crate::clock::monotonic_ns();
    let state = match runtime.map(|r| r.goroutine(goid)) {
        Some(Ok(Some(state))) => Some(state),
        // The goroutine ended without leaving the call (runtime.Goexit).
        Some(Ok(None)) => {
            return Outcome::Stale(StaleSpan {
                pid: request.pid,
                tid: request.tid,
                goroutine: request.goroutine,
                span_id: request.span_id,
                seen_ns: captured_ns,
            });
        }
        Some(Err(_)) | None => None,
    };
    let raw: Vec<RawFrame> = state
        .as_ref()
        .map(|s| {
            s.pcs
                .iter()
                .enumerate()
                .map(|(i, &address)| RawFrame {
                    address,
                    is_return: i > 0,
                    entry_sp: None,
                    scanned: false,
                })
                .collect()
        })
        .unwrap_or_default();
    let frames: Vec<Frame> = capturer.symbolize_frames(&raw);
    let function_name = functions
        .get(request.function as usize)
        .map_or_else(|| "?".to_owned(), |f| f.name.clone());
    let on_stack = frames
        .iter()
        .any(|f| f.function.as_deref() == Some(function_name.as_str()));
    let stack_note = match &state {
        Some(s) if s.pcs.is_empty() => Some(format!(
            "[no stack: the goroutine is {}, its saved state is not current]",
            status_name(s.status)
        )),
        None => Some("[no stack: the Go runtime's state could not be read]".to_owned()),
        Some(_) => None,
    };
    Outcome::Report(Box::new(StallReport {
        pid: request.pid,
        tid: request.tid,
        goroutine: request.goroutine,
        thread_name: request.thread_name.clone(),
        span_id: request.span_id,
        function: request.function,
        function_name,
        depth: request.depth,
        since_ns: request.since_ns,
        before_attach: request.before_attach,
        captured_ns,
        state: state
            .as_ref()
            .map_or(SchedState::Other('?'), |s| sched_state(s.status)),
        syscall: None,
        wchan: None,
        lock: None,
        deadlock: Vec::new(),
        deadlock_with: None,
        frames: frames.into(),
        stack_note,
        wait: wait_line(state.as_ref()),
        on_stack,
        group: 0,
    }))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use super::*;
    use crate::symbols::go::GobufLayout;

    /// Memory as (address → bytes) pieces.
    fn memory(
        pieces: &[(u64, Vec<u8>)],
    ) -> impl Fn(u64, &mut [u8]) -> std::io::Result<()> + Send + use<> {
        let map: Arc<BTreeMap<u64, Vec<u8>>> = Arc::new(pieces.iter().cloned().collect());
        move |avma, buf| {
            let (&start, bytes) = map
                .range(..=avma)
                .next_back()
                .ok_or_else(|| std::io::Error::other("unmapped"))?;
            let from = usize::try_from(avma - start).unwrap();
            let piece = bytes
                .get(from..from + buf.len())
                .ok_or_else(|| std::io::Error::other("unmapped"))?;
            buf.copy_from_slice(piece);
            Ok(())
        }
    }

    fn words(values: &[u64]) -> Vec<u8> {
        values.iter().flat_map(|v| v.to_le_bytes()).collect()
    }

    fn layout() -> GLayout {
        GLayout {
            goid: 152,
            atomicstatus: Some(144),
            waitreason: Some(176),
            sched: Some(56),
            gobuf: Some(GobufLayout { pc: 8, bp: 48 }),
            source: "test".to_owned(),
        }
    }

    /// A `g` at `at` with `goid`, `status`, `waitreason` and saved pc, bp.
    fn g(at: u64, goid: u64, status: u32, reason: u8, pc: u64, bp: u64) -> (u64, Vec<u8>) {
        let mut bytes = vec![0u8; 200];
        bytes[152..160].copy_from_slice(&goid.to_le_bytes());
        bytes[144..148].copy_from_slice(&status.to_le_bytes());
        bytes[176] = reason;
        bytes[56 + 8..56 + 16].copy_from_slice(&pc.to_le_bytes());
        bytes[56 + 48..56 + 56].copy_from_slice(&bp.to_le_bytes());
        (at, bytes)
    }

    #[test]
    fn a_waiting_goroutine_is_found_with_its_reason_and_its_stack() {
        let reasons = ["", "GC assist marking", "IO wait", "chan receive"];
        let runtime = GoRuntime::with_reader(
            memory(&[
                // allgs = {array, len 2, cap 2}
                (0x1000, words(&[0x2000, 2, 2])),
                (0x2000, words(&[0x3000, 0x4000])),
                g(0x3000, 1, 2, 0, 0, 0),
                g(0x4000, 17, 0x1004, 3, 0x45_1234, 0xc000_0100),
                // Frame records: [bp] = caller's bp, [bp+8] = return address.
                (0xc000_0100, words(&[0xc000_0200, 0x48_0010])),
                (0xc000_0200, words(&[0, 0x48_0020])),
            ]),
            layout(),
            0x1000,
            reasons.map(str::to_owned).to_vec(),
        );
        let state = runtime.goroutine(17).unwrap().expect("listed");
        assert_eq!(
            status_name(state.status),
            "waiting",
            "the scan bit is ignored"
        );
        assert_eq!(state.wait_reason.as_deref(), Some("chan receive"));
        assert_eq!(state.pcs, [0x45_1234, 0x48_0010, 0x48_0020]);
        assert_eq!(wait_line(Some(&state)), "goroutine waiting (chan receive)");
        // A running goroutine's saved state is stale: no stack, no reason.
        let running = runtime.goroutine(1).unwrap().unwrap();
        assert_eq!(
            (running.wait_reason.as_deref(), running.pcs.len()),
            (None, 0)
        );
        assert_eq!(wait_line(Some(&running)), "goroutine running");
        // Not listed: it ended.
        assert_eq!(runtime.goroutine(99).unwrap(), None);
    }

    #[test]
    fn unreadable_memory_is_an_error_not_a_panic() {
        let runtime = GoRuntime::with_reader(memory(&[]), layout(), 0x1000, Vec::new());
        assert!(runtime.goroutine(1).is_err());
        assert!(wait_line(None).starts_with("goroutine (its state cannot be read"));
    }
}
