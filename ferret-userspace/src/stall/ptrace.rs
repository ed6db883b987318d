//! Reading the registers of a thread that is running in user space, where
//! the kernel publishes none: stop it for an instant with `PTRACE_SEIZE` +
//! `PTRACE_INTERRUPT`, read its registers (and let the caller walk its
//! stack while it cannot change), and detach, which lets it run on.
//!
//! Only the one thread is stopped, never the rest of the process, and never
//! for longer than the walk takes (well under a millisecond once the
//! modules are loaded). `PTRACE_SEIZE`, unlike `PTRACE_ATTACH`, sends no
//! `SIGSTOP`, so nothing is left pending. A signal that arrives while the
//! thread is stopped is handed back to it on detach. If ferret died while
//! the thread was stopped, the kernel would detach it and it would run on.

use std::{
    cell::RefCell,
    time::{Duration, Instant},
};

use super::unwind::Registers;

/// How long a running thread is given to reach the stop. One that is on a
/// CPU or runnable stops at once; one that just entered the kernel stops
/// when it leaves it, which may take a while.
const STOP_WAIT: Duration = Duration::from_secs(1);

thread_local! {
    /// Threads interrupted on this (tracing) thread that had not stopped
    /// in time: they stop later, and must then be let go at once.
    static LATE: RefCell<Vec<libc::pid_t>> = const { RefCell::new(Vec::new()) };
}

/// Why the registers could not be read.
#[derive(Debug, thiserror::Error)]
pub enum PtraceError {
    /// `PTRACE_SEIZE` failed: another tracer (a debugger) holds the thread,
    /// or ferret lacks the privilege.
    #[error("cannot attach to thread {tid}: {source}")]
    Seize {
        /// The thread.
        tid: u32,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The thread exited or could not be stopped.
    #[error("thread {tid} did not stop: {reason}")]
    Stop {
        /// The thread.
        tid: u32,
        /// What happened.
        reason: String,
    },
}

/// Stops thread `tid` for as long as `inspect` runs, hands it the thread's
/// registers, and lets the thread go on. Must be called from one OS thread
/// throughout (ptrace ties the tracee to the tracing thread).
pub fn with_thread_stopped<R>(
    tid: u32,
    inspect: impl FnOnce(Registers) -> R,
) -> Result<R, PtraceError> {
    let tid_t = tid as libc::pid_t;
    release_late();
    // SAFETY: PTRACE_SEIZE takes no pointer arguments (options 0).
    if unsafe { libc::ptrace(libc::PTRACE_SEIZE, tid_t, 0, 0) } != 0 {
        return Err(PtraceError::Seize {
            tid,
            source: std::io::Error::last_os_error(),
        });
    }
    let detach = |signal: i32| {
        // SAFETY: PTRACE_DETACH with a signal number as data, no pointers.
        unsafe { libc::ptrace(libc::PTRACE_DETACH, tid_t, 0, signal) };
    };
    // SAFETY: PTRACE_INTERRUPT takes no pointer arguments.
    unsafe { libc::ptrace(libc::PTRACE_INTERRUPT, tid_t, 0, 0) };
    let status = match wait_for_stop(tid_t, STOP_WAIT) {
        Ok(Some(status)) => status,
        Ok(None) => {
            // Not stopped yet, and a thread that is not stopped cannot be
            // detached: remember it, and let it go as soon as it stops.
            LATE.with(|late| late.borrow_mut().push(tid_t));
            return Err(PtraceError::Stop {
                tid,
                reason: format!("not stopped after {STOP_WAIT:?}; it will be let go when it does"),
            });
        }
        Err(reason) => {
            detach(0);
            return Err(PtraceError::Stop { tid, reason });
        }
    };
    // A signal-delivery stop (a signal raced with the interrupt) must give
    // the signal back; an interrupt stop (PTRACE_EVENT_STOP) carries none.
    let event = (status >> 16) & 0xff;
    let reinject = if event == libc::PTRACE_EVENT_STOP {
        0
    } else {
        libc::WSTOPSIG(status)
    };
    // SAFETY: user_regs_struct is plain integers; all-zero is valid.
    let mut regs: libc::user_regs_struct = unsafe { std::mem::zeroed() };
    // SAFETY: PTRACE_GETREGS writes one user_regs_struct to the pointer,
    // which points at a live local of that type.
    let got = unsafe {
        libc::ptrace(
            libc::PTRACE_GETREGS,
            tid_t,
            0,
            (&raw mut regs).cast::<libc::c_void>(),
        )
    };
    let result = if got == 0 {
        Ok(inspect(Registers {
            pc: regs.rip,
            sp: regs.rsp,
            bp: Some(regs.rbp),
        }))
    } else {
        Err(PtraceError::Stop {
            tid,
            reason: format!("reading its registers: {}", std::io::Error::last_os_error()),
        })
    };
    detach(reinject);
    result
}

/// Lets go the threads that stopped after their wait gave up (see
/// [`with_thread_stopped`]), waiting up to `patience` for them. Returns how
/// many are still not stopped. Called before each stop; a tracing thread
/// that ends lets its tracees go by itself.
pub fn release_late_within(patience: Duration) -> usize {
    LATE.with(|late| {
        let mut late = late.borrow_mut();
        late.retain(|&tid| match wait_for_stop(tid, patience) {
            Ok(Some(status)) => {
                let event = (status >> 16) & 0xff;
                let signal = if event == libc::PTRACE_EVENT_STOP {
                    0
                } else {
                    libc::WSTOPSIG(status)
                };
                // SAFETY: PTRACE_DETACH with a signal number, no pointers.
                unsafe { libc::ptrace(libc::PTRACE_DETACH, tid, 0, signal) };
                false
            }
            Ok(None) => true,
            Err(_) => false,
        });
        late.len()
    })
}

fn release_late() {
    release_late_within(Duration::ZERO);
}

/// Waits up to `patience` for the seized thread's stop; returns the wait
/// status, or `None` if it has not stopped yet.
fn wait_for_stop(tid: libc::pid_t, patience: Duration) -> Result<Option<i32>, String> {
    let started = Instant::now();
    loop {
        let mut status = 0;
        // SAFETY: waitpid writes the status to a live local.
        let r = unsafe { libc::waitpid(tid, &raw mut status, libc::__WALL | libc::WNOHANG) };
        if r == tid {
            if libc::WIFSTOPPED(status) {
                return Ok(Some(status));
            }
            return Err("it exited".to_owned());
        }
        if r < 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return Err(e.to_string());
        }
        if started.elapsed() >= patience {
            return Ok(None);
        }
        std::thread::sleep(Duration::from_micros(100));
    }
}
