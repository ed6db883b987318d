//! End-to-end: binaries ferret did not build with their symbols, as they
//! ship. A C program is built here, then stripped the way distributions and
//! release profiles do it (`objcopy --only-keep-debug`, `strip`,
//! `--add-gnu-debuglink`), and its debug file is put where ferret must find
//! it: beside it (debug link), only under a build-id path in a debug dir
//! given by `--debug-dir` / `FERRET_DEBUG_DIRS`, on a debuginfod server the
//! test runs on the loopback, or nowhere. Traced functions are counted
//! exactly in the Parquet file and a stall in them is symbolized to
//! file:line. Nothing here depends on the machine's /usr/lib/debug or its
//! DEBUGINFOD_URLS. Tests that attach probes need root and fail loudly
//! without it.

use std::{
    collections::BTreeMap,
    io::{BufRead as _, BufReader, Write as _},
    net::{TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Command, Output},
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use crate::support::{build, ferret, marker_line, require_root, run, tempdir};
use ferret::sink::{Row, read_all};

/// Calls of `work` each run makes.
const CALLS: usize = 1000;

/// Runs a build tool, failing with its stderr.
fn tool(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A stripped copy of `split_debug.c` at `dir/name` and its debug file
/// `dir/name.debug`; with `link`, the copy records a `.gnu_debuglink` to
/// it. Returns the copy, the debug file and the build id in hex.
fn stripped_copy(dir: &Path, name: &str, link: bool) -> (PathBuf, PathBuf, String) {
    let built = build("split_debug.c", &[]);
    let copy = dir.join(name);
    let debug = dir.join(format!("{name}.debug"));
    std::fs::copy(&built, &copy).unwrap();
    tool(
        Command::new("objcopy")
            .arg("--only-keep-debug")
            .arg(&copy)
            .arg(&debug),
    );
    tool(Command::new("strip").arg(&copy));
    if link {
        tool(
            Command::new("objcopy")
                .current_dir(dir)
                .arg(format!("--add-gnu-debuglink={name}.debug"))
                .arg(&copy),
        );
    }
    let sections = Command::new("readelf")
        .arg("-S")
        .arg(&copy)
        .output()
        .unwrap();
    let sections = String::from_utf8_lossy(&sections.stdout);
    assert!(!sections.contains(".symtab"), "strip removed .symtab");
    assert_eq!(sections.contains(".gnu_debuglink"), link);
    let notes = Command::new("readelf")
        .arg("-n")
        .arg(&copy)
        .output()
        .unwrap();
    let id = String::from_utf8_lossy(&notes.stdout)
        .lines()
        .find_map(|l| l.trim().strip_prefix("Build ID: ").map(str::to_owned))
        .expect("the compiler wrote a build id");
    (copy, debug, id)
}

/// `dir/.build-id/xx/rest.debug` for build id `id`.
fn build_id_path(dir: &Path, id: &str) -> PathBuf {
    dir.join(".build-id")
        .join(&id[..2])
        .join(format!("{}.debug", &id[2..]))
}

/// ferret with the machine's debug configuration taken away: an empty
/// debug dir instead of /usr/lib/debug, and no debuginfod.
fn hermetic_ferret(empty_debug_dir: &Path) -> Command {
    let mut cmd = ferret();
    cmd.env("FERRET_DEBUG_DIRS", empty_debug_dir)
        .env_remove("DEBUGINFOD_URLS")
        .env_remove("DEBUGINFOD_CACHE_PATH")
        .env_remove("DEBUGINFOD_TIMEOUT");
    cmd
}

/// `ferret record --stall 300ms -s work -s nap` of `program CALLS 3000`:
/// three seconds asleep, so the stall is captured while it lasts however
/// loaded the machine (at 1.5 s a loaded run once missed it).
fn record(mut cmd: Command, program: &Path, out: &Path) -> Output {
    // The budget off: `work` at 2000 calls/s would be detached, and this
    // test is about names and lines.
    cmd.args([
        "record",
        "--max-overhead",
        "0",
        "--stall",
        "300ms",
        "-s",
        "work",
        "-s",
        "nap",
        "-o",
    ])
    .arg(out)
    .arg("--")
    .arg(program)
    .args([CALLS.to_string(), "3000".to_owned()]);
    run(cmd)
}

/// Exact call counts, and the stall in `nap` symbolized to its line.
fn check_recording(output: &Output, out: &Path) {
    assert!(output.status.success(), "ferret failed: {output:?}");
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        format!("work={CALLS}\n")
    );
    let rows = read_all(out).unwrap();
    let mut ok: BTreeMap<String, usize> = BTreeMap::new();
    for r in &rows {
        if r.kind.as_deref() == Some("SPAN_END") && r.status.as_deref() == Some("ok") {
            *ok.entry(r.function.clone().unwrap_or_default())
                .or_default() += 1;
        }
    }
    assert_eq!(ok.get("work"), Some(&CALLS), "{ok:?}");
    assert_eq!(ok.get("nap"), Some(&1), "{ok:?}");

    let line = marker_line("split_debug.c", "NAPS");
    let stalls: Vec<&Row> = rows
        .iter()
        .filter(|r| r.kind.as_deref() == Some("STALL") && r.function.as_deref() == Some("nap"))
        .collect();
    assert!(!stalls.is_empty(), "a STALL row for nap");
    let stack = stalls[0].stack.as_deref().unwrap_or_default();
    assert!(
        stack.contains("nap (") && stack.contains(&format!("split_debug.c:{line})")),
        "the stall is symbolized to nap at split_debug.c:{line}:\n{stack}"
    );
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn debuglink_beside_a_stripped_binary_gives_its_functions_and_lines() {
    let _machine = require_root();
    let dir = tempdir();
    let empty = tempdir();
    let (program, debug, _) = stripped_copy(dir.path(), "app", true);
    let out = dir.path().join("link.parquet");
    let output = record(hermetic_ferret(empty.path()), &program, &out);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!(
            "{}: symbols from {} (by .gnu_debuglink)",
            program.display(),
            debug.display()
        )),
        "says where the symbols came from: {stderr}"
    );
    check_recording(&output, &out);
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn build_id_path_in_a_debug_dir_gives_its_functions_and_lines() {
    let _machine = require_root();
    let dir = tempdir();
    let debug_dir = tempdir();
    let empty = tempdir();
    let (program, debug, id) = stripped_copy(dir.path(), "app", false);
    let by_id = build_id_path(debug_dir.path(), &id);
    std::fs::create_dir_all(by_id.parent().unwrap()).unwrap();
    std::fs::rename(&debug, &by_id).unwrap();

    // Through --debug-dir, with FERRET_DEBUG_DIRS pointing elsewhere.
    let out = dir.path().join("id.parquet");
    let mut cmd = hermetic_ferret(empty.path());
    cmd.args(["record", "--debug-dir"])
        .arg(debug_dir.path())
        .args([
            "--max-overhead",
            "0",
            "--stall",
            "300ms",
            "-s",
            "work",
            "-s",
            "nap",
            "-o",
        ])
        .arg(&out)
        .arg("--")
        .arg(&program)
        .args([CALLS.to_string(), "3000".to_owned()]);
    let output = run(cmd);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!("symbols from {} (by build id)", by_id.display())),
        "{stderr}"
    );
    check_recording(&output, &out);

    // Through FERRET_DEBUG_DIRS alone.
    let out = dir.path().join("env.parquet");
    let output = record(hermetic_ferret(debug_dir.path()), &program, &out);
    check_recording(&output, &out);

    // `ferret symbols` lists the static functions only the debug file names.
    let mut cmd = hermetic_ferret(debug_dir.path());
    cmd.arg("symbols").arg(&program).args(["work", "nap"]);
    let output = run(cmd);
    assert!(output.status.success());
    let listing = String::from_utf8_lossy(&output.stdout);
    let names: Vec<&str> = listing
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(names, ["work", "nap"], "{listing}");
}

/// The one-line error of a binary with no symbols anywhere.
fn stripped_line(program: &Path, id: &str, searched: &str) -> String {
    format!(
        "error: {} is stripped (no .symtab, no debug file for build id {id} in {searched}); \
         install its debug symbols, set DEBUGINFOD_URLS, or rebuild without strip",
        program.display()
    )
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn fully_stripped_binary_is_a_one_line_error_with_the_remedy() {
    let _machine = require_root();
    let dir = tempdir();
    let empty = tempdir();
    let (program, debug, id) = stripped_copy(dir.path(), "app", false);
    std::fs::remove_file(debug).unwrap();
    let expected = stripped_line(&program, &id, &empty.path().display().to_string());

    let out = dir.path().join("none.parquet");
    let output = record(hermetic_ferret(empty.path()), &program, &out);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    assert_eq!(String::from_utf8_lossy(&output.stderr).trim_end(), expected);
    assert!(!out.exists(), "nothing recorded");

    let mut cmd = hermetic_ferret(empty.path());
    cmd.arg("symbols").arg(&program).arg("work");
    let output = run(cmd);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&output.stderr).trim_end(), expected);
}

/// A debuginfod server on the loopback: answers
/// `GET /buildid/<id>/debuginfo` with `file` for build id `id`, 404
/// otherwise; counts the requests it answered with the file. Serves at
/// most `max` connections, then its thread ends.
fn debuginfod_server(id: String, file: PathBuf, max: usize) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let served = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&served);
    std::thread::spawn(move || {
        for stream in listener.incoming().take(max) {
            let Ok(mut stream) = stream else { continue };
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request = String::new();
            let _ = reader.read_line(&mut request);
            loop {
                let mut header = String::new();
                match reader.read_line(&mut header) {
                    Ok(n) if n > 2 => {}
                    _ => break,
                }
            }
            let wanted = format!("GET /buildid/{id}/debuginfo ");
            if request.starts_with(&wanted) {
                let body = std::fs::read(&file).unwrap();
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(&body);
                counter.fetch_add(1, Ordering::SeqCst);
            } else {
                let _ = stream.write_all(
                    b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                );
            }
        }
    });
    (url, served)
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn debuginfod_on_the_loopback_supplies_the_debug_file() {
    let _machine = require_root();
    let dir = tempdir();
    let empty = tempdir();
    let cache = tempdir();
    let (program, debug, id) = stripped_copy(dir.path(), "app", false);
    let served_file = dir.path().join("served.debug");
    std::fs::rename(&debug, &served_file).unwrap();
    let (url, served) = debuginfod_server(id.clone(), served_file, 16);
    let with_server = || {
        let mut cmd = hermetic_ferret(empty.path());
        cmd.env("DEBUGINFOD_URLS", &url)
            .env("DEBUGINFOD_CACHE_PATH", cache.path());
        cmd
    };

    let out = dir.path().join("debuginfod.parquet");
    let output = record(with_server(), &program, &out);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!(
            "fetching the debug file of {} from {url}",
            program.display()
        )),
        "{stderr}"
    );
    let cached = cache.path().join(&id).join("debuginfo");
    assert!(
        stderr.contains(&format!(
            "symbols from {} (from debuginfod {url})",
            cached.display()
        )),
        "{stderr}"
    );
    check_recording(&output, &out);
    assert_eq!(
        served.load(Ordering::SeqCst),
        1,
        "fetched once: the stall symbolizer read the cache"
    );

    // A second command finds it in the cache, without asking the server.
    let mut cmd = with_server();
    cmd.arg("symbols").arg(&program).arg("work");
    let output = run(cmd);
    assert!(output.status.success());
    assert!(String::from_utf8_lossy(&output.stdout).starts_with("work "));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("(from debuginfod cache)"),
        "{output:?}"
    );
    assert_eq!(served.load(Ordering::SeqCst), 1);
}

/// Accepts connections and never answers: a server that hangs. Holds at
/// most `max` connections, for at most `hold`.
fn blackhole(max: usize, hold: Duration) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        let mut held: Vec<TcpStream> = Vec::new();
        for stream in listener.incoming().take(max).flatten() {
            held.push(stream);
        }
        std::thread::sleep(hold);
        drop(held);
    });
    url
}

#[test]
fn unreachable_debuginfod_is_a_warning_within_the_timeout_not_a_hang() {
    let dir = tempdir();
    let empty = tempdir();
    let cache = tempdir();
    let (program, debug, id) = stripped_copy(dir.path(), "app", false);
    std::fs::remove_file(debug).unwrap();
    // A closed port: bound, then released.
    let closed = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    };
    let hanging = blackhole(2, Duration::from_secs(30));

    let mut cmd = hermetic_ferret(empty.path());
    cmd.env("DEBUGINFOD_URLS", format!("{closed} {hanging}"))
        .env("DEBUGINFOD_CACHE_PATH", cache.path())
        .arg("symbols")
        .arg(&program)
        .arg("work");
    let started = Instant::now();
    let output = run(cmd);
    let took = started.elapsed();
    let stderr = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 3, "two warnings and the error: {stderr}");
    assert!(
        lines[0].starts_with(&format!(
            "ferret: warning: debuginfod server {closed} is unreachable ("
        )) && lines[0].ends_with("; going on without it"),
        "{stderr}"
    );
    assert_eq!(
        lines[1],
        format!(
            "ferret: warning: debuginfod server {hanging} is unreachable (no answer within 5s); \
             going on without it"
        )
    );
    assert_eq!(
        lines[2],
        format!(
            "error: {} is stripped (no .symtab, no debug file for build id {id} in {} or on \
             {closed}, {hanging}); install its debug symbols (or pass --debug-dir), or rebuild \
             without strip",
            program.display(),
            empty.path().display()
        )
    );
    assert_eq!(output.status.code(), Some(1));
    // The hanging server costs the default 5 s timeout once, not more.
    assert!(
        took >= Duration::from_secs(5) && took < Duration::from_secs(12),
        "took {took:?}"
    );

    // A shorter DEBUGINFOD_TIMEOUT is honoured.
    let mut cmd = hermetic_ferret(empty.path());
    cmd.env("DEBUGINFOD_URLS", &hanging)
        .env("DEBUGINFOD_TIMEOUT", "1")
        .env("DEBUGINFOD_CACHE_PATH", cache.path())
        .arg("symbols")
        .arg(&program)
        .arg("work");
    let started = Instant::now();
    let output = run(cmd);
    let took = started.elapsed();
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("is unreachable (no answer within 1s)"),
        "{output:?}"
    );
    assert!(took < Duration::from_secs(5), "took {took:?}");
}
