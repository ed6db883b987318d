//! x86-64 system call names, and a strace-like rendering of a blocked
//! call with the arguments that say what it waits for: the futex address
//! and operation, the sleep's duration, the file descriptor and what it
//! refers to.
//!
//! Rendering is pure: memory and file-descriptor lookups go through
//! [`ArgReader`], so tests feed literals.

use std::fmt::Write as _;

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
pub const SYS_FUTEX: u64 = 202;
/// `futex_wait` of the futex2 family (455): `(uaddr, val, mask, flags, timeout, clockid)`.
pub const SYS_FUTEX_WAIT: u64 = 455;
/// `futex_waitv` (449): waits on several futexes.
pub const SYS_FUTEX_WAITV: u64 = 449;

/// The name of x86-64 system call `nr`, if known.
pub fn name(nr: u64) -> Option<&'static str> {
    let nr = u32::try_from(nr).ok()?;
    SYSCALLS
        .binary_search_by_key(&nr, |&(n, _)| n)
        .ok()
        .map(|i| SYSCALLS[i].1)
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
    let Some(name) = name(nr) else {
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
    let shown: Vec<String> = match name {
        "futex" => vec![
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
        "futex_wait" => vec![
            format!("{:#x}", a[0]),
            int(a[1]),
            format!("{:#x}", a[2]),
            format!("{:#x}", a[3]),
            time(a[4]),
            clock_name(a[5]),
        ],
        "nanosleep" => vec![time(a[0]), ptr(a[1])],
        "clock_nanosleep" => vec![clock_name(a[0]), int(a[1]), time(a[2]), ptr(a[3])],
        "read" | "write" | "pread64" | "pwrite64" | "readv" | "writev" | "recvfrom" | "sendto"
        | "recvmsg" | "sendmsg" => vec![fd(a[0]), ptr(a[1]), int(a[2])],
        "accept" | "accept4" | "connect" => vec![fd(a[0]), ptr(a[1]), ptr(a[2])],
        "epoll_wait" | "epoll_pwait" => vec![fd(a[0]), ptr(a[1]), int(a[2]), int(a[3])],
        "epoll_pwait2" => vec![fd(a[0]), ptr(a[1]), int(a[2]), time(a[3])],
        "poll" => vec![ptr(a[0]), int(a[1]), int(a[2])],
        "ppoll" => vec![ptr(a[0]), int(a[1]), time(a[2])],
        "select" | "pselect6" => vec![int(a[0]), ptr(a[1]), ptr(a[2]), ptr(a[3])],
        "wait4" => vec![int(a[0]), ptr(a[1]), int(a[2])],
        "waitid" => vec![int(a[0]), int(a[1]), ptr(a[2])],
        "flock" => vec![fd(a[0]), int(a[1])],
        "fcntl" => vec![fd(a[0]), int(a[1]), format!("{:#x}", a[2])],
        "pause" | "sched_yield" => vec![],
        "rt_sigsuspend" | "rt_sigtimedwait" => vec![ptr(a[0]), ptr(a[1])],
        _ => vec![
            format!("{:#x}", a[0]),
            format!("{:#x}", a[1]),
            format!("{:#x}", a[2]),
            "…".to_owned(),
        ],
    };
    format!("{name}({})", shown.join(", "))
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

/// x86-64 system calls by number (arch/x86/entry/syscalls/syscall_64.tbl).
#[rustfmt::skip]
static SYSCALLS: &[(u32, &str)] = &[
    (0, "read"),
    (1, "write"),
    (2, "open"),
    (3, "close"),
    (4, "stat"),
    (5, "fstat"),
    (6, "lstat"),
    (7, "poll"),
    (8, "lseek"),
    (9, "mmap"),
    (10, "mprotect"),
    (11, "munmap"),
    (12, "brk"),
    (13, "rt_sigaction"),
    (14, "rt_sigprocmask"),
    (15, "rt_sigreturn"),
    (16, "ioctl"),
    (17, "pread64"),
    (18, "pwrite64"),
    (19, "readv"),
    (20, "writev"),
    (21, "access"),
    (22, "pipe"),
    (23, "select"),
    (24, "sched_yield"),
    (25, "mremap"),
    (26, "msync"),
    (27, "mincore"),
    (28, "madvise"),
    (29, "shmget"),
    (30, "shmat"),
    (31, "shmctl"),
    (32, "dup"),
    (33, "dup2"),
    (34, "pause"),
    (35, "nanosleep"),
    (36, "getitimer"),
    (37, "alarm"),
    (38, "setitimer"),
    (39, "getpid"),
    (40, "sendfile"),
    (41, "socket"),
    (42, "connect"),
    (43, "accept"),
    (44, "sendto"),
    (45, "recvfrom"),
    (46, "sendmsg"),
    (47, "recvmsg"),
    (48, "shutdown"),
    (49, "bind"),
    (50, "listen"),
    (51, "getsockname"),
    (52, "getpeername"),
    (53, "socketpair"),
    (54, "setsockopt"),
    (55, "getsockopt"),
    (56, "clone"),
    (57, "fork"),
    (58, "vfork"),
    (59, "execve"),
    (60, "exit"),
    (61, "wait4"),
    (62, "kill"),
    (63, "uname"),
    (64, "semget"),
    (65, "semop"),
    (66, "semctl"),
    (67, "shmdt"),
    (68, "msgget"),
    (69, "msgsnd"),
    (70, "msgrcv"),
    (71, "msgctl"),
    (72, "fcntl"),
    (73, "flock"),
    (74, "fsync"),
    (75, "fdatasync"),
    (76, "truncate"),
    (77, "ftruncate"),
    (78, "getdents"),
    (79, "getcwd"),
    (80, "chdir"),
    (81, "fchdir"),
    (82, "rename"),
    (83, "mkdir"),
    (84, "rmdir"),
    (85, "creat"),
    (86, "link"),
    (87, "unlink"),
    (88, "symlink"),
    (89, "readlink"),
    (90, "chmod"),
    (91, "fchmod"),
    (92, "chown"),
    (93, "fchown"),
    (94, "lchown"),
    (95, "umask"),
    (96, "gettimeofday"),
    (97, "getrlimit"),
    (98, "getrusage"),
    (99, "sysinfo"),
    (100, "times"),
    (101, "ptrace"),
    (102, "getuid"),
    (103, "syslog"),
    (104, "getgid"),
    (105, "setuid"),
    (106, "setgid"),
    (107, "geteuid"),
    (108, "getegid"),
    (109, "setpgid"),
    (110, "getppid"),
    (111, "getpgrp"),
    (112, "setsid"),
    (113, "setreuid"),
    (114, "setregid"),
    (115, "getgroups"),
    (116, "setgroups"),
    (117, "setresuid"),
    (118, "getresuid"),
    (119, "setresgid"),
    (120, "getresgid"),
    (121, "getpgid"),
    (122, "setfsuid"),
    (123, "setfsgid"),
    (124, "getsid"),
    (125, "capget"),
    (126, "capset"),
    (127, "rt_sigpending"),
    (128, "rt_sigtimedwait"),
    (129, "rt_sigqueueinfo"),
    (130, "rt_sigsuspend"),
    (131, "sigaltstack"),
    (132, "utime"),
    (133, "mknod"),
    (134, "uselib"),
    (135, "personality"),
    (136, "ustat"),
    (137, "statfs"),
    (138, "fstatfs"),
    (139, "sysfs"),
    (140, "getpriority"),
    (141, "setpriority"),
    (142, "sched_setparam"),
    (143, "sched_getparam"),
    (144, "sched_setscheduler"),
    (145, "sched_getscheduler"),
    (146, "sched_get_priority_max"),
    (147, "sched_get_priority_min"),
    (148, "sched_rr_get_interval"),
    (149, "mlock"),
    (150, "munlock"),
    (151, "mlockall"),
    (152, "munlockall"),
    (153, "vhangup"),
    (154, "modify_ldt"),
    (155, "pivot_root"),
    (156, "_sysctl"),
    (157, "prctl"),
    (158, "arch_prctl"),
    (159, "adjtimex"),
    (160, "setrlimit"),
    (161, "chroot"),
    (162, "sync"),
    (163, "acct"),
    (164, "settimeofday"),
    (165, "mount"),
    (166, "umount2"),
    (167, "swapon"),
    (168, "swapoff"),
    (169, "reboot"),
    (170, "sethostname"),
    (171, "setdomainname"),
    (172, "iopl"),
    (173, "ioperm"),
    (174, "create_module"),
    (175, "init_module"),
    (176, "delete_module"),
    (177, "get_kernel_syms"),
    (178, "query_module"),
    (179, "quotactl"),
    (180, "nfsservctl"),
    (181, "getpmsg"),
    (182, "putpmsg"),
    (183, "afs_syscall"),
    (184, "tuxcall"),
    (185, "security"),
    (186, "gettid"),
    (187, "readahead"),
    (188, "setxattr"),
    (189, "lsetxattr"),
    (190, "fsetxattr"),
    (191, "getxattr"),
    (192, "lgetxattr"),
    (193, "fgetxattr"),
    (194, "listxattr"),
    (195, "llistxattr"),
    (196, "flistxattr"),
    (197, "removexattr"),
    (198, "lremovexattr"),
    (199, "fremovexattr"),
    (200, "tkill"),
    (201, "time"),
    (202, "futex"),
    (203, "sched_setaffinity"),
    (204, "sched_getaffinity"),
    (205, "set_thread_area"),
    (206, "io_setup"),
    (207, "io_destroy"),
    (208, "io_getevents"),
    (209, "io_submit"),
    (210, "io_cancel"),
    (211, "get_thread_area"),
    (212, "lookup_dcookie"),
    (213, "epoll_create"),
    (214, "epoll_ctl_old"),
    (215, "epoll_wait_old"),
    (216, "remap_file_pages"),
    (217, "getdents64"),
    (218, "set_tid_address"),
    (219, "restart_syscall"),
    (220, "semtimedop"),
    (221, "fadvise64"),
    (222, "timer_create"),
    (223, "timer_settime"),
    (224, "timer_gettime"),
    (225, "timer_getoverrun"),
    (226, "timer_delete"),
    (227, "clock_settime"),
    (228, "clock_gettime"),
    (229, "clock_getres"),
    (230, "clock_nanosleep"),
    (231, "exit_group"),
    (232, "epoll_wait"),
    (233, "epoll_ctl"),
    (234, "tgkill"),
    (235, "utimes"),
    (236, "vserver"),
    (237, "mbind"),
    (238, "set_mempolicy"),
    (239, "get_mempolicy"),
    (240, "mq_open"),
    (241, "mq_unlink"),
    (242, "mq_timedsend"),
    (243, "mq_timedreceive"),
    (244, "mq_notify"),
    (245, "mq_getsetattr"),
    (246, "kexec_load"),
    (247, "waitid"),
    (248, "add_key"),
    (249, "request_key"),
    (250, "keyctl"),
    (251, "ioprio_set"),
    (252, "ioprio_get"),
    (253, "inotify_init"),
    (254, "inotify_add_watch"),
    (255, "inotify_rm_watch"),
    (256, "migrate_pages"),
    (257, "openat"),
    (258, "mkdirat"),
    (259, "mknodat"),
    (260, "fchownat"),
    (261, "futimesat"),
    (262, "newfstatat"),
    (263, "unlinkat"),
    (264, "renameat"),
    (265, "linkat"),
    (266, "symlinkat"),
    (267, "readlinkat"),
    (268, "fchmodat"),
    (269, "faccessat"),
    (270, "pselect6"),
    (271, "ppoll"),
    (272, "unshare"),
    (273, "set_robust_list"),
    (274, "get_robust_list"),
    (275, "splice"),
    (276, "tee"),
    (277, "sync_file_range"),
    (278, "vmsplice"),
    (279, "move_pages"),
    (280, "utimensat"),
    (281, "epoll_pwait"),
    (282, "signalfd"),
    (283, "timerfd_create"),
    (284, "eventfd"),
    (285, "fallocate"),
    (286, "timerfd_settime"),
    (287, "timerfd_gettime"),
    (288, "accept4"),
    (289, "signalfd4"),
    (290, "eventfd2"),
    (291, "epoll_create1"),
    (292, "dup3"),
    (293, "pipe2"),
    (294, "inotify_init1"),
    (295, "preadv"),
    (296, "pwritev"),
    (297, "rt_tgsigqueueinfo"),
    (298, "perf_event_open"),
    (299, "recvmmsg"),
    (300, "fanotify_init"),
    (301, "fanotify_mark"),
    (302, "prlimit64"),
    (303, "name_to_handle_at"),
    (304, "open_by_handle_at"),
    (305, "clock_adjtime"),
    (306, "syncfs"),
    (307, "sendmmsg"),
    (308, "setns"),
    (309, "getcpu"),
    (310, "process_vm_readv"),
    (311, "process_vm_writev"),
    (312, "kcmp"),
    (313, "finit_module"),
    (314, "sched_setattr"),
    (315, "sched_getattr"),
    (316, "renameat2"),
    (317, "seccomp"),
    (318, "getrandom"),
    (319, "memfd_create"),
    (320, "kexec_file_load"),
    (321, "bpf"),
    (322, "execveat"),
    (323, "userfaultfd"),
    (324, "membarrier"),
    (325, "mlock2"),
    (326, "copy_file_range"),
    (327, "preadv2"),
    (328, "pwritev2"),
    (329, "pkey_mprotect"),
    (330, "pkey_alloc"),
    (331, "pkey_free"),
    (332, "statx"),
    (333, "io_pgetevents"),
    (334, "rseq"),
    (424, "pidfd_send_signal"),
    (425, "io_uring_setup"),
    (426, "io_uring_enter"),
    (427, "io_uring_register"),
    (428, "open_tree"),
    (429, "move_mount"),
    (430, "fsopen"),
    (431, "fsconfig"),
    (432, "fsmount"),
    (433, "fspick"),
    (434, "pidfd_open"),
    (435, "clone3"),
    (436, "close_range"),
    (437, "openat2"),
    (438, "pidfd_getfd"),
    (439, "faccessat2"),
    (440, "process_madvise"),
    (441, "epoll_pwait2"),
    (442, "mount_setattr"),
    (443, "quotactl_fd"),
    (444, "landlock_create_ruleset"),
    (445, "landlock_add_rule"),
    (446, "landlock_restrict_self"),
    (447, "memfd_secret"),
    (448, "process_mrelease"),
    (449, "futex_waitv"),
    (450, "set_mempolicy_home_node"),
    (451, "cachestat"),
    (452, "fchmodat2"),
    (453, "map_shadow_stack"),
    (454, "futex_wake"),
    (455, "futex_wait"),
    (456, "futex_requeue"),
    (457, "statmount"),
    (458, "listmount"),
    (459, "lsm_get_self_attr"),
    (460, "lsm_set_self_attr"),
    (461, "lsm_list_modules"),
    (462, "mseal"),
    (463, "setxattrat"),
    (464, "getxattrat"),
    (465, "listxattrat"),
    (466, "removexattrat"),
    (467, "open_tree_attr"),
];

#[cfg(test)]
mod tests {
    use super::*;

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
    fn table_is_sorted_and_names_common_calls() {
        assert!(SYSCALLS.windows(2).all(|w| w[0].0 < w[1].0));
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
