//! Ring-buffer records → plain [`RawEvent`]s.
//!
//! This is the only place that knows the wire format's quirks: the kind bits
//! in the cookie, the uretprobe's stack pointer (already past the popped
//! return address), a Go probe's goroutine and stack position (see
//! [`GOROUTINE_STACK_TOP`]) and the NUL-padded thread name. Thread names are interned
//! ([`ThreadName`]) and remembered per thread, so a steady stream of events
//! neither allocates nor takes the interner's lock, and
//! [`Decoder::decode_ref`] decodes into one event kept in place.

use std::collections::HashMap;

use ferret_common::{COMM_LEN, ProbeEvent, kind};

use crate::trace::{BlockedIn, RawEvent, RawKind, SchedCounters, ThreadName};

/// Where a goroutine's stack starts in the positions Go events carry as
/// their `sp`: `GOROUTINE_STACK_TOP - (g.stack.hi - sp)`. The Go runtime
/// copies a goroutine's stack elsewhere when it grows or shrinks, so the
/// raw `sp` of one frame differs between its entry and its exit, while its
/// distance from the stack's top does not. Keeping "lower is deeper" lets
/// the reconstructor treat both kinds of stack alike.
pub const GOROUTINE_STACK_TOP: u64 = 1 << 40;

/// Decodes records, remembering each thread's last name.
#[derive(Debug)]
pub struct Decoder {
    names: HashMap<u32, ([u8; COMM_LEN], ThreadName)>,
    /// The last event decoded.
    event: RawEvent,
    /// The thread (tid, `comm`) whose name `event` carries, if still valid.
    named: Option<(u32, [u8; COMM_LEN])>,
    malformed: u64,
}

impl Default for Decoder {
    fn default() -> Self {
        Self::new()
    }
}

impl Decoder {
    /// A decoder with no threads seen yet.
    pub fn new() -> Self {
        Self {
            names: HashMap::new(),
            event: RawEvent {
                kind: RawKind::Entry,
                ts_ns: 0,
                pid: 0,
                tid: 0,
                function: 0,
                sp: 0,
                thread_name: ThreadName::default(),
                goroutine: None,
                sched: SchedCounters::NONE,
            },
            named: None,
            malformed: 0,
        }
    }

    /// Decodes one record from the ring buffer. Returns `None` for a record
    /// of the wrong size or unknown kind (counted in [`Self::malformed`]).
    pub fn decode_bytes(&mut self, bytes: &[u8]) -> Option<RawEvent> {
        self.decode_bytes_ref(bytes).cloned()
    }

    /// Like [`Self::decode_bytes`], without handing out a copy of the event:
    /// what the pipeline uses.
    pub fn decode_bytes_ref(&mut self, bytes: &[u8]) -> Option<&RawEvent> {
        if bytes.len() < size_of::<ProbeEvent>() {
            self.malformed += 1;
            return None;
        }
        // SAFETY: the length is checked above; `ProbeEvent` is plain integers
        // for which any bit pattern is valid, and the read is unaligned.
        let event = unsafe { bytes.as_ptr().cast::<ProbeEvent>().read_unaligned() };
        self.decode_ref(&event)
    }

    /// Decodes one record.
    pub fn decode(&mut self, event: &ProbeEvent) -> Option<RawEvent> {
        self.decode_ref(event).cloned()
    }

    /// Decodes one record into the event the decoder keeps, valid until the
    /// next call.
    pub fn decode_ref(&mut self, event: &ProbeEvent) -> Option<&RawEvent> {
        let (kind, sp) = match event.kind {
            kind::ENTRY => (RawKind::Entry, event.sp),
            kind::EXIT_INSN => (RawKind::Exit, event.sp),
            // The uretprobe fires after `ret` popped the return address.
            kind::EXIT_URET => (RawKind::Exit, event.sp.wrapping_sub(8)),
            kind::GO_UNWIND => (RawKind::GoUnwind, event.sp),
            kind::THREAD_EXIT => (RawKind::ThreadExit, 0),
            kind::EXEC => (RawKind::Exec, 0),
            kind::FORK => (
                RawKind::Fork {
                    parent: event.cookie as u32,
                },
                0,
            ),
            kind::BLOCKED => (
                RawKind::Blocked {
                    ns: event.cookie,
                    // A Go reason by its name, once the binary's are read.
                    syscall: BlockedIn(event.syscall).named(),
                },
                0,
            ),
            _ => {
                self.malformed += 1;
                return None;
            }
        };
        // A BLOCKED record comes from the scheduler, in another task's
        // context: its `comm` is not the thread's, and the name stays.
        if event.kind != kind::BLOCKED && self.named != Some((event.tid, event.comm)) {
            self.event.thread_name = self.name(event.tid, &event.comm);
            self.named = Some((event.tid, event.comm));
        }
        if matches!(kind, RawKind::ThreadExit | RawKind::Fork { .. }) {
            self.names.remove(&event.tid);
            self.named = None;
        }
        let out = &mut self.event;
        out.kind = kind;
        out.ts_ns = event.ts_ns;
        out.pid = event.pid;
        out.tid = event.tid;
        out.function = if event.kind == kind::BLOCKED {
            0
        } else {
            event.function_id()
        };
        out.sched = SchedCounters {
            cpu_ns: event.cpu_ns,
            runnable_ns: event.runnable_ns,
            blocked_ns: event.blocked_ns,
            epoch: event.sched_epoch,
            lost: event.sched_lost,
        };
        // A Go probe that read no goroutine (a system stack's `g0` has id 0,
        // or `g` was unreadable) is an ordinary thread's event.
        if event.kind == kind::BLOCKED && event.goid != 0 {
            // The goroutine that was on the thread (or was parked): its
            // stack holds the span the blocked time belongs to.
            out.goroutine = Some(event.goid);
            out.sp = sp;
        } else if event.goid != 0 && event.is_go() {
            out.goroutine = Some(event.goid);
            out.sp = GOROUTINE_STACK_TOP - u64::from(event.go_stack_depth);
        } else {
            out.goroutine = None;
            out.sp = sp;
        }
        Some(out)
    }

    /// Records that could not be decoded.
    pub fn malformed(&self) -> u64 {
        self.malformed
    }

    fn name(&mut self, tid: u32, comm: &[u8; COMM_LEN]) -> ThreadName {
        match self.names.get(&tid) {
            Some((known, name)) if known == comm => *name,
            _ => {
                let end = comm.iter().position(|&b| b == 0).unwrap_or(COMM_LEN);
                let name = ThreadName::new(&String::from_utf8_lossy(&comm[..end]));
                self.names.insert(tid, (*comm, name));
                name
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferret_common::cookie;

    fn event(kind: u32, function: u32, sp: u64, comm: &[u8]) -> ProbeEvent {
        let mut name = [0u8; COMM_LEN];
        name[..comm.len()].copy_from_slice(comm);
        ProbeEvent {
            ts_ns: 42,
            cookie: cookie(function, kind, 0),
            sp,
            ip: 0,
            goid: 0,
            cpu_ns: 0,
            runnable_ns: 0,
            blocked_ns: 0,
            sched_epoch: 0,
            kind,
            pid: 10,
            tid: 11,
            go_stack_depth: 0,
            sched_lost: 0,
            syscall: 0,
            comm: name,
        }
    }

    #[test]
    fn events_carry_the_threads_counters_and_a_blocked_record_keeps_the_name() {
        let mut d = Decoder::new();
        let mut entry = event(kind::ENTRY, 2, 0x7ff0, b"worker");
        (entry.cpu_ns, entry.runnable_ns, entry.blocked_ns) = (5, 6, 7);
        (entry.sched_epoch, entry.sched_lost) = (99, 1);
        let raw = d.decode(&entry).unwrap();
        assert_eq!(
            raw.sched,
            SchedCounters {
                cpu_ns: 5,
                runnable_ns: 6,
                blocked_ns: 7,
                epoch: 99,
                lost: 1
            }
        );
        // Emitted from the scheduler in another task's context: no comm.
        let mut blocked = event(kind::BLOCKED, 0, 0, b"");
        blocked.cookie = 300_000_000;
        blocked.syscall = 202;
        let raw = d.decode(&blocked).unwrap();
        assert_eq!(
            raw.kind,
            RawKind::Blocked {
                ns: 300_000_000,
                syscall: BlockedIn(202)
            }
        );
        assert_eq!(&*raw.thread_name, "worker");
        assert_eq!(BlockedIn(202).name(), "futex");
        assert_eq!(
            BlockedIn::from_name("clock_nanosleep"),
            Some(BlockedIn(230))
        );
        assert_eq!(BlockedIn::NOT_A_SYSCALL.name(), "fault");
        assert_eq!(
            BlockedIn::from_name("fault"),
            Some(BlockedIn::NOT_A_SYSCALL)
        );
    }

    #[test]
    fn uretprobe_exit_is_normalized_to_the_entry_stack_pointer() {
        let mut d = Decoder::new();
        let entry = d.decode(&event(kind::ENTRY, 7, 0x7ff0, b"worker")).unwrap();
        let exit_insn = d
            .decode(&event(kind::EXIT_INSN, 7, 0x7ff0, b"worker"))
            .unwrap();
        let exit_uret = d
            .decode(&event(kind::EXIT_URET, 7, 0x7ff8, b"worker"))
            .unwrap();
        assert_eq!(
            (entry.kind, entry.sp, entry.function),
            (RawKind::Entry, 0x7ff0, 7)
        );
        assert_eq!((exit_insn.kind, exit_insn.sp), (RawKind::Exit, 0x7ff0));
        assert_eq!((exit_uret.kind, exit_uret.sp), (RawKind::Exit, 0x7ff0));
        assert_eq!(&*entry.thread_name, "worker");
        assert!(
            ThreadName::ptr_eq(entry.thread_name, exit_uret.thread_name),
            "name interned"
        );
    }

    #[test]
    fn a_go_probe_names_its_goroutine_and_a_stack_position_that_survives_a_stack_move() {
        let mut d = Decoder::new();
        let go = |kind, sp, depth, goid| {
            let mut e = event(kind, 4, sp, b"worker");
            e.cookie = ferret_common::go_cookie(4, kind, 0, 152);
            e.goid = goid;
            e.go_stack_depth = depth;
            e
        };
        // Entered on one stack; the runtime moved the stack (bigger) before
        // the return: the raw sp changed, the distance from the top did not.
        let entry = d.decode(&go(kind::ENTRY, 0xc000_0100, 0x700, 17)).unwrap();
        let exit = d
            .decode(&go(kind::EXIT_INSN, 0xc010_7100, 0x700, 17))
            .unwrap();
        assert_eq!(entry.goroutine, Some(17));
        assert_eq!(
            (entry.sp, exit.sp),
            (GOROUTINE_STACK_TOP - 0x700, GOROUTINE_STACK_TOP - 0x700)
        );
        // Deeper is lower, like a stack pointer.
        let deeper = d.decode(&go(kind::ENTRY, 0xc000_0000, 0x800, 17)).unwrap();
        assert!(deeper.sp < entry.sp);
        // g0 (id 0, a system stack) or an unreadable g: a thread's event.
        let g0 = d.decode(&go(kind::ENTRY, 0x7ffd_0000, 0, 0)).unwrap();
        assert_eq!((g0.goroutine, g0.sp), (None, 0x7ffd_0000));
        // Not a Go probe: never a goroutine, whatever the field holds.
        let mut plain = event(kind::ENTRY, 4, 0x7ffd_0000, b"worker");
        plain.goid = 5;
        assert_eq!(d.decode(&plain).unwrap().goroutine, None);
    }

    #[test]
    fn renamed_thread_gets_its_new_name() {
        let mut d = Decoder::new();
        let a = d.decode(&event(kind::ENTRY, 1, 8, b"old")).unwrap();
        let b = d.decode(&event(kind::ENTRY, 1, 8, b"new-name")).unwrap();
        assert_eq!((&*a.thread_name, &*b.thread_name), ("old", "new-name"));
    }

    #[test]
    fn a_run_of_one_thread_shares_its_name_and_a_new_thread_gets_its_own() {
        let mut d = Decoder::new();
        let mut other = event(kind::ENTRY, 1, 8, b"other");
        other.tid = 12;
        let first = d.decode(&event(kind::ENTRY, 1, 8, b"worker")).unwrap();
        let again = d
            .decode_ref(&event(kind::EXIT_INSN, 1, 8, b"worker"))
            .unwrap();
        assert!(ThreadName::ptr_eq(first.thread_name, again.thread_name));
        let switched = d.decode_ref(&other).unwrap();
        assert_eq!((&*switched.thread_name, switched.tid), ("other", 12));
        let back = d.decode_ref(&event(kind::ENTRY, 2, 8, b"worker")).unwrap();
        assert!(
            ThreadName::ptr_eq(first.thread_name, back.thread_name),
            "interned"
        );
        // A thread that exits forgets its name; its tid may come back renamed.
        d.decode(&event(kind::THREAD_EXIT, 0, 0, b"worker"))
            .unwrap();
        let reused = d.decode_ref(&event(kind::ENTRY, 1, 8, b"renamed")).unwrap();
        assert_eq!(&*reused.thread_name, "renamed");
        let back = d.decode_ref(&event(kind::ENTRY, 1, 8, b"worker")).unwrap();
        assert!(ThreadName::ptr_eq(first.thread_name, back.thread_name));
    }

    #[test]
    fn short_or_unknown_records_are_counted_not_decoded() {
        let mut d = Decoder::new();
        assert!(d.decode_bytes(&[0u8; 10]).is_none());
        let mut bad = event(kind::ENTRY, 1, 8, b"x");
        bad.kind = 99;
        assert!(d.decode(&bad).is_none());
        assert_eq!(d.malformed(), 2);
    }

    #[test]
    fn decode_bytes_reads_the_wire_layout() {
        let e = event(kind::EXIT_INSN, 3, 0x1000, b"t");
        // SAFETY: ProbeEvent is plain integers without padding.
        let bytes = unsafe {
            std::slice::from_raw_parts(std::ptr::from_ref(&e).cast::<u8>(), size_of::<ProbeEvent>())
        };
        let raw = Decoder::new().decode_bytes(bytes).unwrap();
        assert_eq!(
            (raw.kind, raw.function, raw.sp, raw.tid),
            (RawKind::Exit, 3, 0x1000, 11)
        );
    }
}
