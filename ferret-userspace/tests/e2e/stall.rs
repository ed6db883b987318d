//! End-to-end: the stall watchdog on programs built here that deadlock,
//! spin, sleep, or stall and then finish. `ferret record --stall` runs
//! against them (launched, or attached after they got stuck) and the tests
//! read the STALL rows it wrote: the stalled functions, their stacks down to
//! the source lines marked in the programs, what the threads wait for, and
//! the deadlock. Needs root (CI has it); fails loudly without.

use std::{
    io::{BufRead as _, BufReader},
    path::Path,
    process::{Command, Output, Stdio},
    time::Duration,
};

use crate::support::{
    KillOnDrop, build, ferret, marker_line, programs_dir, require_root, run, start_deadlocked,
    tempdir,
};
use ferret::{
    sink::{Row, read_all},
    stall::{Capturer, Frame, RegisterSource},
};

/// Held by the tests whose targets spin on a CPU: two cores shared by
/// three spinning targets and their ferrets would make them all late.
static CPU_HEAVY: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn cpu_heavy() -> std::sync::MutexGuard<'static, ()> {
    CPU_HEAVY
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn stalls(rows: &[Row]) -> Vec<&Row> {
    rows.iter()
        .filter(|r| r.kind.as_deref() == Some("STALL"))
        .collect()
}

/// The STALL rows of function `function`; fails if there is none.
fn stalls_of<'a>(rows: &'a [Row], function: &str) -> Vec<&'a Row> {
    let found: Vec<&Row> = stalls(rows)
        .into_iter()
        .filter(|r| r.function.as_deref() == Some(function))
        .collect();
    assert!(
        !found.is_empty(),
        "no STALL row for {function}; rows: {:#?}",
        stalls(rows)
    );
    found
}

fn text(row: &Row) -> (&str, &str) {
    (
        row.stack.as_deref().unwrap_or_default(),
        row.wait.as_deref().unwrap_or_default(),
    )
}

/// Runs `ferret record --stall <stall> -o <out> <args…>`.
fn record(out: &Path, stall: &str, args: &[&str], target: &[&str]) -> Output {
    let mut cmd = ferret();
    cmd.args(["record", "--stall", stall, "-o"])
        .arg(out)
        .args(args)
        .args(target);
    run(cmd)
}

/// Both deadlocked threads are reported: their functions, the source lines
/// of the lock calls that block, who holds what, and the deadlock.
fn check_deadlock(rows: &[Row], before_attach: bool) {
    let first_line = marker_line("stall_deadlock.c", "BLOCKS: first-then-second");
    let second_line = marker_line("stall_deadlock.c", "BLOCKS: second-then-first");
    let ab = stalls_of(rows, "lock_first_then_second")[0];
    let ba = stalls_of(rows, "lock_second_then_first")[0];
    assert_eq!(ab.thread_name.as_deref(), Some("lock-ab"));
    assert_eq!(ba.thread_name.as_deref(), Some("lock-ba"));
    let (ab_tid, ba_tid) = (ab.tid.unwrap(), ba.tid.unwrap());
    for (row, line, other_tid, other_name) in [
        (ab, first_line, ba_tid, "lock-ba"),
        (ba, second_line, ab_tid, "lock-ab"),
    ] {
        let (stack, wait) = text(row);
        let function = row.function.as_deref().unwrap();
        assert!(
            stack.contains(&format!("{function} ("))
                && stack.contains(&format!("stall_deadlock.c:{line}")),
            "{function}'s stack names the blocking lock call at line {line}:\n{stack}"
        );
        assert!(
            stack.lines().next().unwrap_or_default().contains("futex")
                || stack
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .contains("lll_lock"),
            "innermost frame is the lock wait:\n{stack}"
        );
        assert!(wait.starts_with("sleeping in futex("), "{wait}");
        assert!(
            wait.contains(&format!("held by tid {other_tid} ({other_name})")),
            "{wait}"
        );
        assert!(wait.contains("DEADLOCK"), "{wait}");
        let span = row.span_id.unwrap();
        let start = rows
            .iter()
            .find(|r| r.kind.as_deref() == Some("SPAN_START") && r.span_id == Some(span))
            .expect("the stalled span started");
        assert_eq!(start.function.as_deref(), Some(function));
        assert_eq!(
            row.start_ns, start.ts_ns,
            "STALL start_ns is the span's start"
        );
        assert!(row.duration_ns.unwrap() >= 1_000_000_000, "stalled ≥ 1 s");
        if before_attach {
            assert!(wait.ends_with("since before ferret attached"), "{wait}");
            let first_event = rows.iter().filter_map(|r| r.ts_ns).min().unwrap();
            assert_eq!(
                start.ts_ns,
                Some(first_event),
                "a call adopted at attach starts when tracing began"
            );
        }
        let end = rows
            .iter()
            .find(|r| r.kind.as_deref() == Some("SPAN_END") && r.span_id == Some(span))
            .expect("the stalled span is closed at the end");
        assert_ne!(end.status.as_deref(), Some("ok"), "it never returned");
    }
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn deadlock_with_ferret_attached_before_it() {
    let _machine = require_root();
    let program = build("stall_deadlock.c", &[]);
    let dir = tempdir();
    let out = dir.path().join("deadlock.parquet");
    // The program deadlocks at once and is ended by SIGALRM after 5 s,
    // which ends the recording.
    let output = record(
        &out,
        "1s",
        &["-s", "lock_*", "--"],
        &[program.to_str().unwrap(), "0", "5"],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(128 + libc::SIGALRM),
        "ferret passes on how the target ended: {stderr}"
    );
    assert!(stderr.contains("DEADLOCK"), "said on stderr too: {stderr}");
    check_deadlock(&read_all(&out).unwrap(), false);
    let meta = ferret::sink::read_metadata(&out).unwrap();
    assert_eq!(meta["ferret.stall_threshold_ns"], "1000000000");
}

/// Attaching to a process that deadlocked before: the stuck calls are found
/// on the threads' stacks and reported, with frame pointers or without
/// (`-O0 -fno-omit-frame-pointer` makes the walk find frame records).
#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn deadlock_that_happened_before_ferret_attached() {
    let _machine = require_root();
    for flags in [&[][..], &["-O0", "-fno-omit-frame-pointer"][..]] {
        let program = build("stall_deadlock.c", flags);
        let target = start_deadlocked(&program, 30);
        std::thread::sleep(Duration::from_millis(300));
        let dir = tempdir();
        let out = dir.path().join("deadlock.parquet");
        let pid = target.0.id().to_string();
        let output = record(
            &out,
            "1s",
            &[
                "-p", &pid, "-d", "3s", "-s", "lock_*", "-s", "run_*", "-s", "main",
            ],
            &[],
        );
        assert!(output.status.success(), "{output:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("5 traced calls were already running when ferret attached"),
            "main, run_a, run_b and the two lock functions: {stderr}"
        );
        let rows = read_all(&out).unwrap();
        check_deadlock(&rows, true);
        // The stalled spans are the innermost ones, under their callers.
        let ab = stalls_of(&rows, "lock_first_then_second")[0];
        let start = rows
            .iter()
            .find(|r| r.kind.as_deref() == Some("SPAN_START") && r.span_id == ab.span_id)
            .unwrap();
        let parent = rows
            .iter()
            .find(|r| r.kind.as_deref() == Some("SPAN_START") && r.span_id == start.parent_span_id)
            .expect("the adopted call has its adopted caller as parent");
        assert_eq!(parent.function.as_deref(), Some("run_a"), "{flags:?}");
        assert_eq!((parent.depth, start.depth), (Some(0), Some(1)));
        // main is stuck too, joining the first deadlocked thread.
        let (_, wait) = text(stalls_of(&rows, "main")[0]);
        assert!(
            wait.contains(&format!(
                "waits for tid {} (lock-ab) to exit",
                ab.tid.unwrap()
            )),
            "{wait}"
        );
    }
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn spinning_thread_is_running_in_its_loop() {
    let _machine = require_root();
    let _cpu = cpu_heavy();
    let program = build("stall_spin.c", &[]);
    let spins = marker_line("stall_spin.c", "SPINS");
    let dir = tempdir();
    let out = dir.path().join("spin.parquet");
    let output = record(
        &out,
        "1s",
        // Return-instruction probes leave the return addresses alone, so
        // the walk goes on past the stalled function to its callers.
        &["-s", "spin_forever", "--exit-probes", "ret", "--"],
        &[program.to_str().unwrap(), "4"],
    );
    assert_eq!(output.status.code(), Some(128 + libc::SIGALRM));
    let rows = read_all(&out).unwrap();
    for row in stalls_of(&rows, "spin_forever") {
        let (stack, wait) = text(row);
        assert_eq!(row.thread_name.as_deref(), Some("spinner"));
        assert!(wait.starts_with("running in user space"), "{wait}");
        let innermost = stack.lines().next().unwrap();
        let in_loop = (spins - 1..=spins + 1).any(|line| {
            innermost
                == format!(
                    "spin_forever ({}:{line})",
                    programs_dir().join("stall_spin.c").display()
                )
        });
        assert!(
            in_loop,
            "innermost frame is the loop (line {spins}):\n{stack}"
        );
        assert!(stack.contains("\nrun ("), "called from run:\n{stack}");
        assert!(
            !stack.contains("[stack walk stopped") && !stack.contains("[callers hidden"),
            "walked to the thread's start:\n{stack}"
        );
    }
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn long_sleep_is_sleeping_in_nanosleep() {
    let _machine = require_root();
    let program = build("stall_sleep.c", &[]);
    let sleeps = marker_line("stall_sleep.c", "SLEEPS");
    let dir = tempdir();
    let out = dir.path().join("sleep.parquet");
    let output = record(
        &out,
        "1s",
        &["-s", "nap", "--"],
        &[program.to_str().unwrap(), "3"],
    );
    assert_eq!(output.status.code(), Some(128 + libc::SIGALRM));
    let rows = read_all(&out).unwrap();
    let stalled = stalls_of(&rows, "nap");
    assert_eq!(
        stalled.len(),
        1,
        "one capture: the sleep does not move: {stalled:#?}"
    );
    let (stack, wait) = text(stalled[0]);
    assert!(
        wait.starts_with("sleeping in clock_nanosleep(") && wait.contains("{60.000000000s}"),
        "{wait}"
    );
    assert!(
        stack.contains("nap (") && stack.contains(&format!("stall_sleep.c:{sleeps})")),
        "{stack}"
    );
}

/// The program sleeps, spins and waits for a lock, each for 2.5 s, under a
/// 300 ms threshold: every phase is captured (the spin by stopping the
/// thread for an instant, again and again), and the program prints the
/// same and ends the same as without ferret.
#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn capturing_stalls_leaves_the_target_unchanged() {
    let _machine = require_root();
    let _cpu = cpu_heavy();
    let program = build("stall_then_finish.c", &[]);
    let plain = Command::new(&program).output().unwrap();
    assert_eq!(plain.status.code(), Some(7));
    let dir = tempdir();
    let out = dir.path().join("finish.parquet");
    let output = record(
        &out,
        "300ms",
        &[
            "-s",
            "slow_sleep",
            "-s",
            "busy_spin",
            "-s",
            "wait_for_lock",
            "--",
        ],
        &[program.to_str().unwrap()],
    );
    assert_eq!(output.status.code(), Some(7), "same exit status");
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&plain.stdout),
        "same output"
    );
    let rows = read_all(&out).unwrap();
    let (_, wait) = text(stalls_of(&rows, "slow_sleep")[0]);
    // glibc's nanosleep() is the clock_nanosleep system call.
    assert!(
        wait.starts_with("sleeping in clock_nanosleep(") && wait.contains("{2.500000000s}"),
        "{wait}"
    );
    for row in stalls_of(&rows, "busy_spin") {
        let (stack, wait) = text(row);
        assert!(wait.starts_with("running"), "{wait}");
        assert!(stack.contains("busy_spin ("), "{stack}");
    }
    let (_, wait) = text(stalls_of(&rows, "wait_for_lock")[0]);
    assert!(
        wait.contains("(holder)") && !wait.contains("DEADLOCK"),
        "{wait}"
    );
    // Every span returned normally: nothing was unwound by the captures.
    let ends: Vec<&Row> = rows
        .iter()
        .filter(|r| r.kind.as_deref() == Some("SPAN_END"))
        .collect();
    assert_eq!(ends.len(), 3);
    assert!(
        ends.iter().all(|r| r.status.as_deref() == Some("ok")),
        "{ends:#?}"
    );
}

/// A running thread is stopped for an instant to read its registers; most
/// of these stops land inside the vDSO's clock_gettime, which has no file:
/// the walk must go through it to the caller.
#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn a_thread_stopped_inside_the_vdso_is_walked_through_it() {
    let _machine = require_root();
    let _cpu = cpu_heavy();
    let program = build("stall_clock.c", &[]);
    let polls = marker_line("stall_clock.c", "POLLS");
    let mut child = Command::new(&program)
        .arg("20")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut output = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    output.read_line(&mut line).unwrap();
    let target = KillOnDrop(child);
    // Let the write of that line return before the first stop.
    std::thread::sleep(Duration::from_millis(200));
    let pid = target.0.id();
    let mut capturer = Capturer::new(pid);
    let mut in_vdso = 0;
    for _ in 0..30 {
        let capture = capturer.capture(pid).expect("the thread exists");
        assert!(
            matches!(capture.registers, Some(RegisterSource::Stopped { .. })),
            "a running thread is stopped for its registers: {capture:?}"
        );
        let frames = capturer.symbolize(capture.stack.as_ref().unwrap());
        let innermost = frames[0].display();
        let stack: Vec<String> = frames.iter().map(Frame::display).collect();
        let caller = format!(
            "poll_clock ({}:{polls})",
            programs_dir().join("stall_clock.c").display()
        );
        if frames[0].module.as_deref() == Some("[vdso]") || innermost.contains("clock_gettime") {
            in_vdso += 1;
            assert!(
                stack.contains(&caller),
                "walked through the vDSO: {stack:#?}"
            );
        }
        assert!(
            stack.iter().any(|f| f.starts_with("poll_clock (")),
            "{stack:#?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(in_vdso > 0, "some stops landed in clock_gettime");
    // Stopping it thirty times did not hurt it, and it was let go each time.
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let state = stat.rsplit_once(") ").unwrap().1.chars().next().unwrap();
    assert_eq!(state, 'R', "running, not stopped: {stat}");
    let tracer = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    assert!(
        tracer.contains("TracerPid:\t0\n"),
        "no tracer left attached"
    );
}

/// Rust's std mutex records no owner: the holder is the one other blocked
/// thread whose stack refers to the mutex (its guard), so the deadlock is
/// reported as probable.
#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn rust_mutex_deadlock_is_found_through_the_guards_on_the_stacks() {
    let _machine = require_root();
    let program = build("stall_deadlock_rs.rs", &[]);
    let blocks = marker_line("stall_deadlock_rs.rs", "// BLOCKS");
    let dir = tempdir();
    let out = dir.path().join("rust.parquet");
    let output = record(
        &out,
        "1s",
        &["-s", "*::transfer", "--"],
        // Long enough for both captures even on a loaded machine: the
        // first one of a process reads its modules' debug information.
        &[program.to_str().unwrap(), "6"],
    );
    assert_eq!(output.status.code(), Some(3), "the program's own exit");
    let rows = read_all(&out).unwrap();
    let stalled = stalls_of(&rows, "stall_deadlock_rs::transfer");
    let tids: std::collections::BTreeSet<i32> = stalled.iter().filter_map(|r| r.tid).collect();
    assert_eq!(tids.len(), 2, "both threads: {stalled:#?}");
    for row in stalled {
        let (stack, wait) = text(row);
        let other = tids.iter().find(|&&t| Some(t) != row.tid).unwrap();
        assert!(
            wait.contains(&format!("probably held by tid {other} ")),
            "{wait}"
        );
        assert!(wait.contains("PROBABLE DEADLOCK"), "{wait}");
        assert!(
            stack.contains(&format!("stall_deadlock_rs.rs:{blocks})")),
            "the blocking lock() call, line {blocks}:\n{stack}"
        );
    }
}
