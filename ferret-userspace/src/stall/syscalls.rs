//! x86-64 system call names, and a strace-like rendering of a blocked
//! call with the arguments that say what it waits for: the futex address
//! and operation, the sleep's duration, the file descriptor and what it
//! refers to.
//!
//! The names and numbers are the `syscalls` crate's x86-64 table (generated
//! from the kernel's `syscall_64.tbl`), chosen explicitly rather than the
//! host's: the registers ferret reads are x86-64's.
//!
//! Rendering is pure: memory and file-descriptor lookups go through
//! [`ArgReader`], so tests feed literals.

use std::fmt::Write as _;

use syscalls::x86_64::Sysno;

/// Reads what a call's pointer and descriptor arguments refer to.
pub trait ArgReader {
    /// A `struct timespec` at `avma` in the target: (seconds, nanoseconds).
    fn timespec(&self, avma: u64) -> Option<(i64, i64)>;
    /// What file descriptor `fd` refers to (`pipe:[123]`, a path, …).
    fn fd(&self, fd: u64) -> Option<String>;
}

/// `futex` operation numbers (linux/futex.h).
pub mod futex_op {
    /// Wait while the word equals a value.
    pub const WAIT: u64 = 0;
    /// Priority-inheritance lock.
    pub const LOCK_PI: u64 = 6;
    /// Wait with a bitset (glibc's condition variables and timed waits).
    pub const WAIT_BITSET: u64 = 9;
    /// Wait to be requeued onto a PI futex.
    pub const WAIT_REQUEUE_PI: u64 = 11;
    /// PI lock with a selectable clock.
    pub const LOCK_PI2: u64 = 13;
    /// Bit: the futex is private to the process.
    pub const PRIVATE_FLAG: u64 = 128;
    /// Bit: the timeout is on CLOCK_REALTIME.
    pub const CLOCK_REALTIME: u64 = 256;
    /// The operation without its flag bits.
    pub const fn command(op: u64) -> u64 {
        op & !(PRIVATE_FLAG | CLOCK_REALTIME)
    }
}

/// `futex` (202).
pub const SYS_FUTEX: u64 = Sysno::futex as u64;
/// `futex_wait` of the futex2 family (455): `(uaddr, val, mask, flags, timeout, clockid)`.
pub const SYS_FUTEX_WAIT: u64 = Sysno::futex_wait as u64;

/// x86-64 system call `nr`, if known.
fn sysno(nr: u64) -> Option<Sysno> {
    Sysno::new(usize::try_from(nr).ok()?)
}

/// If the call is a wait on a futex, its address: the lock word the thread
/// sleeps on.
pub fn futex_wait_address(nr: u64, args: &[u64; 6]) -> Option<u64> {
    match nr {
        SYS_FUTEX => matches!(
            futex_op::command(args[1]),
            futex_op::WAIT
                | futex_op::WAIT_BITSET
                | futex_op::LOCK_PI
                | futex_op::LOCK_PI2
                | futex_op::WAIT_REQUEUE_PI
        )
        .then_some(args[0]),
        SYS_FUTEX_WAIT => Some(args[0]),
        _ => None,
    }
}

/// Whether a `futex` call is a priority-inheritance lock, whose word holds
/// the owner's thread id.
pub fn is_pi_lock(nr: u64, args: &[u64; 6]) -> bool {
    nr == SYS_FUTEX
        && matches!(
            futex_op::command(args[1]),
            futex_op::LOCK_PI | futex_op::LOCK_PI2
        )
}

/// Renders the call like strace does, e.g.
/// `futex(0x55d0c0a02040, FUTEX_WAIT_PRIVATE, 2, NULL)` or
/// `clock_nanosleep(CLOCK_REALTIME, 0, {30.000000000s}, 0x7ffd…)`.
pub fn describe(nr: u64, args: &[u64; 6], reader: &dyn ArgReader) -> String {
    let Some(call) = sysno(nr) else {
        return format!(
            "syscall {nr}({:#x}, {:#x}, {:#x}, …)",
            args[0], args[1], args[2]
        );
    };
    let ptr = |v: u64| {
        if v == 0 {
            "NULL".to_owned()
        } else {
            format!("{v:#x}")
        }
    };
    let time = |v: u64| {
        if v == 0 {
            "NULL".to_owned()
        } else {
            reader
                .timespec(v)
                .map_or_else(|| format!("{v:#x}"), |(s, ns)| format!("{{{s}.{ns:09}s}}"))
        }
    };
    let fd = |v: u64| {
        let fd = v as i64;
        match reader.fd(v) {
            Some(target) if fd >= 0 => format!("{fd} → {target}"),
            _ => fd.to_string(),
        }
    };
    let int = |v: u64| (v as i64).to_string();
    let a = args;
    let shown: Vec<String> = match call {
        Sysno::futex => vec![
            format!("{:#x}", a[0]),
            futex_op_name(a[1]),
            int(a[2]),
            if matches!(
                futex_op::command(a[1]),
                futex_op::WAIT
                    | futex_op::WAIT_BITSET
                    | futex_op::LOCK_PI
                    | futex_op::LOCK_PI2
                    | futex_op::WAIT_REQUEUE_PI
            ) {
                time(a[3])
            } else {
                ptr(a[3])
            },
        ],
        Sysno::futex_wait => vec![
            format!("{:#x}", a[0]),
            int(a[1]),
            format!("{:#x}", a[2]),
            format!("{:#x}", a[3]),
            time(a[4]),
            clock_name(a[5]),
        ],
        Sysno::nanosleep => vec![time(a[0]), ptr(a[1])],
        Sysno::clock_nanosleep => vec![clock_name(a[0]), int(a[1]), time(a[2]), ptr(a[3])],
        Sysno::read
        | Sysno::write
        | Sysno::pread64
        | Sysno::pwrite64
        | Sysno::readv
        | Sysno::writev
        | Sysno::recvfrom
        | Sysno::sendto
        | Sysno::recvmsg
        | Sysno::sendmsg => vec![fd(a[0]), ptr(a[1]), int(a[2])],
        Sysno::accept | Sysno::accept4 | Sysno::connect => vec![fd(a[0]), ptr(a[1]), ptr(a[2])],
        Sysno::epoll_wait | Sysno::epoll_pwait => vec![fd(a[0]), ptr(a[1]), int(a[2]), int(a[3])],
        Sysno::epoll_pwait2 => vec![fd(a[0]), ptr(a[1]), int(a[2]), time(a[3])],
        Sysno::poll => vec![ptr(a[0]), int(a[1]), int(a[2])],
        Sysno::ppoll => vec![ptr(a[0]), int(a[1]), time(a[2])],
        Sysno::select | Sysno::pselect6 => vec![int(a[0]), ptr(a[1]), ptr(a[2]), ptr(a[3])],
        Sysno::wait4 => vec![int(a[0]), ptr(a[1]), int(a[2])],
        Sysno::waitid => vec![int(a[0]), int(a[1]), ptr(a[2])],
        Sysno::flock => vec![fd(a[0]), int(a[1])],
        Sysno::fcntl => vec![fd(a[0]), int(a[1]), format!("{:#x}", a[2])],
        Sysno::pause | Sysno::sched_yield => vec![],
        Sysno::rt_sigsuspend | Sysno::rt_sigtimedwait => vec![ptr(a[0]), ptr(a[1])],
        _ => vec![
            format!("{:#x}", a[0]),
            format!("{:#x}", a[1]),
            format!("{:#x}", a[2]),
            "…".to_owned(),
        ],
    };
    format!("{}({})", call.name(), shown.join(", "))
}

fn futex_op_name(op: u64) -> String {
    let command = match futex_op::command(op) {
        0 => "FUTEX_WAIT",
        1 => "FUTEX_WAKE",
        2 => "FUTEX_FD",
        3 => "FUTEX_REQUEUE",
        4 => "FUTEX_CMP_REQUEUE",
        5 => "FUTEX_WAKE_OP",
        6 => "FUTEX_LOCK_PI",
        7 => "FUTEX_UNLOCK_PI",
        8 => "FUTEX_TRYLOCK_PI",
        9 => "FUTEX_WAIT_BITSET",
        10 => "FUTEX_WAKE_BITSET",
        11 => "FUTEX_WAIT_REQUEUE_PI",
        12 => "FUTEX_CMP_REQUEUE_PI",
        13 => "FUTEX_LOCK_PI2",
        _ => return format!("{op:#x}"),
    };
    let mut out = command.to_owned();
    if op & futex_op::PRIVATE_FLAG != 0 {
        out.push_str("_PRIVATE");
    }
    if op & futex_op::CLOCK_REALTIME != 0 {
        out.push_str("|FUTEX_CLOCK_REALTIME");
    }
    out
}

fn clock_name(clock: u64) -> String {
    match clock {
        0 => "CLOCK_REALTIME".to_owned(),
        1 => "CLOCK_MONOTONIC".to_owned(),
        4 => "CLOCK_MONOTONIC_RAW".to_owned(),
        7 => "CLOCK_BOOTTIME".to_owned(),
        8 => "CLOCK_REALTIME_ALARM".to_owned(),
        9 => "CLOCK_BOOTTIME_ALARM".to_owned(),
        11 => "CLOCK_TAI".to_owned(),
        other => {
            let mut s = String::new();
            let _ = write!(s, "clock {}", other as i64);
            s
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The name of x86-64 system call `nr`, if known.
    fn name(nr: u64) -> Option<&'static str> {
        sysno(nr).map(|s| s.name())
    }

    struct Fake;
    impl ArgReader for Fake {
        fn timespec(&self, avma: u64) -> Option<(i64, i64)> {
            (avma == 0x7ffd_0000_1000).then_some((30, 5))
        }
        fn fd(&self, fd: u64) -> Option<String> {
            (fd == 3).then(|| "pipe:[4242]".to_owned())
        }
    }

    #[test]
    fn numbers_are_x86_64s_and_common_calls_are_named() {
        // The table is the crate's; what must hold is that its numbers are
        // x86-64's, which libc's constants (built for this target) are.
        for (nr, libc_nr) in [
            (0, libc::SYS_read),
            (SYS_FUTEX, libc::SYS_futex),
            (Sysno::futex_waitv as u64, libc::SYS_futex_waitv),
            (35, libc::SYS_nanosleep),
            (230, libc::SYS_clock_nanosleep),
            (232, libc::SYS_epoll_wait),
            (281, libc::SYS_epoll_pwait),
            (441, libc::SYS_epoll_pwait2),
            (61, libc::SYS_wait4),
        ] {
            assert_eq!(nr, libc_nr as u64);
        }
        assert_eq!(SYS_FUTEX_WAIT, 455);
        assert_eq!(name(0), Some("read"));
        assert_eq!(name(202), Some("futex"));
        assert_eq!(name(230), Some("clock_nanosleep"));
        assert_eq!(name(35), Some("nanosleep"));
        assert_eq!(name(455), Some("futex_wait"));
        assert_eq!(name(9999), None);
        assert_eq!(name(u64::MAX), None);
    }

    #[test]
    fn futex_wait_is_rendered_with_its_operation() {
        let args = [0x55d0_c0a0_2040, 0x80, 2, 0, 0, 0];
        assert_eq!(
            describe(202, &args, &Fake),
            "futex(0x55d0c0a02040, FUTEX_WAIT_PRIVATE, 2, NULL)"
        );
        assert_eq!(futex_wait_address(202, &args), Some(0x55d0_c0a0_2040));
        assert!(!is_pi_lock(202, &args));
        let bitset = [0x1000, 9 | 128 | 256, 0, 0x7ffd_0000_1000, 0, u64::MAX];
        assert_eq!(
            describe(202, &bitset, &Fake),
            "futex(0x1000, FUTEX_WAIT_BITSET_PRIVATE|FUTEX_CLOCK_REALTIME, 0, {30.000000005s})"
        );
        let wake = [0x1000, 1 | 128, 1, 0, 0, 0];
        assert_eq!(futex_wait_address(202, &wake), None, "a wake does not wait");
        let pi = [0x2000, 6 | 128, 0, 0, 0, 0];
        assert!(is_pi_lock(202, &pi));
        assert_eq!(futex_wait_address(202, &pi), Some(0x2000));
    }

    #[test]
    fn sleeps_show_their_duration() {
        assert_eq!(
            describe(
                230,
                &[0, 0, 0x7ffd_0000_1000, 0x7ffd_0000_1010, 0, 0],
                &Fake
            ),
            "clock_nanosleep(CLOCK_REALTIME, 0, {30.000000005s}, 0x7ffd00001010)"
        );
        assert_eq!(
            describe(35, &[0xdead, 0, 0, 0, 0, 0], &Fake),
            "nanosleep(0xdead, NULL)",
            "an unreadable timespec shows its address"
        );
    }

    #[test]
    fn descriptors_show_what_they_refer_to() {
        assert_eq!(
            describe(0, &[3, 0x5000, 4096, 0, 0, 0], &Fake),
            "read(3 → pipe:[4242], 0x5000, 4096)"
        );
        assert_eq!(
            describe(232, &[7, 0x5000, 16, u64::MAX, 0, 0], &Fake),
            "epoll_wait(7, 0x5000, 16, -1)"
        );
    }

    proptest::proptest! {
        /// Any number and arguments render without panicking.
        #[test]
        fn any_call_renders(nr in 0u64..600, args in proptest::array::uniform6(proptest::num::u64::ANY)) {
            let text = describe(nr, &args, &Fake);
            proptest::prop_assert!(text.contains('('));
            let _ = futex_wait_address(nr, &args);
        }
    }

    #[test]
    fn unknown_calls_show_raw_arguments() {
        assert_eq!(
            describe(9999, &[1, 2, 3, 4, 5, 6], &Fake),
            "syscall 9999(0x1, 0x2, 0x3, …)"
        );
        assert_eq!(
            describe(16, &[1, 0x5401, 0x7000, 0, 0, 0], &Fake),
            "ioctl(0x1, 0x5401, 0x7000, …)"
        );
    }
}
