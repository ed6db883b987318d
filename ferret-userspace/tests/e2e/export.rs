//! End-to-end: `ferret export` in every format, from recordings of known
//! programs made with real probes. Each test parses what was written and
//! checks nesting and totals against the recording's rows: exactly as
//! measured with `--raw`, and with ferret's probe time taken out (the
//! default), where a timeline's places may lag its exact durations by a
//! little (see `analyze::replay::ShownClock`); speedscope
//! output is also validated against speedscope's published JSON schema
//! (installed by `cargo xtask setup`). The recording tests need root (CI
//! has it) and fail loudly without.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::postmortem::{
    Recorded, as_measured, assert_one_line_error, duration, ends, ferret_output, record, scratch,
    self_times, write_synthetic,
};
use ferret::sink::Row;
use serde_json::Value;

fn export(file: &Path, format: &str, out: &Path) {
    export_with(file, format, out, &[]);
}

/// `ferret export` with `extra` arguments (`--raw`).
fn export_with(file: &Path, format: &str, out: &Path, extra: &[&str]) {
    let mut args = vec![
        OsStr::new("export"),
        file.as_os_str(),
        OsStr::new("--format"),
        OsStr::new(format),
        OsStr::new("-o"),
        out.as_os_str(),
    ];
    args.extend(extra.iter().map(OsStr::new));
    let output = ferret_output(&args);
    assert!(
        output.status.success(),
        "export {format} failed: {output:?}"
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("ferret: wrote"), "{stderr}");
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).expect("valid JSON")
}

fn nested() -> std::sync::Arc<Recorded> {
    record(
        "nested.c",
        &["outer", "middle", "leaf", "sleeper"],
        &["4", "100"],
    )
}

fn unwind() -> std::sync::Arc<Recorded> {
    record("unwind.cpp", &["thrower*", "middle*"], &[])
}

/// (calls, total duration) per (tid, function), from the rows.
/// Per (thread, function): the same calls, and totals within a timeline's
/// lag of the exact ones: 2 %, or one traced call's probes a call (the
/// recording's `ferret.calibration`).
fn assert_totals_close(
    file: &Path,
    got: &BTreeMap<(i64, String), (u64, u64)>,
    want: &BTreeMap<(i64, String), (u64, u64)>,
) {
    let meta = ferret::sink::read_metadata(file).unwrap();
    let calibration: Value = serde_json::from_str(&meta["ferret.calibration"]).unwrap();
    let figure = |key: &str| calibration["start"][key].as_f64().unwrap();
    let per_call = (figure("entry_stepped_ns") + figure("exit_insn_ns")) as u64;
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>()
    );
    for (key, &(calls, total)) in want {
        let (got_calls, got_total) = got[key];
        assert_eq!(got_calls, calls, "{key:?} calls");
        let slack = (total / 50).max(per_call * calls);
        assert!(
            got_total.abs_diff(total) <= slack,
            "{key:?}: {got_total} ns on the timeline, {total} ns exactly"
        );
    }
}

fn totals_by_thread(rows: &[Row]) -> BTreeMap<(i64, String), (u64, u64)> {
    let mut out = BTreeMap::new();
    for r in ends(rows) {
        let e: &mut (u64, u64) = out
            .entry((i64::from(r.tid.unwrap()), r.function.clone().unwrap()))
            .or_default();
        e.0 += 1;
        e.1 += duration(r);
    }
    out
}

// --- speedscope ------------------------------------------------------------

fn npm_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("target dir")
        .join("npm")
}

/// Validates `file` against speedscope's published schema with ajv;
/// returns the validator's complaint, if any.
fn schema_errors(file: &Path) -> Option<String> {
    let npm = npm_dir();
    let schema = npm.join("node_modules/speedscope/dist/release/file-format-schema.json");
    assert!(
        schema.is_file() && npm.join("node_modules/ajv").is_dir(),
        "speedscope's schema and ajv are missing from {}: run `cargo xtask setup`",
        npm.display()
    );
    let script = r"
        const [ajvDir, schemaPath, file] = process.argv.slice(1);
        const Ajv = require(ajvDir);
        const fs = require('fs');
        const ajv = new Ajv({ allErrors: true, strict: false });
        const validate = ajv.compile(JSON.parse(fs.readFileSync(schemaPath, 'utf8')));
        const data = JSON.parse(fs.readFileSync(file, 'utf8'));
        if (!validate(data)) {
            console.log(JSON.stringify(validate.errors.slice(0, 5)));
            process.exit(1);
        }
    ";
    let output = Command::new("node")
        .arg("-e")
        .arg(script)
        .arg(npm.join("node_modules/ajv"))
        .arg(&schema)
        .arg(file)
        .output()
        .expect("node runs (installed by `cargo xtask setup`)");
    assert!(
        output.status.code().is_some_and(|c| c <= 1),
        "validator crashed: {output:?}"
    );
    (!output.status.success()).then(|| String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Replays every profile as speedscope does (a close must match the
/// innermost open frame, times never go back) and returns (calls, total)
/// per (tid, function).
fn speedscope_totals(json: &Value) -> BTreeMap<(i64, String), (u64, u64)> {
    let frames: Vec<&str> = json["shared"]["frames"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    let mut out = BTreeMap::new();
    for profile in json["profiles"].as_array().unwrap() {
        assert_eq!(profile["type"], "evented");
        assert_eq!(profile["unit"], "nanoseconds");
        let name = profile["name"].as_str().unwrap();
        let tid: i64 = name
            .rsplit("tid ")
            .next()
            .and_then(|t| t.trim_end_matches(')').parse().ok())
            .unwrap_or_else(|| panic!("profile name has the tid: {name}"));
        let mut stack: Vec<(u64, u64)> = Vec::new();
        let mut last = profile["startValue"].as_u64().unwrap();
        for e in profile["events"].as_array().unwrap() {
            let (frame, at) = (e["frame"].as_u64().unwrap(), e["at"].as_u64().unwrap());
            assert!(at >= last, "{name}: events in time order");
            last = at;
            match e["type"].as_str().unwrap() {
                "O" => stack.push((frame, at)),
                "C" => {
                    let (open, since) = stack.pop().expect("a close has an open");
                    assert_eq!(open, frame, "{name}: closes the innermost frame");
                    let entry: &mut (u64, u64) = out
                        .entry((tid, frames[frame as usize].to_owned()))
                        .or_default();
                    entry.0 += 1;
                    entry.1 += at - since;
                }
                other => panic!("event type {other}"),
            }
        }
        assert!(stack.is_empty(), "{name}: everything closed");
        assert!(profile["endValue"].as_u64().unwrap() >= last);
    }
    out
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn speedscope_is_valid_against_the_published_schema_and_round_trips() {
    for rec in [nested(), unwind()] {
        let out = scratch().join(format!(
            "{}.speedscope.json",
            rec.path.file_stem().unwrap().to_string_lossy()
        ));
        export_with(&rec.path, "speedscope", &out, &["--raw"]);
        assert_eq!(
            speedscope_totals(&read_json(&out)),
            totals_by_thread(&as_measured(&rec.rows)),
            "as measured, exactly"
        );
        export(&rec.path, "speedscope", &out);
        if let Some(errors) = schema_errors(&out) {
            panic!("{} does not match the schema: {errors}", out.display());
        }
        let json = read_json(&out);
        assert_eq!(
            json["$schema"],
            "https://www.speedscope.app/file-format-schema.json"
        );
        let threads: std::collections::BTreeSet<i32> =
            ends(&rec.rows).map(|r| r.tid.unwrap()).collect();
        assert_eq!(
            json["profiles"].as_array().unwrap().len(),
            threads.len(),
            "one profile per thread"
        );
        assert_totals_close(
            &rec.path,
            &speedscope_totals(&json),
            &totals_by_thread(&rec.rows),
        );
    }
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn the_schema_check_rejects_a_broken_file() {
    let rec = nested();
    let out = scratch().join("broken.speedscope.json");
    export(&rec.path, "speedscope", &out);
    let mut json = read_json(&out);
    json["profiles"][0]["events"][0]["type"] = Value::from("X");
    json.as_object_mut().unwrap().remove("shared");
    std::fs::write(&out, serde_json::to_vec(&json).unwrap()).unwrap();
    assert!(
        schema_errors(&out).is_some(),
        "the validator is not vacuous"
    );
}

// --- Chrome trace ----------------------------------------------------------

fn ns(micros: &Value) -> u64 {
    (micros.as_f64().expect("a number of µs") * 1000.0).round() as u64
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn chrome_trace_has_complete_events_thread_names_and_nests() {
    for (rec, raw) in [(nested(), true), (nested(), false), (unwind(), false)] {
        let out = scratch().join("trace.json");
        export_with(
            &rec.path,
            "chrome",
            &out,
            if raw { &["--raw"] } else { &[] },
        );
        let json = read_json(&out);
        let events = json["traceEvents"].as_array().unwrap();
        let mut named: HashMap<i64, String> = HashMap::new();
        let mut spans: BTreeMap<i64, Vec<(u64, u64, String)>> = BTreeMap::new();
        let mut totals: BTreeMap<(i64, String), (u64, u64)> = BTreeMap::new();
        let mut processes = 0;
        for e in events {
            let tid = e["tid"].as_i64().unwrap();
            match e["ph"].as_str().unwrap() {
                "M" if e["name"] == "thread_name" => {
                    assert!(
                        !spans.contains_key(&tid),
                        "thread {tid} is named before its first span"
                    );
                    named.insert(tid, e["args"]["name"].as_str().unwrap().to_owned());
                }
                "M" if e["name"] == "process_name" => processes += 1,
                "X" => {
                    assert!(named.contains_key(&tid), "thread {tid} named first");
                    let name = e["name"].as_str().unwrap().to_owned();
                    let (ts, dur) = (ns(&e["ts"]), ns(&e["dur"]));
                    spans.entry(tid).or_default().push((ts, dur, name.clone()));
                    let t = totals.entry((tid, name)).or_default();
                    t.0 += 1;
                    t.1 += dur;
                }
                other => panic!("unexpected phase {other}"),
            }
        }
        assert_eq!(processes, 1);
        if raw {
            assert_eq!(totals, totals_by_thread(&as_measured(&rec.rows)));
        } else {
            assert_totals_close(&rec.path, &totals, &totals_by_thread(&rec.rows));
        }
        for r in ends(&rec.rows) {
            assert_eq!(
                named.get(&i64::from(r.tid.unwrap())),
                r.thread_name.as_ref()
            );
        }
        // Intervals on one thread nest: each lies within the enclosing one.
        for (tid, mut list) in spans {
            list.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
            let mut open: Vec<u64> = Vec::new();
            for (ts, dur, name) in list {
                while open.last().is_some_and(|&end| end <= ts) {
                    open.pop();
                }
                if let Some(&end) = open.last() {
                    assert!(ts + dur <= end, "thread {tid}: {name} overlaps its parent");
                }
                open.push(ts + dur);
            }
        }
    }
}

// --- folded stacks and SVG -------------------------------------------------

/// Self time per call path (root first), from the rows.
fn expected_folded(rows: &[Row]) -> BTreeMap<String, u64> {
    let by_id: HashMap<i64, &Row> = ends(rows).map(|r| (r.span_id.unwrap(), r)).collect();
    let selfs = self_times(rows);
    let mut out = BTreeMap::new();
    for r in ends(rows) {
        let mut path = vec![r.function.clone().unwrap()];
        let mut at = r;
        while let Some(p) = at.parent_span_id {
            at = by_id[&p];
            path.push(at.function.clone().unwrap());
        }
        path.reverse();
        *out.entry(path.join(";")).or_default() += selfs[&r.span_id.unwrap()];
    }
    out.retain(|_, w| *w > 0);
    out
}

fn parse_folded(text: &str) -> BTreeMap<String, u64> {
    text.lines()
        .map(|l| {
            let (path, weight) = l.rsplit_once(' ').expect("`path weight`");
            (path.to_owned(), weight.parse().expect("integer weight"))
        })
        .collect()
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn folded_stacks_weigh_each_path_by_self_time() {
    for rec in [nested(), unwind()] {
        let out = scratch().join("stacks.folded");
        export(&rec.path, "folded", &out);
        let got = parse_folded(&std::fs::read_to_string(&out).unwrap());
        assert_eq!(got, expected_folded(&rec.rows));
        let roots: u64 = ends(&rec.rows)
            .filter(|r| r.parent_span_id.is_none())
            .map(duration)
            .sum();
        // A self time never goes below zero, so where the correction made
        // children outweigh their parent the weights add up to more.
        assert!(
            got.values().sum::<u64>() >= roots,
            "weights add up to at least the root time"
        );
        // As measured, exactly.
        export_with(&rec.path, "folded", &out, &["--raw"]);
        let measured = as_measured(&rec.rows);
        let got = parse_folded(&std::fs::read_to_string(&out).unwrap());
        assert_eq!(got, expected_folded(&measured));
        let roots: u64 = ends(&measured)
            .filter(|r| r.parent_span_id.is_none())
            .map(duration)
            .sum();
        assert_eq!(
            got.values().sum::<u64>(),
            roots,
            "weights add up to root time"
        );
    }
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn folded_to_stdout_with_dash() {
    let rec = nested();
    let output = ferret_output(&[
        OsStr::new("export"),
        rec.path.as_os_str(),
        OsStr::new("--format"),
        OsStr::new("folded"),
        OsStr::new("-o"),
        OsStr::new("-"),
    ]);
    assert!(output.status.success(), "{output:?}");
    assert_eq!(
        parse_folded(&String::from_utf8_lossy(&output.stdout)),
        expected_folded(&rec.rows)
    );
}

fn with_commas(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn svg_flame_graph_shows_every_function_with_its_total_time() {
    let rec = nested();
    let out = scratch().join("flame.svg");
    export(&rec.path, "svg", &out);
    let svg = std::fs::read_to_string(&out).unwrap();
    assert!(svg.starts_with("<?xml") && svg.trim_end().ends_with("</svg>"));
    // The graph is its folded stacks: the root time, less nothing the
    // correction had to leave at zero.
    let folded = expected_folded(&rec.rows);
    let roots: u64 = folded.values().sum();
    assert!(
        svg.contains(&format!(
            "<title>all ({} ns, 100%)</title>",
            with_commas(roots)
        )),
        "the whole graph is the root time"
    );
    // nested.c calls each function along one path, so a frame's width is
    // the function's total time.
    for f in ["outer", "middle", "leaf", "sleeper"] {
        let total: u64 = folded
            .iter()
            .filter(|(path, _)| path.split(';').any(|frame| frame == f))
            .map(|(_, weight)| weight)
            .sum();
        let title = format!("<title>{f} ({} ns, ", with_commas(total));
        assert!(svg.contains(&title), "{title} in the SVG");
    }
}

// --- recordings cut short, errors -------------------------------------------

#[test]
fn every_format_closes_spans_cut_short_at_the_end() {
    let path = scratch().join("cut.parquet");
    // a [1000, …) calls b [2000, …); thread 2's x ends last, at 9000.
    write_synthetic(
        &path,
        &["a", "b", "x"],
        &[
            (true, 1000, 1, 1, None, 0),
            (true, 1500, 2, 2, None, 2),
            (true, 2000, 1, 3, Some(1), 1),
            (false, 9000, 2, 2, None, 2),
        ],
        false,
    );
    let dir = scratch();
    let speedscope = dir.join("cut.speedscope.json");
    export(&path, "speedscope", &speedscope);
    assert!(schema_errors(&speedscope).is_none());
    let totals = speedscope_totals(&read_json(&speedscope));
    assert_eq!(totals[&(1, "a".to_owned())], (1, 8000));
    assert_eq!(totals[&(1, "b".to_owned())], (1, 7000));

    let chrome = dir.join("cut.trace.json");
    export(&path, "chrome", &chrome);
    let json = read_json(&chrome);
    let a = json["traceEvents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "a")
        .unwrap();
    assert_eq!((ns(&a["ts"]), ns(&a["dur"])), (0, 8000));
    assert_eq!(a["args"]["status"], "cut");

    let folded = dir.join("cut.folded");
    export(&path, "folded", &folded);
    let got = parse_folded(&std::fs::read_to_string(&folded).unwrap());
    let want: BTreeMap<String, u64> = [("a", 1000), ("a;b", 7000), ("x", 7500)]
        .map(|(p, w)| (p.to_owned(), w))
        .into();
    assert_eq!(got, want);
}

#[test]
fn bad_inputs_and_unwritable_outputs_get_one_clear_error() {
    let dir = scratch();
    let good = dir.join("tiny.parquet");
    write_synthetic(
        &good,
        &["a"],
        &[(true, 1, 1, 1, None, 0), (false, 5, 1, 1, None, 0)],
        true,
    );
    let run = |input: &Path, out: &Path| {
        ferret_output(&[
            OsStr::new("export"),
            input.as_os_str(),
            OsStr::new("--format"),
            OsStr::new("chrome"),
            OsStr::new("-o"),
            out.as_os_str(),
        ])
    };
    let output = run(&good, Path::new("/nonexistent-ferret-dir/trace.json"));
    assert_one_line_error(&output, "cannot create /nonexistent-ferret-dir/trace.json");
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("hint: check that the output's directory"),
        "{output:?}"
    );
    let output = run(&good, &dir);
    assert_one_line_error(&output, "cannot create");

    let text = dir.join("readme.txt");
    std::fs::write(&text, "hello").unwrap();
    let out = dir.join("never.json");
    let output = run(&text, &out);
    assert_one_line_error(&output, "is not a ferret recording");
    assert!(!out.exists(), "no output for a bad input");

    // An SVG of a recording with no calls is refused rather than empty.
    let empty = dir.join("empty.parquet");
    write_synthetic(&empty, &["a"], &[], true);
    let svg = dir.join("empty.svg");
    let output = ferret_output(&[
        OsStr::new("export"),
        empty.as_os_str(),
        OsStr::new("--format"),
        OsStr::new("svg"),
        OsStr::new("-o"),
        svg.as_os_str(),
    ]);
    assert_one_line_error(&output, "no calls");
    assert!(!svg.exists());
}
