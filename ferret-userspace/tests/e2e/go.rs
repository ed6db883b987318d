//! End-to-end: Go programs built here, traced for real. A hundred goroutines
//! nest calls, grow their stacks through deep recursion, block on channels
//! and yield (so the scheduler moves them between threads), and recover
//! panics thrown through traced frames: the program's output and exit
//! status must be the same with and without ferret, every call counted
//! exactly, every span's parent the right call of the same goroutine, and
//! the panicked calls `unwound`. Then a Go HTTP server, attached by pid and
//! watched live. Needs root and Go (`cargo xtask setup` installs it); fails
//! loudly without.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    io::{BufRead as _, BufReader, Read as _, Write as _},
    net::TcpStream,
    process::{Command, Output, Stdio},
    time::{Duration, Instant},
};

use crate::support::{KillOnDrop, PROMPT, Tmux, alone, build, ferret, require_root, run, tempdir};
use ferret::sink::{Row, read_all, read_metadata};

/// `record` with neither overhead guard (`--max-rate`, `--max-overhead`).
const UNGUARDED: [&str; 5] = ["record", "--max-rate", "0", "--max-overhead", "0"];
const GOROUTINES: &str = "100";
const ITERATIONS: &str = "10";

/// The program run on its own, as the reference.
fn run_alone(program: &std::path::Path, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .env("GOMAXPROCS", "4")
        .output()
        .expect("run the Go program")
}

/// The same under `ferret record -s 'main.*'`, with the overhead guards
/// off: the recursion calls `main.deep` 30,000 times a second, and every
/// call must be seen.
fn run_traced(program: &std::path::Path, args: &[&str], out: &std::path::Path) -> Output {
    let mut cmd = ferret();
    cmd.args(UNGUARDED)
        .args(["-s", "main.*", "-o"])
        .arg(out)
        .arg("--")
        .arg(program)
        .args(args)
        .env("GOMAXPROCS", "4");
    run(cmd)
}

fn spans(rows: &[Row], kind: &str) -> Vec<Row> {
    rows.iter()
        .filter(|r| r.kind.as_deref() == Some(kind))
        .cloned()
        .collect()
}

/// `name=value` pairs the program prints.
fn program_counts(stdout: &str) -> HashMap<String, i64> {
    stdout
        .split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .filter_map(|(k, v)| Some((k.to_owned(), v.parse().ok()?)))
        .collect()
}

/// The program's own lines on stderr (ferret's start with `ferret:`).
fn program_stderr(output: &Output) -> Vec<String> {
    String::from_utf8_lossy(&output.stderr)
        .lines()
        .filter(|l| !l.starts_with("ferret:"))
        .map(str::to_owned)
        .collect()
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn goroutines_that_move_grow_block_and_panic_are_traced_exactly() {
    let _machine = require_root();
    let program = build("goroutines.go", &[]);
    let args = [GOROUTINES, ITERATIONS];
    let alone = run_alone(&program, &args);
    assert!(alone.status.success(), "the program alone: {alone:?}");
    let dir = tempdir();
    let out = dir.path().join("go.parquet");
    let traced = run_traced(&program, &args, &out);
    assert_eq!(
        String::from_utf8_lossy(&traced.stdout),
        String::from_utf8_lossy(&alone.stdout),
        "the same output with ferret"
    );
    assert_eq!(
        traced.status.code(),
        alone.status.code(),
        "the same exit status"
    );
    let stderr = String::from_utf8_lossy(&traced.stderr);
    assert!(
        stderr.contains("calls kept per goroutine (g.goid at offset 152, from DWARF)"),
        "{stderr}"
    );
    assert!(
        stderr.contains("exits by return-instruction probes for"),
        "{stderr}"
    );

    let counts = program_counts(&String::from_utf8_lossy(&alone.stdout));
    let recovered = counts["recovered"];
    assert!(recovered > 0, "panics happened: {counts:?}");
    assert_eq!(
        counts["stacks_moved"], 100,
        "every goroutine's stack moved in deep"
    );
    let rows = read_all(&out).unwrap();
    let starts = spans(&rows, "SPAN_START");
    let ends = spans(&rows, "SPAN_END");
    assert_eq!(starts.len(), ends.len());

    // Every call counted, and the panicked ones unwound.
    let mut by_status: BTreeMap<(String, String), i64> = BTreeMap::new();
    for e in &ends {
        *by_status
            .entry((e.function.clone().unwrap(), e.status.clone().unwrap()))
            .or_default() += 1;
    }
    let status_count = |f: &str, s: &str| {
        by_status
            .get(&(format!("main.{f}"), s.to_owned()))
            .copied()
            .unwrap_or(0)
    };
    for f in [
        "handle", "nest", "leaf", "deep", "exchange", "yield", "guarded", "risky", "explode",
    ] {
        let panicked = if matches!(f, "risky" | "explode") {
            recovered
        } else {
            0
        };
        assert_eq!(
            (status_count(f, "ok"), status_count(f, "unwound")),
            (counts[f] - panicked, panicked),
            "calls of main.{f} (ok, unwound): {by_status:?}"
        );
    }
    assert_eq!(
        status_count("guarded.func1", "ok"),
        counts["guarded"],
        "deferred recover"
    );
    assert_eq!(status_count("main.func1", "ok"), 100, "goroutine bodies");
    assert!(
        by_status.keys().all(|(_, s)| s == "ok" || s == "unwound"),
        "nothing left open: {by_status:?}"
    );
    let meta = read_metadata(&out).unwrap();
    assert_eq!(
        meta.get("ferret.lost_events").map(String::as_str),
        Some("0")
    );
    assert_eq!(
        meta.get("ferret.orphan_exits").map(String::as_str),
        Some("0")
    );

    // Every span on a goroutine; the parent the right call of the same one.
    assert!(starts.iter().chain(&ends).all(|r| r.goroutine.is_some()));
    let by_id: HashMap<i64, &Row> = ends.iter().map(|r| (r.span_id.unwrap(), r)).collect();
    let callers = |f: &str| -> &[&str] {
        match f {
            "main.handle" => &["main.main.func1"],
            "main.nest" => &["main.nest", "main.handle"],
            "main.leaf" => &["main.nest"],
            "main.deep" => &["main.deep", "main.handle"],
            "main.exchange" | "main.yield" | "main.guarded" => &["main.handle"],
            "main.risky" => &["main.guarded"],
            "main.explode" => &["main.risky"],
            // Run by the deferred return, or by the panic below.
            "main.guarded.func1" => &["main.guarded", "main.explode"],
            _ => &[],
        }
    };
    let mut checked: i64 = 0;
    for e in &ends {
        let function = e.function.as_deref().unwrap();
        let expected = callers(function);
        if expected.is_empty() {
            continue;
        }
        let parent = by_id[&e
            .parent_span_id
            .unwrap_or_else(|| panic!("{function} has a parent"))];
        let parent_fn = parent.function.as_deref().unwrap();
        assert!(
            expected.contains(&parent_fn),
            "{function} called by {parent_fn}"
        );
        assert_eq!(
            parent.goroutine, e.goroutine,
            "{function}: the same goroutine"
        );
        assert_eq!(e.depth, parent.depth.map(|d| d + 1));
        assert!(
            parent.start_ns <= e.start_ns && e.ts_ns <= parent.ts_ns,
            "{function} nested in its caller's time"
        );
        checked += 1;
    }
    assert!(checked > counts["deep"], "{checked} parents checked");

    // A hundred goroutines; the recursion 40 deep under handle.
    let goroutines: HashSet<i64> = ends
        .iter()
        .filter(|e| e.function.as_deref() == Some("main.handle"))
        .map(|e| e.goroutine.unwrap())
        .collect();
    assert_eq!(goroutines.len(), 100);
    let deepest = |f: &str| {
        ends.iter()
            .filter(|e| e.function.as_deref() == Some(f))
            .filter_map(|e| e.depth)
            .max()
            .unwrap()
    };
    assert_eq!(
        deepest("main.deep"),
        deepest("main.handle") + 41,
        "handle → 41 × deep"
    );
    // Goroutines moved: calls that began on one thread and ended on another.
    let start_tid: HashMap<i64, i32> = starts
        .iter()
        .map(|s| (s.span_id.unwrap(), s.tid.unwrap()))
        .collect();
    let moved = ends
        .iter()
        .filter(|e| start_tid[&e.span_id.unwrap()] != e.tid.unwrap())
        .count();
    assert!(moved > 0, "no call changed threads");
    eprintln!(
        "{} spans, {moved} ended on another thread than they began on, {recovered} panics",
        ends.len()
    );
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn an_unrecovered_panic_keeps_its_exit_status_and_ends_its_frames_unwound() {
    let _machine = require_root();
    let program = build("goroutines.go", &[]);
    let args = ["2", "1", "crash"];
    let alone = run_alone(&program, &args);
    assert_eq!(
        alone.status.code(),
        Some(2),
        "Go exits 2 on a panic: {alone:?}"
    );
    let dir = tempdir();
    let out = dir.path().join("crash.parquet");
    let traced = run_traced(&program, &args, &out);
    assert_eq!(traced.status.code(), Some(2));
    assert_eq!(traced.stdout, alone.stdout);
    assert_eq!(
        program_stderr(&traced).first(),
        Some(&"panic: boom 0".to_owned()),
        "the program's own panic message"
    );
    assert_eq!(
        program_stderr(&alone).first(),
        Some(&"panic: boom 0".to_owned())
    );
    let recovered = program_counts(&String::from_utf8_lossy(&alone.stdout))["recovered"];
    let rows = read_all(&out).unwrap();
    let unwound: Vec<(String, String)> = spans(&rows, "SPAN_END")
        .iter()
        .filter(|e| matches!(e.function.as_deref(), Some("main.risky" | "main.explode")))
        .filter(|e| e.status.as_deref() == Some("unwound"))
        .map(|e| (e.function.clone().unwrap(), e.status.clone().unwrap()))
        .collect();
    // The recovered panics' two frames each, then the crash's two.
    assert_eq!(unwound.len() as i64, 2 * recovered + 2, "{unwound:?}");
}

#[test]
fn uretprobes_on_a_go_program_are_refused_with_a_hint() {
    let program = build("goroutines.go", &[]);
    let dir = tempdir();
    let mut cmd = ferret();
    cmd.args([
        "record",
        "--exit-probes",
        "uretprobe",
        "-s",
        "main.leaf",
        "-o",
    ])
    .arg(dir.path().join("x.parquet"))
    .arg("--")
    .arg(&program)
    .args(["2", "1"]);
    let output = run(cmd);
    assert_eq!(output.status.code(), Some(1));
    assert!(output.stdout.is_empty(), "the program never ran");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("error: --exit-probes uretprobe would kill")),
        "{stderr}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("hint: leave --exit-probes out")),
        "{stderr}"
    );
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn a_stripped_go_binary_is_traced_under_its_go_names() {
    let _machine = require_root();
    let program = build("goroutines.go", &["-ldflags=-s -w"]);
    let mut symbols = ferret();
    symbols.arg("symbols").arg(&program).arg("main.*");
    let listed = run(symbols);
    let listed = String::from_utf8_lossy(&listed.stdout);
    assert!(listed.contains("main.guarded.func1"), "{listed}");
    let dir = tempdir();
    let out = dir.path().join("stripped.parquet");
    let traced = run_traced(&program, &["4", "3"], &out);
    assert!(traced.status.success());
    let counts = program_counts(&String::from_utf8_lossy(&traced.stdout));
    let rows = read_all(&out).unwrap();
    let calls = |f: &str| {
        spans(&rows, "SPAN_END")
            .iter()
            .filter(|e| e.function.as_deref() == Some(f))
            .count() as i64
    };
    assert_eq!(calls("main.deep"), counts["deep"]);
    assert_eq!(calls("main.leaf"), counts["leaf"]);
}

/// One `GET path` over loopback; the response body.
fn get(port: u16, path: &str) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to the server");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.0 200"), "{response}");
    response
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .to_owned()
}

/// Starts the HTTP server; returns it and its port.
fn start_server(program: &std::path::Path) -> (KillOnDrop, u16) {
    let mut child = Command::new(program)
        .env("GOMAXPROCS", "4")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port = line
        .strip_prefix("listening ")
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or_else(|| panic!("server said {line:?}"));
    (KillOnDrop(child), port)
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn a_running_go_server_is_attached_by_pid_and_watched_live() {
    let _machine = require_root();
    let program = build("goserver.go", &[]);
    let (server, port) = start_server(&program);
    let pid = server.0.id();
    assert_eq!(get(port, "/work?n=5"), "5 120\n", "served before ferret");
    let dir = tempdir();
    let parquet = dir.path().join("server.parquet");
    let tmux = Tmux::start("go-server");
    tmux.send(&format!(
        "{} watch --max-rate 0 --max-overhead 0 --stall 1s -p {pid} -s 'main.*' -o {}",
        env!("CARGO_BIN_EXE_ferret"),
        parquet.display()
    ));
    tmux.send("Enter");
    tmux.wait_for("the dashboard", Duration::from_secs(10), |s| {
        s.contains("Live Stack") && s.contains(" LIVE ")
    });

    // A slow request stays inside main.slowQuery for three seconds: its
    // goroutine shows in the Live Stack, with the call.
    let slow = std::thread::spawn(move || get(port, "/slow"));
    let screen = tmux.wait_for(
        "the slow request's goroutine",
        Duration::from_secs(3),
        |s| s.contains("main.slowQuery") && s.lines().any(|l| l.contains("▾ goroutine ")),
    );
    assert!(screen.contains("└ main.handle"), "{screen}");
    assert!(screen.contains("goroutines in calls"), "{screen}");

    // A request stuck on a channel: the watchdog names the goroutine and
    // what the runtime says it waits for.
    let stuck = std::thread::spawn(move || get(port, "/stuck"));
    let screen = tmux.wait_for("the stuck goroutine's stall", Duration::from_secs(6), |s| {
        s.contains("Stalls") && s.contains("main.waitForever") && s.contains("chan receive")
    });
    assert!(screen.contains("⚠ goroutine "), "{screen}");

    // Fifty requests, ten at a time, each on a goroutine of its own.
    let began = Instant::now();
    let workers: Vec<_> = (0..10)
        .map(|_| {
            std::thread::spawn(move || {
                for _ in 0..5 {
                    assert_eq!(get(port, "/work?n=5"), "5 120\n");
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    eprintln!("50 requests in {:?}", began.elapsed());
    assert_eq!(slow.join().unwrap(), "slow done\n");
    assert_eq!(get(port, "/release"), "ok\n");
    assert_eq!(stuck.join().unwrap(), "released\n");
    // 50 + /slow + /stuck + /release.
    tmux.wait_for("main.handle's calls", Duration::from_secs(5), |s| {
        s.lines()
            .any(|l| l.contains("main.handle ") && l.split_whitespace().any(|w| w == "53"))
    });
    tmux.send("q");
    let screen = tmux.wait_for("the shell prompt after q", Duration::from_secs(6), |s| {
        s.trim_end().ends_with(PROMPT)
    });
    assert!(screen.contains("ferret: wrote"), "{screen}");
    // Detached, the server goes on serving.
    assert_eq!(get(port, "/work?n=3"), "3 6\n", "served after ferret");

    let rows = read_all(&parquet).unwrap();
    let ends = spans(&rows, "SPAN_END");
    let handles: Vec<&Row> = ends
        .iter()
        .filter(|e| e.function.as_deref() == Some("main.handle"))
        .collect();
    assert_eq!(handles.len(), 53);
    assert!(handles.iter().all(|e| e.status.as_deref() == Some("ok")));
    let goroutines: HashSet<i64> = handles.iter().map(|e| e.goroutine.unwrap()).collect();
    assert!(goroutines.len() > 1, "requests on goroutines of their own");
    let by_id: HashMap<i64, &Row> = ends.iter().map(|r| (r.span_id.unwrap(), r)).collect();
    let factorials: Vec<&Row> = ends
        .iter()
        .filter(|e| e.function.as_deref() == Some("main.factorial") && e.depth == Some(1))
        .collect();
    assert_eq!(factorials.len(), 50);
    for e in factorials {
        let parent = by_id[&e.parent_span_id.unwrap()];
        assert_eq!(parent.function.as_deref(), Some("main.handle"));
        assert_eq!(parent.goroutine, e.goroutine);
        assert_eq!(e.status.as_deref(), Some("ok"));
    }
    let stall_in = |function: &str| {
        rows.iter()
            .find(|r| r.kind.as_deref() == Some("STALL") && r.function.as_deref() == Some(function))
            .unwrap_or_else(|| panic!("a STALL row for {function}"))
    };
    // Three seconds asleep is a stall too, at --stall 1s.
    let asleep = stall_in("main.slowQuery").wait.as_deref().unwrap();
    assert!(asleep.starts_with("goroutine waiting (sleep"), "{asleep}");
    let stall = stall_in("main.waitForever");
    assert!(stall.goroutine.is_some(), "{stall:?}");
    let wait = stall.wait.as_deref().unwrap();
    assert!(
        wait.starts_with("goroutine waiting (chan receive"),
        "{wait}"
    );
    let stack = stall.stack.as_deref().unwrap();
    assert!(
        stack.contains("runtime.gopark") && stack.contains("main.waitForever"),
        "the goroutine's own stack:\n{stack}"
    );
}

/// `gosplit MODE` traced (`main.work`, `main.spin`) next to an untraced
/// run: the same output and exit status; returns the SPAN_END rows.
fn split_spans(mode: &str) -> Vec<Row> {
    let program = build("gosplit.go", &[]);
    let alone = Command::new(&program)
        .arg(mode)
        .output()
        .expect("run the Go program");
    assert!(alone.status.success(), "untraced run: {alone:?}");
    let dir = tempdir();
    let out = dir.path().join("split.parquet");
    let mut cmd = ferret();
    cmd.args(UNGUARDED)
        .args(["-s", "main.work", "-s", "main.spin", "-o"])
        .arg(&out)
        .arg("--")
        .arg(&program)
        .arg(mode);
    let traced = run(cmd);
    assert_eq!(traced.status.code(), alone.status.code());
    assert_eq!(
        String::from_utf8_lossy(&traced.stdout),
        String::from_utf8_lossy(&alone.stdout)
    );
    assert_eq!(program_stderr(&traced), program_stderr(&alone));
    spans(&read_all(&out).expect("read the recording"), "SPAN_END")
}

/// A span's split as (cpu, runnable, blocked) ms, and that it adds up to
/// the span's duration within 5 %.
fn split_ms(span: &Row) -> (f64, f64, f64) {
    let ms = |v: Option<i64>| v.expect("a split, not null") as f64 / 1e6;
    let (cpu, runnable, blocked) = (ms(span.cpu_ns), ms(span.runnable_ns), ms(span.blocked_ns));
    let duration = ms(span.duration_ns);
    assert!(
        ((cpu + runnable + blocked) - duration).abs() <= duration * 0.05,
        "{cpu} + {runnable} + {blocked} ms is not the duration, {duration} ms"
    );
    (cpu, runnable, blocked)
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn a_goroutine_that_computes_sleeps_and_waits_for_a_mutex_gets_its_split() {
    let _alone = alone();
    let ends = split_spans("split");
    let [work] = ends.as_slice() else {
        panic!("one call of main.work: {ends:?}");
    };
    let (cpu, _, blocked) = split_ms(work);
    // 300 ms of the process's CPU time while the other goroutines sleep;
    // then time.Sleep(300 ms) and about 300 ms parked on the mutex.
    assert!((cpu - 300.0).abs() <= 30.0, "cpu {cpu} ms");
    assert!((blocked - 600.0).abs() <= 60.0, "blocked {blocked} ms");
    // Parked (sleep, then the mutex's semaphore), not in a system call:
    // named by the runtime's own words for either, read from the binary.
    let blocked_in = work.blocked_in.as_deref().expect("blocked_in");
    assert!(
        ["go:sleep", "go:semacquire", "go:sync.Mutex.Lock"].contains(&blocked_in),
        "{blocked_in}"
    );
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn two_goroutines_sharing_one_p_each_wait_for_it_as_runnable() {
    let _alone = alone();
    let ends = split_spans("contend");
    let spins: Vec<&Row> = ends
        .iter()
        .filter(|r| r.function.as_deref() == Some("main.spin"))
        .collect();
    assert_eq!(spins.len(), 2, "{ends:?}");
    assert_ne!(spins[0].goroutine, spins[1].goroutine);
    for spin in spins {
        let (cpu, runnable, blocked) = split_ms(spin);
        // Each computes 300 ms; GOMAXPROCS=1 runs one at a time, so each
        // waits about as long for the P (the other's share).
        assert!((cpu - 300.0).abs() <= 45.0, "cpu {cpu} ms");
        assert!(runnable >= 200.0, "runnable {runnable} ms");
        assert!(blocked <= 20.0, "blocked {blocked} ms");
    }
}

/// A Go function traced from the dashboard, in a session started without
/// `-s`, gets the goroutine's split as one chosen at the start does: the
/// hand-off probes go in with it. `gosplit live` naps 100 ms at a time in
/// `main.nap` while another goroutine computes on the same P (so mostly
/// the same thread): were the thread's counters the nap's, it would read
/// ~100 ms of CPU.
#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn a_go_function_traced_from_the_dashboard_gets_the_goroutines_split() {
    let _alone = alone();
    let mut child = Command::new(build("gosplit.go", &[]))
        .arg("live")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start gosplit live");
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert_eq!(line, "ready\n");
    let dir = tempdir();
    let parquet = dir.path().join("live.parquet");
    let tmux = Tmux::start("golive");
    tmux.send(&format!(
        "{} watch -p {} -o {}",
        env!("CARGO_BIN_EXE_ferret"),
        child.id(),
        parquet.display()
    ));
    tmux.send("Enter");
    tmux.wait_for("the dashboard", Duration::from_secs(20), |s| {
        s.contains("╭ Hot") && s.contains(" LIVE ")
    });
    tmux.send("+");
    tmux.send("main.nap");
    tmux.send("Enter");
    tmux.wait_for("main.nap traced", Duration::from_secs(10), |s| {
        s.contains("tracing `main.nap`")
    });
    // Ten naps or so.
    std::thread::sleep(Duration::from_millis(1200));
    tmux.send("q");
    tmux.wait_for("the shell prompt after q", Duration::from_secs(10), |s| {
        s.trim_end().ends_with(PROMPT)
    });
    // The program is unharmed: it runs on, and ends as it would alone.
    drop(child.stdin.take());
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    assert_eq!(rest, "live done true\n");
    assert!(child.wait().unwrap().success());

    let rows = read_all(&parquet).expect("read the recording");
    let naps: Vec<Row> = spans(&rows, "SPAN_END")
        .into_iter()
        .filter(|r| r.function.as_deref() == Some("main.nap"))
        .collect();
    assert!(naps.len() >= 5, "{} naps", naps.len());
    // The first may have begun before its goroutine had a state.
    let split: Vec<&Row> = naps.iter().filter(|r| r.cpu_ns.is_some()).collect();
    assert!(split.len() + 1 >= naps.len(), "{naps:?}");
    for nap in split {
        let (cpu, _, blocked) = split_ms(nap);
        assert!(cpu <= 10.0, "a nap's cpu {cpu} ms: {nap:?}");
        assert!(blocked >= 90.0, "a nap's blocked {blocked} ms: {nap:?}");
        assert_eq!(nap.blocked_in.as_deref(), Some("go:sleep"), "{nap:?}");
    }
    // The dashboard's change log names what the user chose, not the
    // runtime's hand-off points that went in with it.
    let meta = read_metadata(&parquet).unwrap();
    let changes: serde_json::Value = serde_json::from_str(&meta["ferret.probe_changes"]).unwrap();
    let functions: Vec<&str> = changes
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["function"].as_str().unwrap())
        .collect();
    assert_eq!(functions, ["main.nap"]);
}
