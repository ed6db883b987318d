//! Ring-buffer records to span events: decode, then rebuild the stacks.
//!
//! The pipeline is the one path every event takes: [`Pipeline::push`]
//! decodes a record's bytes ([`crate::probe::decode`]), tells the user about
//! lifecycle news (exec, a followed fork), and feeds the reconstructor
//! ([`crate::trace`]), whose span events wait in [`Pipeline::spans`] until
//! the event loop hands them to the consumers. It holds no kernel object:
//! the loop drains the ring buffer into it, and the benchmarks and tests
//! feed it bytes they made.

use crate::{
    clock::monotonic_ns,
    probe::decode::Decoder,
    stall::{StallNews, Watchdog},
    trace::{RawEvent, RawKind, Reconstructor, SchedCounters, SpanEvent, ThreadName},
};

/// Ring-buffer records to span events.
#[derive(Default)]
pub struct Pipeline {
    /// Record decoder.
    pub decoder: Decoder,
    /// Open stacks.
    pub reconstructor: Reconstructor,
    /// Span events produced and not yet consumed.
    pub spans: Vec<SpanEvent>,
    /// Records decoded so far.
    pub events: u64,
    /// Events the kernel dropped, as last read.
    pub lost: u64,
    /// Lifecycle news for the user (exec, followed forks), not yet shown.
    pub notices: Vec<String>,
    /// A launched command's pid until its own first exec (the one that
    /// starts it, after the gate) has been seen.
    launch_exec: Option<u32>,
}

impl Pipeline {
    /// A pipeline; `launched` is the pid of a command ferret launched, whose
    /// first exec (the one that starts it) is expected, not news.
    pub fn new(launched: Option<u32>) -> Self {
        Self {
            launch_exec: launched,
            ..Self::default()
        }
    }

    /// Decodes one ring-buffer record and feeds it to the reconstructor.
    /// A record that does not decode is counted by the decoder.
    #[inline]
    pub fn push(&mut self, record: &[u8]) {
        let Some(event) = self.decoder.decode_bytes_ref(record) else {
            return;
        };
        self.events += 1;
        if matches!(event.kind, RawKind::Entry | RawKind::Exit) {
            // The stream is nearly all of these: straight to the stacks.
            self.reconstructor.push(event, &mut self.spans);
            return;
        }
        match event.kind {
            RawKind::Exec if self.launch_exec == Some(event.pid) => {
                self.launch_exec = None;
                return;
            }
            RawKind::Exec => self.notices.push(format!(
                "pid {} replaced its program (exec); the probed functions are in the \
                 old one, so nothing more is traced there",
                event.pid
            )),
            RawKind::Fork { parent } => self
                .notices
                .push(format!("following pid {} (forked by {parent})", event.pid)),
            RawKind::Entry
            | RawKind::Exit
            | RawKind::GoUnwind
            | RawKind::ThreadExit
            | RawKind::Blocked { .. } => {}
        }
        self.reconstructor.push(event, &mut self.spans);
    }

    /// One stall check (see [`Watchdog`]): takes in the captures finished
    /// so far, drains the ring buffer through `drain` (so a capture taken
    /// after its thread moved on is known for what it is), then checks the
    /// open stacks. Returns the news (new and moved stalls, what is news
    /// about their groups); calls adopted at attach are told in
    /// [`Self::notices`].
    pub fn check_stalls(
        &mut self,
        watchdog: &mut Watchdog,
        drain: impl FnOnce(&mut Self),
    ) -> StallNews {
        watchdog.receive();
        drain(self);
        let news = watchdog.tick(&mut self.reconstructor, monotonic_ns(), &mut self.spans);
        if let Some(adopted) = watchdog.take_adopted().filter(|&n| n > 0) {
            self.notices.push(format!(
                "{adopted} traced call{} already running when ferret attached",
                if adopted == 1 { " was" } else { "s were" }
            ));
        }
        news
    }

    /// Takes in the kernel's drop counter (`lost`, the total so far): new
    /// drops mean some threads' stacks may have lost frames, which the
    /// reconstructor is told about.
    pub fn note_lost(&mut self, lost: u64) {
        if lost > self.lost {
            self.reconstructor.mark_lost(lost - self.lost);
            self.lost = lost;
        }
        if self.lost > 0 {
            self.resync_dead_threads();
        }
    }

    /// After losses, a thread's exit event may be among the lost: close the
    /// spans of threads that no longer exist, as `unwound` now, so no span
    /// stays open forever. (Frames lost inside a live thread are retired by
    /// the stack-pointer rule as the thread moves on.)
    fn resync_dead_threads(&mut self) {
        let dead: Vec<(u32, u32, ThreadName)> = self
            .reconstructor
            .threads()
            .filter(|t| !std::path::Path::new(&format!("/proc/{}/task/{}", t.pid, t.tid)).exists())
            .map(|t| (t.pid, t.tid, *t.thread_name))
            .collect();
        let now = monotonic_ns();
        for (pid, tid, thread_name) in dead {
            let exit = RawEvent {
                kind: RawKind::ThreadExit,
                ts_ns: now,
                pid,
                tid,
                function: 0,
                sp: 0,
                thread_name,
                goroutine: None,
                sched: SchedCounters::NONE,
            };
            self.reconstructor.push(&exit, &mut self.spans);
        }
    }

    /// Ends what is still open: as `unwound` if the target is gone, else as
    /// `open` (still running when tracing stopped).
    pub fn close(&mut self, target_gone: bool, pid: u32) {
        let now = monotonic_ns();
        if target_gone {
            self.reconstructor.process_exit(pid, now, &mut self.spans);
        }
        self.reconstructor.finish(now, &mut self.spans);
    }
}

#[cfg(test)]
mod tests {
    use ferret_common::{COMM_LEN, ProbeEvent, cookie, kind};

    use super::*;
    use crate::trace::SpanStatus;

    fn record(kind: u32, function: u32, pid: u32, sp: u64, ts_ns: u64) -> Vec<u8> {
        let event = ProbeEvent {
            ts_ns,
            cookie: cookie(function, kind, 0),
            sp,
            ip: 0,
            kind,
            pid,
            tid: pid,
            goid: 0,
            go_stack_depth: 0,
            comm: [b'x'; COMM_LEN],
            ..ProbeEvent::default()
        };
        // SAFETY: ProbeEvent is plain integers without padding.
        unsafe {
            std::slice::from_raw_parts(
                std::ptr::from_ref(&event).cast::<u8>(),
                size_of::<ProbeEvent>(),
            )
        }
        .to_vec()
    }

    #[test]
    fn records_become_spans_and_a_launch_exec_is_no_news() {
        let mut pipeline = Pipeline::new(Some(7));
        pipeline.push(&record(kind::EXEC, 0, 7, 0, 1));
        pipeline.push(&record(kind::ENTRY, 3, 7, 0x100, 10));
        pipeline.push(&record(kind::EXIT_INSN, 3, 7, 0x100, 25));
        pipeline.push(&[0u8; 3]);
        assert_eq!(pipeline.events, 3, "the short record is not an event");
        assert!(pipeline.notices.is_empty(), "{:?}", pipeline.notices);
        let [SpanEvent::Start(start), SpanEvent::End(end)] = pipeline.spans.as_slice() else {
            panic!("{:?}", pipeline.spans);
        };
        assert_eq!((start.function, end.duration_ns()), (3, 15));
        assert_eq!(end.status, SpanStatus::Ok);

        pipeline.push(&record(kind::EXEC, 0, 7, 0, 30));
        assert_eq!(pipeline.notices.len(), 1, "a second exec is news");
    }

    #[test]
    fn closing_ends_open_spans_as_open_or_unwound() {
        for (gone, status) in [(false, SpanStatus::Open), (true, SpanStatus::Unwound)] {
            let mut pipeline = Pipeline::new(None);
            pipeline.push(&record(kind::ENTRY, 1, 9, 0x100, 10));
            pipeline.spans.clear();
            pipeline.close(gone, 9);
            let [SpanEvent::End(end)] = pipeline.spans.as_slice() else {
                panic!("{:?}", pipeline.spans);
            };
            assert_eq!(end.status, status);
        }
    }
}
