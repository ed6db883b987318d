//! The streaming event-log writer: rows go into Arrow column builders and
//! leave as one row group per batch.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{
    ArrayRef, Float64Builder, Int32Builder, Int64Builder, StringBuilder, TimestampNanosecondBuilder,
};
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use parquet::schema::types::ColumnPath;

use super::{
    FunctionInfo, KIND_METRIC, KIND_SPAN_END, KIND_SPAN_START, KIND_STALL, MetricSample,
    ROW_GROUP_ROWS, RecordingMeta, SinkError, col, meta_key, schema,
};
use crate::trace::SpanEvent;

/// Writes the event log of one recording to a Parquet file.
///
/// Rows are buffered until [`ROW_GROUP_ROWS`] have accumulated or
/// [`Self::flush`] is called; each flush writes one row group and pushes it
/// to the kernel. The Parquet footer is written by [`Self::finish`]; if the
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
    buffered: usize,
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
        Ok(Self {
            writer: Some(writer),
            path: path.to_owned(),
            schema,
            functions,
            realtime_offset_ns,
            columns: Columns::new(),
            buffered: 0,
            rows: 0,
        })
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
        let c = &mut self.columns;
        c.kind.append_value(kind);
        c.ts_ns.append_value(ts_ns as i64);
        c.time.append_value(wall(ts_ns, self.realtime_offset_ns));
        c.pid.append_value(pid as i32);
        c.tid.append_value(tid as i32);
        c.thread_name.append_value(thread_name);
        c.span_id.append_value(span_id as i64);
        c.parent_span_id.append_option(parent.map(|p| p as i64));
        c.depth.append_value(depth as i32);
        c.function.append_value(&info.name);
        c.module.append_value(&info.module);
        if let SpanEvent::End(e) = ev {
            c.start_ns.append_value(e.start_ns as i64);
            c.duration_ns.append_value(e.duration_ns() as i64);
            c.status.append_value(e.status.as_str());
        } else {
            c.start_ns.append_null();
            c.duration_ns.append_null();
            c.status.append_null();
        }
        c.cpu_percent.append_null();
        c.rss_bytes.append_null();
        c.threads.append_null();
        for extra in &mut c.extra {
            extra.append(None);
        }
        c.stack.append_null();
        c.wait.append_null();
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
        let c = &mut self.columns;
        c.kind.append_value(KIND_STALL);
        c.ts_ns.append_value(row.ts_ns as i64);
        c.time
            .append_value(wall(row.ts_ns, self.realtime_offset_ns));
        c.pid.append_value(row.pid as i32);
        c.tid.append_value(row.tid as i32);
        c.thread_name.append_value(row.thread_name);
        c.span_id.append_value(row.span_id as i64);
        c.parent_span_id.append_null();
        c.depth.append_value(row.depth as i32);
        c.function.append_value(&info.name);
        c.module.append_value(&info.module);
        c.start_ns.append_value(row.start_ns as i64);
        c.duration_ns
            .append_value(row.ts_ns.saturating_sub(row.start_ns) as i64);
        c.status.append_null();
        c.cpu_percent.append_null();
        c.rss_bytes.append_null();
        c.threads.append_null();
        for extra in &mut c.extra {
            extra.append(None);
        }
        c.stack.append_value(row.stack);
        c.wait.append_value(row.wait);
        self.row_added()
    }

    /// Append a `METRIC` row.
    pub fn write_metric(&mut self, m: &MetricSample) -> Result<(), SinkError> {
        let c = &mut self.columns;
        c.kind.append_value(KIND_METRIC);
        c.ts_ns.append_value(m.ts_ns as i64);
        c.time.append_value(wall(m.ts_ns, self.realtime_offset_ns));
        c.pid.append_value(m.pid as i32);
        c.tid.append_null();
        c.thread_name.append_value(&m.process_name);
        c.span_id.append_null();
        c.parent_span_id.append_null();
        c.depth.append_null();
        c.function.append_null();
        c.module.append_null();
        c.start_ns.append_null();
        c.duration_ns.append_null();
        c.status.append_null();
        c.cpu_percent.append_option(m.cpu_percent);
        c.rss_bytes.append_option(m.rss_bytes.map(|b| b as i64));
        c.threads.append_option(m.threads.map(|t| t as i32));
        for (builder, value) in c.extra.iter_mut().zip(m.extra) {
            builder.append(value);
        }
        c.stack.append_null();
        c.wait.append_null();
        self.row_added()
    }

    /// Rows accepted so far (written or still buffered).
    pub fn rows_written(&self) -> u64 {
        self.rows
    }

    /// Write the buffered rows as a row group and hand them to the kernel,
    /// so a crash from here on loses only later rows. A no-op when nothing
    /// is buffered.
    pub fn flush(&mut self) -> Result<(), SinkError> {
        if self.buffered == 0 {
            return Ok(());
        }
        let batch = RecordBatch::try_new(Arc::clone(&self.schema), self.columns.finish()).map_err(
            |source| SinkError::Arrow {
                path: self.path.clone(),
                source,
            },
        )?;
        self.buffered = 0;
        let writer = self
            .writer
            .as_mut()
            .expect("writer is only taken by finish/drop");
        writer
            .write(&batch)
            .and_then(|()| writer.flush())
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
        self.flush()?;
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
            self.flush()?;
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
            let _ = self.flush();
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
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .set_key_value_metadata(Some(metadata));
    for column in [col::TS_NS, col::TIME, col::SPAN_ID, col::START_NS] {
        let path = ColumnPath::from(column);
        props = props
            .set_column_dictionary_enabled(path.clone(), false)
            .set_column_encoding(path, Encoding::DELTA_BINARY_PACKED);
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

/// A builder for one of [`super::metric::DEFS`]: INT64 or DOUBLE by unit.
enum ExtraBuilder {
    Int(Int64Builder),
    Float(Float64Builder),
}

impl ExtraBuilder {
    fn append(&mut self, value: Option<f64>) {
        match self {
            Self::Int(b) => b.append_option(value.map(|v| v.round() as i64)),
            Self::Float(b) => b.append_option(value),
        }
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            Self::Int(b) => Arc::new(b.finish()),
            Self::Float(b) => Arc::new(b.finish()),
        }
    }
}

impl Columns {
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

    /// The buffered columns as arrays; the builders are left empty.
    fn finish(&mut self) -> Vec<ArrayRef> {
        let mut arrays: Vec<ArrayRef> = vec![
            Arc::new(self.kind.finish()),
            Arc::new(self.ts_ns.finish()),
            Arc::new(self.time.finish()),
            Arc::new(self.pid.finish()),
            Arc::new(self.tid.finish()),
            Arc::new(self.thread_name.finish()),
            Arc::new(self.span_id.finish()),
            Arc::new(self.parent_span_id.finish()),
            Arc::new(self.depth.finish()),
            Arc::new(self.function.finish()),
            Arc::new(self.module.finish()),
            Arc::new(self.start_ns.finish()),
            Arc::new(self.duration_ns.finish()),
            Arc::new(self.status.finish()),
            Arc::new(self.cpu_percent.finish()),
            Arc::new(self.rss_bytes.finish()),
            Arc::new(self.threads.finish()),
        ];
        arrays.extend(self.extra.iter_mut().map(ExtraBuilder::finish));
        arrays.push(Arc::new(self.stack.finish()));
        arrays.push(Arc::new(self.wait.finish()));
        arrays
    }
}
