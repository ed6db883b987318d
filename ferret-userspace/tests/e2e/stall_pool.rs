//! End-to-end: the stall watchdog at the scale of a real server.
//! `stall_pool` (built here) runs 1000 worker threads that sleep in
//! `idle_wait`, as a thread pool waits for work, and two threads deadlocked
//! on a pair of mutexes. ferret attaches after all of that happened:
//!
//! - `record -d 4` says it in a handful of stderr lines (the deadlock, one
//!   line per thread of it, then the pool as one group with its count),
//!   ends within a second of its four, costs less than 1.5 s of CPU for the
//!   whole session (its rusage, children included), and writes one STALL row
//!   per thread, each naming its group in `stall_group`;
//! - `watch`, in a real terminal (tmux), lists the deadlock first in its
//!   Stalls pane and the pool as one entry with its count; Enter shows the
//!   pool's shared stack and its threads, Right lists them.
//!
//! Needs root; fails loudly without.

use std::{
    collections::BTreeMap,
    io::{BufRead as _, BufReader},
    os::unix::process::ExitStatusExt as _,
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use crate::support::{
    KillOnDrop, PROMPT, Tmux, alone, build, ferret, marker_line, require_root, tempdir,
};
use ferret::sink::{read_all, read_metadata};

/// Workers resting in `idle_wait`.
const THREADS: usize = 1000;

/// Starts `stall_pool` with [`THREADS`] workers (ended by SIGALRM after
/// `alarm_s`) and returns once every worker rests and the lockers hold
/// their first mutex (they deadlock an instant later).
fn start_pool(alarm_s: u32) -> KillOnDrop {
    let program = build("stall_pool.c", &[]);
    let mut child = Command::new(program)
        .args([THREADS.to_string(), alarm_s.to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line, "ready\n");
    // The lockers block on their second mutex right after the barrier.
    std::thread::sleep(Duration::from_millis(200));
    let target = KillOnDrop(child);
    let threads = std::fs::read_dir(format!("/proc/{}/task", target.0.id()))
        .unwrap()
        .count();
    assert_eq!(
        threads,
        THREADS + 3,
        "main, the workers and the two lockers"
    );
    target
}

/// What a finished child cost: (user + system CPU time, wall time).
struct Cost {
    cpu: Duration,
    wall: Duration,
    stderr: String,
    status: std::process::ExitStatus,
}

/// Runs `cmd` to its end and reads its own rusage (from `wait4`, so its
/// children's CPU time is in it, and no other process's).
#[expect(
    clippy::zombie_processes,
    reason = "reaped by wait4, which gives its rusage too"
)]
fn run_measured(mut cmd: Command) -> Cost {
    let started = Instant::now();
    let child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ferret");
    let pid = child.id() as libc::pid_t;
    let mut stderr = child.stderr.expect("piped");
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut stderr, &mut text).unwrap();
        text
    });
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value of the plain C struct.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `pid` is our child, not waited for yet; `status` and `usage`
    // are valid for the call.
    let waited = unsafe { libc::wait4(pid, &raw mut status, 0, &raw mut usage) };
    let wall = started.elapsed();
    assert_eq!(waited, pid, "wait4: {}", std::io::Error::last_os_error());
    let time = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    let stderr = reader.join().unwrap();
    eprintln!("--- {cmd:?}\n{stderr}");
    Cost {
        cpu: time(usage.ru_utime) + time(usage.ru_stime),
        wall,
        stderr,
        status: std::process::ExitStatus::from_raw(status),
    }
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn a_thousand_idle_threads_and_a_deadlock_are_a_handful_of_lines_cheaply_and_on_time() {
    let _alone = alone();
    let target = start_pool(60);
    let pid = target.0.id();
    let dir = tempdir();
    let out = dir.path().join("pool.parquet");
    let mut cmd = ferret();
    cmd.args([
        "record",
        "-p",
        &pid.to_string(),
        "-s",
        "idle_wait",
        "-s",
        "lock_*",
    ])
    .args(["-d", "4", "--stall", "1s", "-o"])
    .arg(&out);
    let cost = run_measured(cmd);
    assert!(cost.status.success(), "{}", cost.stderr);
    eprintln!(
        "stall_pool: ferret used {:.3} s of CPU in {:.3} s ({:.1} % of a core)",
        cost.cpu.as_secs_f64(),
        cost.wall.as_secs_f64(),
        100.0 * cost.cpu.as_secs_f64() / cost.wall.as_secs_f64()
    );

    // stderr: the two deadlocked threads, then the pool, once.
    let stalls: Vec<&str> = cost
        .stderr
        .lines()
        .filter(|l| l.starts_with("ferret: stall:"))
        .collect();
    assert_eq!(stalls.len(), 3, "a handful of lines:\n{}", cost.stderr);
    let rests = marker_line("stall_pool.c", "RESTS");
    for (line, function, name) in [(stalls[0], "lock_", "lock-"), (stalls[1], "lock_", "lock-")] {
        assert!(
            line.contains(&format!("({name}")) && line.contains(&format!("in {function}")),
            "the deadlock first: {line}"
        );
        assert!(line.contains("DEADLOCK"), "{line}");
    }
    assert_ne!(stalls[0], stalls[1]);
    let pool = stalls[2];
    assert!(
        pool.starts_with(&format!("ferret: stall: {THREADS} threads (pool-")),
        "{pool}"
    );
    assert!(
        pool.contains(" in idle_wait since before ferret attached"),
        "{pool}"
    );
    assert!(pool.contains(&format!("stall_pool.c:{rests})")), "{pool}");
    assert!(pool.contains("sleeping in clock_nanosleep("), "{pool}");
    assert!(pool.contains("(stall_group "), "{pool}");
    assert!(
        cost.stderr.contains(&format!(
            "{} traced calls were already running",
            THREADS + 2
        )),
        "{}",
        cost.stderr
    );

    // On time: -d 4 ends within a second of its four, start-up included.
    assert!(
        cost.wall >= Duration::from_secs(4) && cost.wall < Duration::from_secs(5),
        "-d 4 took {:?}",
        cost.wall
    );
    // Cheap: the whole session, calibration and attach included.
    assert!(
        cost.cpu < Duration::from_millis(1500),
        "ferret used {:?} of CPU",
        cost.cpu
    );

    // One STALL row per thread, each with its group: the pool's threads in
    // one, each deadlocked thread in a group of its own.
    let rows = read_all(&out).unwrap();
    let mut groups: BTreeMap<i64, Vec<(&str, i32)>> = BTreeMap::new();
    for row in rows.iter().filter(|r| r.kind.as_deref() == Some("STALL")) {
        groups
            .entry(row.stall_group.expect("a STALL row names its group"))
            .or_default()
            .push((row.function.as_deref().unwrap(), row.tid.unwrap()));
    }
    let mut sizes: Vec<(usize, &str)> = groups
        .values()
        .map(|members| (members.len(), members[0].0))
        .collect();
    sizes.sort_unstable();
    assert_eq!(
        sizes,
        [
            (1, "lock_first_then_second"),
            (1, "lock_second_then_first"),
            (THREADS, "idle_wait"),
        ]
    );
    let pool_group = groups.values().find(|m| m.len() == THREADS).unwrap();
    let mut tids: Vec<i32> = pool_group.iter().map(|&(_, tid)| tid).collect();
    tids.sort_unstable();
    tids.dedup();
    assert_eq!(tids.len(), THREADS, "one row per thread");
    let group_number = pool
        .rsplit_once("(stall_group ")
        .and_then(|(_, n)| n.trim_end_matches(')').parse::<i64>().ok())
        .unwrap();
    assert_eq!(
        groups[&group_number].len(),
        THREADS,
        "stderr names the column's group"
    );

    // The watchdog shared its work: a thousand threads stuck alike were
    // walked and symbolized a handful of times.
    let meta = read_metadata(&out).unwrap();
    let stats: serde_json::Value = serde_json::from_str(&meta["ferret.stall_watchdog"]).unwrap();
    eprintln!("ferret.stall_watchdog: {stats}");
    assert_eq!(stats["captures"], THREADS as u64 + 2, "{stats}");
    assert!(stats["symbolized"].as_u64().unwrap() <= 10, "{stats}");
    assert!(
        stats["shared_symbols"].as_u64().unwrap() >= THREADS as u64 - 10,
        "{stats}"
    );
    assert!(stats["walked"].as_u64().unwrap() <= 20, "{stats}");
    assert_eq!(meta["ferret.stop_reason"], "Duration");
    assert_eq!(meta["ferret.complete"], "true");
    // The target was not harmed: all its threads are still there, resting.
    let threads = std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .count();
    assert_eq!(threads, THREADS + 3);
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn duration_ends_the_session_on_time_with_captures_in_flight_and_queued() {
    let _alone = alone();
    let target = start_pool(60);
    let pid = target.0.id();
    let dir = tempdir();
    let out = dir.path().join("late.parquet");
    let mut cmd = ferret();
    // Every capture takes half a second: at the end, one is being taken and
    // a thousand are queued.
    cmd.env("FERRET_TEST_CAPTURE_DELAY_MS", "500")
        .args([
            "record",
            "-p",
            &pid.to_string(),
            "-s",
            "idle_wait",
            "-s",
            "lock_*",
        ])
        .args(["-d", "3", "--stall", "1s", "-o"])
        .arg(&out);
    let cost = run_measured(cmd);
    assert!(cost.status.success(), "{}", cost.stderr);
    eprintln!(
        "-d 3 with captures in flight: {:.3} s",
        cost.wall.as_secs_f64()
    );
    assert!(
        cost.wall >= Duration::from_secs(3) && cost.wall < Duration::from_secs(4),
        "-d 3 took {:?}",
        cost.wall
    );
    let meta = read_metadata(&out).unwrap();
    assert_eq!(meta["ferret.complete"], "true", "the file is finished");
    assert_eq!(meta["ferret.stop_reason"], "Duration");
    let stats: serde_json::Value = serde_json::from_str(&meta["ferret.stall_watchdog"]).unwrap();
    let captures = stats["captures"].as_u64().unwrap();
    assert!(
        (1..=10).contains(&captures),
        "a few captured, the rest abandoned: {stats}"
    );
    let rows = read_all(&out).unwrap();
    let stalls = rows
        .iter()
        .filter(|r| r.kind.as_deref() == Some("STALL"))
        .count();
    assert!(
        stalls as u64 <= captures && stalls >= 1,
        "{stalls} STALL rows, {captures} captures"
    );
    // The spans still open are closed in the file, each once.
    let ends = rows
        .iter()
        .filter(|r| r.kind.as_deref() == Some("SPAN_END"))
        .count();
    assert_eq!(
        ends,
        THREADS + 2,
        "every adopted call is closed at the stop"
    );
    assert_eq!(
        std::fs::read_dir(format!("/proc/{pid}/task"))
            .unwrap()
            .count(),
        THREADS + 3,
        "the target is unharmed"
    );
}

/// The Stalls pane's lines (inside its border, left column), from its title
/// down to its bottom border.
fn stalls_pane(screen: &str) -> Vec<String> {
    let lines: Vec<&str> = screen.lines().collect();
    let top = lines
        .iter()
        .position(|l| l.contains("╭ Stalls"))
        .unwrap_or_else(|| panic!("no Stalls pane:\n{screen}"));
    let width = lines[top].chars().position(|c| c == '╮').unwrap();
    lines[top + 1..]
        .iter()
        .take_while(|l| !l.starts_with('╰'))
        .map(|l| l.chars().skip(1).take(width - 1).collect())
        .collect()
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn watch_lists_the_deadlock_first_and_the_pool_as_one_entry_with_its_count() {
    let _machine = require_root();
    let target = start_pool(90);
    let pid = target.0.id();
    let dir = tempdir();
    let out = dir.path().join("watch.parquet");
    let tmux = Tmux::start("pool");
    let command = format!(
        "{} watch -p {pid} -s idle_wait -s 'lock_*' --stall 1s -o {}",
        env!("CARGO_BIN_EXE_ferret"),
        out.display()
    );
    tmux.send(&command);
    tmux.send("Enter");
    let count = format!("×{THREADS} threads");
    let screen = tmux.wait_for(
        "the pool in the Stalls pane",
        Duration::from_secs(30),
        |s| s.contains(&count) && s.contains("DEADLOCK"),
    );
    let pane = stalls_pane(&screen);
    let title = screen.lines().find(|l| l.contains("╭ Stalls")).unwrap();
    assert!(
        title.contains(&format!("{} quiet > 1.0s in 3 places", THREADS + 2)),
        "{title}"
    );
    // Three entries of two lines: the deadlocked threads, then the pool.
    let entries: Vec<&String> = pane.iter().filter(|l| l.starts_with('⚠')).collect();
    assert_eq!(entries.len(), 3, "{}", pane.join("\n"));
    assert!(
        entries[0].contains("lock-") && entries[0].contains("lock_"),
        "{screen}"
    );
    assert!(
        entries[1].contains("lock-") && entries[1].contains("lock_"),
        "{screen}"
    );
    assert!(
        entries[2].contains(&format!("▸ {count}")) && entries[2].contains("idle_wait"),
        "{screen}"
    );
    let waits: Vec<&String> = pane.iter().filter(|l| l.starts_with("  ")).collect();
    assert!(waits[0].contains("DEADLOCK with tid"), "{screen}");
    assert!(waits[1].contains("DEADLOCK with tid"), "{screen}");
    assert!(
        waits[2].contains("sleeping in clock_nanosleep — tids "),
        "{screen}"
    );

    // Enter on the pool: the stack its threads share, and which they are.
    tmux.send("5");
    tmux.send("G");
    tmux.send("Enter");
    let rests = marker_line("stall_pool.c", "RESTS");
    let stack_line = format!("idle_wait ({}:{rests})", programs_path("stall_pool.c"));
    // Whole: the screen may be captured halfway through drawing the popup.
    let screen = tmux.wait_for("the pool's details", Duration::from_secs(5), |s| {
        s.contains("Stalled threads") && s.contains(&stack_line) && s.contains("clock_nanosleep")
    });
    assert!(
        screen.contains(&format!("threads     {THREADS} (pool-")),
        "{screen}"
    );
    assert!(screen.contains(" tids "), "{screen}");
    assert!(screen.contains(&stack_line), "{screen}");
    assert!(screen.contains("clock_nanosleep"), "{screen}");

    // Right lists its threads under it.
    tmux.send("Escape");
    // Sent at once, Escape and the arrow's escape sequence can arrive as one
    // unknown key: the popup is seen closed first.
    tmux.wait_for("the details closed", Duration::from_secs(5), |s| {
        !s.contains("Stalled threads")
    });
    tmux.send("Right");
    let screen = tmux.wait_for("the pool's threads", Duration::from_secs(5), |s| {
        s.contains(&format!("▾ {count}"))
    });
    let pane = stalls_pane(&screen);
    assert!(
        pane.iter().any(|l| l.trim_start().starts_with("pool-")),
        "{}",
        pane.join("\n")
    );

    tmux.send("q");
    tmux.wait_for("the prompt", Duration::from_secs(10), |s| {
        s.trim_end().ends_with(PROMPT)
    });
    let rows = read_all(&out).unwrap();
    let stalls = rows
        .iter()
        .filter(|r| r.kind.as_deref() == Some("STALL"))
        .count();
    assert!(stalls >= THREADS + 2, "{stalls} STALL rows");
    // Detached, and the target unharmed.
    assert_eq!(
        std::fs::read_dir(format!("/proc/{pid}/task"))
            .unwrap()
            .count(),
        THREADS + 3
    );
}

/// The path of a test program's source, as its debug information names it.
fn programs_path(source: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/programs")
        .join(source)
        .display()
        .to_string()
}
