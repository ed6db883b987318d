//! The Parquet event log: its schema, a streaming writer and a reader.
//!
//! One row per lifecycle event (`SPAN_START`, `SPAN_END`, `METRIC`, and
//! `STALL` from the stall watchdog), columns exactly as the contract in
//! `docs/CONTRACTS.md` says (a test holds the two together); columns that do not apply to a row are null.
//! The writer buffers rows in plain column vectors, encodes them (by hand,
//! see `encode`) every [`ROW_GROUP_ROWS`] rows or on
//! [`RecordingWriter::flush`], and closes a row group every
//! [`ROW_GROUP_MAX_ROWS`] rows or [`ROW_GROUP_MAX_AGE`], so memory stays
//! bounded however long the recording runs. The reader ([`read_all`], [`read_metadata`]) serves tests
//! and post-mortem analysis; it looks columns up by name, so files with more
//! columns (later versions) still read.

mod encode;
mod read;
mod recording;
mod write;

use std::path::PathBuf;
use std::sync::{Arc, LazyLock};

use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

pub(crate) use read::contained;
pub use read::{Row, read_all, read_metadata};
pub use recording::{OutputGuard, Recording};
pub use write::{RecordingWriter, SampleRow, StallRow};

/// Rows per batch: the most a writer buffers in its column vectors before
/// it encodes them as one page per column (and the reader's batch size).
pub const ROW_GROUP_ROWS: usize = 64 * 1024;
/// A row group is closed (written out) once it holds this many rows. Each
/// closed row group leaves its metadata in the writer's memory until the
/// footer (about 40 KiB), so row groups are few and large.
pub const ROW_GROUP_MAX_ROWS: usize = 1 << 20;
/// ... or once it has been open this long, so a quiet recording still
/// reaches the disk.
pub const ROW_GROUP_MAX_AGE: std::time::Duration = std::time::Duration::from_mins(1);

/// `kind` of a row that starts a span.
pub const KIND_SPAN_START: &str = "SPAN_START";
/// `kind` of a row that ends a span.
pub const KIND_SPAN_END: &str = "SPAN_END";
/// `kind` of a process metrics sample.
pub const KIND_METRIC: &str = "METRIC";
/// `kind` of a stall capture: where a stalled thread was stuck.
pub const KIND_STALL: &str = "STALL";
/// `kind` of a CPU sample: where a thread was when sampled on CPU.
pub const KIND_SAMPLE: &str = "SAMPLE";

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
    /// Why tracing stopped: `TargetExited`, `Duration`, `Interrupt`,
    /// `Terminate` or `Quit`.
    pub const STOP_REASON: &str = "ferret.stop_reason";
    /// How many functions were probed.
    pub const FUNCTIONS: &str = "ferret.functions";
    /// Exits seen without their entry (the call began before tracing, or
    /// its entry was lost); ignored.
    pub const ORPHAN_EXITS: &str = "ferret.orphan_exits";
    /// Metrics this machine could not measure, `event: why; ...`.
    pub const METRICS_UNAVAILABLE: &str = "ferret.metrics_unavailable";
    /// Functions the overhead guard detached, `name (calls/s); ...`.
    pub const DETACHED_FUNCTIONS: &str = "ferret.detached_functions";
    /// The split of calls' time (CPU / runnable / blocked), JSON: whether
    /// the scheduler hooks were still on at the end, why the budget turned
    /// them off (if it did), their runs on traced threads and the measured
    /// cost charged per run, and how often a thread's counters restarted
    /// after a switch the kernel did not report.
    pub const SCHED_SPLIT: &str = "ferret.sched_split";
    /// `--stall` in ns (0: the watchdog was off).
    pub const STALL_THRESHOLD_NS: &str = "ferret.stall_threshold_ns";
    /// What the stall watchdog's capture thread cost, JSON (see
    /// [`crate::stall::WatchdogStats::to_json`]); absent when it was off.
    pub const STALL_WATCHDOG: &str = "ferret.stall_watchdog";

    /// The probes' cost as measured on the machine, JSON: `start` (the
    /// figures of [`crate::cost::Calibration`]), `recalibrations`, and `end`
    /// (the figures last in use) if the session measured again.
    pub const CALIBRATION: &str = "ferret.calibration";
    /// `--max-overhead` (0: the budget was off).
    pub const MAX_OVERHEAD_PERCENT: &str = "ferret.max_overhead_percent";
    /// `--otlp-endpoint`: where spans were sent.
    pub const OTLP_ENDPOINT: &str = "ferret.otlp_endpoint";
    /// Spans the collector accepted.
    pub const OTLP_SENT: &str = "ferret.otlp_sent";
    /// Chosen spans that never reached it (dropped + failed + still queued).
    pub const OTLP_UNSENT: &str = "ferret.otlp_unsent";
    /// Spans dropped because the exporter's queue was full.
    pub const OTLP_DROPPED: &str = "ferret.otlp_dropped";
    /// Spans refused by the collector or failed after retries.
    pub const OTLP_FAILED: &str = "ferret.otlp_failed";
    /// Spans left out as shorter than `--otlp-min-duration`.
    pub const OTLP_BELOW_MIN_DURATION: &str = "ferret.otlp_below_min_duration";
    /// Spans left out over the per-second cap.
    pub const OTLP_OVER_CAP: &str = "ferret.otlp_over_cap";
    /// The exporter's last error, if any.
    pub const OTLP_LAST_ERROR: &str = "ferret.otlp_last_error";
    /// CPU sampling, JSON: the rate asked for and at the end, samples,
    /// lost samples, the measured cost per sample.
    pub const SAMPLING: &str = "ferret.sampling";
    /// Functions traced and detached while the session ran (from the
    /// dashboard), JSON: `[{"ts_ns", "change": "trace"|"detach",
    /// "function", "module"}, …]` in order.
    pub const PROBE_CHANGES: &str = "ferret.probe_changes";

    /// Every key ferret writes.
    pub const ALL: &[&str] = &[
        VERSION,
        TARGET,
        PROBES,
        LOST_EVENTS,
        REALTIME_OFFSET_NS,
        COMPLETE,
        STOP_REASON,
        FUNCTIONS,
        ORPHAN_EXITS,
        METRICS_UNAVAILABLE,
        DETACHED_FUNCTIONS,
        STALL_THRESHOLD_NS,
        STALL_WATCHDOG,
        CALIBRATION,
        MAX_OVERHEAD_PERCENT,
        OTLP_ENDPOINT,
        OTLP_SENT,
        OTLP_UNSENT,
        OTLP_DROPPED,
        OTLP_FAILED,
        OTLP_BELOW_MIN_DURATION,
        OTLP_OVER_CAP,
        OTLP_LAST_ERROR,
        SAMPLING,
        PROBE_CHANGES,
    ];
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
    /// STALL and SAMPLE: the thread's user stack, one frame per line,
    /// innermost first, `function (file:line)` where known.
    pub const STACK: &str = "stack";
    /// STALL: what the thread is doing: state, system call and arguments,
    /// kernel wait channel, the lock it waits for and its holder, a deadlock.
    pub const WAIT: &str = "wait";
    /// SPAN_END: ferret's estimated probe time inside the span (its exit
    /// probe's share and its traced descendants' probes); `duration_ns`
    /// stays as measured.
    pub const OVERHEAD_NS: &str = "overhead_ns";
    /// SPAN_END: the call's own probe time outside its measured duration,
    /// charged to its parent (for correcting a timeline call by call).
    pub const OVERHEAD_OUTSIDE_NS: &str = "overhead_outside_ns";
    /// SPAN_*: the Go goroutine (`goid`) whose call it is; null for other
    /// programs.
    pub const GOROUTINE: &str = "goroutine";
    /// STALL: the group of stalls the row belongs to (threads stuck in the
    /// same place), unique in the file; a deadlocked thread and a lock
    /// holder are groups of their own.
    pub const STALL_GROUP: &str = "stall_group";
    /// SPAN_END: the span's time on a CPU (probe time included); null when
    /// unknown.
    pub const CPU_NS: &str = "cpu_ns";
    /// SPAN_END: the span's time ready but waiting for a CPU.
    pub const RUNNABLE_NS: &str = "runnable_ns";
    /// SPAN_END: the span's time blocked.
    pub const BLOCKED_NS: &str = "blocked_ns";
    /// SPAN_END: the system call most of the blocked time was spent in.
    pub const BLOCKED_IN: &str = "blocked_in";
}

/// The METRIC columns beyond the contract's (docs/CONTRACTS.md) `cpu_percent`, `rss_bytes` and
/// `threads`: each defined once here (column name with its unit, label for
/// the dashboard), in the order of [`MetricSample::extra`]. Counts and byte
/// sizes are INT64 columns, rates and ratios DOUBLE. A value the machine
/// cannot measure (no PMU, say) is null, never 0.
pub mod metric {
    /// How a metric is measured and shown.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum Unit {
        /// Percent of one core (100 = one core busy).
        Percent,
        /// Bytes (INT64 column).
        Bytes,
        /// A count (INT64 column).
        Count,
        /// Bytes per second.
        BytesPerS,
        /// Events per second.
        PerS,
        /// A plain ratio.
        Ratio,
    }

    impl Unit {
        /// Whether the column is INT64 (else DOUBLE).
        pub const fn is_integer(self) -> bool {
            matches!(self, Self::Bytes | Self::Count)
        }
    }

    /// One extra metric.
    #[derive(Clone, Copy, Debug)]
    pub struct Def {
        /// Parquet column name (unit in the name).
        pub column: &'static str,
        /// Short label for the dashboard.
        pub label: &'static str,
        /// Unit.
        pub unit: Unit,
    }

    macro_rules! metrics {
        ($($index:ident = $column:literal, $label:literal, $unit:ident;)*) => {
            metrics!(@consts 0usize, $($index)*);
            /// Every extra metric, indexed by the constants of this module.
            pub const DEFS: [Def; COUNT] = [$(Def { column: $column, label: $label, unit: Unit::$unit }),*];
        };
        (@consts $n:expr, $first:ident $($rest:ident)*) => {
            #[doc = concat!("Index of `", stringify!($first), "` in [`DEFS`].")]
            pub const $first: usize = $n;
            metrics!(@consts $n + 1usize, $($rest)*);
        };
        (@consts $n:expr,) => {
            /// Number of extra metrics.
            pub const COUNT: usize = $n;
        };
    }

    metrics! {
        CPU_USER = "cpu_user_percent", "CPU user", Percent;
        CPU_SYSTEM = "cpu_system_percent", "CPU system", Percent;
        VM = "vm_bytes", "virtual size", Bytes;
        THREADS_RUNNING = "threads_running", "threads running", Count;
        VOLUNTARY_SWITCHES = "voluntary_ctx_switches_per_s", "voluntary switches/s", PerS;
        INVOLUNTARY_SWITCHES = "involuntary_ctx_switches_per_s", "involuntary switches/s", PerS;
        MINOR_FAULTS = "minor_faults_per_s", "minor faults/s", PerS;
        MAJOR_FAULTS = "major_faults_per_s", "major faults/s", PerS;
        READ = "read_bytes_per_s", "read/s", BytesPerS;
        WRITE = "write_bytes_per_s", "written/s", BytesPerS;
        DISK_READ = "disk_read_bytes_per_s", "disk read/s", BytesPerS;
        DISK_WRITE = "disk_write_bytes_per_s", "disk written/s", BytesPerS;
        OPEN_FDS = "open_fds", "open fds", Count;
        CYCLES = "cycles_per_s", "cycles/s", PerS;
        INSTRUCTIONS = "instructions_per_s", "instructions/s", PerS;
        IPC = "ipc", "IPC", Ratio;
        CACHE_MISSES = "cache_misses_per_s", "cache misses/s", PerS;
        TASK_CLOCK = "task_clock_percent", "task clock", Percent;
        PERF_SWITCHES = "perf_ctx_switches_per_s", "perf switches/s", PerS;
        PERF_FAULTS = "perf_page_faults_per_s", "perf faults/s", PerS;
        RUN_QUEUE_WAIT = "run_queue_wait_percent", "run-queue wait", Percent;
    }
}

static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    let utc = Some(Arc::from("UTC"));
    // kind, ts_ns, time and pid exist on every row; every other column is
    // null on some kind of row (or may be, on kinds added later).
    let mut fields = vec![
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
    ];
    fields.extend(metric::DEFS.iter().map(|def| {
        let kind = if def.unit.is_integer() {
            DataType::Int64
        } else {
            DataType::Float64
        };
        Field::new(def.column, kind, true)
    }));
    // Added after the metric columns so earlier columns keep their places.
    fields.push(Field::new(col::STACK, DataType::Utf8, true));
    fields.push(Field::new(col::WAIT, DataType::Utf8, true));
    fields.push(Field::new(col::OVERHEAD_NS, DataType::Int64, true));
    fields.push(Field::new(col::OVERHEAD_OUTSIDE_NS, DataType::Int64, true));
    fields.push(Field::new(col::GOROUTINE, DataType::Int64, true));
    fields.push(Field::new(col::STALL_GROUP, DataType::Int64, true));
    fields.push(Field::new(col::CPU_NS, DataType::Int64, true));
    fields.push(Field::new(col::RUNNABLE_NS, DataType::Int64, true));
    fields.push(Field::new(col::BLOCKED_NS, DataType::Int64, true));
    fields.push(Field::new(col::BLOCKED_IN, DataType::Utf8, true));
    Arc::new(Schema::new(fields))
});

/// The Arrow schema of the event log (docs/CONTRACTS.md, Parquet event log).
pub fn schema() -> SchemaRef {
    Arc::clone(&SCHEMA)
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
    /// The metrics of [`metric::DEFS`], by index; `None` when not measured
    /// (first sample of a rate, or not measurable here).
    pub extra: [Option<f64>; metric::COUNT],
    /// Bit `i` set: metric `i` cannot be measured on this machine at all
    /// (shown as "unavailable" rather than as a missing value).
    pub unavailable: u32,
}

impl MetricSample {
    /// A sample with only the three contract metrics (no extras).
    pub fn basic(
        ts_ns: u64,
        pid: u32,
        process_name: String,
        cpu_percent: Option<f64>,
        rss_bytes: Option<u64>,
        threads: Option<u32>,
    ) -> Self {
        Self {
            ts_ns,
            pid,
            process_name,
            cpu_percent,
            rss_bytes,
            threads,
            extra: [None; metric::COUNT],
            unavailable: 0,
        }
    }
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
