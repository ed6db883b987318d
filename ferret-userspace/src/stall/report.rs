//! What a stall capture says: where one stalled thread is stuck, as the
//! values a `STALL` row, a terminal line and the dashboard are made of
//! ([`StallReport`], its [`Frame`]s, the [`LockWait`] it waits in), and the
//! one-line wait summary ([`wait_summary`]). Pure: built by
//! [`super::diagnose`], tested on literals.

use std::{fmt::Write as _, sync::Arc};

use super::procfs::SchedState;
use crate::sink::StallRow;

/// One frame of a captured stack.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// Function name (demangled), where known.
    pub function: Option<String>,
    /// Source file, where debug information says.
    pub file: Option<String>,
    /// Source line.
    pub line: Option<u32>,
    /// The instruction pointer (innermost frame) or return address.
    pub address: u64,
    /// The binary or library holding the address.
    pub module: Option<String>,
    /// This call was inlined into the frame below it (same address).
    pub inlined: bool,
}

impl Frame {
    /// `function (file:line)`, or whatever part of it is known.
    pub fn display(&self) -> String {
        let mut out = match (&self.function, &self.module) {
            (Some(f), _) => f.clone(),
            (None, Some(m)) => format!("{:#x} in {m}", self.address),
            (None, None) => format!("{:#x}", self.address),
        };
        if let Some(file) = &self.file {
            let _ = match self.line {
                Some(line) => write!(out, " ({file}:{line})"),
                None => write!(out, " ({file})"),
            };
        }
        if self.inlined {
            out.push_str(" [inlined]");
        }
        out
    }
}

/// What a futex wait is for, told by the library functions on the stack
/// (and, for a mutex, by its recorded owner).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitKind {
    /// A mutex (`pthread_mutex_lock`, or any futex with a live owner).
    Mutex,
    /// A condition variable: it has no holder, only signalers.
    ConditionVariable,
    /// A reader-writer lock.
    RwLock,
    /// A semaphore.
    Semaphore,
    /// A barrier.
    Barrier,
    /// `pthread_join`: waiting for a thread to exit.
    ThreadExit,
    /// A futex nothing more is known of.
    Futex,
}

impl WaitKind {
    /// Tells the kind from the stack's function names, innermost first:
    /// glibc's, and Rust's `std::sync` and `parking_lot`'s.
    pub fn from_stack<'a>(functions: impl IntoIterator<Item = &'a str>) -> Self {
        for name in functions {
            let kind = if name.contains("pthread_cond_")
                || (name.contains("Condvar") && name.contains("wait"))
            {
                Self::ConditionVariable
            } else if name.contains("pthread_rwlock_") || name.contains("RwLock") {
                Self::RwLock
            } else if name.contains("sem_wait")
                || name.contains("sem_timedwait")
                || name.contains("sem_clockwait")
            {
                Self::Semaphore
            } else if name.contains("pthread_barrier_") {
                Self::Barrier
            } else if name.contains("pthread_join")
                || name.contains("pthread_clockjoin")
                || name.contains("pthread_timedjoin")
            {
                Self::ThreadExit
            } else if name.contains("mutex_lock")
                || name.contains("lll_lock")
                || (name.contains("Mutex") && name.contains("lock"))
            {
                Self::Mutex
            } else {
                continue;
            };
            return kind;
        }
        Self::Futex
    }

    /// What it is, in a word or two (`mutex`, `condition variable`).
    pub fn noun(self) -> &'static str {
        match self {
            Self::Mutex => "mutex",
            Self::ConditionVariable => "condition variable",
            Self::RwLock => "rwlock",
            Self::Semaphore => "semaphore",
            Self::Barrier => "barrier",
            Self::ThreadExit => "thread",
            Self::Futex => "futex",
        }
    }
}

/// What a stalled thread waits for on a futex.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LockWait {
    /// The futex address (for a mutex: the mutex).
    pub addr: u64,
    /// What kind of wait it is.
    pub kind: WaitKind,
    /// The thread holding the lock (or, for [`WaitKind::ThreadExit`], the
    /// thread waited for), where it can be told.
    pub owner: Option<u32>,
    /// That thread's name.
    pub owner_name: Option<String>,
    /// The owner was inferred (a reference to the lock on its stack), not
    /// read from the lock.
    pub probable: bool,
}

/// Where one stalled thread (or goroutine) is stuck, as captured at one
/// moment.
#[derive(Clone, Debug, PartialEq)]
pub struct StallReport {
    /// Process id.
    pub pid: u32,
    /// Thread id; for a goroutine, the thread it last ran a traced call on.
    pub tid: u32,
    /// A Go program's goroutine stuck inside the call; `None` for a thread.
    /// Its report says what the Go runtime says of it (its status and why
    /// it waits), not what a thread's stack and system call say.
    pub goroutine: Option<u64>,
    /// Thread name.
    pub thread_name: String,
    /// The stalled span: the thread's innermost open span.
    pub span_id: u64,
    /// Its function (index into the probe table).
    pub function: u32,
    /// Its function's name.
    pub function_name: String,
    /// Its depth on the thread.
    pub depth: u32,
    /// The span's start, `CLOCK_MONOTONIC` ns (when tracing began, for a
    /// call that was already running then: see `before_attach`).
    pub since_ns: u64,
    /// The call was already running when ferret attached.
    pub before_attach: bool,
    /// When this capture was taken, `CLOCK_MONOTONIC` ns.
    pub captured_ns: u64,
    /// Scheduler state.
    pub state: SchedState,
    /// The system call it is blocked in, rendered strace-like.
    pub syscall: Option<String>,
    /// The kernel function it sleeps in.
    pub wchan: Option<String>,
    /// The lock it waits for.
    pub lock: Option<LockWait>,
    /// The deadlock it is part of: the threads (tid, name) each waiting for
    /// a lock the next one holds, this thread first; empty if none.
    pub deadlock: Vec<(u32, String)>,
    /// The thread whose lock this one waits for, when they are deadlocked.
    pub deadlock_with: Option<u32>,
    /// The user stack, innermost frame first; shared by the reports of
    /// threads whose walks met the same addresses (symbolized once).
    pub frames: Arc<[Frame]>,
    /// How the stack walk ended, when it could not reach the outermost
    /// frame (or why there is no stack).
    pub stack_note: Option<String>,
    /// One line: state, system call and what it waits for.
    pub wait: String,
    /// The stalled call was found on the walked stack (a frame of its
    /// function entered at its stack pointer): the capture shows that very
    /// call. `false` where the walk could not reach it (hidden by a
    /// uretprobe, cut short).
    pub on_stack: bool,
    /// The stall group it belongs to (threads stuck in the same place; see
    /// [`super::group`]): the `stall_group` column. 0 until grouped.
    pub group: u64,
}

impl StallReport {
    /// The stack as text: one frame per line, innermost first, as
    /// `function (file:line)` where known; a last line says why the walk
    /// stopped early, if it did.
    pub fn stack_text(&self) -> String {
        let mut lines: Vec<String> = self.frames.iter().map(Frame::display).collect();
        lines.extend(self.stack_note.clone());
        lines.join("\n")
    }

    /// The report as a Parquet `STALL` row; `stack` is [`Self::stack_text`].
    pub fn row<'a>(&'a self, stack: &'a str) -> StallRow<'a> {
        StallRow {
            ts_ns: self.captured_ns,
            pid: self.pid,
            tid: self.tid,
            thread_name: &self.thread_name,
            span_id: self.span_id,
            depth: self.depth,
            function: self.function,
            start_ns: self.since_ns,
            stack,
            wait: &self.wait,
            group: self.group,
            goroutine: self.goroutine,
        }
    }

    /// One line for a terminal: who, where, for how long, waiting for what.
    pub fn headline(&self) -> String {
        let at = self
            .place()
            .map(|f| format!(" at {}", f.display()))
            .unwrap_or_default();
        let who = match self.goroutine {
            Some(goid) => format!("goroutine {goid} (last on tid {})", self.tid),
            None => format!("tid {} ({})", self.tid, self.thread_name),
        };
        format!(
            "stall: {who} in {} {}{at}: {}",
            self.function_name,
            stalled_for(
                self.captured_ns.saturating_sub(self.since_ns),
                self.before_attach
            ),
            self.wait
        )
    }

    /// The frame that says where it is stuck: the one of the stalled
    /// function (the line inside it), else the innermost.
    pub fn place(&self) -> Option<&Frame> {
        self.frames
            .iter()
            .find(|f| f.function.as_deref() == Some(self.function_name.as_str()))
            .or(self.frames.first())
    }

    /// Whose stall it is: its process and its thread, or its goroutine.
    pub fn key(&self) -> (u32, crate::trace::StackKey) {
        (
            self.pid,
            self.goroutine.map_or(
                crate::trace::StackKey::Thread(self.tid),
                crate::trace::StackKey::Goroutine,
            ),
        )
    }

    /// The thread is in a deadlock.
    pub fn deadlocked(&self) -> bool {
        !self.deadlock.is_empty()
    }

    /// What identifies the location for "did it move": the innermost
    /// function (not its exact instruction, which a spinning loop changes
    /// all the time), the call sites below it, and what it waits in.
    pub(super) fn location_key(&self) -> String {
        let mut key = format!(
            "{:?}|{:?}|",
            self.state,
            self.syscall.as_ref().map(|s| s.split('(').next())
        );
        for (i, frame) in self.frames.iter().enumerate() {
            if i == 0 {
                let _ = write!(key, "{:?};", frame.function);
            } else {
                let _ = write!(key, "{:#x};", frame.address);
            }
        }
        if let Some(lock) = &self.lock {
            let _ = write!(key, "{:#x}>{:?}", lock.addr, lock.owner);
        }
        key
    }
}

/// `for 2.5 s`, or `since before ferret attached (≥ 2.5 s)` for a call that
/// was already running then (its start is unknown).
pub(super) fn stalled_for(ns: u64, before_attach: bool) -> String {
    let secs = ns as f64 / 1e9;
    if before_attach {
        format!("since before ferret attached (≥ {secs:.1} s)")
    } else {
        format!("for {secs:.1} s")
    }
}

/// Builds the one-line `wait` summary, e.g. `sleeping in futex(0x55…,
/// FUTEX_WAIT_PRIVATE, 2, NULL) [futex_wait_queue] — waits for mutex
/// 0x55… held by tid 1235 (lock-ba) — DEADLOCK: tid 1234 (lock-ab) waits for
/// tid 1235 (lock-ba), which waits for tid 1234`.
pub fn wait_summary(
    state: SchedState,
    syscall: Option<&str>,
    wchan: Option<&str>,
    running_on: Option<u32>,
    lock: Option<&LockWait>,
    deadlock: &[(u32, String)],
    deadlock_probable: bool,
) -> String {
    let mut out = state.to_string();
    match (syscall, state) {
        (Some(call), _) => {
            let _ = write!(out, " in {call}");
        }
        (None, SchedState::Running) => {
            out.push_str(" in user space");
            if let Some(cpu) = running_on {
                let _ = write!(out, " (CPU {cpu})");
            }
        }
        (None, _) => out.push_str(", not in a system call"),
    }
    if let Some(wchan) = wchan {
        let _ = write!(out, " [kernel: {wchan}]");
    }
    if let Some(lock) = lock {
        let named = |tid: u32| match &lock.owner_name {
            Some(name) => format!("tid {tid} ({name})"),
            None => format!("tid {tid}"),
        };
        let noun = lock.kind.noun();
        match (lock.kind, lock.owner) {
            (WaitKind::ThreadExit, Some(tid)) => {
                let _ = write!(out, " — waits for {} to exit", named(tid));
            }
            (_, Some(_)) if deadlock.len() == 1 => {
                let _ = write!(
                    out,
                    " — waits for {noun} {:#x}, which it holds itself",
                    lock.addr
                );
            }
            (_, Some(owner)) if lock.probable => {
                let _ = write!(
                    out,
                    " — waits for {noun} {:#x} probably held by {} (its stack refers to the {noun})",
                    lock.addr,
                    named(owner)
                );
            }
            (_, Some(owner)) => {
                let _ = write!(
                    out,
                    " — waits for {noun} {:#x} held by {}",
                    lock.addr,
                    named(owner)
                );
            }
            (WaitKind::Mutex | WaitKind::RwLock | WaitKind::Futex, None) => {
                let _ = write!(out, " — waits on {noun} {:#x} (holder unknown)", lock.addr);
            }
            (_, None) => {
                let _ = write!(out, " — waits on {noun} {:#x}", lock.addr);
            }
        }
    }
    if deadlock.len() > 1 {
        out.push_str(if deadlock_probable {
            " — PROBABLE DEADLOCK: "
        } else {
            " — DEADLOCK: "
        });
        let names: Vec<String> = deadlock
            .iter()
            .map(|(tid, name)| format!("tid {tid} ({name})"))
            .collect();
        for (i, name) in names.iter().enumerate() {
            if i == 0 {
                out.push_str(name);
            } else {
                let _ = write!(out, " waits for {name}, which");
            }
        }
        let _ = write!(out, " waits for tid {}", deadlock[0].0);
    } else if deadlock.len() == 1 {
        out.push_str(" — DEADLOCK: relocking a mutex it holds");
    }
    out
}

/// A stalled span found no longer on its thread's stack: it ended without
/// its exit being seen; the caller should end it (see
/// [`crate::trace::Reconstructor::retire`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StaleSpan {
    /// Process id.
    pub pid: u32,
    /// Thread id.
    pub tid: u32,
    /// The goroutine, for a goroutine's span.
    pub goroutine: Option<u64>,
    /// The span.
    pub span_id: u64,
    /// When the capture saw it gone.
    pub seen_ns: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lock(owner: Option<u32>, name: Option<&str>) -> LockWait {
        LockWait {
            kind: WaitKind::Mutex,
            probable: false,
            addr: 0x55d0_c0a0_2040,
            owner,
            owner_name: name.map(str::to_owned),
        }
    }

    #[test]
    fn a_mutex_wait_names_the_holder() {
        let text = wait_summary(
            SchedState::Sleeping,
            Some("futex(0x55d0c0a02040, FUTEX_WAIT_PRIVATE, 2, NULL)"),
            Some("futex_wait_queue"),
            Some(1),
            Some(&lock(Some(1235), Some("lock-ba"))),
            &[],
            false,
        );
        assert_eq!(
            text,
            "sleeping in futex(0x55d0c0a02040, FUTEX_WAIT_PRIVATE, 2, NULL) \
             [kernel: futex_wait_queue] — waits for mutex 0x55d0c0a02040 held by tid 1235 (lock-ba)"
        );
    }

    #[test]
    fn a_deadlock_is_named() {
        let text = wait_summary(
            SchedState::Sleeping,
            Some("futex(…)"),
            None,
            None,
            Some(&lock(Some(1235), Some("lock-ba"))),
            &[(1234, "lock-ab".to_owned()), (1235, "lock-ba".to_owned())],
            false,
        );
        assert!(
            text.ends_with(
                "— DEADLOCK: tid 1234 (lock-ab) waits for tid 1235 (lock-ba), which waits for tid 1234"
            ),
            "{text}"
        );
        let own = wait_summary(
            SchedState::Sleeping,
            Some("futex(…)"),
            None,
            None,
            Some(&lock(Some(7), Some("me"))),
            &[(7, "me".to_owned())],
            false,
        );
        assert!(own.contains("which it holds itself"), "{own}");
        assert!(
            own.ends_with("DEADLOCK: relocking a mutex it holds"),
            "{own}"
        );
    }

    #[test]
    fn an_inferred_holder_and_deadlock_are_called_probable() {
        let inferred = LockWait {
            probable: true,
            ..lock(Some(1235), Some("mover"))
        };
        let text = wait_summary(
            SchedState::Sleeping,
            None,
            None,
            None,
            Some(&inferred),
            &[(1234, "main".to_owned()), (1235, "mover".to_owned())],
            true,
        );
        assert!(
            text.contains(
                "waits for mutex 0x55d0c0a02040 probably held by tid 1235 (mover) \
                 (its stack refers to the mutex) — PROBABLE DEADLOCK: tid 1234 (main)"
            ),
            "{text}"
        );
    }

    #[test]
    fn running_and_unknown_holders() {
        assert_eq!(
            wait_summary(SchedState::Running, None, None, Some(3), None, &[], false),
            "running in user space (CPU 3)"
        );
        assert_eq!(
            wait_summary(
                SchedState::Sleeping,
                Some("futex(0x1, FUTEX_WAIT_BITSET_PRIVATE, 0, NULL)"),
                None,
                None,
                Some(&LockWait {
                    kind: WaitKind::Futex,
                    ..lock(None, None)
                }),
                &[],
                false
            ),
            "sleeping in futex(0x1, FUTEX_WAIT_BITSET_PRIVATE, 0, NULL) — waits on futex \
             0x55d0c0a02040 (holder unknown)"
        );
        let condvar = LockWait {
            kind: WaitKind::ConditionVariable,
            ..lock(None, None)
        };
        assert!(
            wait_summary(
                SchedState::Sleeping,
                None,
                None,
                None,
                Some(&condvar),
                &[],
                false
            )
            .ends_with("— waits on condition variable 0x55d0c0a02040"),
            "a condition variable has no holder to be unknown"
        );
        let join = LockWait {
            kind: WaitKind::ThreadExit,
            ..lock(Some(1236), Some("worker"))
        };
        assert!(
            wait_summary(
                SchedState::Sleeping,
                None,
                None,
                None,
                Some(&join),
                &[],
                false
            )
            .ends_with("— waits for tid 1236 (worker) to exit")
        );
        assert_eq!(
            wait_summary(
                SchedState::DiskSleep,
                None,
                Some("folio_wait_bit"),
                None,
                None,
                &[],
                false
            ),
            "in uninterruptible sleep, not in a system call [kernel: folio_wait_bit]"
        );
    }

    #[test]
    fn the_stack_tells_what_a_futex_wait_is_for() {
        let kind = |names: &[&str]| WaitKind::from_stack(names.iter().copied());
        assert_eq!(
            kind(&[
                "futex_wait",
                "__GI___lll_lock_wait",
                "___pthread_mutex_lock",
                "work"
            ]),
            WaitKind::Mutex
        );
        assert_eq!(
            kind(&[
                "__futex_abstimed_wait_common",
                "___pthread_cond_wait",
                "consume"
            ]),
            WaitKind::ConditionVariable
        );
        assert_eq!(
            kind(&[
                "__futex_abstimed_wait_common",
                "__pthread_clockjoin_ex",
                "main"
            ]),
            WaitKind::ThreadExit
        );
        assert_eq!(
            kind(&["do_futex_wait", "__new_sem_wait_slow64", "take"]),
            WaitKind::Semaphore
        );
        assert_eq!(kind(&["syscall", "my_own_futex_lock"]), WaitKind::Futex);
        // Rust: std's futex mutex and condvar, parking_lot's raw mutex.
        assert_eq!(
            kind(&[
                "syscall",
                "std::sys::pal::unix::futex::futex_wait",
                "std::sys::sync::mutex::futex::Mutex::lock_contended",
                "app::transfer"
            ]),
            WaitKind::Mutex
        );
        assert_eq!(
            kind(&[
                "std::sys::pal::unix::futex::futex_wait",
                "std::sync::poison::condvar::Condvar::wait",
                "app::consume"
            ]),
            WaitKind::ConditionVariable
        );
        assert_eq!(
            kind(&["syscall", "parking_lot::raw_mutex::RawMutex::lock_slow"]),
            WaitKind::Mutex
        );
    }

    #[test]
    fn frames_render_what_is_known() {
        let mut frame = Frame {
            function: Some("take_b".to_owned()),
            file: Some("/src/deadlock.c".to_owned()),
            line: Some(42),
            address: 0x1234,
            module: Some("/bin/app".to_owned()),
            inlined: false,
        };
        assert_eq!(frame.display(), "take_b (/src/deadlock.c:42)");
        frame.inlined = true;
        frame.line = None;
        assert_eq!(frame.display(), "take_b (/src/deadlock.c) [inlined]");
        frame.function = None;
        frame.file = None;
        frame.inlined = false;
        assert_eq!(frame.display(), "0x1234 in /bin/app");
        frame.module = None;
        assert_eq!(frame.display(), "0x1234");
    }
}
