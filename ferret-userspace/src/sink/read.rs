//! Reading an event log back into plain rows, for tests and post-mortem
//! analysis.
//!
//! Columns are found by name and cast to the contract's types, so a file
//! rewritten by another tool (`DuckDB`, pandas: dictionary or view strings,
//! columns in another order, extra columns) still reads.

use std::collections::HashMap;
use std::fs::File;
use std::path::Path;

use arrow::array::{Array, ArrayRef, AsArray, PrimitiveArray, StringArray};
use arrow::compute::cast;
use arrow::datatypes::{ArrowPrimitiveType, DataType, Float64Type, Int32Type, Int64Type, TimeUnit};
use arrow::record_batch::RecordBatch;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::errors::ParquetError;
use parquet::file::reader::{FileReader, SerializedFileReader};

use super::{SinkError, col};

/// One row of the event log, one field per column: `None` where the row's
/// value is null or the file lacks the column. (`kind`, `ts_ns`, `time` and
/// `pid` are never null in a file ferret wrote.)
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    /// `SPAN_START`, `SPAN_END`, `METRIC` or `STALL`.
    pub kind: Option<String>,
    /// Event time, `CLOCK_MONOTONIC` ns.
    pub ts_ns: Option<i64>,
    /// Event time on the wall clock: ns since the Unix epoch, UTC.
    pub time: Option<i64>,
    /// Process id.
    pub pid: Option<i32>,
    /// Thread id.
    pub tid: Option<i32>,
    /// Thread name (process name on METRIC rows).
    pub thread_name: Option<String>,
    /// Span id.
    pub span_id: Option<i64>,
    /// The enclosing span.
    pub parent_span_id: Option<i64>,
    /// Nesting depth on the thread.
    pub depth: Option<i32>,
    /// Function name.
    pub function: Option<String>,
    /// Binary or library path.
    pub module: Option<String>,
    /// `SPAN_END`: the span's start.
    pub start_ns: Option<i64>,
    /// `SPAN_END`: end minus start.
    pub duration_ns: Option<i64>,
    /// `SPAN_END`: `ok`, `unwound` or `open`.
    pub status: Option<String>,
    /// METRIC: CPU percent (100 = one core).
    pub cpu_percent: Option<f64>,
    /// METRIC: resident memory.
    pub rss_bytes: Option<i64>,
    /// METRIC: thread count.
    pub threads: Option<i32>,
    /// METRIC: the extra metrics of [`super::metric::DEFS`], by index.
    pub extra: [Option<f64>; super::metric::COUNT],
    /// STALL: the stalled thread's stack, one frame per line.
    pub stack: Option<String>,
    /// STALL: state, system call and what the thread waits for.
    pub wait: Option<String>,
    /// SPAN_END: ferret's estimated probe time inside the span.
    pub overhead_ns: Option<i64>,
    /// SPAN_END: the call's own probe time outside its duration.
    pub overhead_outside_ns: Option<i64>,
    /// SPAN_*: the Go goroutine whose call it is.
    pub goroutine: Option<i64>,
    /// STALL: the group of stalls the row belongs to.
    pub stall_group: Option<i64>,
    /// SPAN_END: time on a CPU.
    pub cpu_ns: Option<i64>,
    /// SPAN_END: time ready, waiting for a CPU.
    pub runnable_ns: Option<i64>,
    /// SPAN_END: time blocked.
    pub blocked_ns: Option<i64>,
    /// SPAN_END: the system call most blocked time was spent in.
    pub blocked_in: Option<String>,
}

/// Runs one step of the Parquet reader, turning a panic inside it into an
/// error: arrow-rs asserts on some corrupt inputs (a flipped byte in a
/// page header, a footer whose counts lie) instead of returning an error,
/// and a damaged file must be a one-line `error:`, never a crash. The
/// panic's message is kept out of stderr.
pub(crate) fn contained<T, E: From<ParquetError>>(
    step: impl FnOnce() -> Result<T, E>,
) -> Result<T, E> {
    thread_local! {
        static CONTAINING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }
    static QUIET_HOOK: std::sync::Once = std::sync::Once::new();
    QUIET_HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !CONTAINING.with(std::cell::Cell::get) {
                previous(info);
            }
        }));
    });
    CONTAINING.with(|c| c.set(true));
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(step));
    CONTAINING.with(|c| c.set(false));
    outcome.unwrap_or_else(|panic| {
        let why = panic
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| panic.downcast_ref::<&str>().copied())
            .unwrap_or("the reader gave up");
        Err(ParquetError::General(format!("the file is damaged ({why})")).into())
    })
}

/// Read every row of the event log at `path`, in file order.
pub fn read_all(path: &Path) -> Result<Vec<Row>, SinkError> {
    let file = File::open(path).map_err(|source| SinkError::Open {
        path: path.to_owned(),
        source,
    })?;
    let read_err = |source| SinkError::Read {
        path: path.to_owned(),
        source,
    };
    let mut reader = contained(|| {
        ParquetRecordBatchReaderBuilder::try_new(file)?
            .with_batch_size(super::ROW_GROUP_ROWS)
            .build()
    })
    .map_err(read_err)?;
    let mut rows = Vec::new();
    while let Some(batch) =
        contained(|| reader.next().transpose().map_err(ParquetError::from)).map_err(read_err)?
    {
        Batch::new(path, &batch)?.rows(&mut rows);
    }
    Ok(rows)
}

/// The file's key-value metadata: ferret's own keys (see
/// [`super::meta_key`]), any extras, and whatever else the writer library
/// stored (such as `ARROW:schema`).
pub fn read_metadata(path: &Path) -> Result<HashMap<String, String>, SinkError> {
    let file = File::open(path).map_err(|source| SinkError::Open {
        path: path.to_owned(),
        source,
    })?;
    let reader =
        contained(|| SerializedFileReader::new(file)).map_err(|source| SinkError::Read {
            path: path.to_owned(),
            source,
        })?;
    Ok(reader
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .into_iter()
        .flatten()
        .map(|kv| (kv.key.clone(), kv.value.clone().unwrap_or_default()))
        .collect())
}

/// One batch's columns, cast to the contract's types.
struct Batch {
    len: usize,
    kind: StringArray,
    ts_ns: Option<PrimitiveArray<Int64Type>>,
    time: Option<PrimitiveArray<Int64Type>>,
    pid: Option<PrimitiveArray<Int32Type>>,
    tid: Option<PrimitiveArray<Int32Type>>,
    thread_name: Option<StringArray>,
    span_id: Option<PrimitiveArray<Int64Type>>,
    parent_span_id: Option<PrimitiveArray<Int64Type>>,
    depth: Option<PrimitiveArray<Int32Type>>,
    function: Option<StringArray>,
    module: Option<StringArray>,
    start_ns: Option<PrimitiveArray<Int64Type>>,
    duration_ns: Option<PrimitiveArray<Int64Type>>,
    status: Option<StringArray>,
    cpu_percent: Option<PrimitiveArray<Float64Type>>,
    rss_bytes: Option<PrimitiveArray<Int64Type>>,
    threads: Option<PrimitiveArray<Int32Type>>,
    extra: Vec<Option<PrimitiveArray<Float64Type>>>,
    stack: Option<StringArray>,
    wait: Option<StringArray>,
    overhead_ns: Option<PrimitiveArray<Int64Type>>,
    overhead_outside_ns: Option<PrimitiveArray<Int64Type>>,
    goroutine: Option<PrimitiveArray<Int64Type>>,
    stall_group: Option<PrimitiveArray<Int64Type>>,
    cpu_ns: Option<PrimitiveArray<Int64Type>>,
    runnable_ns: Option<PrimitiveArray<Int64Type>>,
    blocked_ns: Option<PrimitiveArray<Int64Type>>,
    blocked_in: Option<StringArray>,
}

impl Batch {
    fn new(path: &Path, batch: &RecordBatch) -> Result<Self, SinkError> {
        let get = |name: &'static str, to: &DataType| -> Result<Option<ArrayRef>, SinkError> {
            let Some(column) = batch.column_by_name(name) else {
                return Ok(None);
            };
            // A timestamp becomes its i64 value in ns since the epoch, whatever
            // unit a rewriting tool chose.
            let column = match column.data_type() {
                DataType::Timestamp(unit, _) if *unit != TimeUnit::Nanosecond => {
                    cast(column, &DataType::Timestamp(TimeUnit::Nanosecond, None)).map_err(
                        |source| SinkError::Arrow {
                            path: path.to_owned(),
                            source,
                        },
                    )?
                }
                _ => column.clone(),
            };
            cast(&column, to)
                .map(Some)
                .map_err(|source| SinkError::Arrow {
                    path: path.to_owned(),
                    source,
                })
        };
        let string = |name| {
            Ok::<_, SinkError>(get(name, &DataType::Utf8)?.map(|a| a.as_string::<i32>().clone()))
        };
        let i64s = |name| Ok::<_, SinkError>(prim::<Int64Type>(get(name, &DataType::Int64)?));
        let i32s = |name| Ok::<_, SinkError>(prim::<Int32Type>(get(name, &DataType::Int32)?));
        // `kind` is what makes the file an event log; without it every
        // row would read as all `None`.
        let missing = || SinkError::Column {
            path: path.to_owned(),
            column: col::KIND,
            problem: "is missing: not a ferret event log",
        };
        Ok(Self {
            len: batch.num_rows(),
            kind: string(col::KIND)?.ok_or_else(missing)?,
            ts_ns: i64s(col::TS_NS)?,
            time: i64s(col::TIME)?,
            pid: i32s(col::PID)?,
            tid: i32s(col::TID)?,
            thread_name: string(col::THREAD_NAME)?,
            span_id: i64s(col::SPAN_ID)?,
            parent_span_id: i64s(col::PARENT_SPAN_ID)?,
            depth: i32s(col::DEPTH)?,
            function: string(col::FUNCTION)?,
            module: string(col::MODULE)?,
            start_ns: i64s(col::START_NS)?,
            duration_ns: i64s(col::DURATION_NS)?,
            status: string(col::STATUS)?,
            cpu_percent: prim::<Float64Type>(get(col::CPU_PERCENT, &DataType::Float64)?),
            rss_bytes: i64s(col::RSS_BYTES)?,
            threads: i32s(col::THREADS)?,
            extra: super::metric::DEFS
                .iter()
                .map(|def| Ok(prim::<Float64Type>(get(def.column, &DataType::Float64)?)))
                .collect::<Result<_, SinkError>>()?,
            stack: string(col::STACK)?,
            wait: string(col::WAIT)?,
            overhead_ns: i64s(col::OVERHEAD_NS)?,
            overhead_outside_ns: i64s(col::OVERHEAD_OUTSIDE_NS)?,
            goroutine: i64s(col::GOROUTINE)?,
            stall_group: i64s(col::STALL_GROUP)?,
            cpu_ns: i64s(col::CPU_NS)?,
            runnable_ns: i64s(col::RUNNABLE_NS)?,
            blocked_ns: i64s(col::BLOCKED_NS)?,
            blocked_in: string(col::BLOCKED_IN)?,
        })
    }

    fn rows(&self, out: &mut Vec<Row>) {
        out.reserve(self.len);
        for i in 0..self.len {
            out.push(Row {
                kind: string_at(Some(&self.kind), i),
                ts_ns: prim_at(self.ts_ns.as_ref(), i),
                time: prim_at(self.time.as_ref(), i),
                pid: prim_at(self.pid.as_ref(), i),
                tid: prim_at(self.tid.as_ref(), i),
                thread_name: string_at(self.thread_name.as_ref(), i),
                span_id: prim_at(self.span_id.as_ref(), i),
                parent_span_id: prim_at(self.parent_span_id.as_ref(), i),
                depth: prim_at(self.depth.as_ref(), i),
                function: string_at(self.function.as_ref(), i),
                module: string_at(self.module.as_ref(), i),
                start_ns: prim_at(self.start_ns.as_ref(), i),
                duration_ns: prim_at(self.duration_ns.as_ref(), i),
                status: string_at(self.status.as_ref(), i),
                cpu_percent: prim_at(self.cpu_percent.as_ref(), i),
                rss_bytes: prim_at(self.rss_bytes.as_ref(), i),
                threads: prim_at(self.threads.as_ref(), i),
                extra: std::array::from_fn(|k| prim_at(self.extra[k].as_ref(), i)),
                stack: string_at(self.stack.as_ref(), i),
                wait: string_at(self.wait.as_ref(), i),
                overhead_ns: prim_at(self.overhead_ns.as_ref(), i),
                overhead_outside_ns: prim_at(self.overhead_outside_ns.as_ref(), i),
                goroutine: prim_at(self.goroutine.as_ref(), i),
                stall_group: prim_at(self.stall_group.as_ref(), i),
                cpu_ns: prim_at(self.cpu_ns.as_ref(), i),
                runnable_ns: prim_at(self.runnable_ns.as_ref(), i),
                blocked_ns: prim_at(self.blocked_ns.as_ref(), i),
                blocked_in: string_at(self.blocked_in.as_ref(), i),
            });
        }
    }
}

fn prim<T: ArrowPrimitiveType>(array: Option<ArrayRef>) -> Option<PrimitiveArray<T>> {
    array.map(|a| a.as_primitive::<T>().clone())
}

fn string_at(array: Option<&StringArray>, i: usize) -> Option<String> {
    array
        .filter(|a| a.is_valid(i))
        .map(|a| a.value(i).to_owned())
}

fn prim_at<T: ArrowPrimitiveType>(
    array: Option<&PrimitiveArray<T>>,
    i: usize,
) -> Option<T::Native> {
    array.filter(|a| a.is_valid(i)).map(|a| a.value(i))
}
