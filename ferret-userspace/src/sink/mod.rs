//! The Parquet event log: its schema, a streaming writer and a reader.
//!
//! One row per lifecycle event (`SPAN_START`, `SPAN_END`, `METRIC`), columns
//! exactly as DESIGN.md's "Parquet event log" contract says; columns that do
//! not apply to a row are null. The writer buffers rows in Arrow column
//! builders and closes a row group every [`ROW_GROUP_ROWS`] rows or on
//! [`RecordingWriter::flush`], so memory stays bounded however long the
//! recording runs. The reader ([`read_all`], [`read_metadata`]) serves tests
//! and post-mortem analysis; it looks columns up by name, so files with more
//! columns (later versions) still read.

mod read;
mod write;

use std::path::PathBuf;
use std::sync::{Arc, LazyLock};

use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

pub use read::{Row, read_all, read_metadata};
pub use write::RecordingWriter;

/// Rows per row group: the most a writer buffers before it writes a batch.
pub const ROW_GROUP_ROWS: usize = 64 * 1024;

/// `kind` of a row that starts a span.
pub const KIND_SPAN_START: &str = "SPAN_START";
/// `kind` of a row that ends a span.
pub const KIND_SPAN_END: &str = "SPAN_END";
/// `kind` of a process metrics sample.
pub const KIND_METRIC: &str = "METRIC";

/// Keys of the file's key-value metadata written by ferret.
pub mod meta_key {
    /// ferret's version (`CARGO_PKG_VERSION`).
    pub const VERSION: &str = "ferret.version";
    /// The target as the user gave it (pid or command line).
    pub const TARGET: &str = "ferret.target";
    /// The probe patterns, human readable.
    pub const PROBES: &str = "ferret.probes";
    /// Events the kernel reported lost (ring buffer full).
    pub const LOST_EVENTS: &str = "ferret.lost_events";
    /// `CLOCK_REALTIME` − `CLOCK_MONOTONIC` at the start, in ns: `time − ts_ns`.
    pub const REALTIME_OFFSET_NS: &str = "ferret.realtime_offset_ns";
    /// `true` if the recording was finished normally; `false` if the writer
    /// was dropped without [`super::RecordingWriter::finish`] (an error path
    /// or a panic), so the tail of the recording may be missing.
    pub const COMPLETE: &str = "ferret.complete";
}

/// Column names, in schema order.
pub mod col {
    /// `SPAN_START`, `SPAN_END` or `METRIC`.
    pub const KIND: &str = "kind";
    /// Event time, `CLOCK_MONOTONIC` ns.
    pub const TS_NS: &str = "ts_ns";
    /// Event time on the wall clock.
    pub const TIME: &str = "time";
    /// Process id.
    pub const PID: &str = "pid";
    /// Thread id (null on METRIC).
    pub const TID: &str = "tid";
    /// Thread name (process name on METRIC).
    pub const THREAD_NAME: &str = "thread_name";
    /// Span id, shared by a span's START and END.
    pub const SPAN_ID: &str = "span_id";
    /// The enclosing open span on the same thread.
    pub const PARENT_SPAN_ID: &str = "parent_span_id";
    /// 0 for a span with no open parent.
    pub const DEPTH: &str = "depth";
    /// Demangled function name.
    pub const FUNCTION: &str = "function";
    /// Path of the binary or library holding the function.
    pub const MODULE: &str = "module";
    /// `SPAN_END`: the span's start.
    pub const START_NS: &str = "start_ns";
    /// `SPAN_END`: end minus start.
    pub const DURATION_NS: &str = "duration_ns";
    /// `SPAN_END`: `ok`, `unwound` or `open`.
    pub const STATUS: &str = "status";
    /// METRIC: CPU over the last interval, 100 = one core.
    pub const CPU_PERCENT: &str = "cpu_percent";
    /// METRIC: resident memory.
    pub const RSS_BYTES: &str = "rss_bytes";
    /// METRIC: thread count.
    pub const THREADS: &str = "threads";
}

static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    let utc = Some(Arc::from("UTC"));
    // kind, ts_ns, time and pid exist on every row; every other column is
    // null on some kind of row (or may be, on kinds added later).
    Arc::new(Schema::new(vec![
        Field::new(col::KIND, DataType::Utf8, false),
        Field::new(col::TS_NS, DataType::Int64, false),
        Field::new(
            col::TIME,
            DataType::Timestamp(TimeUnit::Nanosecond, utc),
            false,
        ),
        Field::new(col::PID, DataType::Int32, false),
        Field::new(col::TID, DataType::Int32, true),
        Field::new(col::THREAD_NAME, DataType::Utf8, true),
        Field::new(col::SPAN_ID, DataType::Int64, true),
        Field::new(col::PARENT_SPAN_ID, DataType::Int64, true),
        Field::new(col::DEPTH, DataType::Int32, true),
        Field::new(col::FUNCTION, DataType::Utf8, true),
        Field::new(col::MODULE, DataType::Utf8, true),
        Field::new(col::START_NS, DataType::Int64, true),
        Field::new(col::DURATION_NS, DataType::Int64, true),
        Field::new(col::STATUS, DataType::Utf8, true),
        Field::new(col::CPU_PERCENT, DataType::Float64, true),
        Field::new(col::RSS_BYTES, DataType::Int64, true),
        Field::new(col::THREADS, DataType::Int32, true),
    ]))
});

/// The Arrow schema of the event log (DESIGN.md's Parquet contract).
pub fn schema() -> SchemaRef {
    Arc::clone(&SCHEMA)
}

/// One entry of the probe table: what a span's `function` index names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FunctionInfo {
    /// Demangled function name.
    pub name: String,
    /// Path of the binary or library the function lives in.
    pub module: String,
}

/// One process metrics sample, as written to a `METRIC` row.
#[derive(Clone, Debug, PartialEq)]
pub struct MetricSample {
    /// `CLOCK_MONOTONIC` ns.
    pub ts_ns: u64,
    /// Process id.
    pub pid: u32,
    /// The process name (`comm`); stored in `thread_name`.
    pub process_name: String,
    /// CPU used over the last interval, 100 = one core; `None` when there is
    /// no previous sample to compare with.
    pub cpu_percent: Option<f64>,
    /// Resident memory.
    pub rss_bytes: Option<u64>,
    /// Thread count.
    pub threads: Option<u32>,
}

/// What a recording is of, written to the file's metadata.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordingMeta {
    /// The target as the user gave it (pid or command line).
    pub target: String,
    /// Human-readable list of the probe patterns.
    pub probes: String,
    /// `CLOCK_REALTIME` − `CLOCK_MONOTONIC` at the start, in ns; added to
    /// `ts_ns` to fill the `time` column.
    pub realtime_offset_ns: i64,
}

/// Why writing or reading the event log failed.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The output file could not be created (missing directory, no
    /// permission, read-only file system…).
    #[error("cannot create {}: {source}", path.display())]
    Create {
        /// The output path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The output path is a symbolic link; ferret (often run as root) does
    /// not write through one, so a planted link cannot redirect the write.
    #[error("refusing to write {}: it is a symbolic link", path.display())]
    Symlink {
        /// The output path.
        path: PathBuf,
    },
    /// An existing event log could not be opened.
    #[error("cannot open {}: {source}", path.display())]
    Open {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The Parquet writer failed (usually an I/O error such as a full disk).
    #[error("writing {}: {source}", path.display())]
    Write {
        /// The output path.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: parquet::errors::ParquetError,
    },
    /// The file is not readable Parquet (truncated, or not Parquet at all).
    #[error("reading {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: parquet::errors::ParquetError,
    },
    /// Arrow rejected a batch or a column conversion.
    #[error("{}: {source}", path.display())]
    Arrow {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: arrow::error::ArrowError,
    },
    /// The file is Parquet but not a ferret event log: a column is missing
    /// or holds nulls where the contract forbids them.
    #[error("{}: column `{column}` {problem}", path.display())]
    Column {
        /// The file.
        path: PathBuf,
        /// The column name.
        column: &'static str,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// A span names a function index outside the probe table given to
    /// [`RecordingWriter::create`]: a bug in the caller.
    #[error("span refers to function #{index}, but the probe table has {known} entries")]
    UnknownFunction {
        /// The span's function index.
        index: u32,
        /// The probe table's length.
        known: usize,
    },
}

#[cfg(test)]
mod tests;
