//! End-to-end: `ferret watch` in a real terminal. tmux (120×40) runs a shell,
//! the shell runs `ferret watch` on `sleeper` (a function that sleeps one
//! second every 1.5 s, a thread that grows its memory), and capture-pane
//! reads the screen. It shows: (1) the sleeping call appearing in the Live
//! Stack within a second of its start, its elapsed time ticking; (2) once it
//! returns, gone from the Live Stack and listed in Recent Activity with its
//! duration; (3) metric values changing from second to second; (4) `q`
//! quitting, the terminal back on the normal screen with the shell prompt,
//! and the launched command ended. The stall tests watch two threads
//! deadlock (with ferret attached before the deadlock, and after it): the
//! Stalls pane lists both, and Enter shows each one's stack down to the
//! source line of the lock call that blocks. Needs root; fails loudly
//! without.

use std::{
    process::Command,
    thread,
    time::{Duration, Instant},
};

use crate::support::{PROMPT, Tmux, build, marker_line, require_root, start_deadlocked, tempdir};

const WIDTH: usize = 120;

/// The screen cut into the panes of the wide layout: (Live Stack, Recent
/// Activity, Metrics) text, found by their titles.
struct Panes {
    stack: Vec<String>,
    recent: Vec<String>,
    metrics: Vec<String>,
}

fn panes(screen: &str) -> Panes {
    let lines: Vec<Vec<char>> = screen.lines().map(|l| l.chars().collect()).collect();
    let cut = |line: &[char], from: usize, to: usize| -> String {
        line.iter()
            .skip(from)
            .take(to.saturating_sub(from))
            .collect()
    };
    let title_row = |title: &str| {
        lines
            .iter()
            .position(|l| l.iter().collect::<String>().contains(title))
            .unwrap_or_else(|| panic!("no {title} pane on screen:\n{screen}"))
    };
    let column_of = |row: usize, title: &str| {
        let text: String = lines[row].iter().collect();
        text[..text.find(title).unwrap()].chars().count()
    };
    let top = title_row("Live Stack");
    let recent_x = column_of(top, "Recent Activity") - 2;
    let bottom = title_row("Metrics");
    let metrics_x = column_of(bottom, "Metrics") - 2;
    Panes {
        stack: lines[top + 1..bottom]
            .iter()
            .map(|l| cut(l, 0, recent_x))
            .collect(),
        recent: lines[top + 1..bottom]
            .iter()
            .map(|l| cut(l, recent_x, WIDTH))
            .collect(),
        metrics: lines[bottom + 1..]
            .iter()
            .map(|l| cut(l, metrics_x, WIDTH))
            .collect(),
    }
}

/// The Live Stack row of the sleeping call, if it is open.
fn sleeping_row(screen: &str) -> Option<String> {
    panes(screen)
        .stack
        .into_iter()
        .find(|l| l.contains("└ sleep_one_second"))
}

/// `812ms`, `1.2s`, `1.004s`, `21.0µs` → seconds.
fn seconds(text: &str) -> f64 {
    let text = text.trim().trim_end_matches('│').trim();
    let (number, scale) = if let Some(n) = text.strip_suffix("ms") {
        (n, 1e-3)
    } else if let Some(n) = text.strip_suffix("µs") {
        (n, 1e-6)
    } else if let Some(n) = text.strip_suffix("ns") {
        (n, 1e-9)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1.0)
    } else {
        panic!("not a duration: {text:?}")
    };
    number
        .parse::<f64>()
        .unwrap_or_else(|_| panic!("not a duration: {text:?}"))
        * scale
}

/// The elapsed time at the end of a Live Stack row.
fn elapsed_of(row: &str) -> f64 {
    seconds(
        row.trim_end()
            .trim_end_matches('│')
            .split_whitespace()
            .last()
            .unwrap(),
    )
}

/// The value on the Metrics line starting with `label` (`CPU`, `RSS`).
fn metric(screen: &str, label: &str) -> String {
    let metrics = panes(screen).metrics;
    let line = metrics
        .iter()
        .find(|l| l.trim_start_matches('│').starts_with(label))
        .unwrap_or_else(|| panic!("no {label} line in the Metrics pane:\n{screen}"));
    // "RSS 12.3 MiB    ▂▅█…": the value is the two words after the label.
    line.trim_start_matches('│')
        .split_whitespace()
        .skip(1)
        .take(2)
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn watch_shows_calls_live_and_restores_the_terminal() {
    let _machine = require_root();
    let began = Instant::now();
    let sleeper = build("sleeper.c", &[]);
    let dir = tempdir();
    let parquet = dir.path().join("watch.parquet");
    let tmux = Tmux::start("calls");
    tmux.send(&format!(
        "{} watch -s sleep_one_second -s tick -s grow -o {} -- {}",
        env!("CARGO_BIN_EXE_ferret"),
        parquet.display(),
        sleeper.display()
    ));
    tmux.send("Enter");
    let screen = tmux.wait_for("the dashboard", Duration::from_secs(10), |s| {
        s.contains("Live Stack") && s.contains(" LIVE ")
    });
    assert!(
        tmux.alternate_screen(),
        "the dashboard uses the alternate screen"
    );
    assert!(
        screen.contains("log /tmp/ferret-watch-sleeper-"),
        "the header names the log file:\n{screen}"
    );

    // (1) Between two sleeps, then the next one appears within a second of
    // its start: the elapsed time it first shows is under a second.
    tmux.wait_for("a moment between sleeps", Duration::from_secs(3), |s| {
        sleeping_row(s).is_none() && s.contains("grower")
    });
    let screen = tmux.wait_for(
        "sleep_one_second in the Live Stack",
        Duration::from_secs(2),
        |s| sleeping_row(s).is_some(),
    );
    let first = elapsed_of(&sleeping_row(&screen).unwrap());
    assert!(
        first < 1.0,
        "the call showed {first} s after it began, not within a second:\n{screen}"
    );
    assert!(
        panes(&screen).stack.iter().any(|l| l.contains("▾ sleeper")),
        "its thread heads the tree:\n{screen}"
    );
    thread::sleep(Duration::from_millis(300));
    if let Some(row) = sleeping_row(&tmux.screen()) {
        let later = elapsed_of(&row);
        assert!(later > first, "elapsed time ticks: {first} then {later}");
    }

    // (2) When it returns it leaves the Live Stack and is listed in Recent
    // Activity with its duration.
    let screen = tmux.wait_for("sleep_one_second to return", Duration::from_secs(2), |s| {
        sleeping_row(s).is_none()
    });
    let recent = panes(&screen).recent;
    let row = recent
        .iter()
        .find(|l| l.contains("sleep_one_second"))
        .unwrap_or_else(|| panic!("no sleep_one_second in Recent Activity:\n{screen}"));
    let words: Vec<&str> = row.trim_matches('│').split_whitespace().collect();
    let status = words[words.len() - 1];
    let took = seconds(words[words.len() - 2]);
    assert_eq!(status, "ok", "{row}");
    assert!((1.0..1.2).contains(&took), "took {took} s: {row}");

    // (3) Metrics move from second to second.
    let mut samples = Vec::new();
    for _ in 0..3 {
        let screen = tmux.screen();
        samples.push((metric(&screen, "CPU"), metric(&screen, "RSS")));
        thread::sleep(Duration::from_millis(1100));
    }
    for pair in samples.windows(2) {
        assert_ne!(
            pair[0].1, pair[1].1,
            "RSS did not change in a second: {samples:?}"
        );
    }
    assert!(
        samples.iter().all(|(cpu, _)| cpu.ends_with('%')),
        "CPU is shown as a percentage: {samples:?}"
    );

    // The program's own output went to the log, never over the dashboard.
    assert!(!tmux.screen().contains("sleeper: pid"));

    // (4) q quits: the normal screen is back with the prompt and ferret's
    // closing lines, and the launched command is gone.
    tmux.send("q");
    let screen = tmux.wait_for("the shell prompt after q", Duration::from_secs(6), |s| {
        s.trim_end().ends_with(PROMPT)
    });
    assert!(!tmux.alternate_screen(), "still on the alternate screen");
    assert!(
        !screen.contains("Live Stack"),
        "dashboard left on screen:\n{screen}"
    );
    assert!(
        screen.contains("ferret: wrote") && screen.contains("ferret: stopped"),
        "ferret's closing lines:\n{screen}"
    );
    let log = screen
        .split_whitespace()
        .find(|w| w.starts_with("/tmp/ferret-watch-sleeper-"))
        .expect("the log file is named");
    let logged = std::fs::read_to_string(log).unwrap();
    assert!(logged.contains("sleeper: pid"), "log: {logged:?}");
    let _ = std::fs::remove_file(log);
    let still = Command::new("pgrep")
        .arg("-f")
        .arg(&sleeper)
        .output()
        .unwrap();
    assert!(
        still.stdout.is_empty(),
        "the launched command outlived the session: {}",
        String::from_utf8_lossy(&still.stdout)
    );
    let rows = ferret::sink::read_all(&parquet).expect("watch -o wrote a readable recording");
    assert!(
        rows.iter()
            .any(|r| r.function.as_deref() == Some("sleep_one_second")),
        "the recording has the sleeping calls"
    );
    let meta = ferret::sink::read_metadata(&parquet).unwrap();
    assert_eq!(
        meta["ferret.stop_reason"], "Quit",
        "metadata as `record` writes it"
    );
    assert_eq!(meta["ferret.functions"], "3");
    assert!(
        began.elapsed() < Duration::from_secs(20),
        "took {:?}",
        began.elapsed()
    );
}

/// The lines of the Stalls pane (the whole width: in the wide layout it
/// sits under the Live Stack, left of Recent Activity).
fn stalls_pane(screen: &str) -> Vec<String> {
    let lines: Vec<&str> = screen.lines().collect();
    let top = lines
        .iter()
        .position(|l| l.contains("╭ Stalls "))
        .unwrap_or_else(|| panic!("no Stalls pane on screen:\n{screen}"));
    lines[top + 1..]
        .iter()
        .take_while(|l| !l.starts_with('╰'))
        .map(|l| (*l).to_owned())
        .collect()
}

/// In `ferret watch` on `stall_deadlock`: both deadlocked threads in the
/// Stalls pane, marked in the Live Stack, and Enter on each shows its stack
/// down to the line of the lock call that blocks and the deadlock.
/// `before_attach`: the calls were running before ferret attached.
fn check_deadlock_on_screen(tmux: &Tmux, before_attach: bool) {
    let first = marker_line("stall_deadlock.c", "BLOCKS: first-then-second");
    let second = marker_line("stall_deadlock.c", "BLOCKS: second-then-first");
    // Everything at once: a capture may catch a redraw halfway.
    let screen = tmux.wait_for("two stalled threads", Duration::from_secs(15), |s| {
        s.contains("2 threads stalled · DEADLOCK")
            && s.matches("⚠ stalled").count() == 2
            && s.contains("╭ Stalls ")
            && stalls_pane(s)
                .iter()
                .filter(|l| l.contains("sleeping in futex — DEADLOCK with"))
                .count()
                == 2
    });
    let pane = stalls_pane(&screen).join("\n");
    for (thread, function) in [
        ("lock-ab", "lock_first_then_second"),
        ("lock-ba", "lock_second_then_first"),
    ] {
        assert!(pane.contains(thread), "{thread} listed:\n{screen}");
        // The function column may be cut; its end is kept.
        assert!(
            pane.contains(&function[function.len() - 10..]),
            "{function} listed:\n{screen}"
        );
    }
    assert!(pane.contains("sleeping in futex"), "{pane}");
    if before_attach {
        assert!(
            pane.contains('≥'),
            "started before ferret attached:\n{pane}"
        );
    }
    assert!(
        screen.contains("⚠ stalled"),
        "the Live Stack marks the stalled threads:\n{screen}"
    );
    if !before_attach {
        // The scheduler hooks saw them block (threads adopted at attach hit
        // no probe, so the kernel keeps no state for them); the pane is
        // narrow, so the line is cut after the state (the unit tests of the
        // view read it whole: `blocked in futex, 0% CPU`).
        assert!(
            screen.contains("⚠ stalled · blocked in"),
            "each thread's state now and its call's CPU share:\n{screen}"
        );
    }

    // Enter on each stall: its stack names the line of its blocking lock.
    tmux.send("5");
    for step in 0..2 {
        if step == 1 {
            tmux.send("Escape");
            // Escape and the arrow's sequence sent at once can be read as
            // one unknown key: the popup is seen closed first.
            tmux.wait_for("the details closed", Duration::from_secs(3), |s| {
                !s.contains("╭ Stall ")
            });
            tmux.send("Down");
        }
        tmux.send("Enter");
        let popup = tmux.wait_for("the stall's details", Duration::from_secs(3), |s| {
            // Whole: the screen may be captured halfway through a redraw.
            s.contains("╭ Stall ")
                && s.contains("stack, innermost first")
                && s.contains("stall_deadlock.c:")
                && s.contains("Esc closes")
        });
        let (function, line, other) = if popup.contains("function    lock_first_then_second") {
            ("lock_first_then_second", first, "lock-ba")
        } else {
            assert!(
                popup.contains("function    lock_second_then_first"),
                "{popup}"
            );
            ("lock_second_then_first", second, "lock-ab")
        };
        assert!(
            popup.contains(&format!("{function} ("))
                && popup.contains(&format!("stall_deadlock.c:{line}")),
            "{function}'s stack names line {line}:\n{popup}"
        );
        assert!(popup.contains("DEADLOCK"), "{popup}");
        assert!(
            popup.contains(&format!("({other})")),
            "held by {other}:\n{popup}"
        );
        assert!(popup.contains("futex("), "the system call:\n{popup}");
    }
    tmux.send("Escape");
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn watch_shows_a_deadlock_that_happens_while_it_watches() {
    let _machine = require_root();
    let program = build("stall_deadlock.c", &[]);
    let dir = tempdir();
    let parquet = dir.path().join("stalls.parquet");
    let tmux = Tmux::start("deadlock-after");
    // The threads start 500 ms after launch; SIGALRM ends the program at 60 s.
    tmux.send(&format!(
        "{} watch --stall 1s -s 'lock_*' -o {} -- {} 500 60",
        env!("CARGO_BIN_EXE_ferret"),
        parquet.display(),
        program.display()
    ));
    tmux.send("Enter");
    tmux.wait_for("the dashboard", Duration::from_secs(10), |s| {
        s.contains(" LIVE ")
    });
    check_deadlock_on_screen(&tmux, false);
    tmux.send("q");
    let screen = tmux.wait_for("the shell prompt after q", Duration::from_secs(8), |s| {
        s.trim_end().ends_with(PROMPT)
    });
    // The deadlocked program ignores nothing: SIGTERM ends it.
    assert!(screen.contains("ferret: stopped"), "{screen}");
    // With -o, the stalls are recorded as `record` records them.
    let rows = ferret::sink::read_all(&parquet).expect("a readable recording");
    for function in ["lock_first_then_second", "lock_second_then_first"] {
        let stall = rows
            .iter()
            .find(|r| r.kind.as_deref() == Some("STALL") && r.function.as_deref() == Some(function))
            .unwrap_or_else(|| panic!("no STALL row for {function}"));
        let wait = stall.wait.as_deref().unwrap_or_default();
        assert!(wait.contains("DEADLOCK"), "{wait}");
        assert!(
            stall
                .stack
                .as_deref()
                .unwrap_or_default()
                .contains("stall_deadlock.c:"),
            "{stall:?}"
        );
    }
    let meta = ferret::sink::read_metadata(&parquet).unwrap();
    assert_eq!(meta["ferret.stall_threshold_ns"], "1000000000");
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn watch_shows_a_deadlock_that_happened_before_it_attached() {
    let _machine = require_root();
    let program = build("stall_deadlock.c", &[]);
    let target = start_deadlocked(&program, 60);
    let tmux = Tmux::start("deadlock-before");
    tmux.send(&format!(
        "{} watch --stall 1s -s 'lock_*' -p {}",
        env!("CARGO_BIN_EXE_ferret"),
        target.0.id()
    ));
    tmux.send("Enter");
    // The calls already running are adopted into the Live Stack.
    tmux.wait_for("the adopted calls", Duration::from_secs(10), |s| {
        s.contains(" LIVE ")
            && s.contains("└ lock_first_then_second")
            && s.contains("└ lock_second_then_first")
    });
    check_deadlock_on_screen(&tmux, true);
    tmux.send("q");
    tmux.wait_for("the shell prompt after q", Duration::from_secs(8), |s| {
        s.trim_end().ends_with(PROMPT)
    });
    // A process attached by pid runs on after ferret leaves.
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", target.0.id())).unwrap();
    let state = stat
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap();
    assert!(matches!(state, "S" | "R"), "target state {state}");
}
