//! Post-mortem analysis of a recording: per-function statistics and the
//! slowest call trees.
//!
//! Everything here streams. `replay` reads the Parquet event log one
//! record batch at a time and rebuilds each thread's stack; the consumers
//! keep bounded state: per-function sums and a [`histogram::Histogram`]
//! (exact up to 1024 calls, within 0.4 % beyond) for the table, one
//! calling-context tree per open root plus the `N` slowest for `--tree`. A
//! recording larger than memory is analysed in memory proportional to the
//! number of functions and threads, not calls. The exporters
//! ([`crate::export`]) use the same replay.

pub mod histogram;
pub(crate) mod progress;
pub mod render;
pub(crate) mod replay;
pub mod samples;
pub(crate) mod stats;
pub mod synthetic;
pub(crate) mod tree;

use std::path::Path;

pub use progress::Progress;
pub use replay::{ReadError, Recording, RecordingInfo, Summary};
pub use samples::{SampleProfile, SampledFunction};
pub use stats::{FunctionStats, SortBy};
pub use tree::CallTree;

use crate::symbols::Glob;

/// What to analyse.
#[derive(Clone, Debug)]
pub struct Query {
    /// Only this thread id.
    pub thread: Option<i32>,
    /// Only functions (or, for trees, roots) matching this glob.
    pub function: Option<Glob>,
    /// Order of the function table.
    pub sort: SortBy,
    /// Trees to keep (0: all). The table keeps every function; its
    /// renderer cuts.
    pub top: usize,
}

/// What every report says about the recording as a whole.
#[derive(Clone, Debug, Default)]
pub struct Overview {
    /// The file as the user named it.
    pub file: String,
    /// What the footer says.
    pub info: RecordingInfo,
    /// Spans replayed (over the selected thread).
    pub spans: u64,
    /// Functions with at least one call.
    pub functions: u64,
    /// Threads with at least one span.
    pub threads: u64,
    /// Earliest timestamp of any row.
    pub first_ts_ns: Option<i64>,
    /// Latest timestamp of any row.
    pub last_ts_ns: Option<i64>,
    /// Spans with no `SPAN_END` (ended at the last timestamp).
    pub cut: u64,
    /// `SPAN_END`s with no `SPAN_START`.
    pub orphans: u64,
    /// Thread ids present but filtered out by `--thread`.
    pub other_tids: Vec<i32>,
    /// Whether times have ferret's probe cost taken out (the recording
    /// measured it, and `--raw` was not given).
    pub corrected: bool,
}

impl Overview {
    /// The line that says how times are shown: corrected for ferret's
    /// probe cost (and by how much), as measured with `--raw`, or as
    /// measured because the recording has no calibration.
    pub fn times_line(&self) -> String {
        match (&self.info.calibration, self.corrected) {
            (Some(c), true) => format!(
                "times corrected for ferret's probe cost: {:.1} µs per traced call at most \
                 (measured at the start); --raw shows them as measured",
                c.typical_call_ns() / 1e3
            ),
            (Some(c), false) if !c.is_none() => format!(
                "times as measured (--raw): they include ferret's probe cost, up to {:.1} µs \
                 per traced call",
                c.typical_call_ns() / 1e3
            ),
            _ => {
                "times as measured: this recording has no measure of ferret's probe cost".to_owned()
            }
        }
    }
}

impl Overview {
    fn new(path: &Path, recording: &Recording, summary: &Summary) -> Self {
        Self {
            file: path.display().to_string(),
            info: recording.info().clone(),
            spans: summary.spans + summary.orphans,
            functions: summary.names.functions().len() as u64,
            threads: summary.names.threads().len() as u64,
            first_ts_ns: summary.first_ts_ns,
            last_ts_ns: summary.last_ts_ns,
            cut: summary.cut,
            orphans: summary.orphans,
            other_tids: summary.other_tids.clone(),
            corrected: recording.corrected(),
        }
    }
}

/// The function table.
#[derive(Clone, Debug)]
pub struct FunctionReport {
    /// The recording.
    pub overview: Overview,
    /// Every matching function, sorted.
    pub functions: Vec<FunctionStats>,
    /// Self time of every function (matching or not), for shares.
    pub all_self_ns: u64,
    /// Every function name in the recording (for "did you mean").
    pub all_names: Vec<String>,
}

/// The slowest root calls.
#[derive(Clone, Debug)]
pub struct TreeReport {
    /// The recording.
    pub overview: Overview,
    /// Slowest first.
    pub trees: Vec<CallTree>,
    /// Root calls seen in all.
    pub roots: u64,
    /// Names the trees refer to.
    pub names: replay::Names,
}

/// Per-function statistics of `recording`.
pub fn functions(
    recording: &Recording,
    query: &Query,
    progress: &mut Progress,
) -> Result<FunctionReport, ReadError> {
    let mut visitor = stats::StatsVisitor::new();
    let summary = recording.replay(query.thread, &mut visitor, &mut |rows| {
        progress.update(rows);
    })?;
    progress.finish();
    let all = visitor.finish(&summary.names, None, query.sort);
    let all_self_ns = all.iter().fold(0u64, |s, r| s.saturating_add(r.self_ns));
    let all_names = all.iter().map(|r| r.function.clone()).collect();
    let functions = match &query.function {
        Some(glob) => all
            .into_iter()
            .filter(|r| glob.matches(&r.function))
            .collect(),
        None => all,
    };
    Ok(FunctionReport {
        overview: Overview::new(recording.path(), recording, &summary),
        functions,
        all_self_ns,
        all_names,
    })
}

/// The `query.top` slowest root calls of `recording` as trees.
pub fn trees(
    recording: &Recording,
    query: &Query,
    progress: &mut Progress,
) -> Result<TreeReport, ReadError> {
    let mut visitor = tree::TreeVisitor::new(query.top, query.function.clone());
    let summary = recording.replay(query.thread, &mut visitor, &mut |rows| {
        progress.update(rows);
    })?;
    progress.finish();
    let (trees, roots) = visitor.finish();
    Ok(TreeReport {
        overview: Overview::new(recording.path(), recording, &summary),
        trees,
        roots,
        names: summary.names,
    })
}
