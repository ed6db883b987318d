//! The streaming event-log writer: a row is a few pushes into plain column
//! buffers; a batch at a time they are encoded ([`super::encode`]) into the
//! open row group, and row groups close by size or age.

use std::borrow::Cow;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parquet::arrow::{ArrowSchemaConverter, add_encoded_arrow_schema_to_metadata};
use parquet::errors::ParquetError;
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::types::ColumnDescPtr;

use super::encode::{Column, DoubleColumn, IntColumn, Pages, StrColumn};
use super::{
    KIND_METRIC, KIND_SAMPLE, KIND_SPAN_END, KIND_SPAN_START, KIND_STALL, MetricSample,
    ROW_GROUP_MAX_AGE, ROW_GROUP_MAX_ROWS, ROW_GROUP_ROWS, RecordingMeta, SinkError, col, meta_key,
    schema,
};
use crate::trace::{BlockedIn, FunctionInfo, SpanEvent, SpanStatus};

/// Writes the event log of one recording to a Parquet file.
///
/// Rows are buffered in plain column vectors until [`ROW_GROUP_ROWS`] have
/// accumulated or [`Self::flush`] is called; then they are encoded (and
/// compressed) as one page per column of the open row group, which is
/// written out and closed once it holds [`ROW_GROUP_MAX_ROWS`] rows or has
/// been open [`ROW_GROUP_MAX_AGE`]. Few, large row groups keep memory flat:
/// the writer must hold every row group's metadata until the footer, about
/// 40 KiB each. The Parquet footer is written by [`Self::finish`]; if the
/// writer is dropped without it (an early error return, a panic unwinding),
/// `Drop` still writes the buffered rows and a footer marked
/// `ferret.complete = false`, so the file stays readable. A killed process
/// (SIGKILL, power loss) leaves no footer, and standard readers then reject
/// the file.
pub struct RecordingWriter {
    /// `None` once finished.
    writer: Option<SerializedFileWriter<File>>,
    /// The Parquet columns, in schema order.
    descriptors: Vec<ColumnDescPtr>,
    path: PathBuf,
    functions: Arc<[FunctionInfo]>,
    realtime_offset_ns: i64,
    columns: Columns,
    pages: Pages,
    /// Rows in the column buffers, not yet encoded, and how many make a batch.
    buffered: usize,
    batch_rows: usize,
    /// Rows encoded into the open row group, and since when it is open.
    group_rows: usize,
    group_opened: Option<Instant>,
    /// When the open row group closes (normally [`ROW_GROUP_MAX_ROWS`] and
    /// [`ROW_GROUP_MAX_AGE`]).
    group_max_rows: usize,
    group_max_age: Duration,
    rows: u64,
}

impl std::fmt::Debug for RecordingWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordingWriter")
            .field("path", &self.path)
            .field("buffered", &self.buffered)
            .field("rows", &self.rows)
            .finish_non_exhaustive()
    }
}

/// `kind` values by slot (see [`StrColumn::push_slot`]).
const KINDS: [&str; 5] = [
    KIND_SPAN_START,
    KIND_SPAN_END,
    KIND_METRIC,
    KIND_STALL,
    KIND_SAMPLE,
];

impl RecordingWriter {
    /// Create (or truncate) `path` and start a recording.
    ///
    /// `functions` is the probe table: a span's `function` index selects its
    /// name and module. The final path component must not be a symbolic
    /// link ([`SinkError::Symlink`]).
    pub fn create(
        path: &Path,
        functions: Arc<[FunctionInfo]>,
        meta: RecordingMeta,
    ) -> Result<Self, SinkError> {
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o644)
            // ferret usually runs as root: never let a link planted at the
            // output path redirect the write to some other file.
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)
            .map_err(|source| {
                if source.raw_os_error() == Some(libc::ELOOP) {
                    SinkError::Symlink {
                        path: path.to_owned(),
                    }
                } else {
                    SinkError::Create {
                        path: path.to_owned(),
                        source,
                    }
                }
            })?;
        crate::owner::give_to_invoking_user(&file);

        let write_err = |source| SinkError::Write {
            path: path.to_owned(),
            source,
        };
        let schema = schema();
        let realtime_offset_ns = meta.realtime_offset_ns;
        let parquet_schema = ArrowSchemaConverter::new()
            .convert(&schema)
            .map_err(write_err)?;
        let mut props = properties(meta);
        // Readers that know Arrow (pandas, DuckDB, ferret's own) take the
        // column types from this rather than guessing from Parquet's.
        add_encoded_arrow_schema_to_metadata(&schema, &mut props);
        let writer =
            SerializedFileWriter::new(file, parquet_schema.root_schema_ptr(), Arc::new(props))
                .map_err(write_err)?;
        Ok(Self {
            writer: Some(writer),
            descriptors: parquet_schema.columns().to_vec(),
            path: path.to_owned(),
            functions,
            realtime_offset_ns,
            columns: Columns::new(),
            pages: Pages::new().map_err(write_err)?,
            buffered: 0,
            batch_rows: ROW_GROUP_ROWS,
            group_rows: 0,
            group_opened: None,
            group_max_rows: ROW_GROUP_MAX_ROWS,
            group_max_age: ROW_GROUP_MAX_AGE,
            rows: 0,
        })
    }

    /// The same writer with other row-group limits (tests).
    #[cfg(test)]
    pub(crate) fn with_group_limits(mut self, max_rows: usize, max_age: Duration) -> Self {
        self.group_max_rows = max_rows;
        self.group_max_age = max_age;
        self
    }

    /// The same writer with batches (pages) of `rows` rows (tests).
    #[cfg(test)]
    pub(crate) fn with_batch_rows(mut self, rows: usize) -> Self {
        self.batch_rows = rows;
        self
    }

    /// Append a `SPAN_START` or `SPAN_END` row.
    pub fn write_span(&mut self, ev: &SpanEvent) -> Result<(), SinkError> {
        // (kind, span_id, parent, depth, pid, tid, thread name, function, ts, goroutine)
        let (kind, span_id, parent, depth, pid, tid, thread_name, function, ts_ns, goroutine) =
            match ev {
                SpanEvent::Start(s) => (
                    0,
                    s.span_id,
                    s.parent_span_id,
                    s.depth,
                    s.pid,
                    s.tid,
                    s.thread_name,
                    s.function,
                    s.ts_ns,
                    s.goroutine,
                ),
                SpanEvent::End(e) => (
                    1,
                    e.span_id,
                    e.parent_span_id,
                    e.depth,
                    e.pid,
                    e.tid,
                    e.thread_name,
                    e.function,
                    e.ts_ns,
                    e.goroutine,
                ),
            };
        let info = self
            .functions
            .get(function as usize)
            .ok_or(SinkError::UnknownFunction {
                index: function,
                known: self.functions.len(),
            })?;
        let (row, c) = (self.buffered, &mut self.columns);
        c.kind.push_slot(row, kind, KINDS[kind]);
        c.ts_ns.push(row, ts_ns as i64);
        c.time.push(row, wall(ts_ns, self.realtime_offset_ns));
        c.pid.push(row, pid as i32);
        c.tid.push(row, tid as i32);
        c.thread_name.push_interned(row, thread_name.as_str());
        c.span_id.push(row, span_id as i64);
        if let Some(parent) = parent {
            c.parent_span_id.push(row, parent as i64);
        }
        c.depth.push(row, depth as i32);
        c.function.push_slot(row, function as usize, &info.name);
        c.module.push_slot(row, function as usize, &info.module);
        if let Some(goroutine) = goroutine {
            c.goroutine.push(row, goroutine as i64);
        }
        if let SpanEvent::End(e) = ev {
            c.start_ns.push(row, e.start_ns as i64);
            c.duration_ns.push(row, e.duration_ns() as i64);
            c.overhead_ns.push(row, e.overhead_ns as i64);
            c.overhead_outside_ns
                .push(row, e.overhead_outside_ns as i64);
            c.status
                .push_slot(row, status_slot(e.status), e.status.as_str());
            if let Some(split) = &e.sched {
                c.cpu_ns.push(row, split.cpu_ns as i64);
                c.runnable_ns.push(row, split.runnable_ns as i64);
                c.blocked_ns.push(row, split.blocked_ns as i64);
                match split.blocked_in.map(BlockedIn::name) {
                    Some(Cow::Borrowed(name)) => c.blocked_in.push_interned(row, name),
                    Some(Cow::Owned(name)) => c.blocked_in.push(row, &name),
                    None => {}
                }
            }
        }
        self.row_added()
    }

    /// Append a `STALL` row: where a stalled thread was stuck when captured
    /// at `row.ts_ns`. `start_ns` is the stalled span's start and
    /// `duration_ns` how long it had been open at the capture.
    pub fn write_stall(&mut self, row: &StallRow<'_>) -> Result<(), SinkError> {
        let info = self
            .functions
            .get(row.function as usize)
            .ok_or(SinkError::UnknownFunction {
                index: row.function,
                known: self.functions.len(),
            })?;
        let (r, c) = (self.buffered, &mut self.columns);
        c.kind.push_slot(r, 3, KIND_STALL);
        c.ts_ns.push(r, row.ts_ns as i64);
        c.time.push(r, wall(row.ts_ns, self.realtime_offset_ns));
        c.pid.push(r, row.pid as i32);
        c.tid.push(r, row.tid as i32);
        c.thread_name.push(r, row.thread_name);
        c.span_id.push(r, row.span_id as i64);
        c.depth.push(r, row.depth as i32);
        c.function.push_slot(r, row.function as usize, &info.name);
        c.module.push_slot(r, row.function as usize, &info.module);
        c.start_ns.push(r, row.start_ns as i64);
        c.duration_ns
            .push(r, row.ts_ns.saturating_sub(row.start_ns) as i64);
        c.stack.push(r, row.stack);
        c.wait.push(r, row.wait);
        if let Some(goroutine) = row.goroutine {
            c.goroutine.push(r, goroutine as i64);
        }
        c.stall_group.push(r, row.group as i64);
        self.row_added()
    }

    /// Append a `SAMPLE` row: where a thread was when sampled on CPU.
    pub fn write_sample(&mut self, row: &SampleRow<'_>) -> Result<(), SinkError> {
        let (r, c) = (self.buffered, &mut self.columns);
        c.kind.push_slot(r, 4, KIND_SAMPLE);
        c.ts_ns.push(r, row.ts_ns as i64);
        c.time.push(r, wall(row.ts_ns, self.realtime_offset_ns));
        c.pid.push(r, row.pid as i32);
        c.tid.push(r, row.tid as i32);
        c.thread_name.push_interned(r, row.thread_name);
        c.function.push(r, row.function);
        if let Some(module) = row.module {
            c.module.push(r, module);
        }
        c.stack.push(r, row.stack);
        self.row_added()
    }

    /// The probe table grew (functions traced while recording): `functions`
    /// keeps every entry of the old table at its index and adds new ones.
    pub fn set_functions(&mut self, functions: Arc<[FunctionInfo]>) {
        debug_assert!(functions.len() >= self.functions.len());
        debug_assert!(
            self.functions
                .iter()
                .zip(functions.iter())
                .all(|(a, b)| a == b),
            "the probe table only grows"
        );
        self.functions = functions;
    }

    /// Append a `METRIC` row.
    pub fn write_metric(&mut self, m: &MetricSample) -> Result<(), SinkError> {
        let (row, c) = (self.buffered, &mut self.columns);
        c.kind.push_slot(row, 2, KIND_METRIC);
        c.ts_ns.push(row, m.ts_ns as i64);
        c.time.push(row, wall(m.ts_ns, self.realtime_offset_ns));
        c.pid.push(row, m.pid as i32);
        c.thread_name.push(row, &m.process_name);
        if let Some(cpu) = m.cpu_percent {
            c.cpu_percent.push(row, cpu);
        }
        if let Some(rss) = m.rss_bytes {
            c.rss_bytes.push(row, rss as i64);
        }
        if let Some(threads) = m.threads {
            c.threads.push(row, threads as i32);
        }
        for (column, value) in c.extra.iter_mut().zip(m.extra) {
            if let Some(value) = value {
                column.push(row, value);
            }
        }
        self.row_added()
    }

    /// Rows accepted so far (written or still buffered).
    pub fn rows_written(&self) -> u64 {
        self.rows
    }

    /// Encode the buffered rows into the open row group, and write that out
    /// if it is due (see [`RecordingWriter`]), handing it to the kernel.
    pub fn flush(&mut self) -> Result<(), SinkError> {
        self.encode()?;
        if self
            .group_opened
            .is_some_and(|opened| opened.elapsed() >= self.group_max_age)
        {
            self.close_group()?;
        }
        Ok(())
    }

    /// Encodes the buffered rows into the open row group; closes it once it
    /// holds enough rows. A no-op when nothing is buffered.
    fn encode(&mut self) -> Result<(), SinkError> {
        if self.buffered == 0 {
            return Ok(());
        }
        let rows = self.buffered;
        for column in self.columns.all() {
            column
                .encode_page(rows, &mut self.pages)
                .map_err(|source| SinkError::Write {
                    path: self.path.clone(),
                    source,
                })?;
        }
        self.group_rows += rows;
        self.buffered = 0;
        self.group_opened.get_or_insert_with(Instant::now);
        if self.group_rows >= self.group_max_rows {
            self.close_group()?;
        }
        Ok(())
    }

    /// Writes the open row group out (if it holds any rows) and hands it to
    /// the kernel.
    fn close_group(&mut self) -> Result<(), SinkError> {
        if self.group_rows == 0 {
            return Ok(());
        }
        self.group_rows = 0;
        self.group_opened = None;
        let writer = self
            .writer
            .as_mut()
            .expect("writer is only taken by finish/drop");
        let written = (|| {
            let mut group = writer.next_row_group()?;
            for (column, descr) in self.columns.all().into_iter().zip(&self.descriptors) {
                let (bytes, close) = column.finish_chunk(Arc::clone(descr), &mut self.pages)?;
                group.append_column(&bytes, close)?;
            }
            group.close()?;
            writer.flush().map_err(ParquetError::from)
        })();
        written.map_err(|source| SinkError::Write {
            path: self.path.clone(),
            source,
        })
    }

    /// Write the remaining rows and the footer, with the key-value metadata
    /// `ferret.lost_events` = `lost_events`, `ferret.complete` = `true` and
    /// `extra_metadata` (after ferret's own keys).
    pub fn finish(
        mut self,
        lost_events: u64,
        extra_metadata: &[(String, String)],
    ) -> Result<(), SinkError> {
        self.encode()?;
        self.close_group()?;
        let mut writer = self.writer.take().expect("finish runs once");
        writer.append_key_value_metadata(KeyValue::new(
            meta_key::LOST_EVENTS.to_owned(),
            lost_events.to_string(),
        ));
        writer.append_key_value_metadata(KeyValue::new(
            meta_key::COMPLETE.to_owned(),
            "true".to_owned(),
        ));
        for (key, value) in extra_metadata {
            writer.append_key_value_metadata(KeyValue::new(key.clone(), value.clone()));
        }
        writer.close().map(drop).map_err(|source| SinkError::Write {
            path: self.path.clone(),
            source,
        })
    }

    fn row_added(&mut self) -> Result<(), SinkError> {
        self.buffered += 1;
        self.rows += 1;
        if self.buffered >= self.batch_rows {
            self.encode()?;
        }
        Ok(())
    }
}

impl Drop for RecordingWriter {
    /// Best effort: keep the file readable when `finish` was never reached.
    fn drop(&mut self) {
        if self.writer.is_none() {
            return;
        }
        // The writer may be what panicked; a second panic while unwinding
        // would abort the process, so contain it.
        let _ = catch_unwind(AssertUnwindSafe(|| {
            let _ = self.encode().and_then(|()| self.close_group());
            if let Some(mut writer) = self.writer.take() {
                writer.append_key_value_metadata(KeyValue::new(
                    meta_key::COMPLETE.to_owned(),
                    "false".to_owned(),
                ));
                let _ = writer.close();
            }
        }));
    }
}

/// Writer settings. The encodings are chosen per column by
/// [`super::encode`]: dictionaries for strings, deltas for integers (times
/// and ids are (nearly) increasing, pids, tids and depths come in runs), all
/// zstd. No page index: its entries (one per page of every column) would
/// stay in memory until the footer, growing all through a long recording;
/// statistics per column chunk still let readers skip row groups.
fn properties(meta: RecordingMeta) -> WriterProperties {
    let metadata = vec![
        KeyValue::new(
            meta_key::VERSION.to_owned(),
            env!("CARGO_PKG_VERSION").to_owned(),
        ),
        KeyValue::new(meta_key::TARGET.to_owned(), meta.target),
        KeyValue::new(meta_key::PROBES.to_owned(), meta.probes),
        KeyValue::new(
            meta_key::REALTIME_OFFSET_NS.to_owned(),
            meta.realtime_offset_ns.to_string(),
        ),
    ];
    WriterProperties::builder()
        .set_compression(Pages::compression())
        .set_offset_index_disabled(true)
        .set_key_value_metadata(Some(metadata))
        .build()
}

/// `status` slot (see [`StrColumn::push_slot`]).
fn status_slot(status: SpanStatus) -> usize {
    match status {
        SpanStatus::Ok => 0,
        SpanStatus::Unwound => 1,
        SpanStatus::Open => 2,
    }
}

/// A `STALL` row: a stalled span and where its thread was stuck.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StallRow<'a> {
    /// When the thread was captured, `CLOCK_MONOTONIC` ns.
    pub ts_ns: u64,
    /// Process id.
    pub pid: u32,
    /// Thread id.
    pub tid: u32,
    /// Thread name.
    pub thread_name: &'a str,
    /// The stalled span.
    pub span_id: u64,
    /// Its depth on the thread.
    pub depth: u32,
    /// Its function: index into the probe table.
    pub function: u32,
    /// The span's start.
    pub start_ns: u64,
    /// The `stack` column.
    pub stack: &'a str,
    /// The `wait` column.
    pub wait: &'a str,
    /// The stalled goroutine (Go programs).
    pub goroutine: Option<u64>,
    /// The `stall_group` column.
    pub group: u64,
}

/// A `SAMPLE` row: a thread sampled on CPU and where it was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SampleRow<'a> {
    /// When it was sampled, `CLOCK_MONOTONIC` ns.
    pub ts_ns: u64,
    /// Process id.
    pub pid: u32,
    /// Thread id.
    pub tid: u32,
    /// Thread name.
    pub thread_name: &'static str,
    /// The innermost frame's function (`0x… in module` when unknown).
    pub function: &'a str,
    /// The innermost frame's module.
    pub module: Option<&'a str>,
    /// The `stack` column.
    pub stack: &'a str,
}

/// `ts_ns` on the wall clock.
fn wall(ts_ns: u64, realtime_offset_ns: i64) -> i64 {
    (ts_ns as i64).saturating_add(realtime_offset_ns)
}

/// One column buffer per schema column.
///
/// A row only writes its non-null cells; a nullable column pads itself with
/// nulls up to the row it is given, and to the end of the batch when it is
/// encoded. Span rows, nearly every row, leave most columns (the metric and
/// stall columns) untouched, so they cost nothing there.
struct Columns {
    kind: StrColumn,
    ts_ns: IntColumn<i64>,
    time: IntColumn<i64>,
    pid: IntColumn<i32>,
    tid: IntColumn<i32>,
    thread_name: StrColumn,
    span_id: IntColumn<i64>,
    parent_span_id: IntColumn<i64>,
    depth: IntColumn<i32>,
    function: StrColumn,
    module: StrColumn,
    start_ns: IntColumn<i64>,
    duration_ns: IntColumn<i64>,
    status: StrColumn,
    cpu_percent: DoubleColumn,
    rss_bytes: IntColumn<i64>,
    threads: IntColumn<i32>,
    extra: Vec<Extra>,
    stack: StrColumn,
    wait: StrColumn,
    overhead_ns: IntColumn<i64>,
    overhead_outside_ns: IntColumn<i64>,
    goroutine: IntColumn<i64>,
    stall_group: IntColumn<i64>,
    cpu_ns: IntColumn<i64>,
    runnable_ns: IntColumn<i64>,
    blocked_ns: IntColumn<i64>,
    blocked_in: StrColumn,
}

/// A column of one of [`super::metric::DEFS`]: INT64 or DOUBLE by unit.
enum Extra {
    Int(IntColumn<i64>),
    Float(DoubleColumn),
}

impl Extra {
    fn push(&mut self, row: usize, value: f64) {
        match self {
            Self::Int(c) => c.push(row, value.round() as i64),
            Self::Float(c) => c.push(row, value),
        }
    }

    fn column(&mut self) -> &mut dyn Column {
        match self {
            Self::Int(c) => c,
            Self::Float(c) => c,
        }
    }
}

impl Columns {
    /// Empty buffers; the columns every span row fills get a full batch's
    /// capacity up front.
    fn new() -> Self {
        let rows = ROW_GROUP_ROWS;
        let nullable = |name: &str| {
            schema()
                .field_with_name(name)
                .expect("a column of the schema")
                .is_nullable()
        };
        let int64 = |name, capacity| IntColumn::<i64>::new(nullable(name), capacity);
        let int32 = |name, capacity| IntColumn::<i32>::new(nullable(name), capacity);
        let string = |name, capacity| StrColumn::new(nullable(name), capacity);
        Self {
            kind: string(col::KIND, rows),
            ts_ns: int64(col::TS_NS, rows),
            time: int64(col::TIME, rows),
            pid: int32(col::PID, rows),
            tid: int32(col::TID, rows),
            thread_name: string(col::THREAD_NAME, rows),
            span_id: int64(col::SPAN_ID, rows),
            parent_span_id: int64(col::PARENT_SPAN_ID, rows),
            depth: int32(col::DEPTH, rows),
            function: string(col::FUNCTION, rows),
            module: string(col::MODULE, rows),
            start_ns: int64(col::START_NS, rows),
            duration_ns: int64(col::DURATION_NS, rows),
            status: string(col::STATUS, rows),
            cpu_percent: DoubleColumn::new(),
            rss_bytes: int64(col::RSS_BYTES, 0),
            threads: int32(col::THREADS, 0),
            extra: super::metric::DEFS
                .iter()
                .map(|def| {
                    if def.unit.is_integer() {
                        Extra::Int(int64(def.column, 0))
                    } else {
                        Extra::Float(DoubleColumn::new())
                    }
                })
                .collect(),
            stack: string(col::STACK, 0),
            wait: string(col::WAIT, 0),
            overhead_ns: int64(col::OVERHEAD_NS, rows),
            overhead_outside_ns: int64(col::OVERHEAD_OUTSIDE_NS, rows),
            goroutine: int64(col::GOROUTINE, 0),
            stall_group: int64(col::STALL_GROUP, 0),
            cpu_ns: int64(col::CPU_NS, rows),
            runnable_ns: int64(col::RUNNABLE_NS, rows),
            blocked_ns: int64(col::BLOCKED_NS, rows),
            blocked_in: string(col::BLOCKED_IN, 0),
        }
    }

    /// Every column, in schema order.
    fn all(&mut self) -> Vec<&mut dyn Column> {
        let mut columns: Vec<&mut dyn Column> = vec![
            &mut self.kind,
            &mut self.ts_ns,
            &mut self.time,
            &mut self.pid,
            &mut self.tid,
            &mut self.thread_name,
            &mut self.span_id,
            &mut self.parent_span_id,
            &mut self.depth,
            &mut self.function,
            &mut self.module,
            &mut self.start_ns,
            &mut self.duration_ns,
            &mut self.status,
            &mut self.cpu_percent,
            &mut self.rss_bytes,
            &mut self.threads,
        ];
        columns.extend(self.extra.iter_mut().map(Extra::column));
        columns.push(&mut self.stack);
        columns.push(&mut self.wait);
        columns.push(&mut self.overhead_ns);
        columns.push(&mut self.overhead_outside_ns);
        columns.push(&mut self.goroutine);
        columns.push(&mut self.stall_group);
        columns.push(&mut self.cpu_ns);
        columns.push(&mut self.runnable_ns);
        columns.push(&mut self.blocked_ns);
        columns.push(&mut self.blocked_in);
        debug_assert_eq!(columns.len(), schema().fields().len());
        columns
    }
}
