//! End-to-end: `ferret analyze` on recordings of known programs made with
//! real probes, checked against statistics recomputed here from the raw
//! rows; and on synthetic or broken files for the edge cases. The recording
//! tests need root (CI has it) and fail loudly without.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::path::Path;

use crate::postmortem::{
    Expected, as_measured, assert_one_line_error, duration, ends, expected_stats, ferret_output,
    record, scratch, self_times, write_synthetic,
};
use ferret::analyze::histogram::{EXACT_LIMIT, MAX_RELATIVE_ERROR};
use ferret::analyze::render::TREE_LINES;
use ferret::sink::Row;
use serde_json::Value;

const FIELDS: [&str; 11] = [
    "function", "calls", "total_ns", "self_ns", "mean_ns", "min_ns", "p50_ns", "p95_ns", "p99_ns",
    "max_ns", "unwound",
];

fn analyze_json(file: &Path, extra: &[&str]) -> Value {
    let mut args: Vec<&OsStr> = vec![OsStr::new("analyze"), file.as_os_str()];
    args.extend(extra.iter().map(OsStr::new));
    args.extend(["--format", "json"].map(OsStr::new));
    let output = ferret_output(&args);
    assert!(output.status.success(), "analyze failed: {output:?}");
    serde_json::from_slice(&output.stdout).expect("analyze --format json prints JSON")
}

fn by_function(json: &Value) -> BTreeMap<String, Value> {
    json["functions"]
        .as_array()
        .expect("functions array")
        .iter()
        .map(|f| (f["function"].as_str().unwrap().to_owned(), f.clone()))
        .collect()
}

/// Compares one function's JSON with the recomputed statistics:
/// everything exact except bucketed percentiles, within their bound.
fn assert_matches(name: &str, got: &Value, want: &Expected) {
    for field in FIELDS {
        assert!(got.get(field).is_some(), "{name}: field `{field}` present");
    }
    let num = |field: &str| {
        got[field]
            .as_u64()
            .unwrap_or_else(|| panic!("{name}.{field}"))
    };
    assert_eq!(num("calls"), want.calls, "{name} calls");
    assert_eq!(num("total_ns"), want.total_ns, "{name} total");
    assert_eq!(num("self_ns"), want.self_ns, "{name} self");
    assert_eq!(num("min_ns"), want.min_ns, "{name} min");
    assert_eq!(num("max_ns"), want.max_ns, "{name} max");
    assert_eq!(num("mean_ns"), want.mean_ns, "{name} mean");
    for (field, exact) in [
        ("p50_ns", want.p50_ns),
        ("p95_ns", want.p95_ns),
        ("p99_ns", want.p99_ns),
    ] {
        let value = num(field);
        if want.calls as usize <= EXACT_LIMIT {
            assert_eq!(value, exact, "{name} {field} is exact for few calls");
        } else {
            let error = value.abs_diff(exact) as f64 / exact.max(1) as f64;
            assert!(
                error <= MAX_RELATIVE_ERROR,
                "{name} {field}: {value} vs exact {exact} ({:.3} %)",
                error * 100.0
            );
        }
    }
    let unwound = got["unwound"].as_f64().expect("unwound share");
    let want_share = want.unwound_calls as f64 / want.calls as f64;
    assert!(
        (unwound - want_share).abs() < 1e-12,
        "{name} unwound {unwound} vs {want_share}"
    );
    assert_eq!(
        got["unwound_calls"].as_u64(),
        Some(want.unwound_calls),
        "{name}"
    );
}

fn assert_all_match(json: &Value, want: &BTreeMap<String, Expected>) {
    let got = by_function(json);
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>(),
        "same functions"
    );
    for (name, w) in want {
        assert_matches(name, &got[name], w);
    }
}

/// nested.c on 4 threads × 200 iterations: outer has 800 calls (exact
/// percentiles), middle 1600 and leaf 4800 (bucketed), sleeper one.
fn nested() -> std::sync::Arc<crate::postmortem::Recorded> {
    record(
        "nested.c",
        &["outer", "middle", "leaf", "sleeper"],
        &["4", "200"],
    )
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn json_statistics_match_an_independent_computation_from_the_rows() {
    let rec = nested();
    assert!(
        rec.stdout
            .contains("outer=800 middle=1600 leaf=4800 sleeper=1"),
        "{}",
        rec.stdout
    );
    let json = analyze_json(&rec.path, &["--top", "0"]);
    let want = expected_stats(&rec.rows, None);
    assert_eq!(want["leaf"].calls, 4800, "the program's own count");
    assert!(
        want["outer"].calls as usize <= EXACT_LIMIT && want["leaf"].calls as usize > EXACT_LIMIT,
        "both percentile paths are exercised"
    );
    assert_all_match(&json, &want);
    assert_eq!(json["spans"].as_u64(), Some(ends(&rec.rows).count() as u64));
    assert_eq!(json["threads"].as_u64(), Some(5));
    assert_eq!(json["lost_events"].as_u64(), Some(0));
    assert_eq!(json["complete"].as_bool(), Some(true));
    // Self times add up to the root spans' time: exactly as measured, and
    // at least that corrected (a self time never goes below zero).
    let all_self: u64 = want.values().map(|e| e.self_ns).sum();
    let roots: u64 = ends(&rec.rows)
        .filter(|r| r.parent_span_id.is_none())
        .map(duration)
        .sum();
    assert!(all_self >= roots, "{all_self} < {roots}");
    assert_eq!(json["times"], "corrected");
    let measured = as_measured(&rec.rows);
    let raw = analyze_json(&rec.path, &["--top", "0", "--raw"]);
    assert_eq!(raw["times"], "measured");
    let want = expected_stats(&measured, None);
    assert_all_match(&raw, &want);
    let all_self: u64 = want.values().map(|e| e.self_ns).sum();
    let roots: u64 = ends(&measured)
        .filter(|r| r.parent_span_id.is_none())
        .map(duration)
        .sum();
    assert_eq!(all_self, roots);
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn unwound_share_counts_calls_left_by_exceptions() {
    let rec = record("unwind.cpp", &["thrower*", "middle*"], &[]);
    let json = analyze_json(&rec.path, &[]);
    let want = expected_stats(&rec.rows, None);
    assert_all_match(&json, &want);
    for f in ["thrower(int)", "middle(int)"] {
        let got = &by_function(&json)[f];
        assert_eq!(got["unwound"].as_f64(), Some(0.5), "{f}: 5 of 10 unwound");
    }
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn every_sort_key_orders_largest_first_and_top_cuts() {
    let rec = nested();
    for (key, field) in [
        ("calls", "calls"),
        ("total", "total_ns"),
        ("self", "self_ns"),
        ("mean", "mean_ns"),
        ("p95", "p95_ns"),
        ("p99", "p99_ns"),
        ("max", "max_ns"),
    ] {
        let json = analyze_json(&rec.path, &["--sort", key, "--top", "0"]);
        let values: Vec<u64> = json["functions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f[field].as_u64().unwrap())
            .collect();
        assert_eq!(values.len(), 4, "{key}");
        assert!(
            values.windows(2).all(|w| w[0] >= w[1]),
            "--sort {key}: {values:?}"
        );
        assert_eq!(json["sort"], key);
    }
    let json = analyze_json(&rec.path, &["--sort", "calls", "--top", "2"]);
    let names: Vec<&str> = json["functions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["function"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["leaf", "middle"]);
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn thread_and_function_filters_select_what_they_say() {
    let rec = nested();
    let worker = ends(&rec.rows)
        .find(|r| r.function.as_deref() == Some("outer"))
        .and_then(|r| r.tid)
        .unwrap();
    let json = analyze_json(&rec.path, &["--thread", &worker.to_string(), "--top", "0"]);
    let want = expected_stats(&rec.rows, Some(worker));
    assert_eq!(want["outer"].calls, 200, "one worker's share");
    assert_all_match(&json, &want);

    let json = analyze_json(&rec.path, &["--function", "m*"]);
    let all = expected_stats(&rec.rows, None);
    let only: BTreeMap<String, Expected> = all.into_iter().filter(|(f, _)| f == "middle").collect();
    assert_all_match(&json, &only);

    // A filter that matches nothing says so, with suggestions.
    let output = ferret_output(&[
        OsStr::new("analyze"),
        rec.path.as_os_str(),
        OsStr::new("--function"),
        OsStr::new("midle"),
    ]);
    assert!(output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("did you mean `middle`"), "{stderr}");
    let output = ferret_output(&[
        OsStr::new("analyze"),
        rec.path.as_os_str(),
        OsStr::new("--thread"),
        OsStr::new("1"),
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("threads with calls:") && stderr.contains(&worker.to_string()),
        "{stderr}"
    );
}

/// (calls, total, self) per call path below a root, from the rows.
type PathStats = BTreeMap<Vec<String>, (u64, u64, u64)>;

fn expected_tree(rows: &[Row], root: &Row) -> PathStats {
    let selfs = self_times(rows);
    let mut children: BTreeMap<i64, Vec<&Row>> = BTreeMap::new();
    for r in ends(rows) {
        if let Some(p) = r.parent_span_id {
            children.entry(p).or_default().push(r);
        }
    }
    let mut out = PathStats::new();
    let mut stack = vec![(root, vec![root.function.clone().unwrap()])];
    while let Some((r, path)) = stack.pop() {
        let e = out.entry(path.clone()).or_default();
        e.0 += 1;
        e.1 += duration(r);
        e.2 += selfs[&r.span_id.unwrap()];
        for c in children.get(&r.span_id.unwrap()).into_iter().flatten() {
            let mut p = path.clone();
            p.push(c.function.clone().unwrap());
            stack.push((c, p));
        }
    }
    out
}

fn tree_paths(tree: &Value) -> PathStats {
    let mut paths: Vec<Vec<String>> = Vec::new();
    let mut out = PathStats::new();
    for node in tree["nodes"].as_array().unwrap() {
        let mut path = match node["parent"].as_u64() {
            Some(p) => paths[p as usize].clone(),
            None => Vec::new(),
        };
        path.push(node["function"].as_str().unwrap().to_owned());
        assert_eq!(
            node["id"].as_u64(),
            Some(paths.len() as u64),
            "preorder ids"
        );
        assert_eq!(node["depth"].as_u64(), Some(path.len() as u64 - 1));
        let value = (
            node["calls"].as_u64().unwrap(),
            node["total_ns"].as_u64().unwrap(),
            node["self_ns"].as_u64().unwrap(),
        );
        assert!(out.insert(path.clone(), value).is_none(), "paths merge");
        paths.push(path);
    }
    out
}

fn assert_trees_match(rec: &crate::postmortem::Recorded, top: usize) {
    let json = analyze_json(&rec.path, &["--tree", "--top", &top.to_string()]);
    let mut roots: Vec<&Row> = ends(&rec.rows)
        .filter(|r| r.parent_span_id.is_none())
        .collect();
    roots.sort_by(|a, b| {
        duration(b)
            .cmp(&duration(a))
            .then(a.start_ns.cmp(&b.start_ns))
    });
    let trees = json["trees"].as_array().unwrap();
    assert_eq!(trees.len(), top.min(roots.len()));
    assert_eq!(json["roots"].as_u64(), Some(roots.len() as u64));
    for (tree, root) in trees.iter().zip(&roots) {
        assert_eq!(
            tree["span_id"].as_i64(),
            root.span_id,
            "the slowest roots, in order"
        );
        assert_eq!(tree["duration_ns"].as_u64(), Some(duration(root)));
        assert_eq!(tree["tid"].as_i64(), root.tid.map(i64::from));
        assert_eq!(tree["status"], root.status.as_deref().unwrap());
        assert_eq!(tree_paths(tree), expected_tree(&rec.rows, root));
    }
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn slowest_trees_match_the_rows() {
    let rec = nested();
    assert_trees_match(&rec, 3);
    let json = analyze_json(&rec.path, &["--tree", "--top", "1"]);
    assert_eq!(
        json["trees"][0]["function"], "sleeper",
        "the 200 ms sleep is the slowest root"
    );
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn deep_recursion_trees_match_and_print_bounded() {
    let rec = record("recurse.c", &["recurse"], &[]);
    assert_trees_match(&rec, 3);
    let json = analyze_json(&rec.path, &["--tree", "--top", "1"]);
    assert_eq!(json["trees"][0]["nodes"].as_array().unwrap().len(), 200);
    let want = expected_stats(&rec.rows, None);
    assert_all_match(&analyze_json(&rec.path, &[]), &want);

    let output = ferret_output(&[
        OsStr::new("analyze"),
        rec.path.as_os_str(),
        OsStr::new("--tree"),
        OsStr::new("--top"),
        OsStr::new("1"),
    ]);
    assert!(output.status.success());
    let text = String::from_utf8_lossy(&output.stdout);
    let node_lines = text
        .lines()
        .filter(|l| l.contains("recurse") && l.contains('%'))
        .count();
    assert_eq!(node_lines, TREE_LINES, "{text}");
    assert!(
        text.contains(&format!(
            "… {} more of 200 nodes not shown",
            200 - TREE_LINES
        )),
        "{text}"
    );
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn text_output_is_plain_when_not_a_terminal() {
    let rec = nested();
    for extra in [&[][..], &["--tree", "--top", "2"][..]] {
        let mut args: Vec<&OsStr> = vec![OsStr::new("analyze"), rec.path.as_os_str()];
        args.extend(extra.iter().map(OsStr::new));
        let output = ferret_output(&args);
        assert!(output.status.success());
        let text = String::from_utf8_lossy(&output.stdout);
        assert!(
            !text.contains('\x1b'),
            "no escape codes into a pipe: {text}"
        );
        assert!(
            output.stderr.is_empty(),
            "no progress bar or warnings: {output:?}"
        );
        for f in ["outer", "sleeper"] {
            assert!(text.contains(f), "{f} in {text}");
        }
        if extra.is_empty() {
            assert!(text.contains("p95") && text.contains("unwound"), "{text}");
            assert!(text.contains("4,800"), "leaf calls with separators: {text}");
        } else {
            assert!(text.contains("#1  sleeper"), "{text}");
            assert!(text.contains("└─ middle ×2"), "{text}");
        }
    }
}

#[test]
fn spans_cut_short_end_at_the_last_timestamp() {
    let path = scratch().join("cut.parquet");
    // Thread 1: a [1000, …) calls b [2000, 3000) then c [4000, …); thread
    // 2: x [1500, 9000). The recorder died: a and c never ended.
    write_synthetic(
        &path,
        &["a", "b", "c", "x"],
        &[
            (true, 1000, 1, 1, None, 0),
            (true, 1500, 2, 2, None, 3),
            (true, 2000, 1, 3, Some(1), 1),
            (false, 3000, 1, 3, Some(1), 1),
            (true, 4000, 1, 4, Some(1), 2),
            (false, 9000, 2, 2, None, 3),
        ],
        false,
    );
    let output = ferret_output(&[
        OsStr::new("analyze"),
        path.as_os_str(),
        OsStr::new("--format"),
        OsStr::new("json"),
    ]);
    assert!(output.status.success(), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("cut short"), "a warning: {stderr}");
    let json: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(json["complete"].as_bool(), Some(false));
    let f = by_function(&json);
    let get = |name: &str, field: &str| f[name][field].as_u64().unwrap();
    assert_eq!(get("a", "total_ns"), 8000, "a runs to the last timestamp");
    assert_eq!(get("a", "self_ns"), 8000 - 1000 - 5000);
    assert_eq!(get("c", "total_ns"), 5000);
    assert_eq!(get("a", "open_calls"), 1);
    assert_eq!(get("b", "open_calls"), 0);
    assert_eq!(get("x", "total_ns"), 7500);
}

#[test]
fn files_that_are_not_recordings_get_one_clear_error() {
    let dir = scratch();
    let text = dir.join("notes.txt");
    std::fs::write(&text, "not parquet at all\n").unwrap();
    let output = ferret_output(&[OsStr::new("analyze"), text.as_os_str()]);
    assert_one_line_error(&output, "is not a ferret recording: not a Parquet file");

    let missing = dir.join("missing.parquet");
    let output = ferret_output(&[OsStr::new("analyze"), missing.as_os_str()]);
    assert_one_line_error(&output, "cannot open");

    let output = ferret_output(&[OsStr::new("analyze"), dir.as_os_str()]);
    assert_one_line_error(&output, "cannot open");

    // Parquet, but some other table.
    let other = dir.join("other.parquet");
    {
        use std::sync::Arc;
        let schema = Arc::new(arrow::datatypes::Schema::new(vec![
            arrow::datatypes::Field::new("kind", arrow::datatypes::DataType::Utf8, false),
            arrow::datatypes::Field::new("price", arrow::datatypes::DataType::Float64, false),
        ]));
        let batch = arrow::record_batch::RecordBatch::try_new(
            Arc::clone(&schema),
            vec![
                Arc::new(arrow::array::StringArray::from(vec!["x"])),
                Arc::new(arrow::array::Float64Array::from(vec![1.5])),
            ],
        )
        .unwrap();
        let file = std::fs::File::create(&other).unwrap();
        let mut w = parquet::arrow::ArrowWriter::try_new(file, schema, None).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
    }
    let output = ferret_output(&[OsStr::new("analyze"), other.as_os_str()]);
    assert_one_line_error(
        &output,
        "is not a ferret recording: it has no `ts_ns` column",
    );

    // A recording whose writer was killed before the footer.
    let rec = dir.join("good.parquet");
    write_synthetic(
        &rec,
        &["a"],
        &[(true, 1, 1, 1, None, 0), (false, 2, 1, 1, None, 0)],
        true,
    );
    let bytes = std::fs::read(&rec).unwrap();
    let truncated = dir.join("truncated.parquet");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let output = ferret_output(&[OsStr::new("analyze"), truncated.as_os_str()]);
    assert_one_line_error(&output, "cut off before its footer");
}

#[test]
fn memory_stays_flat_as_recordings_grow() {
    use ferret::analyze::synthetic::{self, Spec};
    let dir = scratch();
    let mut peaks = Vec::new();
    for rows in [60_000u64, 600_000] {
        let path = dir.join(format!("flat-{rows}.parquet"));
        let started = std::time::Instant::now();
        synthetic::write(
            &path,
            &Spec {
                rows,
                ..Spec::default()
            },
        )
        .unwrap();
        eprintln!("wrote {rows} rows in {:?}", started.elapsed());
        let mut peak = Vec::new();
        for args in [&["analyze"][..], &["analyze", "--tree"][..]] {
            let m = synthetic::measure(crate::support::ferret().args(args).arg(&path)).unwrap();
            assert!(m.success, "{args:?}");
            eprintln!("{rows} rows {args:?}: {m:?}");
            peak.push(m.peak_rss_bytes);
        }
        peaks.push(peak);
    }
    for (small, large) in peaks[0].iter().zip(&peaks[1]) {
        assert!(
            large.saturating_sub(*small) < 8 << 20,
            "ten times the rows must not take more memory: {small} → {large} bytes"
        );
    }
}
