//! Holding a process's running threads still for a moment, unseen by its
//! parent: `PTRACE_SEIZE` + `PTRACE_INTERRUPT` each thread that is on a
//! CPU or waiting for one, and `PTRACE_DETACH` when the guard drops.
//!
//! Why: on this project's kernel (6.18) removing uprobes that a thread is
//! hitting flat out does not finish while it keeps hitting them — measured:
//! a program calling 300 traced functions in a loop kept ferret's detach in
//! the kernel for 97 s of system time, until the program was stopped, when
//! it finished at once. So when detaching takes longer than it should, the
//! probe engine holds the target's running threads still until it is done
//! (see `probe::Engine`). Blocked threads are not touched: they are not
//! hitting anything, and interrupting them could end a system call early.
//! `PTRACE_SEIZE`, unlike `SIGSTOP`, is invisible to the target's parent (no
//! job-control stop reaches its shell), and a signal that arrives meanwhile
//! is handed back on detach. A thread already traced (a debugger) is left
//! alone.

use std::time::{Duration, Instant};

/// How long a thread is given to reach its stop.
const STOP_WAIT: Duration = Duration::from_millis(200);

/// Threads held still; they run on when this is dropped (on the thread
/// that made it: ptrace belongs to the tracing thread).
#[derive(Debug)]
pub struct Frozen {
    /// Stopped threads and the signal to hand back to each.
    stopped: Vec<(libc::pid_t, i32)>,
    /// Seized threads that had not stopped yet.
    late: Vec<libc::pid_t>,
    _not_send: std::marker::PhantomData<*const ()>,
}

impl Frozen {
    /// How many threads are held.
    pub fn len(&self) -> usize {
        self.stopped.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.stopped.is_empty()
    }
}

/// Holds every thread of `pid` that is running or runnable.
pub fn running_threads(pid: u32) -> Frozen {
    let mut frozen = Frozen {
        stopped: Vec::new(),
        late: Vec::new(),
        _not_send: std::marker::PhantomData,
    };
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return frozen;
    };
    let mut seized = Vec::new();
    for task in tasks.flatten() {
        let Some(tid) = task
            .file_name()
            .to_str()
            .and_then(|t| t.parse::<i32>().ok())
        else {
            continue;
        };
        let running = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/stat"))
            .ok()
            .and_then(|stat| state_of(&stat))
            .is_some_and(|state| state == 'R');
        if !running {
            continue;
        }
        // SAFETY: PTRACE_SEIZE takes no pointer arguments (options 0).
        if unsafe { libc::ptrace(libc::PTRACE_SEIZE, tid, 0, 0) } == 0 {
            // SAFETY: PTRACE_INTERRUPT takes no pointer arguments.
            unsafe { libc::ptrace(libc::PTRACE_INTERRUPT, tid, 0, 0) };
            seized.push(tid);
        }
    }
    let deadline = Instant::now() + STOP_WAIT;
    for tid in seized {
        match wait_for_stop(tid, deadline) {
            Some(status) => frozen.stopped.push((tid, signal_to_return(status))),
            None => frozen.late.push(tid),
        }
    }
    frozen
}

impl Drop for Frozen {
    fn drop(&mut self) {
        for &(tid, signal) in &self.stopped {
            // SAFETY: PTRACE_DETACH with a signal number as data, no pointers.
            unsafe { libc::ptrace(libc::PTRACE_DETACH, tid, 0, signal) };
        }
        // A seized thread that had not stopped cannot be detached until it
        // does; give it a moment more. (A tracer that goes away lets its
        // tracees go in any case.)
        let deadline = Instant::now() + STOP_WAIT;
        for &tid in &self.late {
            if let Some(status) = wait_for_stop(tid, deadline) {
                // SAFETY: as above.
                unsafe { libc::ptrace(libc::PTRACE_DETACH, tid, 0, signal_to_return(status)) };
            }
        }
    }
}

/// The signal a stop carried, to hand back; an interrupt stop carries none.
fn signal_to_return(status: i32) -> i32 {
    if (status >> 16) & 0xff == libc::PTRACE_EVENT_STOP {
        0
    } else {
        libc::WSTOPSIG(status)
    }
}

/// The state letter of a `/proc/PID/task/TID/stat` line.
fn state_of(stat: &str) -> Option<char> {
    stat.rsplit_once(") ")?.1.chars().next()
}

/// Waits until `deadline` for the seized thread's stop; its wait status.
fn wait_for_stop(tid: libc::pid_t, deadline: Instant) -> Option<i32> {
    loop {
        let mut status = 0;
        // SAFETY: waitpid writes the status to a live local.
        let r = unsafe { libc::waitpid(tid, &raw mut status, libc::__WALL | libc::WNOHANG) };
        if r == tid {
            return libc::WIFSTOPPED(status).then_some(status);
        }
        if r < 0 && std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return None;
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_micros(100));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_follows_the_command_name_whatever_it_holds() {
        assert_eq!(state_of("123 (a) b) R 1 2"), Some('R'));
        assert_eq!(state_of("123 (worker) S 1"), Some('S'));
        assert_eq!(state_of("garbage"), None);
    }
}
