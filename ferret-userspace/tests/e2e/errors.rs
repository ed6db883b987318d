//! Bad input: each mistake gives exactly one `error:` line (plus an optional
//! `hint:` line), a non-zero exit, no panic, and leaves no target behind.
//! Runs as root (some cases need the privilege to get past the check they
//! are not testing); the not-root case drops privileges itself.

use std::{path::Path, process::Command, time::Duration};

use crate::support::{build, ferret, require_root, run, tempdir};

/// Checks the shape of a user-error report and returns its error line.
fn assert_user_error(output: &std::process::Output) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "non-zero exit expected: {stderr}");
    assert!(!stderr.contains("panicked"), "no panic: {stderr}");
    assert!(!stderr.contains("RUST_BACKTRACE"), "no backtrace: {stderr}");
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "exactly one error line: {stderr}");
    assert!(
        stderr
            .lines()
            .all(|l| l.starts_with("error:") || l.starts_with("hint:") || l.starts_with("ferret:")),
        "only error/hint/progress lines: {stderr}"
    );
    stderr.into_owned()
}

/// No process runs `program` any more (the target was not left behind).
fn assert_no_process_runs(program: &Path) {
    std::thread::sleep(Duration::from_millis(100));
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(exe) = std::fs::read_link(entry.path().join("exe")) {
            assert_ne!(
                exe,
                program,
                "a target process was left running: {:?}",
                entry.path().display()
            );
        }
    }
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn not_root_is_told_to_use_sudo() {
    let _machine = require_root();
    let program = build("nested.c", &[]);
    let dir = tempdir();
    let out = dir.path().join("x.parquet");
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    let mut cmd = Command::new("setpriv");
    cmd.args([
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "--inh-caps=-all",
    ])
    .arg(env!("CARGO_BIN_EXE_ferret"))
    .args(["record", "-s", "leaf", "-o"])
    .arg(&out)
    .arg("--")
    .arg(&program);
    let output = run(cmd);
    let stderr = assert_user_error(&output);
    assert!(
        stderr.contains("hint:") && stderr.contains("root"),
        "{stderr}"
    );
    assert!(!out.exists(), "no half-written file left");
    assert_no_process_runs(&program);
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn no_such_pid() {
    let _machine = require_root();
    // A pid that existed and is gone.
    let mut child = Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    let output = run({
        let mut c = ferret();
        c.args([
            "record",
            "-p",
            &pid.to_string(),
            "-s",
            "main",
            "-o",
            "/tmp/ferret-nopid.parquet",
        ]);
        c
    });
    let stderr = assert_user_error(&output);
    assert!(
        stderr.contains(&format!("no process with pid {pid}")),
        "{stderr}"
    );
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn pid_that_exits_during_attach() {
    let _machine = require_root();
    let dir = tempdir();
    // A private copy, so other tests looking for leftover `nested` processes
    // do not see this one, which is meant to run for a while.
    let program = dir.path().join("nested-attach");
    std::fs::copy(build("nested.c", &[]), &program).unwrap();
    let gate = dir.path().join("never");
    let mut target = crate::support::KillOnDrop(
        Command::new(&program)
            .args(["1", "1"])
            .arg(&gate)
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let pid = target.0.id();
    std::thread::sleep(Duration::from_millis(100));
    // ferret pauses inside attach (test hook); the target is killed meanwhile.
    let recorder = ferret()
        .env("FERRET_TEST_PAUSE_IN_ATTACH_MS", "1500")
        .args(["record", "-p", &pid.to_string(), "-s", "leaf", "-o"])
        .arg(dir.path().join("x.parquet"))
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(700));
    target.0.kill().unwrap();
    target.0.wait().unwrap();
    let output = recorder.wait_with_output().unwrap();
    eprintln!("{}", String::from_utf8_lossy(&output.stderr));
    let stderr = assert_user_error(&output);
    assert!(
        stderr.contains(&format!("pid {pid} exited while ferret was attaching")),
        "{stderr}"
    );
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn pattern_matching_nothing_suggests_close_names() {
    let _machine = require_root();
    let program = build("nested.c", &[]);
    let output = run({
        let mut c = ferret();
        c.args([
            "record",
            "-s",
            "midle",
            "-o",
            "/tmp/ferret-nomatch.parquet",
            "--",
        ])
        .arg(&program);
        c
    });
    let stderr = assert_user_error(&output);
    assert!(
        stderr.contains("midle") && stderr.contains("middle"),
        "suggests `middle`: {stderr}"
    );
    assert!(!Path::new("/tmp/ferret-nomatch.parquet").exists());
    assert_no_process_runs(&program);
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn binary_that_is_not_elf() {
    let _machine = require_root();
    let dir = tempdir();
    let script = dir.path().join("script.sh");
    std::fs::write(&script, "#!/bin/sh\necho hi\n").unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let output = run({
        let mut c = ferret();
        c.args(["record", "-s", "main", "-o"])
            .arg(dir.path().join("x.parquet"))
            .arg("--")
            .arg(&script);
        c
    });
    let stderr = assert_user_error(&output);
    assert!(stderr.to_lowercase().contains("not an elf"), "{stderr}");
    let output = run({
        let mut c = ferret();
        c.arg("symbols").arg(&script);
        c
    });
    assert_user_error(&output);
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn command_that_does_not_exist() {
    let _machine = require_root();
    let output = run({
        let mut c = ferret();
        c.args([
            "record",
            "-s",
            "main",
            "-o",
            "/tmp/ferret-nocmd.parquet",
            "--",
            "no-such-command-xyz",
        ]);
        c
    });
    let stderr = assert_user_error(&output);
    assert!(
        stderr.contains("command not found: no-such-command-xyz"),
        "{stderr}"
    );
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn output_path_that_cannot_be_written() {
    let _machine = require_root();
    let program = build("nested.c", &[]);
    let output = run({
        let mut c = ferret();
        c.args([
            "record",
            "-s",
            "leaf",
            "-o",
            "/nonexistent-dir/x.parquet",
            "--",
        ])
        .arg(&program);
        c
    });
    let stderr = assert_user_error(&output);
    assert!(stderr.contains("/nonexistent-dir/x.parquet"), "{stderr}");
    assert_no_process_runs(&program);
}

#[test]
fn usage_errors_exit_with_status_2() {
    let output = ferret().args(["record", "-s", "x"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    let output = ferret()
        .args(["record", "-s", "x", "-o", "y", "-d", "soon", "--", "true"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
}
