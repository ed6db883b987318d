//! What the kernel says about one thread, from `/proc/PID/task/TID/`:
//! scheduler state (`stat`), the system call it is blocked in with its
//! arguments and user stack and instruction pointers (`syscall`), and the
//! kernel function it sleeps in (`wchan`).
//!
//! The parsers are pure functions over the files' text, tested on literals;
//! [`read_thread`] is the thin wrapper that reads them. None of these reads
//! stops or disturbs the thread.

use std::fmt;

/// The scheduler state letter of `/proc/.../stat` (see proc(5)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SchedState {
    /// `R`: on a CPU or waiting for one.
    Running,
    /// `S`: interruptible sleep (waiting for an event).
    Sleeping,
    /// `D`: uninterruptible sleep (usually I/O).
    DiskSleep,
    /// `T`: stopped by a job-control signal.
    Stopped,
    /// `t`: stopped by a debugger.
    TracingStop,
    /// `Z`: exited, not yet reaped.
    Zombie,
    /// `X`: dead.
    Dead,
    /// `I`: idle kernel thread.
    Idle,
    /// A letter this version does not know.
    Other(char),
}

impl SchedState {
    /// The state for a `stat` letter.
    pub fn from_letter(letter: char) -> Self {
        match letter {
            'R' => Self::Running,
            'S' => Self::Sleeping,
            'D' => Self::DiskSleep,
            'T' => Self::Stopped,
            't' => Self::TracingStop,
            'Z' => Self::Zombie,
            'X' | 'x' => Self::Dead,
            'I' => Self::Idle,
            other => Self::Other(other),
        }
    }
}

impl fmt::Display for SchedState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Running => f.write_str("running"),
            Self::Sleeping => f.write_str("sleeping"),
            Self::DiskSleep => f.write_str("in uninterruptible sleep"),
            Self::Stopped => f.write_str("stopped"),
            Self::TracingStop => f.write_str("stopped by a debugger"),
            Self::Zombie => f.write_str("exited (zombie)"),
            Self::Dead => f.write_str("dead"),
            Self::Idle => f.write_str("idle"),
            Self::Other(c) => write!(f, "in state {c}"),
        }
    }
}

/// The fields of `/proc/.../stat` the watchdog uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stat {
    /// The thread's name (`comm`).
    pub comm: String,
    /// Scheduler state.
    pub state: SchedState,
    /// User-mode CPU time, clock ticks.
    pub utime: u64,
    /// Kernel-mode CPU time, clock ticks.
    pub stime: u64,
    /// The CPU it last ran on.
    pub processor: Option<u32>,
}

/// Parses a `stat` line (with [`crate::metrics::parse_stat`], which also
/// serves the process metrics).
pub fn parse_stat(text: &str) -> Option<Stat> {
    let stat = crate::metrics::parse_stat(text).ok()?;
    Some(Stat {
        comm: stat.comm,
        state: SchedState::from_letter(stat.state),
        utime: stat.utime_ticks,
        stime: stat.stime_ticks,
        processor: stat.processor,
    })
}

/// What `/proc/.../syscall` says the thread is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyscallState {
    /// Not blocked: executing (in user space, or in the kernel on its behalf
    /// without sleeping). No registers are published for a running thread.
    Running,
    /// Blocked, but not in a system call (a page fault, a stop).
    Blocked {
        /// User stack pointer.
        sp: u64,
        /// User instruction pointer.
        pc: u64,
    },
    /// Blocked in system call `nr`.
    InSyscall {
        /// The x86-64 system call number.
        nr: u64,
        /// Its six arguments.
        args: [u64; 6],
        /// User stack pointer at the call.
        sp: u64,
        /// User instruction pointer: just after the `syscall` instruction.
        pc: u64,
    },
}

impl SyscallState {
    /// The user stack and instruction pointers, where the kernel gives them.
    pub fn sp_pc(&self) -> Option<(u64, u64)> {
        match *self {
            Self::Running => None,
            Self::Blocked { sp, pc } | Self::InSyscall { sp, pc, .. } => Some((sp, pc)),
        }
    }
}

/// Parses `/proc/.../syscall`: `running`, `-1 SP PC`, or
/// `NR ARG1 … ARG6 SP PC` (number in decimal, the rest in `0x` hex).
pub fn parse_syscall(text: &str) -> Option<SyscallState> {
    let fields: Vec<&str> = text.split_ascii_whitespace().collect();
    let hex = |s: &str| u64::from_str_radix(s.strip_prefix("0x").unwrap_or(s), 16).ok();
    match fields.as_slice() {
        ["running"] => Some(SyscallState::Running),
        ["-1", sp, pc] => Some(SyscallState::Blocked {
            sp: hex(sp)?,
            pc: hex(pc)?,
        }),
        [nr, a0, a1, a2, a3, a4, a5, sp, pc] => Some(SyscallState::InSyscall {
            nr: nr.parse().ok()?,
            args: [hex(a0)?, hex(a1)?, hex(a2)?, hex(a3)?, hex(a4)?, hex(a5)?],
            sp: hex(sp)?,
            pc: hex(pc)?,
        }),
        _ => None,
    }
}

/// Parses `/proc/.../wchan`: the kernel function a sleeping thread waits
/// in, or `None` (`0`, or empty when the kernel hides it).
pub fn parse_wchan(text: &str) -> Option<String> {
    let text = text.trim();
    (!text.is_empty() && text != "0").then(|| text.to_owned())
}

/// One reading of a thread's `/proc` files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ThreadProc {
    /// `stat`.
    pub stat: Stat,
    /// `syscall`; `None` when the kernel refused or the text did not parse.
    pub syscall: Option<SyscallState>,
    /// `wchan`.
    pub wchan: Option<String>,
}

/// Reads `stat`, `syscall` and `wchan` of thread `tid` of process `pid`.
/// `None` when the thread is gone.
pub fn read_thread(pid: u32, tid: u32) -> Option<ThreadProc> {
    let dir = format!("/proc/{pid}/task/{tid}");
    let stat = parse_stat(&std::fs::read_to_string(format!("{dir}/stat")).ok()?)?;
    let syscall = std::fs::read_to_string(format!("{dir}/syscall"))
        .ok()
        .and_then(|t| parse_syscall(&t));
    let wchan = std::fs::read_to_string(format!("{dir}/wchan"))
        .ok()
        .and_then(|t| parse_wchan(&t));
    Some(ThreadProc {
        stat,
        syscall,
        wchan,
    })
}

/// Reads `syscall` of thread `tid` of process `pid` alone (the cheapest
/// look at where a blocked thread is). `None` when the thread is gone or
/// the kernel refused.
pub fn read_syscall(pid: u32, tid: u32) -> Option<SyscallState> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/syscall"))
        .ok()
        .and_then(|t| parse_syscall(&t))
}

/// The thread ids of process `pid`, ascending.
pub fn thread_ids(pid: u32) -> Vec<u32> {
    let mut tids: Vec<u32> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    tids.sort_unstable();
    tids
}

/// The name (`comm`) of thread `tid`, if it still exists.
pub fn thread_name(pid: u32, tid: u32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/comm"))
        .ok()
        .map(|s| s.trim_end_matches('\n').to_owned())
}

/// What file descriptor `fd` of `pid` refers to (`pipe:[1234]`, a path…).
pub fn fd_target(pid: u32, fd: u64) -> Option<String> {
    std::fs::read_link(format!("/proc/{pid}/fd/{fd}"))
        .ok()
        .map(|p| p.display().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_with_parentheses_and_spaces_in_the_name() {
        let line = "4242 (lock (a) b) S 4240 4240 1 34816 4240 1077952576 123 0 0 0 \
                    17 5 0 0 20 0 3 0 98765 10000000 200 18446744073709551615 1 1 0 0 0 \
                    0 0 0 0 0 0 0 -1 3 0 0 0 0 0 0 0 0 0 0 0 0 0";
        let stat = parse_stat(line).unwrap();
        assert_eq!(stat.comm, "lock (a) b");
        assert_eq!(stat.state, SchedState::Sleeping);
        assert_eq!((stat.utime, stat.stime), (17, 5));
        assert_eq!(stat.processor, Some(3));
    }

    #[test]
    fn stat_states() {
        for (letter, state) in [
            ("R", SchedState::Running),
            ("D", SchedState::DiskSleep),
            ("t", SchedState::TracingStop),
            ("Z", SchedState::Zombie),
            ("W", SchedState::Other('W')),
        ] {
            let line = format!("1 (x) {letter} 0 0 0 0 0 0 0 0 0 0 7 8 0 0 0 0 1 0 0 0 0");
            let stat = parse_stat(&line).unwrap();
            assert_eq!((stat.state, stat.utime, stat.stime), (state, 7, 8));
            assert_eq!(stat.processor, None, "short line: no processor field");
        }
        assert_eq!(parse_stat("garbage"), None);
        assert_eq!(parse_stat("1 (x) S 0"), None, "truncated");
    }

    #[test]
    fn syscall_running_blocked_and_in_a_call() {
        assert_eq!(parse_syscall("running\n"), Some(SyscallState::Running));
        assert_eq!(
            parse_syscall("-1 0x7ffc1d2e3f00 0x7f3a1d0a5e2e\n"),
            Some(SyscallState::Blocked {
                sp: 0x7ffc_1d2e_3f00,
                pc: 0x7f3a_1d0a_5e2e
            })
        );
        let futex = parse_syscall(
            "202 0x55d0c0a02040 0x80 0x2 0x0 0x0 0x0 0x7f3a1c7fdd48 0x7f3a1d0a1d61\n",
        )
        .unwrap();
        assert_eq!(
            futex,
            SyscallState::InSyscall {
                nr: 202,
                args: [0x55d0_c0a0_2040, 0x80, 2, 0, 0, 0],
                sp: 0x7f3a_1c7f_dd48,
                pc: 0x7f3a_1d0a_1d61,
            }
        );
        assert_eq!(futex.sp_pc(), Some((0x7f3a_1c7f_dd48, 0x7f3a_1d0a_1d61)));
        assert_eq!(SyscallState::Running.sp_pc(), None);
    }

    #[test]
    fn syscall_garbage_is_none() {
        assert_eq!(parse_syscall(""), None);
        assert_eq!(parse_syscall("202 0x1 0x2"), None);
        assert_eq!(parse_syscall("x 0x0 0x0 0x0 0x0 0x0 0x0 0x0 0x0"), None);
        assert_eq!(parse_syscall("-1 zz 0x1"), None);
    }

    proptest::proptest! {
        /// The files are the kernel's, but a reader must not trust them:
        /// nothing panics, whatever the text.
        #[test]
        fn parsers_take_any_text(text in ".{0,200}", fields in proptest::collection::vec("[-0-9a-fx()SR ]{0,12}", 0..45)) {
            let _ = parse_stat(&text);
            let _ = parse_syscall(&text);
            let _ = parse_wchan(&text);
            let joined = fields.join(" ");
            let _ = parse_stat(&joined);
            let _ = parse_syscall(&joined);
        }
    }

    #[test]
    fn wchan_zero_means_none() {
        assert_eq!(parse_wchan("0"), None);
        assert_eq!(parse_wchan(""), None);
        assert_eq!(
            parse_wchan("futex_wait_queue\n").as_deref(),
            Some("futex_wait_queue")
        );
    }
}
