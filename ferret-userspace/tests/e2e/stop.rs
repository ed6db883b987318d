//! End-to-end: however a recording stops (`-d`, SIGINT, SIGTERM, the target
//! killed), the Parquet file is valid and holds every span that ended, and
//! spans still running end as `open` (recording stopped) or `unwound`
//! (target died). Also: the per-probe fallback links, stdin passthrough and
//! `ferret symbols`. Needs root; fails loudly without.

use std::{
    io::{BufRead as _, BufReader, Write as _},
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use crate::support::{KillOnDrop, build, ferret, require_root, run, tempdir};
use ferret::sink::{Row, read_all, read_metadata};

/// Starts `slow` and waits until it is ready; a line on its stdin sends it
/// into `forever()`.
fn start_slow() -> KillOnDrop {
    let mut child = KillOnDrop(
        Command::new(build("slow.c", &[]))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut line = String::new();
    BufReader::new(child.0.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "ready");
    child
}

/// Starts `ferret record -p` on `pid` and waits until its probes are attached.
fn start_recording(
    pid: u32,
    out: &Path,
    extra: &[&str],
) -> (KillOnDrop, BufReader<std::process::ChildStderr>) {
    let mut recorder = KillOnDrop(
        ferret()
            .args([
                "record",
                "-p",
                &pid.to_string(),
                "-s",
                "tick",
                "-s",
                "forever",
                "-o",
            ])
            .arg(out)
            .args(extra)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut err = BufReader::new(recorder.0.stderr.take().unwrap());
    let mut line = String::new();
    while !line.contains("probes attached") {
        line.clear();
        assert!(
            err.read_line(&mut line).unwrap() > 0,
            "ferret ended before attaching"
        );
        eprint!("{line}");
    }
    (recorder, err)
}

fn finish(
    mut recorder: KillOnDrop,
    mut err: BufReader<std::process::ChildStderr>,
) -> std::process::ExitStatus {
    let status = recorder.0.wait().unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut err, &mut rest).unwrap();
    eprint!("{rest}");
    status
}

/// CLOCK_MONOTONIC in ns: the clock of the recording's `ts_ns`.
fn monotonic_ns() -> i64 {
    let ts = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    ts.tv_sec * 1_000_000_000 + ts.tv_nsec
}

/// Sends `signal` to `pid`.
fn kill(pid: i32, signal: i32) {
    let pid = rustix::process::Pid::from_raw(pid).expect("a pid");
    let signal = rustix::process::Signal::from_named_raw(signal).expect("a signal");
    rustix::process::kill_process(pid, signal).expect("kill");
}

fn spans<'a>(rows: &'a [Row], function: &'a str, status: &'a str) -> impl Iterator<Item = &'a Row> {
    rows.iter().filter(move |r| {
        r.kind.as_deref() == Some("SPAN_END")
            && r.function.as_deref() == Some(function)
            && r.status.as_deref() == Some(status)
    })
}

/// Sends the target into `forever()` (after the probes are attached).
fn enter_forever(target: &mut KillOnDrop) {
    target.0.stdin.as_mut().unwrap().write_all(b"go\n").unwrap();
    target.0.stdin.as_mut().unwrap().flush().unwrap();
}

/// The recording has the ticks that ended, `forever` ended once with
/// `forever_status`, and the metadata says why the recording stopped.
fn check_recording(out: &Path, forever_status: &str, stop_reason: &str) {
    let rows = read_all(out).unwrap();
    let ticks = spans(&rows, "tick", "ok").count();
    assert!(ticks >= 20, "ticks recorded every 10 ms: {ticks}");
    let starts = rows
        .iter()
        .filter(|r| r.kind.as_deref() == Some("SPAN_START"))
        .count();
    let ends = rows
        .iter()
        .filter(|r| r.kind.as_deref() == Some("SPAN_END"))
        .count();
    assert_eq!(starts, ends, "every started span ended");
    let meta = read_metadata(out).unwrap();
    assert_eq!(meta["ferret.stop_reason"], stop_reason);
    let forever: Vec<&Row> = rows
        .iter()
        .filter(|r| {
            r.kind.as_deref() == Some("SPAN_END") && r.function.as_deref() == Some("forever")
        })
        .collect();
    assert_eq!(forever.len(), 1, "forever() ended exactly once");
    assert_eq!(forever[0].status.as_deref(), Some(forever_status));
    assert!(
        forever[0].duration_ns.unwrap() >= 200_000_000,
        "counted to the stop"
    );
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn duration_stops_the_recording_and_the_file_is_valid() {
    let _machine = require_root();
    let mut target = start_slow();
    let dir = tempdir();
    let out = dir.path().join("d.parquet");
    let started = Instant::now();
    let (recorder, err) = start_recording(target.0.id(), &out, &["-d", "1s"]);
    enter_forever(&mut target);
    assert!(finish(recorder, err).success());
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(5),
        "stopped after about 1 s: {took:?}"
    );
    check_recording(&out, "open", "Duration");
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn sigint_and_sigterm_finalize_a_valid_file() {
    let _machine = require_root();
    for (signal, reason) in [(libc::SIGINT, "Interrupt"), (libc::SIGTERM, "Terminate")] {
        let mut target = start_slow();
        let dir = tempdir();
        let out = dir.path().join("s.parquet");
        let (recorder, err) = start_recording(target.0.id(), &out, &[]);
        enter_forever(&mut target);
        std::thread::sleep(Duration::from_millis(600));
        kill(recorder.0.id() as i32, signal);
        assert!(
            finish(recorder, err).success(),
            "clean exit on signal {signal}"
        );
        check_recording(&out, "open", reason);
        // The target is untouched: still running, not stopped.
        let state = std::fs::read_to_string(format!("/proc/{}/stat", target.0.id())).unwrap();
        assert!(
            state.contains(") S ") || state.contains(") R "),
            "target runs on: {state}"
        );
    }
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn target_killed_mid_recording_is_noticed_and_its_open_spans_kept() {
    let _machine = require_root();
    let program = build("slow.c", &[]);
    let dir = tempdir();
    let out = dir.path().join("k.parquet");
    // Launched by ferret, so forever() is entered after the probes are in.
    let mut recorder = KillOnDrop(
        ferret()
            .args(["record", "-s", "tick", "-s", "forever", "-o"])
            .arg(&out)
            .arg("--")
            .arg(&program)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut line = String::new();
    BufReader::new(recorder.0.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "ready");
    // ferret passes its stdin through to the command.
    enter_forever(&mut recorder);
    std::thread::sleep(Duration::from_millis(500));
    let target_pid = std::fs::read_to_string(format!(
        "/proc/{}/task/{}/children",
        recorder.0.id(),
        recorder.0.id()
    ))
    .unwrap()
    .trim()
    .parse::<i32>()
    .unwrap();
    let killed_ns = monotonic_ns();
    kill(target_pid, libc::SIGKILL);
    let status = recorder.0.wait().unwrap();
    assert_eq!(
        status.code(),
        Some(128 + libc::SIGKILL),
        "reports the target's death"
    );
    let rows = read_all(&out).unwrap();
    let forever: Vec<&Row> = spans(&rows, "forever", "unwound").collect();
    assert_eq!(forever.len(), 1, "the running forever() kept, as unwound");
    assert!(forever[0].duration_ns.unwrap() >= 400_000_000);
    // ferret noticed the death within a second: the running span was closed
    // (at the moment ferret saw the exit) less than 1 s after the kill.
    let noticed_ns = forever[0].ts_ns.unwrap() - killed_ns;
    eprintln!("noticed {:.1} ms after the kill", noticed_ns as f64 / 1e6);
    assert!(
        noticed_ns < 1_000_000_000,
        "noticed {noticed_ns} ns after the kill"
    );
    assert!(spans(&rows, "tick", "ok").count() >= 20);
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn launched_command_keeps_stdin_and_a_libc_function_is_traced() {
    let _machine = require_root();
    let dir = tempdir();
    let out = dir.path().join("sh.parquet");
    let mut child = ferret()
        .args(["record", "-s", "libc.so.6:read", "-o"])
        .arg(&out)
        .args(["--", "sh", "-c", "read a; read b; echo \"got $a $b\""])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .as_mut()
        .unwrap()
        .write_all(b"hello\nworld\n")
        .unwrap();
    let output = child.wait_with_output().unwrap();
    eprintln!("{}", String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success());
    assert_eq!(String::from_utf8_lossy(&output.stdout), "got hello world\n");
    let rows = read_all(&out).unwrap();
    let reads = rows
        .iter()
        .filter(|r| r.kind.as_deref() == Some("SPAN_END"))
        .count();
    assert!(
        reads >= 2,
        "sh read its input with libc read(): {reads} calls"
    );
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn per_probe_fallback_links_record_the_same_calls() {
    let _machine = require_root();
    let program = build("nested.c", &[]);
    let dir = tempdir();
    let out = dir.path().join("fallback.parquet");
    let mut cmd = ferret();
    cmd.env("FERRET_PER_PROBE_LINKS", "1")
        .args(["record", "-s", "outer", "-s", "leaf", "-o"])
        .arg(&out)
        .arg("--")
        .arg(&program)
        .args(["2", "40"]);
    let output = run(cmd);
    assert!(output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("perf link"));
    let rows = read_all(&out).unwrap();
    assert_eq!(spans(&rows, "outer", "ok").count(), 80);
    assert_eq!(spans(&rows, "leaf", "ok").count(), 480);
}

#[test]
fn symbols_lists_matching_functions_with_address_and_size() {
    let program = build("nested.c", &[]);
    let output = ferret()
        .arg("symbols")
        .arg(&program)
        .args(["lea*", "mid*"])
        .output()
        .unwrap();
    assert!(output.status.success());
    let text = String::from_utf8_lossy(&output.stdout);
    let names: Vec<&str> = text
        .lines()
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    assert_eq!(names, ["leaf", "middle"], "{text}");
    let leaf = text.lines().next().unwrap();
    let fields: Vec<&str> = leaf.split_whitespace().collect();
    assert!(fields[1].ends_with("nested"));
    assert!(fields[2].starts_with("0x"));
    assert!(fields[3].parse::<u64>().unwrap() > 0);
}
