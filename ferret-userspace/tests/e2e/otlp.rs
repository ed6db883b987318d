//! End-to-end: `ferret record --otlp-endpoint` traces a real program and
//! sends its spans to a collector running inside the test (a plain HTTP
//! server on loopback) that decodes them with the official OpenTelemetry
//! protobuf definitions (`opentelemetry-proto`), not with ferret's own
//! mapping; `ferret export --format otlp` output is read back with the same
//! definitions. Needs root (CI has it); fails loudly without.

use std::{
    collections::{HashMap, HashSet},
    io::{BufRead as _, BufReader, Read as _, Write as _},
    net::TcpListener,
    path::Path,
    sync::{Arc, Mutex},
    thread,
};

use crate::support::{build, ferret, require_root, run, tempdir};
use ferret::sink::{Row, read_all, read_metadata};
use flate2::read::GzDecoder;
use opentelemetry_proto::tonic::{
    collector::trace::v1::ExportTraceServiceRequest,
    common::v1::{KeyValue, any_value::Value},
    trace::v1::Span,
};
use prost::Message as _;

/// What the test collector received.
#[derive(Default)]
struct Received {
    /// Every span, with its resource's attributes.
    spans: Vec<(Vec<KeyValue>, Span)>,
    /// Request paths, in order.
    paths: Vec<String>,
}

/// A collector on loopback: answers `200` to every request and keeps the
/// spans of `/v1/traces` requests; after `traces_limit` trace requests (if
/// given) it closes everything and stops, as a collector that goes away.
fn collector(traces_limit: Option<usize>) -> (String, Arc<Mutex<Received>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let received = Arc::new(Mutex::new(Received::default()));
    let got = Arc::clone(&received);
    thread::spawn(move || {
        let mut traces = 0;
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            loop {
                let mut head = Vec::new();
                let mut line = String::new();
                loop {
                    line.clear();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    head.push(line.trim_end().to_owned());
                }
                let Some(request_line) = head.first() else {
                    break;
                };
                let path = request_line.split(' ').nth(1).unwrap_or("").to_owned();
                let header = |name: &str| {
                    head.iter().find_map(|h| {
                        let (k, v) = h.split_once(':')?;
                        k.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
                    })
                };
                let length: usize = header("content-length").unwrap().parse().unwrap();
                assert_eq!(header("content-encoding").as_deref(), Some("gzip"));
                assert_eq!(
                    header("content-type").as_deref(),
                    Some("application/x-protobuf")
                );
                let mut body = vec![0; length];
                reader.read_exact(&mut body).unwrap();
                let mut raw = Vec::new();
                GzDecoder::new(body.as_slice())
                    .read_to_end(&mut raw)
                    .unwrap();
                {
                    let mut got = got.lock().unwrap();
                    if path == "/v1/traces" {
                        let request = ExportTraceServiceRequest::decode(raw.as_slice()).unwrap();
                        for rs in request.resource_spans {
                            let resource = rs.resource.unwrap_or_default().attributes;
                            for ss in rs.scope_spans {
                                for span in ss.spans {
                                    got.spans.push((resource.clone(), span));
                                }
                            }
                        }
                    }
                    got.paths.push(path.clone());
                }
                let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n");
                if path == "/v1/traces" {
                    traces += 1;
                    if traces_limit == Some(traces) {
                        // Gone: the listener and this connection close here.
                        return;
                    }
                }
            }
        }
    });
    (url, received)
}

fn attr<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a Value> {
    attributes
        .iter()
        .find(|a| a.key == key)
        .and_then(|a| a.value.as_ref()?.value.as_ref())
}

fn string_attr(attributes: &[KeyValue], key: &str) -> String {
    match attr(attributes, key) {
        Some(Value::StringValue(s)) => s.clone(),
        other => panic!("{key}: {other:?}"),
    }
}

fn int_attr(attributes: &[KeyValue], key: &str) -> i64 {
    match attr(attributes, key) {
        Some(Value::IntValue(i)) => *i,
        other => panic!("{key}: {other:?}"),
    }
}

/// Parses `name=value` pairs the test programs print.
fn program_counts(stdout: &str) -> HashMap<String, usize> {
    stdout
        .split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .filter_map(|(k, v)| Some((k.to_owned(), v.parse().ok()?)))
        .collect()
}

fn count_by_name<'a>(names: impl Iterator<Item = &'a str>) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for name in names {
        *counts.entry(name.to_owned()).or_default() += 1;
    }
    counts
}

fn span_id(bytes: &[u8]) -> u64 {
    u64::from_be_bytes(bytes.try_into().expect("8-byte span id"))
}

/// `ferret record` of `otlp_calls ARGS`, sending to `url` with `flags`;
/// returns the program's counts, ferret's stderr and the recording's rows.
fn record(
    dir: &Path,
    url: &str,
    flags: &[&str],
    args: &[&str],
) -> (
    HashMap<String, usize>,
    String,
    Vec<Row>,
    HashMap<String, String>,
) {
    let program = build("otlp_calls.c", &[]);
    let out = dir.join("calls.parquet");
    let mut cmd = ferret();
    cmd.args(["record", "-s", "request", "-s", "handle", "-s", "*_step"])
        .args(["--otlp-endpoint", url])
        .args(flags)
        .arg("-o")
        .arg(&out)
        .arg("--")
        .arg(&program)
        .args(args);
    let output = run(cmd);
    assert!(output.status.success(), "ferret failed: {output:?}");
    let counts = program_counts(&String::from_utf8_lossy(&output.stdout));
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    (
        counts,
        stderr,
        read_all(&out).unwrap(),
        read_metadata(&out).unwrap(),
    )
}

fn ends(rows: &[Row]) -> impl Iterator<Item = &Row> {
    rows.iter()
        .filter(|r| r.kind.as_deref() == Some("SPAN_END"))
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn the_collector_gets_exactly_the_programs_calls_with_their_parents_and_resource() {
    let _machine = require_root();
    let (url, received) = collector(None);
    let dir = tempdir();
    let (counts, stderr, rows, meta) = record(
        dir.path(),
        &url,
        &["--otlp-max-spans", "0"],
        // 20 ms between requests: the program runs for a second, so the
        // metrics are sampled while it lives, however loaded the machine.
        &["2", "50", "20", "0"],
    );
    assert_eq!(counts["request"], 100, "the program ran: {counts:?}");
    let received = received.lock().unwrap();
    let spans: Vec<&Span> = received.spans.iter().map(|(_, s)| s).collect();

    // Exactly the program's calls, no more, no fewer.
    let got = count_by_name(spans.iter().map(|s| s.name.as_str()));
    for f in ["request", "handle", "fast_step"] {
        assert_eq!(got.get(f).copied().unwrap_or(0), counts[f], "calls of {f}");
    }
    assert_eq!(spans.len(), 300, "{got:?}");
    assert_eq!(meta["ferret.otlp_sent"], "300");
    assert_eq!(meta["ferret.otlp_unsent"], "0");
    assert!(stderr.contains("otlp: sent 300 spans"), "{stderr}");

    // The same spans as the recording, by id.
    let recorded: HashSet<u64> = ends(&rows).map(|r| r.span_id.unwrap() as u64).collect();
    let sent: HashSet<u64> = spans.iter().map(|s| span_id(&s.span_id)).collect();
    assert_eq!(sent, recorded);

    // Parent links: fast_step under handle under request, on one thread and
    // in one trace; each request a root of its own trace.
    let by_id: HashMap<u64, &Span> = spans.iter().map(|s| (span_id(&s.span_id), *s)).collect();
    let expected_parent = [("fast_step", "handle"), ("handle", "request")];
    for s in &spans {
        if s.name == "request" {
            assert!(s.parent_span_id.is_empty(), "a root");
            continue;
        }
        let (_, parent_name) = expected_parent.iter().find(|(f, _)| *f == s.name).unwrap();
        let parent = by_id[&span_id(&s.parent_span_id)];
        assert_eq!(parent.name, *parent_name);
        assert_eq!(
            parent.trace_id, s.trace_id,
            "{} in its parent's trace",
            s.name
        );
        assert_eq!(
            int_attr(&parent.attributes, "thread.id"),
            int_attr(&s.attributes, "thread.id")
        );
        assert!(
            parent.start_time_unix_nano <= s.start_time_unix_nano
                && s.end_time_unix_nano <= parent.end_time_unix_nano,
            "nested in time"
        );
    }
    let traces: HashSet<&[u8]> = spans
        .iter()
        .filter(|s| s.name == "request")
        .map(|s| s.trace_id.as_slice())
        .collect();
    assert_eq!(traces.len(), 100, "one trace per root call");
    let threads: HashSet<i64> = spans
        .iter()
        .map(|s| int_attr(&s.attributes, "thread.id"))
        .collect();
    assert_eq!(threads.len(), 2);
    for s in &spans {
        assert_eq!(string_attr(&s.attributes, "code.function"), s.name);
        assert!(string_attr(&s.attributes, "code.namespace").ends_with("otlp_calls"));
        assert_eq!(string_attr(&s.attributes, "thread.name"), "otlp_calls");
        assert_eq!(s.status, None, "returned normally");
    }

    // Times are Unix nanoseconds: the recording's wall-clock column.
    let first = ends(&rows).next().unwrap();
    let wall = first.time.unwrap() as u64;
    let as_sent = by_id[&(first.span_id.unwrap() as u64)].end_time_unix_nano;
    assert!(wall.abs_diff(as_sent) < 1_000_000, "{wall} vs {as_sent}");

    // The resource.
    let pid = rows.iter().find_map(|r| r.pid).unwrap();
    for (resource, _) in &received.spans {
        assert_eq!(string_attr(resource, "service.name"), "otlp_calls");
        assert_eq!(int_attr(resource, "process.pid"), i64::from(pid));
        assert!(string_attr(resource, "process.executable.path").ends_with("/otlp_calls"));
        assert!(string_attr(resource, "process.command_line").ends_with("otlp_calls 2 50 20 0"));
        assert!(!string_attr(resource, "host.name").is_empty());
    }
    assert!(
        received.paths.iter().any(|p| p == "/v1/metrics"),
        "process metrics as gauges: {:?}",
        received.paths
    );
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn a_collector_that_goes_away_leaves_the_program_and_the_recording_whole() {
    let _machine = require_root();
    // It takes the first batch of spans, then is gone.
    let (url, received) = collector(Some(1));
    let dir = tempdir();
    let (counts, stderr, rows, meta) = record(
        dir.path(),
        &url,
        &["--otlp-max-spans", "0"],
        &["1", "60", "40", "0"],
    );
    assert_eq!(
        (counts["request"], counts["handle"], counts["fast_step"]),
        (60, 60, 60),
        "the program ran its course"
    );
    // The recording has every call.
    let recorded = count_by_name(ends(&rows).map(|r| r.function.as_deref().unwrap()));
    for f in ["request", "handle", "fast_step"] {
        assert_eq!(recorded[f], 60, "{f} in the recording");
    }
    // The collector got some; the rest are counted unsent.
    let got = received.lock().unwrap().spans.len();
    let sent: usize = meta["ferret.otlp_sent"].parse().unwrap();
    let unsent: usize = meta["ferret.otlp_unsent"].parse().unwrap();
    assert!(got > 0, "the first batch arrived");
    assert_eq!(sent, got, "sent is what the collector took");
    assert!(unsent > 0, "{meta:?}");
    assert_eq!(sent + unsent, 180, "every span is sent or counted unsent");
    assert!(
        stderr.contains(&format!("{unsent} unsent")),
        "said on stderr: {stderr}"
    );
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn min_duration_sends_the_slow_calls_and_the_calls_they_ran_under() {
    let _machine = require_root();
    let (url, received) = collector(None);
    let dir = tempdir();
    let (counts, _, rows, meta) = record(
        dir.path(),
        &url,
        &["--otlp-min-duration", "20ms"],
        &["1", "20", "0", "5"],
    );
    assert_eq!(counts["slow_step"], 4);
    let received = received.lock().unwrap();
    let spans: Vec<&Span> = received.spans.iter().map(|(_, s)| s).collect();
    let got = count_by_name(spans.iter().map(|s| s.name.as_str()));
    assert_eq!(got.get("slow_step"), Some(&4), "{got:?}");
    assert_eq!(got.get("handle"), Some(&4), "their parents: {got:?}");
    assert_eq!(got.get("request"), Some(&4), "and roots: {got:?}");
    assert_eq!(got.get("fast_step"), None, "{got:?}");
    let by_id: HashMap<u64, &Span> = spans.iter().map(|s| (span_id(&s.span_id), *s)).collect();
    for s in spans.iter().filter(|s| s.name == "slow_step") {
        assert!(s.end_time_unix_nano - s.start_time_unix_nano >= 20_000_000);
        let handle = by_id[&span_id(&s.parent_span_id)];
        let request = by_id[&span_id(&handle.parent_span_id)];
        assert_eq!(request.name, "request");
        assert_eq!(request.trace_id, s.trace_id);
    }
    assert_eq!(ends(&rows).count(), 60, "the recording keeps everything");
    assert_eq!(meta["ferret.otlp_below_min_duration"], "48");
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn export_otlp_writes_json_lines_the_definitions_read_back() {
    let _machine = require_root();
    // Record without a collector, then export.
    let program = build("otlp_calls.c", &[]);
    let dir = tempdir();
    let out = dir.path().join("calls.parquet");
    let mut cmd = ferret();
    cmd.args([
        "record", "-s", "request", "-s", "handle", "-s", "*_step", "-o",
    ])
    .arg(&out)
    .arg("--")
    .arg(&program)
    .args(["2", "30", "0", "10"]);
    assert!(run(cmd).status.success());
    let jsonl = dir.path().join("calls.jsonl");
    let mut cmd = ferret();
    cmd.arg("export")
        .arg(&out)
        .args(["--format", "otlp", "-o"])
        .arg(&jsonl);
    assert!(run(cmd).status.success());

    let text = std::fs::read_to_string(&jsonl).unwrap();
    let mut spans = Vec::new();
    for line in text.lines() {
        let request: ExportTraceServiceRequest = serde_json::from_str(line).unwrap();
        for rs in request.resource_spans {
            let resource = rs.resource.unwrap().attributes;
            assert_eq!(string_attr(&resource, "service.name"), "otlp_calls");
            spans.extend(rs.scope_spans.into_iter().flat_map(|ss| ss.spans));
        }
    }
    let rows = read_all(&out).unwrap();
    let recorded: HashMap<u64, &Row> = ends(&rows)
        .map(|r| (r.span_id.unwrap() as u64, r))
        .collect();
    assert_eq!(spans.len(), 180);
    assert_eq!(spans.len(), recorded.len());
    for s in &spans {
        let row = recorded[&span_id(&s.span_id)];
        assert_eq!(Some(s.name.as_str()), row.function.as_deref());
        let parent = (!s.parent_span_id.is_empty()).then(|| span_id(&s.parent_span_id) as i64);
        assert_eq!(parent, row.parent_span_id, "parent of {}", s.name);
        assert_eq!(
            s.end_time_unix_nano - s.start_time_unix_nano,
            row.duration_ns.unwrap() as u64
        );
        assert_eq!(s.end_time_unix_nano, row.time.unwrap() as u64);
    }
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn a_stalled_call_still_running_at_the_stop_is_sent_cut_off_with_its_stall() {
    let _machine = require_root();
    let (url, received) = collector(None);
    let program = build("stall_sleep.c", &[]);
    let dir = tempdir();
    let out = dir.path().join("stall.parquet");
    let mut cmd = ferret();
    cmd.args(["record", "-s", "nap", "--stall", "300ms", "-d", "1500ms"])
        .args(["--otlp-endpoint", &url, "-o"])
        .arg(&out)
        .arg("--")
        .arg(&program)
        .arg("3");
    // SIGALRM ends the program after tracing stopped: not a success.
    let output = run(cmd);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("otlp: sent 1 spans"), "{stderr}");
    let received = received.lock().unwrap();
    let [(_, nap)] = received.spans.as_slice() else {
        panic!("one span: {:?}", received.spans.len())
    };
    assert_eq!(nap.name, "nap");
    assert_eq!(
        attr(&nap.attributes, "ferret.cut_off"),
        Some(&Value::BoolValue(true))
    );
    assert_eq!(string_attr(&nap.attributes, "ferret.status"), "open");
    assert_eq!(nap.status, None, "still running is no error");
    let stall = nap
        .events
        .iter()
        .find(|e| e.name == "ferret.stall")
        .expect("the stall as a span event");
    assert!(string_attr(&stall.attributes, "ferret.stall.stack").contains("nap"));
    assert!(!string_attr(&stall.attributes, "ferret.stall.wait").is_empty());
    assert!(
        nap.start_time_unix_nano < stall.time_unix_nano
            && stall.time_unix_nano <= nap.end_time_unix_nano
    );
}

/// A private tmux server running one shell in a 120×40 window; killed
/// (with everything in it) when dropped.
struct Tmux(String);

impl Tmux {
    fn start() -> Self {
        let tmux = Self(format!("ferret-otlp-e2e-{}", std::process::id()));
        tmux.run(&[
            "new-session",
            "-d",
            "-s",
            "e2e",
            "-x",
            "120",
            "-y",
            "40",
            "env -i PATH=/usr/bin:/bin TERM=xterm-256color PS1='otlp-e2e$ ' bash --norc --noprofile",
        ]);
        tmux
    }

    fn run(&self, args: &[&str]) -> String {
        let out = std::process::Command::new("tmux")
            .args(["-L", &self.0])
            .args(args)
            .output()
            .expect("tmux is installed (cargo xtask setup installs it)");
        assert!(out.status.success(), "tmux {args:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn wait_for(&self, what: &str, done: impl Fn(&str) -> bool) -> String {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let screen = self.run(&["capture-pane", "-p", "-t", "e2e"]);
            if done(&screen) {
                return screen;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "timed out waiting for {what}:\n{screen}"
            );
            thread::sleep(std::time::Duration::from_millis(50));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = std::process::Command::new("tmux")
            .args(["-L", &self.0, "kill-server"])
            .status();
    }
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn watch_sends_to_the_collector_and_its_header_counts_what_was_sent() {
    let _machine = require_root();
    let (url, received) = collector(None);
    let program = build("otlp_calls.c", &[]);
    let dir = tempdir();
    let out = dir.path().join("watch.parquet");
    let tmux = Tmux::start();
    tmux.wait_for("the shell", |s| s.contains("otlp-e2e$"));
    tmux.run(&[
        "send-keys",
        "-t",
        "e2e",
        &format!(
            "{} watch -s request -s handle -s '*_step' --otlp-max-spans 0 --otlp-endpoint {url} \
             -o {} -- {} 1 30 30 0",
            env!("CARGO_BIN_EXE_ferret"),
            out.display(),
            program.display()
        ),
        "Enter",
    ]);
    // The target exits; the header then shows the exporter's final count.
    let screen = tmux.wait_for("the final count", |s| {
        s.contains("EXITED") && s.contains("otlp 90 sent")
    });
    assert!(!screen.contains("unsent"), "{screen}");
    tmux.run(&["send-keys", "-t", "e2e", "q"]);
    let screen = tmux.wait_for("the prompt", |s| s.trim_end().ends_with("otlp-e2e$"));
    assert!(screen.contains("otlp: sent 90 spans"), "{screen}");
    let got = count_by_name(
        received
            .lock()
            .unwrap()
            .spans
            .iter()
            .map(|(_, s)| s.name.as_str()),
    );
    assert_eq!(
        (got["request"], got["handle"], got["fast_step"]),
        (30, 30, 30)
    );
    let meta = read_metadata(&out).unwrap();
    assert_eq!(meta["ferret.otlp_sent"], "90");
    assert_eq!(ends(&read_all(&out).unwrap()).count(), 90);
}
