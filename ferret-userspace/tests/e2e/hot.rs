//! End-to-end: starting without knowing what to trace. `unnamed_hot` spends
//! its time in `crunch`, a function no command line names, and calls
//! `counted` exactly N times each time a line "N" reaches its stdin.
//!
//! It shows: `record -p` without `-s` writes SAMPLE rows whose innermost
//! function is `crunch` in most samples, which `analyze` and `export
//! --format svg` read; `watch -p -o` (in tmux) shows `crunch` in the Hot
//! pane within seconds, `t` traces it, and after `q` the file holds its
//! spans while the program runs on; and functions traced and detached from
//! the dashboard while recording have exact counts for the intervals they
//! were traced (the program counts each burst itself). Needs root; fails
//! loudly without.

use std::{
    io::{BufRead as _, BufReader, Write as _},
    process::{Child, ChildStdin, Command, Stdio},
    sync::mpsc,
    time::Duration,
};

use crate::support::{PROMPT, Tmux, build, ferret, require_root, run, tempdir};

/// `unnamed_hot`, running, with its stdin and its stdout lines.
struct Program {
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::Receiver<String>,
}

impl Program {
    fn start() -> Self {
        let mut child = Command::new(build("unnamed_hot.c", &[]))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let program = Self {
            child,
            stdin,
            lines,
        };
        assert_eq!(program.next_line(), "ready");
        program
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn next_line(&self) -> String {
        self.lines
            .recv_timeout(Duration::from_secs(20))
            .expect("unnamed_hot answers")
    }

    /// Makes it call `counted` `n` times; returns once it says it did.
    fn burst(&mut self, n: u64) {
        writeln!(self.stdin, "{n}").unwrap();
        self.stdin.flush().unwrap();
        assert_eq!(self.next_line(), format!("burst {n} done"));
    }

    fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for Program {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The function a SAMPLE row has innermost.
fn samples(rows: &[ferret::sink::Row]) -> Vec<&ferret::sink::Row> {
    rows.iter()
        .filter(|r| r.kind.as_deref() == Some("SAMPLE"))
        .collect()
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn record_without_s_samples_the_hot_function_for_analyze_and_svg() {
    let _machine = require_root();
    let program = Program::start();
    let dir = tempdir();
    let parquet = dir.path().join("samples.parquet");
    let mut cmd = ferret();
    cmd.args(["record", "-p", &program.pid().to_string(), "-d", "3s", "-o"])
        .arg(&parquet);
    let out = run(cmd);
    assert!(out.status.success(), "record failed");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("sampling every thread on CPU at 99 Hz"),
        "{stderr}"
    );

    let rows = ferret::sink::read_all(&parquet).unwrap();
    let samples = samples(&rows);
    // One busy thread for 3 s at 99 Hz: about 300, fewer on a busy machine.
    assert!(samples.len() >= 60, "{} samples", samples.len());
    let crunch = samples
        .iter()
        .filter(|r| r.function.as_deref() == Some("crunch"))
        .count();
    assert!(
        crunch * 10 >= samples.len() * 9,
        "crunch innermost in {crunch} of {} samples",
        samples.len()
    );
    let row = samples
        .iter()
        .find(|r| r.function.as_deref() == Some("crunch"))
        .unwrap();
    assert!(
        row.module
            .as_deref()
            .is_some_and(|m| m.ends_with("unnamed_hot")),
        "{row:?}"
    );
    assert_eq!(row.tid, Some(program.pid() as i32), "the main thread");
    let stack = row.stack.as_deref().unwrap();
    let frames: Vec<&str> = stack.lines().collect();
    assert!(
        frames[0].starts_with("crunch (") && frames[0].contains("unnamed_hot.c:"),
        "innermost first, with file:line: {stack}"
    );
    assert!(
        frames.iter().any(|f| f.starts_with("busy_loop"))
            && frames.iter().any(|f| f.starts_with("main")),
        "unwound to its callers: {stack}"
    );
    assert!(
        !rows.iter().any(|r| r.kind.as_deref() == Some("SPAN_END")),
        "nothing was traced"
    );
    let meta = ferret::sink::read_metadata(&parquet).unwrap();
    let sampling: serde_json::Value = serde_json::from_str(&meta["ferret.sampling"]).unwrap();
    assert_eq!(sampling["hz"], 99);
    assert_eq!(sampling["samples"], samples.len());

    // analyze shows the sampled profile, crunch first.
    let mut cmd = ferret();
    cmd.arg("analyze").arg(&parquet);
    let out = run(cmd);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("CPU samples on 1 thread"), "{text}");
    let first = text
        .lines()
        .find(|l| l.trim_start().starts_with(|c: char| c.is_ascii_digit()))
        .unwrap();
    assert!(first.contains("crunch  [unnamed_hot]"), "{text}");

    // export draws the flame graph from the samples.
    let svg = dir.path().join("flame.svg");
    let mut cmd = ferret();
    cmd.args(["export", "--format", "svg", "-o"])
        .arg(&svg)
        .arg(&parquet);
    let out = run(cmd);
    assert!(out.status.success());
    let svg = std::fs::read_to_string(&svg).unwrap();
    assert!(svg.starts_with("<?xml"), "an SVG");
    assert!(svg.contains("crunch ("), "crunch is a frame");
    assert!(svg.contains("samples"), "weighted by samples");
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn watch_shows_the_unnamed_hot_function_and_t_traces_it() {
    let _machine = require_root();
    let mut program = Program::start();
    let dir = tempdir();
    let parquet = dir.path().join("watch.parquet");
    let tmux = Tmux::start("hot");
    tmux.send(&format!(
        "{} watch -p {} -o {}",
        env!("CARGO_BIN_EXE_ferret"),
        program.pid(),
        parquet.display()
    ));
    tmux.send("Enter");
    // Hot rows read ` 97.3%  98.0%   crunch   unnamed_hot · unnamed_hot.c:18`.
    let hot_row = |s: &str| {
        s.lines()
            .find(|l| l.contains(" crunch ") && l.contains('%'))
            .map(str::to_owned)
    };
    let screen = tmux.wait_for("crunch in the Hot pane", Duration::from_secs(20), |s| {
        s.contains("╭ Hot") && hot_row(s).is_some()
    });
    let row = hot_row(&screen).unwrap();
    assert!(row.contains("unnamed_hot.c:"), "with file:line: {row}");
    // The top row is the hottest, and selected: `t` traces it.
    tmux.send("t");
    let screen = tmux.wait_for("crunch traced", Duration::from_secs(10), |s| {
        s.contains("● crunch") && s.contains("1 function")
    });
    assert!(screen.contains("tracing `crunch`"), "the notice:\n{screen}");
    tmux.wait_for("calls counted", Duration::from_secs(10), |s| {
        s.lines()
            .any(|l| l.contains("crunch") && !l.contains('%') && l.contains("ms"))
    });
    tmux.send("q");
    tmux.wait_for("the shell prompt after q", Duration::from_secs(10), |s| {
        s.trim_end().ends_with(PROMPT)
    });

    let rows = ferret::sink::read_all(&parquet).unwrap();
    let ends: Vec<_> = rows
        .iter()
        .filter(|r| {
            r.kind.as_deref() == Some("SPAN_END") && r.function.as_deref() == Some("crunch")
        })
        .collect();
    assert!(ends.len() >= 10, "{} crunch spans", ends.len());
    assert!(
        ends.iter()
            .filter(|r| r.status.as_deref() == Some("ok"))
            .count()
            >= ends.len() - 1,
        "they returned (one may be open at the end)"
    );
    assert!(
        !samples(&rows).is_empty(),
        "and the samples are in the file"
    );
    let meta = ferret::sink::read_metadata(&parquet).unwrap();
    let changes: serde_json::Value = serde_json::from_str(&meta["ferret.probe_changes"]).unwrap();
    assert_eq!(changes[0]["change"], "trace");
    assert_eq!(changes[0]["function"], "crunch");
    let traced_at = changes[0]["ts_ns"].as_i64().unwrap();
    assert!(
        ends.iter().all(|r| r.start_ns.unwrap() >= traced_at),
        "spans begin once traced"
    );
    // The program runs on, unharmed.
    assert!(program.running());
    program.burst(5);
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn functions_traced_and_detached_live_keep_exact_counts_per_interval() {
    let _machine = require_root();
    let mut program = Program::start();
    let dir = tempdir();
    let parquet = dir.path().join("live.parquet");
    let tmux = Tmux::start("live");
    // The budget off: a burst of 1234 calls can read 6 % of this program's
    // time and be detached, and this test counts calls per interval.
    tmux.send(&format!(
        "{} watch --max-overhead 0 -p {} -o {}",
        env!("CARGO_BIN_EXE_ferret"),
        program.pid(),
        parquet.display()
    ));
    tmux.send("Enter");
    tmux.wait_for("the dashboard", Duration::from_secs(20), |s| {
        s.contains("╭ Hot") && s.contains(" LIVE ")
    });

    // Untraced: 100 calls nobody sees.
    program.burst(100);
    // `+ counted ⏎`: traced from now on.
    tmux.send("+");
    tmux.send("counted");
    tmux.send("Enter");
    tmux.wait_for("counted traced", Duration::from_secs(10), |s| {
        s.contains("tracing `counted`")
    });
    program.burst(1000);
    program.burst(234);
    // Functions pane (3): its one row is `counted`; `d` detaches it.
    tmux.wait_for("counted's calls", Duration::from_secs(5), |s| {
        s.lines()
            .any(|l| l.contains("counted") && l.contains(" 1234 "))
    });
    tmux.send("3");
    tmux.send("d");
    tmux.wait_for("counted detached", Duration::from_secs(10), |s| {
        s.contains("stopped tracing") && s.contains("counted (detached)")
    });
    program.burst(500);
    // `t` on the detached row traces it again.
    tmux.send("t");
    tmux.wait_for("counted traced again", Duration::from_secs(10), |s| {
        s.contains("tracing again") && !s.contains("counted (detached)")
    });
    program.burst(250);
    // Settled before quitting: every call reached the dashboard.
    tmux.wait_for("all traced calls", Duration::from_secs(5), |s| {
        s.lines()
            .any(|l| l.contains("counted") && l.contains(" 1484 "))
    });
    tmux.send("q");
    tmux.wait_for("the shell prompt after q", Duration::from_secs(10), |s| {
        s.trim_end().ends_with(PROMPT)
    });

    let meta = ferret::sink::read_metadata(&parquet).unwrap();
    let changes: serde_json::Value = serde_json::from_str(&meta["ferret.probe_changes"]).unwrap();
    let changes: Vec<(String, i64)> = changes
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            assert_eq!(c["function"], "counted");
            (
                c["change"].as_str().unwrap().to_owned(),
                c["ts_ns"].as_i64().unwrap(),
            )
        })
        .collect();
    let kinds: Vec<&str> = changes.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(kinds, ["trace", "detach", "trace"]);
    let (traced, detached, retraced) = (changes[0].1, changes[1].1, changes[2].1);

    let rows = ferret::sink::read_all(&parquet).unwrap();
    let ends: Vec<i64> = rows
        .iter()
        .filter(|r| {
            r.kind.as_deref() == Some("SPAN_END") && r.function.as_deref() == Some("counted")
        })
        .map(|r| r.start_ns.unwrap())
        .collect();
    let between = |from: i64, to: i64| ends.iter().filter(|&&t| t >= from && t < to).count();
    assert_eq!(between(traced, detached), 1234, "the first traced interval");
    assert_eq!(between(detached, retraced), 0, "detached: nothing");
    assert_eq!(between(retraced, i64::MAX), 250, "traced again");
    assert_eq!(ends.len(), 1484, "and nothing before it was traced");
    assert!(program.running());
}
