//! The streaming event-log writer: rows go into Arrow column builders, are
//! encoded a batch at a time into the open row group, and row groups close
//! by size or age.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{
    ArrayBuilder, ArrayRef, Float64Builder, Int32Builder, Int64Builder, PrimitiveBuilder,
    StringBuilder, TimestampNanosecondBuilder, new_null_array,
};
use arrow::datatypes::{ArrowPrimitiveType, SchemaRef};
use arrow::record_batch::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;

use super::{
    FunctionInfo, KIND_METRIC, KIND_SPAN_END, KIND_SPAN_START, KIND_STALL, MetricSample,
    ROW_GROUP_MAX_AGE, ROW_GROUP_MAX_ROWS, ROW_GROUP_ROWS, RecordingMeta, SinkError, col, meta_key,
    schema,
};
use crate::trace::SpanEvent;

/// Writes the event log of one recording to a Parquet file.
///
/// Rows are buffered in column builders until [`ROW_GROUP_ROWS`] have
/// accumulated or [`Self::flush`] is called; then they are encoded (and
/// compressed) into the open row group, which is written out and closed once
/// it holds [`ROW_GROUP_MAX_ROWS`] rows or has been open [`ROW_GROUP_MAX_AGE`].
/// Few, large row groups keep memory flat: the writer must hold every row
/// group's metadata until the footer, about 40 KiB each. The Parquet footer
/// is written by [`Self::finish`]; if the
/// writer is dropped without it (an early error return, a panic unwinding),
/// `Drop` still writes the buffered rows and a footer marked
/// `ferret.complete = false`, so the file stays readable. A killed process
/// (SIGKILL, power loss) leaves no footer, and standard readers then reject
/// the file.
pub struct RecordingWriter {
    /// `None` once finished.
    writer: Option<ArrowWriter<File>>,
    path: PathBuf,
    schema: SchemaRef,
    functions: Arc<[FunctionInfo]>,
    realtime_offset_ns: i64,
    columns: Columns,
    /// Per column, a row group of nulls: what a column nobody wrote becomes.
    all_null: Vec<ArrayRef>,
    /// Rows in the builders, not yet encoded.
    buffered: usize,
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

        let schema = schema();
        let realtime_offset_ns = meta.realtime_offset_ns;
        let writer = ArrowWriter::try_new(file, Arc::clone(&schema), Some(properties(meta)))
            .map_err(|source| SinkError::Write {
                path: path.to_owned(),
                source,
            })?;
        let all_null = schema
            .fields()
            .iter()
            .map(|f| new_null_array(f.data_type(), ROW_GROUP_ROWS))
            .collect();
        Ok(Self {
            writer: Some(writer),
            path: path.to_owned(),
            schema,
            functions,
            realtime_offset_ns,
            columns: Columns::new(),
            all_null,
            buffered: 0,
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

    /// Append a `SPAN_START` or `SPAN_END` row.
    pub fn write_span(&mut self, ev: &SpanEvent) -> Result<(), SinkError> {
        // (kind, span_id, parent, depth, pid, tid, thread name, function, ts)
        let (kind, span_id, parent, depth, pid, tid, thread_name, function, ts_ns) = match ev {
            SpanEvent::Start(s) => {
                let name: &str = &s.thread_name;
                (
                    KIND_SPAN_START,
                    s.span_id,
                    s.parent_span_id,
                    s.depth,
                    s.pid,
                    s.tid,
                    name,
                    s.function,
                    s.ts_ns,
                )
            }
            SpanEvent::End(e) => {
                let name: &str = &e.thread_name;
                (
                    KIND_SPAN_END,
                    e.span_id,
                    e.parent_span_id,
                    e.depth,
                    e.pid,
                    e.tid,
                    name,
                    e.function,
                    e.ts_ns,
                )
            }
        };
        let info = self
            .functions
            .get(function as usize)
            .ok_or(SinkError::UnknownFunction {
                index: function,
                known: self.functions.len(),
            })?;
        let (row, c) = (self.buffered, &mut self.columns);
        put(&mut c.kind, row).append_value(kind);
        put(&mut c.ts_ns, row).append_value(ts_ns as i64);
        put(&mut c.time, row).append_value(wall(ts_ns, self.realtime_offset_ns));
        put(&mut c.pid, row).append_value(pid as i32);
        put(&mut c.tid, row).append_value(tid as i32);
        put(&mut c.thread_name, row).append_value(thread_name);
        put(&mut c.span_id, row).append_value(span_id as i64);
        if let Some(parent) = parent {
            put(&mut c.parent_span_id, row).append_value(parent as i64);
        }
        put(&mut c.depth, row).append_value(depth as i32);
        put(&mut c.function, row).append_value(&info.name);
        put(&mut c.module, row).append_value(&info.module);
        if let SpanEvent::End(e) = ev {
            put(&mut c.start_ns, row).append_value(e.start_ns as i64);
            put(&mut c.duration_ns, row).append_value(e.duration_ns() as i64);
            put(&mut c.status, row).append_value(e.status.as_str());
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
        put(&mut c.kind, r).append_value(KIND_STALL);
        put(&mut c.ts_ns, r).append_value(row.ts_ns as i64);
        put(&mut c.time, r).append_value(wall(row.ts_ns, self.realtime_offset_ns));
        put(&mut c.pid, r).append_value(row.pid as i32);
        put(&mut c.tid, r).append_value(row.tid as i32);
        put(&mut c.thread_name, r).append_value(row.thread_name);
        put(&mut c.span_id, r).append_value(row.span_id as i64);
        put(&mut c.depth, r).append_value(row.depth as i32);
        put(&mut c.function, r).append_value(&info.name);
        put(&mut c.module, r).append_value(&info.module);
        put(&mut c.start_ns, r).append_value(row.start_ns as i64);
        put(&mut c.duration_ns, r).append_value(row.ts_ns.saturating_sub(row.start_ns) as i64);
        put(&mut c.stack, r).append_value(row.stack);
        put(&mut c.wait, r).append_value(row.wait);
        self.row_added()
    }

    /// Append a `METRIC` row.
    pub fn write_metric(&mut self, m: &MetricSample) -> Result<(), SinkError> {
        let (row, c) = (self.buffered, &mut self.columns);
        put(&mut c.kind, row).append_value(KIND_METRIC);
        put(&mut c.ts_ns, row).append_value(m.ts_ns as i64);
        put(&mut c.time, row).append_value(wall(m.ts_ns, self.realtime_offset_ns));
        put(&mut c.pid, row).append_value(m.pid as i32);
        put(&mut c.thread_name, row).append_value(&m.process_name);
        if let Some(cpu) = m.cpu_percent {
            put(&mut c.cpu_percent, row).append_value(cpu);
        }
        if let Some(rss) = m.rss_bytes {
            put(&mut c.rss_bytes, row).append_value(rss as i64);
        }
        if let Some(threads) = m.threads {
            put(&mut c.threads, row).append_value(threads as i32);
        }
        for (builder, value) in c.extra.iter_mut().zip(m.extra) {
            if let Some(value) = value {
                put(builder, row).append(value);
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
        // Fresh builders with a full batch's capacity, so the next batch
        // grows nothing; the finished ones hand their buffers to the arrays.
        let mut columns = std::mem::replace(&mut self.columns, Columns::new());
        let arrays = columns.finish(self.buffered, &self.all_null);
        let batch = RecordBatch::try_new(Arc::clone(&self.schema), arrays).map_err(|source| {
            SinkError::Arrow {
                path: self.path.clone(),
                source,
            }
        })?;
        self.group_rows += self.buffered;
        self.buffered = 0;
        self.group_opened.get_or_insert_with(Instant::now);
        let writer = self
            .writer
            .as_mut()
            .expect("writer is only taken by finish/drop");
        writer.write(&batch).map_err(|source| SinkError::Write {
            path: self.path.clone(),
            source,
        })?;
        if self.group_rows >= self.group_max_rows {
            self.close_group()?;
        }
        Ok(())
    }

    /// Writes the open row group out and hands it to the kernel.
    fn close_group(&mut self) -> Result<(), SinkError> {
        self.group_rows = 0;
        self.group_opened = None;
        let writer = self
            .writer
            .as_mut()
            .expect("writer is only taken by finish/drop");
        writer
            .flush()
            .and_then(|()| writer.sync().map_err(Into::into))
            .map_err(|source| SinkError::Write {
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
        if self.buffered >= ROW_GROUP_ROWS {
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
            let _ = self.encode();
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

/// Writer settings: zstd, and for the columns whose values are (nearly) all
/// distinct and increasing, delta encoding instead of a dictionary that
/// would only be built to be thrown away.
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
    let mut props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        // Row groups close where `RecordingWriter` decides, never in between.
        .set_max_row_group_row_count(None)
        // No page index: its entries (one per page of every column) would stay
        // in memory until the footer, growing all through a long recording.
        // Statistics per column chunk still let readers skip row groups.
        .set_statistics_enabled(EnabledStatistics::Chunk)
        .set_offset_index_disabled(true)
        .set_write_batch_size(8192)
        .set_key_value_metadata(Some(metadata));
    // Dictionary encoding hashes every value as it is written, the
    // writer's largest cost per row. Integer columns do without: times and
    // ids are (nearly) increasing, pids, tids and depths come in runs, so
    // deltas pack them small at a fraction of the cost.
    for column in [
        col::TS_NS,
        col::TIME,
        col::PID,
        col::TID,
        col::SPAN_ID,
        col::PARENT_SPAN_ID,
        col::DEPTH,
        col::START_NS,
        col::DURATION_NS,
    ] {
        let path = ColumnPath::from(column);
        props = props
            .set_column_dictionary_enabled(path.clone(), false)
            .set_column_encoding(path, Encoding::DELTA_BINARY_PACKED);
    }
    // Minimum and maximum of names compare every value as it is written,
    // and a row group spans every function and thread anyway, so they
    // could never let a reader skip one.
    for column in [col::THREAD_NAME, col::FUNCTION, col::MODULE] {
        props =
            props.set_column_statistics_enabled(ColumnPath::from(column), EnabledStatistics::None);
    }
    props.build()
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
}

/// `ts_ns` on the wall clock.
fn wall(ts_ns: u64, realtime_offset_ns: i64) -> i64 {
    (ts_ns as i64).saturating_add(realtime_offset_ns)
}

/// One builder per column, in schema order.
///
/// A row only writes its non-null cells: [`put`] first pads the column with
/// one run of nulls up to the row, and [`Columns::finish`] pads every column
/// to the end of the batch (a column nobody wrote becomes one all-null
/// array). Span rows, nearly every row, leave most columns (the metric and
/// stall columns) untouched, so they cost nothing there.
struct Columns {
    kind: StringBuilder,
    ts_ns: Int64Builder,
    time: TimestampNanosecondBuilder,
    pid: Int32Builder,
    tid: Int32Builder,
    thread_name: StringBuilder,
    span_id: Int64Builder,
    parent_span_id: Int64Builder,
    depth: Int32Builder,
    function: StringBuilder,
    module: StringBuilder,
    start_ns: Int64Builder,
    duration_ns: Int64Builder,
    status: StringBuilder,
    cpu_percent: Float64Builder,
    rss_bytes: Int64Builder,
    threads: Int32Builder,
    extra: Vec<ExtraBuilder>,
    stack: StringBuilder,
    wait: StringBuilder,
}

/// A column builder that receives only non-null cells (see [`Columns`]).
trait Column {
    /// Cells so far, nulls included.
    fn cells(&self) -> usize;
    /// Appends `n` nulls.
    fn nulls(&mut self, n: usize);
    /// The array so far; the builder is left empty.
    fn array(&mut self) -> ArrayRef;
}

impl<T: ArrowPrimitiveType> Column for PrimitiveBuilder<T> {
    fn cells(&self) -> usize {
        ArrayBuilder::len(self)
    }
    fn nulls(&mut self, n: usize) {
        self.append_nulls(n);
    }
    fn array(&mut self) -> ArrayRef {
        Arc::new(self.finish())
    }
}

impl Column for StringBuilder {
    fn cells(&self) -> usize {
        ArrayBuilder::len(self)
    }
    fn nulls(&mut self, n: usize) {
        self.append_nulls(n);
    }
    fn array(&mut self) -> ArrayRef {
        Arc::new(self.finish())
    }
}

/// `column`, padded with nulls up to row `row`, ready for that row's value.
fn put<C: Column>(column: &mut C, row: usize) -> &mut C {
    let cells = column.cells();
    if cells < row {
        column.nulls(row - cells);
    }
    column
}

/// `column` as an array of exactly `rows` cells (at most [`ROW_GROUP_ROWS`]);
/// a column nobody wrote is a slice of `all_null`, allocated once.
fn finish_column(column: &mut dyn Column, rows: usize, all_null: &ArrayRef) -> ArrayRef {
    let cells = column.cells();
    if cells == 0 {
        return all_null.slice(0, rows);
    }
    if cells < rows {
        column.nulls(rows - cells);
    }
    column.array()
}

/// A builder for one of [`super::metric::DEFS`]: INT64 or DOUBLE by unit.
enum ExtraBuilder {
    Int(Int64Builder),
    Float(Float64Builder),
}

impl ExtraBuilder {
    fn append(&mut self, value: f64) {
        match self {
            Self::Int(b) => b.append_value(value.round() as i64),
            Self::Float(b) => b.append_value(value),
        }
    }
}

impl Column for ExtraBuilder {
    fn cells(&self) -> usize {
        match self {
            Self::Int(b) => b.cells(),
            Self::Float(b) => b.cells(),
        }
    }
    fn nulls(&mut self, n: usize) {
        match self {
            Self::Int(b) => b.nulls(n),
            Self::Float(b) => b.nulls(n),
        }
    }
    fn array(&mut self) -> ArrayRef {
        match self {
            Self::Int(b) => b.array(),
            Self::Float(b) => b.array(),
        }
    }
}

impl Columns {
    /// Empty builders; the columns every span row fills get a full row
    /// group's capacity up front.
    fn new() -> Self {
        let rows = ROW_GROUP_ROWS;
        Self {
            kind: StringBuilder::with_capacity(rows, rows * 10),
            ts_ns: Int64Builder::with_capacity(rows),
            time: TimestampNanosecondBuilder::with_capacity(rows).with_timezone("UTC"),
            pid: Int32Builder::with_capacity(rows),
            tid: Int32Builder::with_capacity(rows),
            thread_name: StringBuilder::with_capacity(rows, rows * 16),
            span_id: Int64Builder::with_capacity(rows),
            parent_span_id: Int64Builder::with_capacity(rows),
            depth: Int32Builder::with_capacity(rows),
            function: StringBuilder::with_capacity(rows, rows * 32),
            module: StringBuilder::with_capacity(rows, rows * 32),
            start_ns: Int64Builder::with_capacity(rows),
            duration_ns: Int64Builder::with_capacity(rows),
            status: StringBuilder::with_capacity(rows, rows * 2),
            cpu_percent: Float64Builder::new(),
            rss_bytes: Int64Builder::new(),
            threads: Int32Builder::new(),
            extra: super::metric::DEFS
                .iter()
                .map(|def| {
                    if def.unit.is_integer() {
                        ExtraBuilder::Int(Int64Builder::new())
                    } else {
                        ExtraBuilder::Float(Float64Builder::new())
                    }
                })
                .collect(),
            stack: StringBuilder::new(),
            wait: StringBuilder::new(),
        }
    }

    /// The buffered columns as arrays of `rows` cells each, in schema order
    /// (`all_null`: one all-null row group per column); the builders are
    /// left empty.
    fn finish(&mut self, rows: usize, all_null: &[ArrayRef]) -> Vec<ArrayRef> {
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
        columns.extend(self.extra.iter_mut().map(|e| e as &mut dyn Column));
        columns.push(&mut self.stack);
        columns.push(&mut self.wait);
        debug_assert_eq!(columns.len(), all_null.len());
        columns
            .into_iter()
            .zip(all_null)
            .map(|(column, all_null)| finish_column(column, rows, all_null))
            .collect()
    }
}
