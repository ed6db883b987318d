//! Shared by the `analyze` and `export` tests: recordings of known programs
//! made once per test run, and the statistics recomputed from the raw
//! rows (`sink::read_all`) with none of ferret's analysis code, so the tests
//! compare two independent computations.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::{Arc, Mutex};

use ferret::sink::{RecordingMeta, RecordingWriter, Row, read_all};
use ferret::trace::FunctionInfo;
use ferret::trace::{SpanEnd, SpanEvent, SpanStart, SpanStatus, ThreadName};

use crate::support::{alone, build, ferret, run};

/// A folder for the calling test module's files (`analyze`, `export`), kept
/// until the next run: modules that run side by side name their files
/// alike.
#[track_caller]
pub fn scratch() -> PathBuf {
    let module = Path::new(std::panic::Location::caller().file())
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("postmortem")
        .join(module);
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}

/// A recording of a program, made once per test binary.
pub struct Recorded {
    /// The Parquet file.
    pub path: PathBuf,
    /// Its rows.
    pub rows: Vec<Row>,
    /// What the program printed.
    pub stdout: String,
}

static RECORDINGS: Mutex<BTreeMap<String, Arc<Recorded>>> = Mutex::new(BTreeMap::new());

/// Records `program` (a file in tests/programs) with `-s` for each of
/// `symbols`, once per test run and argument list.
pub fn record(program: &str, symbols: &[&str], args: &[&str]) -> Arc<Recorded> {
    // Alone: analyze and export judge the recording's corrected times, and
    // a calibration taken while neighbours load the machine over-corrects
    // (a Chrome timeline once lagged 5 ms on an 18 ms call).
    let _alone = alone();
    let key = format!("{program} {symbols:?} {args:?}");
    let mut cache = RECORDINGS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(r) = cache.get(&key) {
        return Arc::clone(r);
    }
    let binary = build(program, &[]);
    let name: String = key
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    let path = scratch().join(format!("{name}.parquet"));
    let mut cmd = ferret();
    cmd.arg("record");
    for s in symbols {
        cmd.args(["-s", s]);
    }
    cmd.arg("-o").arg(&path).arg("--").arg(&binary).args(args);
    let output = run(cmd);
    assert!(
        output.status.code().is_some(),
        "ferret record was killed: {output:?}"
    );
    let rows = read_all(&path).expect("ferret wrote a readable recording");
    let recorded = Arc::new(Recorded {
        path,
        rows,
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
    });
    cache.insert(key, Arc::clone(&recorded));
    recorded
}

/// Runs ferret with `args`; returns its output.
pub fn ferret_output(args: &[&std::ffi::OsStr]) -> Output {
    let mut cmd = ferret();
    cmd.args(args);
    run(cmd)
}

/// `SPAN_END` rows.
pub fn ends(rows: &[Row]) -> impl Iterator<Item = &Row> {
    rows.iter()
        .filter(|r| r.kind.as_deref() == Some("SPAN_END"))
}

/// A row's duration as ferret reports it by default, from its own
/// columns: as measured, less ferret's probe time inside it
/// (`overhead_ns`), never below zero.
pub fn duration(r: &Row) -> u64 {
    raw_duration(r).saturating_sub(r.overhead_ns.map_or(0, |o| o.max(0) as u64))
}

/// The rows as `--raw` reads them: without ferret's probe times, so
/// [`duration`] and everything computed from it are as measured.
pub fn as_measured(rows: &[Row]) -> Vec<Row> {
    rows.iter()
        .map(|r| Row {
            overhead_ns: None,
            overhead_outside_ns: None,
            ..r.clone()
        })
        .collect()
}

/// A row's duration as measured (what `--raw` reports).
pub fn raw_duration(r: &Row) -> u64 {
    u64::try_from(r.duration_ns.expect("SPAN_END has duration_ns")).expect("non-negative")
}

/// The statistics of one function, recomputed from rows.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Expected {
    pub calls: u64,
    pub total_ns: u64,
    pub self_ns: u64,
    pub min_ns: u64,
    pub max_ns: u64,
    pub mean_ns: u64,
    pub p50_ns: u64,
    pub p95_ns: u64,
    pub p99_ns: u64,
    pub unwound_calls: u64,
}

/// Nearest-rank percentile of sorted values.
pub fn nearest_rank(sorted: &[u64], q: f64) -> u64 {
    let n = sorted.len();
    let rank = ((q * n as f64).ceil() as usize).clamp(1, n);
    sorted[rank - 1]
}

/// Self time of every span: its duration minus its direct children's.
pub fn self_times(rows: &[Row]) -> HashMap<i64, u64> {
    let mut children: HashMap<i64, u64> = HashMap::new();
    for r in ends(rows) {
        if let Some(p) = r.parent_span_id {
            *children.entry(p).or_default() += duration(r);
        }
    }
    ends(rows)
        .map(|r| {
            let id = r.span_id.expect("span_id");
            (
                id,
                duration(r).saturating_sub(children.get(&id).copied().unwrap_or(0)),
            )
        })
        .collect()
}

/// Per-function statistics from the rows of thread `tid` (all when None).
pub fn expected_stats(rows: &[Row], tid: Option<i32>) -> BTreeMap<String, Expected> {
    let selfs = self_times(rows);
    let mut durations: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let mut out: BTreeMap<String, Expected> = BTreeMap::new();
    for r in ends(rows).filter(|r| tid.is_none() || r.tid == tid) {
        let f = r.function.clone().expect("function");
        let d = duration(r);
        durations.entry(f.clone()).or_default().push(d);
        let e = out.entry(f).or_default();
        e.calls += 1;
        e.total_ns += d;
        e.self_ns += selfs[&r.span_id.unwrap()];
        if r.status.as_deref() == Some("unwound") {
            e.unwound_calls += 1;
        }
    }
    for (f, mut ds) in durations {
        ds.sort_unstable();
        let e = out.get_mut(&f).unwrap();
        e.min_ns = ds[0];
        e.max_ns = *ds.last().unwrap();
        e.mean_ns = (e.total_ns + e.calls / 2) / e.calls;
        e.p50_ns = nearest_rank(&ds, 0.50);
        e.p95_ns = nearest_rank(&ds, 0.95);
        e.p99_ns = nearest_rank(&ds, 0.99);
    }
    out
}

/// One step of a synthetic recording: `(start?, ts, tid, span, parent, function)`.
pub type Step = (bool, u64, u32, u64, Option<u64>, u32);

/// Writes a recording from hand-written steps with ferret's own writer;
/// `finish` false leaves it as a crashed recorder would (footer marked
/// incomplete, spans without an end). `functions` are the names.
pub fn write_synthetic(path: &Path, functions: &[&str], steps: &[Step], finish: bool) {
    let table: Arc<[FunctionInfo]> = functions
        .iter()
        .map(|f| FunctionInfo {
            name: (*f).to_owned(),
            module: "/opt/synthetic".to_owned(),
        })
        .collect();
    let meta = RecordingMeta {
        target: "synthetic".to_owned(),
        probes: "*".to_owned(),
        realtime_offset_ns: 0,
    };
    let mut writer = RecordingWriter::create(path, table, meta).expect("create");
    let name = ThreadName::from("synth");
    let mut starts: HashMap<u64, (u64, u32)> = HashMap::new();
    let mut depth: HashMap<u32, u32> = HashMap::new();
    for &(start, ts, tid, span, parent, function) in steps {
        let event = if start {
            let d = depth.entry(tid).or_default();
            starts.insert(span, (ts, *d));
            let ev = SpanEvent::Start(SpanStart {
                span_id: span,
                parent_span_id: parent,
                depth: *d,
                pid: 100,
                tid,
                thread_name: name,
                function,
                ts_ns: ts,
                before_attach: false,
                goroutine: None,
            });
            *d += 1;
            ev
        } else {
            let (start_ns, d) = starts[&span];
            *depth.get_mut(&tid).unwrap() -= 1;
            SpanEvent::End(SpanEnd {
                span_id: span,
                parent_span_id: parent,
                depth: d,
                pid: 100,
                tid,
                thread_name: name,
                function,
                start_ns,
                ts_ns: ts,
                status: SpanStatus::Ok,
                overhead_ns: 0,
                overhead_outside_ns: 0,
                goroutine: None,
                sched: None,
            })
        };
        writer.write_span(&event).expect("write");
    }
    if finish {
        writer.finish(0, &[]).expect("finish");
    } else {
        drop(writer);
    }
}

/// Asserts a failed run printed one `error:` line (and at most a hint).
pub fn assert_one_line_error(output: &Output, contains: &str) {
    assert!(!output.status.success(), "should fail: {output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert!(
        !lines.is_empty() && lines[0].starts_with("error: "),
        "an error line: {stderr}"
    );
    assert!(
        lines.len() == 1 || (lines.len() == 2 && lines[1].starts_with("hint: ")),
        "one line (plus a hint): {stderr}"
    );
    assert!(lines[0].contains(contains), "`{contains}` in: {stderr}");
    assert!(output.stdout.is_empty(), "nothing on stdout");
}
