//! Streaming replay of a recording's span lifecycle.
//!
//! Analysis and every export walk the same thing: each thread's call stack
//! as it grew and shrank. [`Recording::replay`] reads the event log one
//! record batch at a time (only the columns it needs, found by name),
//! rebuilds the per-thread stacks from the `SPAN_START`/`SPAN_END` rows, and
//! hands a [`Visitor`] every span twice: when it starts (with its parent's
//! visitor state, so trees and folded stacks can be built) and when it ends
//! (with its self time: duration minus the time in its traced direct
//! children). Memory holds one batch, the open stacks, and whatever the
//! visitor keeps, never the whole file. String columns are decoded as
//! dictionaries, so the few distinct kinds, functions and thread names are
//! resolved once per batch rather than compared per row. The one part of
//! memory that grows with the file is Parquet's footer, which the reader
//! needs whole: about 17 KiB per row group of 65,536 rows (some 2 % of the
//! file; 52 MiB for a 2.8 GB recording).
//!
//! The replay keeps the stacks well nested whatever the file says, so
//! consumers (speedscope in particular) can rely on it:
//! - a span whose `SPAN_END` never came (the recording was cut short: the
//!   writer was dropped before `finish`) ends at the recording's last
//!   timestamp, innermost first, with [`Status::Cut`];
//! - a `SPAN_END` for a span below the top of its thread's stack first ends
//!   the spans above it, as [`Status::Unwound`], at the same instant (their
//!   own `SPAN_END`s, if they come later, are dropped);
//! - a `SPAN_END` with no `SPAN_START` before it goes to
//!   [`Visitor::orphan`], outside any stack.
//!
//! Rows must be in the order ferret wrote them (causal order per thread);
//! rows of other kinds (`METRIC`, `STALL`, later ones) and unknown columns
//! are ignored.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Int32Array, Int64Array, StringArray};
use arrow::compute::{can_cast_types, cast};
use arrow::datatypes::{DataType, Field, Int32Type, Int64Type, Schema};
use arrow::record_batch::RecordBatch;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder,
};
use parquet::file::metadata::ParquetStatisticsPolicy;
use parquet::file::statistics::Statistics;

use crate::fxhash::FxMap;
use crate::sink::{KIND_SPAN_END, KIND_SPAN_START, col, meta_key};

/// Rows per record batch: one batch is all of the file in memory at once.
pub const BATCH_ROWS: usize = 64 * 1024;

/// Why a recording could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The file could not be opened (missing, no permission…).
    #[error("cannot open {}", path.display())]
    Open {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not Parquet, or its footer is missing (a recorder killed
    /// with SIGKILL leaves no footer).
    #[error(
        "{} is not a ferret recording: not a Parquet file, or one whose writing was cut off \
         before its footer",
        path.display()
    )]
    NotParquet {
        /// The file.
        path: PathBuf,
        /// What the Parquet reader said.
        #[source]
        source: parquet::errors::ParquetError,
    },
    /// The file is Parquet but lacks a column every recording has.
    #[error("{} is not a ferret recording: it has no `{column}` column", path.display())]
    MissingColumn {
        /// The file.
        path: PathBuf,
        /// The missing column.
        column: &'static str,
    },
    /// A column holds a type that cannot mean what the contract says.
    #[error(
        "{} is not a ferret recording: column `{column}` holds {found}, not {expected}",
        path.display()
    )]
    ColumnType {
        /// The file.
        path: PathBuf,
        /// The column.
        column: &'static str,
        /// Its type in the file.
        found: DataType,
        /// The contract's type.
        expected: DataType,
    },
    /// Reading or decoding failed part-way (a damaged file, an I/O error).
    #[error("reading {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: parquet::errors::ParquetError,
    },
}

/// Columns the replay reads, with their contract types and whether a file
/// without them can still be replayed.
const COLUMNS: &[(&str, DataType, bool)] = &[
    (col::KIND, DataType::Utf8, true),
    (col::TS_NS, DataType::Int64, true),
    (col::TID, DataType::Int32, true),
    (col::SPAN_ID, DataType::Int64, true),
    (col::FUNCTION, DataType::Utf8, true),
    (col::PID, DataType::Int32, false),
    (col::THREAD_NAME, DataType::Utf8, false),
    (col::MODULE, DataType::Utf8, false),
    (col::START_NS, DataType::Int64, false),
    (col::STATUS, DataType::Utf8, false),
];

/// A recording opened for reading: the footer has been read and the
/// columns checked; the rows are read by [`Recording::replay`].
#[derive(Clone, Debug)]
pub struct Recording {
    path: PathBuf,
    info: RecordingInfo,
    /// Root column indices to read.
    projection: Vec<usize>,
    /// The footer, parsed once: it is the one part of the file whose size
    /// grows with the file (about 17 KiB per row group).
    metadata: ArrowReaderMetadata,
}

/// What the footer says about a recording.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecordingInfo {
    /// Rows in the file.
    pub rows: u64,
    /// Row groups in the file.
    pub row_groups: usize,
    /// ferret's version that wrote it.
    pub version: Option<String>,
    /// The target as given to `ferret record`.
    pub target: Option<String>,
    /// The probe patterns.
    pub probes: Option<String>,
    /// Events the kernel reported lost.
    pub lost_events: Option<u64>,
    /// `Some(false)` when the writer never finished (the tail may be missing).
    pub complete: Option<bool>,
    /// The earliest `ts_ns`, from the column statistics, when present.
    pub first_ts_ns: Option<i64>,
    /// The latest `ts_ns`, from the column statistics, when present.
    pub last_ts_ns: Option<i64>,
}

impl Recording {
    /// Open `path` and check that it is a ferret event log.
    pub fn open(path: &Path) -> Result<Self, ReadError> {
        let plain = load_metadata(path)?;
        let schema = plain.schema();
        let mut projection = Vec::new();
        for (name, expected, required) in COLUMNS {
            match schema.index_of(name) {
                Ok(index) => {
                    let found = schema.field(index).data_type();
                    if !castable(found, expected) {
                        return Err(ReadError::ColumnType {
                            path: path.to_owned(),
                            column: name,
                            found: found.clone(),
                            expected: expected.clone(),
                        });
                    }
                    projection.push(index);
                }
                Err(_) if *required => {
                    return Err(ReadError::MissingColumn {
                        path: path.to_owned(),
                        column: name,
                    });
                }
                Err(_) => {}
            }
        }
        let info = footer_info(&plain, schema);
        Ok(Self {
            path: path.to_owned(),
            info,
            projection,
            metadata: with_dictionaries(plain),
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What the footer says.
    pub fn info(&self) -> &RecordingInfo {
        &self.info
    }

    /// Read the whole file once, in order, feeding `visitor`; `progress` is
    /// called after each batch with the rows read so far.
    ///
    /// With `thread`, only spans of that thread id are replayed (the last
    /// timestamp still comes from every row).
    pub fn replay<V: Visitor>(
        &self,
        thread: Option<i32>,
        visitor: &mut V,
        progress: &mut dyn FnMut(u64),
    ) -> Result<Summary, ReadError> {
        let read_err = |source| ReadError::Read {
            path: self.path.clone(),
            source,
        };
        let file = File::open(&self.path).map_err(|source| ReadError::Open {
            path: self.path.clone(),
            source,
        })?;
        let builder =
            ParquetRecordBatchReaderBuilder::new_with_metadata(file, self.metadata.clone());
        let mask = ProjectionMask::roots(builder.parquet_schema(), self.projection.iter().copied());
        let reader = builder
            .with_projection(mask)
            .with_batch_size(BATCH_ROWS)
            .build()
            .map_err(read_err)?;
        let mut replayer = Replayer::new(thread);
        let mut rows = 0u64;
        for batch in reader {
            let batch = batch.map_err(|e| read_err(e.into()))?;
            let columns = Columns::new(&batch).map_err(read_err)?;
            replayer.batch(&columns, visitor);
            rows += batch.num_rows() as u64;
            progress(rows);
        }
        replayer.summary.rows = rows;
        Ok(replayer.finish(visitor))
    }
}

/// Parse the footer, skipping the statistics nothing here reads (page
/// encodings, sizes): the footer is held for the whole replay.
fn load_metadata(path: &Path) -> Result<ArrowReaderMetadata, ReadError> {
    let file = File::open(path).map_err(|source| ReadError::Open {
        path: path.to_owned(),
        source,
    })?;
    // Opening a directory succeeds; reading it does not. Say so plainly.
    if file.metadata().is_ok_and(|m| m.is_dir()) {
        return Err(ReadError::Open {
            path: path.to_owned(),
            source: std::io::Error::from(std::io::ErrorKind::IsADirectory),
        });
    }
    let options = ArrowReaderOptions::new()
        .with_encoding_stats_policy(ParquetStatisticsPolicy::SkipAll)
        .with_size_stats_policy(ParquetStatisticsPolicy::SkipAll);
    ArrowReaderMetadata::load(&file, options).map_err(|source| ReadError::NotParquet {
        path: path.to_owned(),
        source,
    })
}

/// The same footer, read so that the string columns decode straight into
/// dictionary arrays (as Parquet stores them) instead of one string per
/// row; a file whose types do not allow it reads as it is.
fn with_dictionaries(plain: ArrowReaderMetadata) -> ArrowReaderMetadata {
    let schema = plain.schema();
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| {
            let string = matches!(f.data_type(), DataType::Utf8 | DataType::LargeUtf8);
            let ours = [
                col::KIND,
                col::FUNCTION,
                col::MODULE,
                col::THREAD_NAME,
                col::STATUS,
            ]
            .contains(&f.name().as_str());
            if string && ours {
                f.as_ref().clone().with_data_type(dictionary_type())
            } else {
                f.as_ref().clone()
            }
        })
        .collect();
    let hinted = Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()));
    // Shares the parsed footer: no second copy.
    ArrowReaderMetadata::try_new(
        Arc::clone(plain.metadata()),
        ArrowReaderOptions::new().with_schema(hinted),
    )
    .unwrap_or(plain)
}

/// Whether a column of type `found` reads as `expected`: strings of any
/// layout (dictionary, large, view) as strings, integers as integers.
fn castable(found: &DataType, expected: &DataType) -> bool {
    let numeric = |t: &DataType| t.is_integer() || matches!(t, DataType::Timestamp(..));
    let stringy = |t: &DataType| match t {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => true,
        DataType::Dictionary(_, value) => {
            matches!(
                **value,
                DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
            )
        }
        _ => false,
    };
    let kind_ok = if *expected == DataType::Utf8 {
        stringy(found)
    } else {
        numeric(found) || matches!(found, DataType::Null)
    };
    kind_ok && can_cast_types(found, expected)
}

fn footer_info(plain: &ArrowReaderMetadata, schema: &Schema) -> RecordingInfo {
    let metadata = plain.metadata();
    let file_meta = metadata.file_metadata();
    let kv: HashMap<&str, &str> = file_meta
        .key_value_metadata()
        .into_iter()
        .flatten()
        .map(|kv| (kv.key.as_str(), kv.value.as_deref().unwrap_or_default()))
        .collect();
    let text = |key: &str| kv.get(key).map(|v| (*v).to_owned());
    let (mut first, mut last) = (None::<i64>, None::<i64>);
    if let Ok(ts_index) = schema.index_of(col::TS_NS) {
        for group in metadata.row_groups() {
            // Statistics are optional (another writer may omit them); the
            // replay then falls back to what it sees.
            let Some(Statistics::Int64(stats)) =
                group.columns().get(ts_index).and_then(|c| c.statistics())
            else {
                first = None;
                last = None;
                break;
            };
            if let (Some(&lo), Some(&hi)) = (stats.min_opt(), stats.max_opt()) {
                first = Some(first.map_or(lo, |f| f.min(lo)));
                last = Some(last.map_or(hi, |l| l.max(hi)));
            }
        }
    }
    RecordingInfo {
        rows: u64::try_from(file_meta.num_rows()).unwrap_or(0),
        row_groups: metadata.num_row_groups(),
        version: text(meta_key::VERSION),
        target: text(meta_key::TARGET),
        probes: text(meta_key::PROBES),
        lost_events: kv.get(meta_key::LOST_EVENTS).and_then(|v| v.parse().ok()),
        complete: kv.get(meta_key::COMPLETE).and_then(|v| v.parse().ok()),
        first_ts_ns: first,
        last_ts_ns: last,
    }
}

/// Index of a function in [`Names`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FnIx(pub u32);

/// Index of a thread in [`Names`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ThreadIx(pub u32);

/// A traced function.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Function {
    /// Demangled name.
    pub name: String,
    /// Binary or library path (empty when the file has no `module`).
    pub module: String,
}

/// A thread seen in the recording.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Thread {
    /// Process id (0 when the file has no `pid`).
    pub pid: i32,
    /// Thread id.
    pub tid: i32,
    /// Its latest name.
    pub name: String,
}

/// The functions and threads met so far, interned: spans refer to them by
/// index, so a visitor keeps a few bytes per span, not strings.
#[derive(Clone, Debug, Default)]
pub struct Names {
    functions: Vec<Function>,
    /// name → (module, index) pairs; one name rarely has two modules.
    function_index: HashMap<String, Vec<(String, FnIx)>>,
    threads: Vec<Thread>,
    thread_index: FxMap<(i32, i32), ThreadIx>,
}

impl Names {
    /// The function at `ix`.
    pub fn function(&self, ix: FnIx) -> &Function {
        &self.functions[ix.0 as usize]
    }

    /// The thread at `ix`.
    pub fn thread(&self, ix: ThreadIx) -> &Thread {
        &self.threads[ix.0 as usize]
    }

    /// Every function, in order of first appearance.
    pub fn functions(&self) -> &[Function] {
        &self.functions
    }

    /// Every thread, in order of first appearance.
    pub fn threads(&self) -> &[Thread] {
        &self.threads
    }

    /// A label per function: its name, or `name [library]` when two traced
    /// functions share the name (a `malloc` in the program and in libc).
    pub fn labels(&self) -> Vec<String> {
        self.functions
            .iter()
            .map(|f| {
                let shared = self
                    .function_index
                    .get(&f.name)
                    .is_some_and(|modules| modules.len() > 1);
                if shared {
                    let file = Path::new(&f.module)
                        .file_name()
                        .map_or_else(|| f.module.clone(), |n| n.to_string_lossy().into_owned());
                    format!("{} [{file}]", f.name)
                } else {
                    f.name.clone()
                }
            })
            .collect()
    }

    /// Intern a function (public for tests that build spans by hand).
    pub fn intern_function(&mut self, name: &str, module: &str) -> FnIx {
        if let Some(modules) = self.function_index.get(name)
            && let Some(&(_, ix)) = modules.iter().find(|(m, _)| m == module)
        {
            return ix;
        }
        let ix = FnIx(self.functions.len() as u32);
        self.functions.push(Function {
            name: name.to_owned(),
            module: module.to_owned(),
        });
        self.function_index
            .entry(name.to_owned())
            .or_default()
            .push((module.to_owned(), ix));
        ix
    }

    /// Intern a thread (public for tests that build spans by hand).
    ///
    /// A thread that renames itself (most do, right after they start) is
    /// shown under its latest name.
    pub fn intern_thread(&mut self, pid: i32, tid: i32, name: &str) -> ThreadIx {
        let ix = self.thread_ix(pid, tid);
        self.rename_thread(ix, name);
        ix
    }

    fn thread_ix(&mut self, pid: i32, tid: i32) -> ThreadIx {
        *self.thread_index.entry((pid, tid)).or_insert_with(|| {
            self.threads.push(Thread {
                pid,
                tid,
                name: String::new(),
            });
            ThreadIx(self.threads.len() as u32 - 1)
        })
    }

    fn rename_thread(&mut self, ix: ThreadIx, name: &str) {
        let thread = &mut self.threads[ix.0 as usize];
        if thread.name != name && !name.is_empty() {
            name.clone_into(&mut thread.name);
        }
    }
}

/// How a span ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Status {
    /// The function returned.
    Ok,
    /// Left without a return (exception, panic, longjmp, thread exit), or
    /// ended by the replay because an enclosing span ended first.
    Unwound,
    /// Still running when the recording stopped; ends at the stop.
    Open,
    /// No `SPAN_END` in the file (it was cut short); ends at the
    /// recording's last timestamp.
    Cut,
}

impl Status {
    /// The word used in output: the `status` column's, plus `cut`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Unwound => "unwound",
            Self::Open => "open",
            Self::Cut => "cut",
        }
    }

    fn parse(text: Option<&str>) -> Self {
        match text {
            Some("unwound") => Self::Unwound,
            Some("open") => Self::Open,
            // `ok`, null, or a word a later version added: a plain end.
            _ => Self::Ok,
        }
    }
}

/// A span that just started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Started {
    /// Its `span_id`.
    pub id: i64,
    /// Its thread.
    pub thread: ThreadIx,
    /// Its function.
    pub function: FnIx,
    /// Start, `CLOCK_MONOTONIC` ns.
    pub start_ns: i64,
    /// Stack depth below it on its thread (0: a root).
    pub depth: u32,
}

/// A span that just ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ended {
    /// Its `span_id`.
    pub id: i64,
    /// Its thread.
    pub thread: ThreadIx,
    /// Its function.
    pub function: FnIx,
    /// Start, `CLOCK_MONOTONIC` ns.
    pub start_ns: i64,
    /// End, `CLOCK_MONOTONIC` ns (never before `start_ns`).
    pub end_ns: i64,
    /// How it ended.
    pub status: Status,
    /// Duration minus the durations of its traced direct children.
    pub self_ns: u64,
    /// Stack depth below it on its thread (0: a root; 0 for orphans).
    pub depth: u32,
}

impl Ended {
    /// `end_ns - start_ns`.
    pub fn duration_ns(&self) -> u64 {
        self.end_ns.abs_diff(self.start_ns)
    }
}

/// What a replay consumer does with spans.
pub trait Visitor {
    /// State kept for each open span (a tree node, a stack path…).
    type Frame;

    /// A span started; `parent` is the state of the span enclosing it on
    /// its thread. Returns the state to keep for it.
    fn start(
        &mut self,
        names: &Names,
        span: &Started,
        parent: Option<&mut Self::Frame>,
    ) -> Self::Frame;

    /// A span ended; `frame` is what [`Self::start`] returned for it and
    /// `parent` the enclosing span's state. Children always end first.
    fn end(
        &mut self,
        names: &Names,
        span: &Ended,
        frame: Self::Frame,
        parent: Option<&mut Self::Frame>,
    );

    /// A `SPAN_END` with no `SPAN_START` before it: a call whose duration
    /// is known but whose place in the stack is not.
    fn orphan(&mut self, names: &Names, span: &Ended) {
        let _ = (names, span);
    }
}

/// What a replay saw.
#[derive(Clone, Debug, Default)]
pub struct Summary {
    /// Rows read.
    pub rows: u64,
    /// Spans replayed (started and ended), over the selected threads.
    pub spans: u64,
    /// `SPAN_END`s without a `SPAN_START` (see [`Visitor::orphan`]).
    pub orphans: u64,
    /// Spans ended by the replay because an enclosing span ended first.
    pub forced: u64,
    /// Spans with no `SPAN_END`, ended at the last timestamp.
    pub cut: u64,
    /// Span rows without a thread id or span id, skipped.
    pub malformed: u64,
    /// The earliest `ts_ns` of any row.
    pub first_ts_ns: Option<i64>,
    /// The latest `ts_ns` of any row.
    pub last_ts_ns: Option<i64>,
    /// Every thread id seen, when replaying one thread (to suggest others
    /// when it has none).
    pub other_tids: Vec<i32>,
    /// The functions and threads of the replayed spans.
    pub names: Names,
}

/// A string column as a dictionary: per row a key, per batch a few values.
/// Recordings repeat a handful of strings (kinds, function and thread
/// names) millions of times, so the replay resolves each distinct value
/// once per batch instead of comparing or hashing strings per row.
struct Strings {
    keys: Int32Array,
    values: StringArray,
}

impl Strings {
    fn new(array: &ArrayRef) -> Result<Self, arrow::error::ArrowError> {
        let dict = cast(array, &dictionary_type())?;
        let dict = dict.as_dictionary::<Int32Type>();
        let values = cast(dict.values(), &DataType::Utf8)?;
        Ok(Self {
            keys: dict.keys().clone(),
            values: values.as_string::<i32>().clone(),
        })
    }

    /// The row's key, `None` when null.
    fn key(&self, i: usize) -> Option<usize> {
        self.keys
            .is_valid(i)
            .then(|| self.keys.value(i) as usize)
            .filter(|&k| k < self.values.len() && self.values.is_valid(k))
    }

    fn value(&self, key: usize) -> &str {
        self.values.value(key)
    }

    /// One entry per distinct value.
    fn map<T>(&self, f: impl Fn(&str) -> T) -> Vec<T> {
        (0..self.values.len())
            .map(|k| {
                f(if self.values.is_valid(k) {
                    self.values.value(k)
                } else {
                    ""
                })
            })
            .collect()
    }
}

fn dictionary_type() -> DataType {
    DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8))
}

/// One batch's columns, cast to the contract's types.
struct Columns {
    len: usize,
    kind: Strings,
    ts_ns: Int64Array,
    tid: Int32Array,
    span_id: Int64Array,
    function: Strings,
    pid: Option<Int32Array>,
    thread_name: Option<Strings>,
    module: Option<Strings>,
    start_ns: Option<Int64Array>,
    status: Option<Strings>,
}

impl Columns {
    fn new(batch: &RecordBatch) -> Result<Self, parquet::errors::ParquetError> {
        let get =
            |name: &str, to: &DataType| -> Result<Option<ArrayRef>, arrow::error::ArrowError> {
                batch
                    .column_by_name(name)
                    .map(|c| {
                        // A timestamp column casts to its raw value only from
                        // its own unit; drop the unit first.
                        let c = if let DataType::Timestamp(unit, _) = c.data_type() {
                            cast(c, &DataType::Timestamp(*unit, None))?
                        } else {
                            c.clone()
                        };
                        cast(&c, to)
                    })
                    .transpose()
            };
        let strings = |name: &str| -> Result<Option<Strings>, arrow::error::ArrowError> {
            batch.column_by_name(name).map(Strings::new).transpose()
        };
        let i64s = |name| -> Result<Option<Int64Array>, arrow::error::ArrowError> {
            Ok(get(name, &DataType::Int64)?.map(|a| a.as_primitive::<Int64Type>().clone()))
        };
        let i32s = |name| -> Result<Option<Int32Array>, arrow::error::ArrowError> {
            Ok(get(name, &DataType::Int32)?.map(|a| a.as_primitive::<Int32Type>().clone()))
        };
        let missing = |name: &str| {
            parquet::errors::ParquetError::General(format!("column `{name}` vanished mid-file"))
        };
        Ok(Self {
            len: batch.num_rows(),
            kind: strings(col::KIND)?.ok_or_else(|| missing(col::KIND))?,
            ts_ns: i64s(col::TS_NS)?.ok_or_else(|| missing(col::TS_NS))?,
            tid: i32s(col::TID)?.ok_or_else(|| missing(col::TID))?,
            span_id: i64s(col::SPAN_ID)?.ok_or_else(|| missing(col::SPAN_ID))?,
            function: strings(col::FUNCTION)?.ok_or_else(|| missing(col::FUNCTION))?,
            pid: i32s(col::PID)?,
            thread_name: strings(col::THREAD_NAME)?,
            module: strings(col::MODULE)?,
            start_ns: i64s(col::START_NS)?,
            status: strings(col::STATUS)?,
        })
    }
}

fn opt_i64(array: Option<&Int64Array>, i: usize) -> Option<i64> {
    array.filter(|a| a.is_valid(i)).map(|a| a.value(i))
}

/// A row's kind, resolved once per distinct value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Start,
    End,
    Other,
}

/// An open span on a thread's stack.
struct Frame<F> {
    id: i64,
    function: FnIx,
    start_ns: i64,
    child_ns: u64,
    user: F,
}

/// The replay state machine, separate from the file so tests can drive it
/// row by row.
pub(crate) struct Replayer<F> {
    thread_filter: Option<i32>,
    /// Indexed by [`ThreadIx`].
    stacks: Vec<Vec<Frame<F>>>,
    /// Per thread: the `thread_name` dictionary key last checked in this
    /// batch (renames are looked for once per batch and name).
    name_seen: Vec<Option<(u64, usize)>>,
    batch_no: u64,
    /// Spans the replay ended early, whose own `SPAN_END` is still to come.
    forced: HashSet<i64>,
    other_tids: HashSet<i32>,
    summary: Summary,
}

/// One span row by strings, for tests that drive the replayer by hand.
#[cfg(test)]
#[derive(Clone, Copy, Debug)]
pub(crate) struct SpanRow<'a> {
    pub start: bool,
    pub ts_ns: i64,
    pub pid: i32,
    pub tid: i32,
    pub thread_name: &'a str,
    pub span_id: i64,
    pub function: &'a str,
    pub module: &'a str,
    pub start_ns: Option<i64>,
    pub status: Option<&'a str>,
}

impl<F> Replayer<F> {
    pub(crate) fn new(thread_filter: Option<i32>) -> Self {
        Self {
            thread_filter,
            stacks: Vec::new(),
            name_seen: Vec::new(),
            batch_no: 0,
            forced: HashSet::new(),
            other_tids: HashSet::new(),
            summary: Summary::default(),
        }
    }

    fn batch<V: Visitor<Frame = F>>(&mut self, c: &Columns, visitor: &mut V) {
        self.batch_no += 1;
        // Per distinct value, not per row.
        let kinds = c.kind.map(|k| match k {
            KIND_SPAN_START => Kind::Start,
            KIND_SPAN_END => Kind::End,
            _ => Kind::Other,
        });
        let statuses = c.status.as_ref().map(|s| s.map(|v| Status::parse(Some(v))));
        // (function key, module key) → function, filled as met.
        let mut functions: FxMap<(usize, usize), FnIx> = FxMap::default();
        let module_key = |i: usize| c.module.as_ref().and_then(|m| m.key(i));
        let mut function_of = |names: &mut Names, i: usize| -> FnIx {
            let f = c.function.key(i);
            let m = module_key(i);
            let key = (f.unwrap_or(usize::MAX), m.unwrap_or(usize::MAX));
            *functions.entry(key).or_insert_with(|| {
                let name = f.map_or("?", |k| c.function.value(k));
                let module = m.map_or("", |k| c.module.as_ref().map_or("", |s| s.value(k)));
                names.intern_function(name, module)
            })
        };
        for i in 0..c.len {
            if !c.ts_ns.is_valid(i) {
                continue;
            }
            let ts_ns = c.ts_ns.value(i);
            self.saw_time(ts_ns);
            let kind = c.kind.key(i).map_or(Kind::Other, |k| kinds[k]);
            if kind == Kind::Other {
                continue;
            }
            if !(c.tid.is_valid(i) && c.span_id.is_valid(i)) {
                self.summary.malformed += 1;
                continue;
            }
            let tid = c.tid.value(i);
            if self.thread_filter.is_some_and(|t| t != tid) {
                self.other_tids.insert(tid);
                continue;
            }
            let pid = c
                .pid
                .as_ref()
                .filter(|a| a.is_valid(i))
                .map_or(0, |a| a.value(i));
            let name_key = c.thread_name.as_ref().and_then(|n| n.key(i));
            let thread = self.thread(pid, tid, name_key, |k| {
                c.thread_name.as_ref().map_or("", |n| n.value(k))
            });
            let span_id = c.span_id.value(i);
            if kind == Kind::Start {
                let function = function_of(&mut self.summary.names, i);
                self.start(thread, function, span_id, ts_ns, visitor);
            } else {
                let status = match (&statuses, c.status.as_ref().and_then(|s| s.key(i))) {
                    (Some(statuses), Some(k)) => statuses[k],
                    _ => Status::Ok,
                };
                let start_ns = opt_i64(c.start_ns.as_ref(), i);
                self.end(thread, span_id, ts_ns, start_ns, status, visitor, |names| {
                    function_of(names, i)
                });
            }
        }
    }

    /// The thread's index; its name is checked for a change once per batch
    /// and dictionary key.
    fn thread<'n>(
        &mut self,
        pid: i32,
        tid: i32,
        name_key: Option<usize>,
        name: impl FnOnce(usize) -> &'n str,
    ) -> ThreadIx {
        let ix = self.summary.names.thread_ix(pid, tid);
        let t = ix.0 as usize;
        if t >= self.name_seen.len() {
            self.name_seen.resize(t + 1, None);
        }
        if let Some(k) = name_key
            && self.name_seen[t] != Some((self.batch_no, k))
        {
            self.name_seen[t] = Some((self.batch_no, k));
            self.summary.names.rename_thread(ix, name(k));
        }
        ix
    }

    fn saw_time(&mut self, ts: i64) {
        let s = &mut self.summary;
        s.first_ts_ns = Some(s.first_ts_ns.map_or(ts, |f| f.min(ts)));
        s.last_ts_ns = Some(s.last_ts_ns.map_or(ts, |l| l.max(ts)));
    }

    /// Feed one span row given by strings (its `ts_ns` must already have
    /// gone through [`Self::saw_time`] when it matters for cut spans).
    #[cfg(test)]
    pub(crate) fn row<V: Visitor<Frame = F>>(&mut self, row: &SpanRow<'_>, visitor: &mut V) {
        if self.thread_filter.is_some_and(|t| t != row.tid) {
            self.other_tids.insert(row.tid);
            return;
        }
        let thread = self
            .summary
            .names
            .intern_thread(row.pid, row.tid, row.thread_name);
        if row.start {
            let function = self.summary.names.intern_function(row.function, row.module);
            self.start(thread, function, row.span_id, row.ts_ns, visitor);
        } else {
            let status = Status::parse(row.status);
            self.end(
                thread,
                row.span_id,
                row.ts_ns,
                row.start_ns,
                status,
                visitor,
                |names| names.intern_function(row.function, row.module),
            );
        }
    }

    fn stack(&mut self, thread: ThreadIx) -> &mut Vec<Frame<F>> {
        let t = thread.0 as usize;
        if t >= self.stacks.len() {
            self.stacks.resize_with(t + 1, Vec::new);
        }
        &mut self.stacks[t]
    }

    fn start<V: Visitor<Frame = F>>(
        &mut self,
        thread: ThreadIx,
        function: FnIx,
        span_id: i64,
        ts_ns: i64,
        visitor: &mut V,
    ) {
        self.stack(thread);
        let stack = &mut self.stacks[thread.0 as usize];
        let span = Started {
            id: span_id,
            thread,
            function,
            start_ns: ts_ns,
            depth: stack.len() as u32,
        };
        let user = visitor.start(
            &self.summary.names,
            &span,
            stack.last_mut().map(|f| &mut f.user),
        );
        stack.push(Frame {
            id: span_id,
            function,
            start_ns: ts_ns,
            child_ns: 0,
            user,
        });
    }

    #[expect(clippy::too_many_arguments, reason = "one row's fields")]
    fn end<V: Visitor<Frame = F>>(
        &mut self,
        thread: ThreadIx,
        span_id: i64,
        ts_ns: i64,
        start_ns: Option<i64>,
        status: Status,
        visitor: &mut V,
        function: impl FnOnce(&mut Names) -> FnIx,
    ) {
        let stack = self.stack(thread);
        // Almost always the top; a scan only for ends that skip frames.
        let pos = match stack.last() {
            Some(top) if top.id == span_id => Some(stack.len() - 1),
            _ => stack.iter().rposition(|f| f.id == span_id),
        };
        let Some(pos) = pos else {
            if self.forced.remove(&span_id) {
                return;
            }
            self.summary.orphans += 1;
            let function = function(&mut self.summary.names);
            let start_ns = start_ns.unwrap_or(ts_ns).min(ts_ns);
            let span = Ended {
                id: span_id,
                thread,
                function,
                start_ns,
                end_ns: ts_ns,
                status,
                self_ns: ts_ns.abs_diff(start_ns),
                depth: 0,
            };
            visitor.orphan(&self.summary.names, &span);
            return;
        };
        while self.stacks[thread.0 as usize].len() > pos + 1 {
            let id = self.pop(thread, ts_ns, Status::Unwound, visitor);
            self.forced.insert(id);
            self.summary.forced += 1;
        }
        self.pop(thread, ts_ns, status, visitor);
    }

    /// End the top span of `thread` at `end_ns`; returns its id.
    fn pop<V: Visitor<Frame = F>>(
        &mut self,
        thread: ThreadIx,
        end_ns: i64,
        status: Status,
        visitor: &mut V,
    ) -> i64 {
        let stack = &mut self.stacks[thread.0 as usize];
        let Some(frame) = stack.pop() else {
            return 0;
        };
        // The start is the SPAN_START's time (a SPAN_END's start_ns is the
        // same in any file ferret wrote): it is what placed the span in
        // the stack, so children and parents stay consistent even in a
        // file that disagrees with itself. A clock that ran backwards must
        // not make a negative duration.
        let start_ns = frame.start_ns.min(end_ns);
        let duration = end_ns.abs_diff(start_ns);
        let span = Ended {
            id: frame.id,
            thread,
            function: frame.function,
            start_ns,
            end_ns,
            status,
            self_ns: duration.saturating_sub(frame.child_ns),
            depth: stack.len() as u32,
        };
        let parent = stack.last_mut().map(|p| {
            p.child_ns = p.child_ns.saturating_add(duration);
            &mut p.user
        });
        visitor.end(&self.summary.names, &span, frame.user, parent);
        self.summary.spans += 1;
        frame.id
    }

    /// End every span still open at the last timestamp and return the summary.
    pub(crate) fn finish<V: Visitor<Frame = F>>(mut self, visitor: &mut V) -> Summary {
        let last = self.summary.last_ts_ns.unwrap_or(0);
        for t in 0..self.stacks.len() {
            while let Some(top) = self.stacks[t].last() {
                let end = last.max(top.start_ns);
                self.pop(ThreadIx(t as u32), end, Status::Cut, visitor);
                self.summary.cut += 1;
            }
        }
        let mut other: Vec<i32> = self.other_tids.into_iter().collect();
        other.sort_unstable();
        self.summary.other_tids = other;
        self.summary
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Records every callback as text, and checks nesting as it goes.
    #[derive(Default)]
    pub(crate) struct Log(pub Vec<String>);

    impl Visitor for Log {
        type Frame = i64;
        fn start(&mut self, n: &Names, s: &Started, parent: Option<&mut i64>) -> i64 {
            self.0.push(format!(
                "start {} {} d{} p{:?}",
                n.function(s.function).name,
                s.id,
                s.depth,
                parent.map(|p| *p)
            ));
            s.id
        }
        fn end(&mut self, n: &Names, s: &Ended, frame: i64, _parent: Option<&mut i64>) {
            assert_eq!(frame, s.id, "frames come back to their span");
            self.0.push(format!(
                "end {} {} {}..{} self {} {}",
                n.function(s.function).name,
                s.id,
                s.start_ns,
                s.end_ns,
                s.self_ns,
                s.status.as_str()
            ));
        }
        fn orphan(&mut self, n: &Names, s: &Ended) {
            self.0
                .push(format!("orphan {} {}", n.function(s.function).name, s.id));
        }
    }

    /// A row: `(start?, ts, tid, span, function, status)`.
    pub(crate) type Spec<'a> = (bool, i64, i32, i64, &'a str, &'a str);

    /// Replays hand-written rows (start rows ignore the status).
    pub(crate) fn replay<V: Visitor>(
        rows: &[Spec<'_>],
        thread: Option<i32>,
        visitor: &mut V,
    ) -> Summary {
        let mut r = Replayer::new(thread);
        let mut starts = HashMap::new();
        for &(start, ts, tid, id, function, status) in rows {
            r.saw_time(ts);
            if start {
                starts.insert(id, ts);
            }
            r.row(
                &SpanRow {
                    start,
                    ts_ns: ts,
                    pid: 1,
                    tid,
                    thread_name: "t",
                    span_id: id,
                    function,
                    module: "/bin/x",
                    start_ns: if start {
                        None
                    } else {
                        starts.get(&id).copied()
                    },
                    status: (!start).then_some(status),
                },
                visitor,
            );
        }
        r.finish(visitor)
    }

    const S: bool = true;
    const E: bool = false;

    #[test]
    fn self_time_subtracts_direct_children_only() {
        let mut log = Log::default();
        let summary = replay(
            &[
                (S, 0, 1, 1, "a", ""),
                (S, 10, 1, 2, "b", ""),
                (S, 20, 1, 3, "c", ""),
                (E, 30, 1, 3, "c", "ok"),
                (E, 50, 1, 2, "b", "ok"),
                (S, 60, 1, 4, "b", ""),
                (E, 70, 1, 4, "b", "unwound"),
                (E, 100, 1, 1, "a", "ok"),
            ],
            None,
            &mut log,
        );
        assert_eq!(
            log.0,
            [
                "start a 1 d0 pNone",
                "start b 2 d1 pSome(1)",
                "start c 3 d2 pSome(2)",
                "end c 3 20..30 self 10 ok",
                "end b 2 10..50 self 30 ok",
                "start b 4 d1 pSome(1)",
                "end b 4 60..70 self 10 unwound",
                // 100 - (40 + 10): c's time is b's child time, not a's.
                "end a 1 0..100 self 50 ok",
            ]
        );
        assert_eq!((summary.spans, summary.orphans, summary.cut), (4, 0, 0));
    }

    #[test]
    fn spans_without_an_end_close_at_the_last_timestamp_innermost_first() {
        let mut log = Log::default();
        let summary = replay(
            &[
                (S, 0, 1, 1, "a", ""),
                (S, 10, 1, 2, "b", ""),
                (S, 15, 2, 3, "c", ""),
                (E, 40, 2, 3, "c", "open"),
            ],
            None,
            &mut log,
        );
        assert_eq!(
            &log.0[3..],
            [
                "end c 3 15..40 self 25 open",
                "end b 2 10..40 self 30 cut",
                "end a 1 0..40 self 10 cut",
            ]
        );
        assert_eq!(summary.cut, 2);
        assert_eq!(summary.last_ts_ns, Some(40));
    }

    #[test]
    fn an_end_below_the_top_ends_the_spans_above_it_first() {
        let mut log = Log::default();
        let summary = replay(
            &[
                (S, 0, 1, 1, "a", ""),
                (S, 10, 1, 2, "b", ""),
                (E, 20, 1, 1, "a", "unwound"),
                // b's own end, late: already ended by the replay.
                (E, 25, 1, 2, "b", "ok"),
            ],
            None,
            &mut log,
        );
        assert_eq!(
            &log.0[2..],
            [
                "end b 2 10..20 self 10 unwound",
                "end a 1 0..20 self 10 unwound"
            ]
        );
        assert_eq!((summary.forced, summary.orphans), (1, 0));
    }

    #[test]
    fn an_end_without_a_start_is_an_orphan_outside_the_stack() {
        let mut log = Log::default();
        let summary = replay(
            &[
                (S, 0, 1, 1, "a", ""),
                (E, 5, 1, 9, "x", "ok"),
                (E, 10, 1, 1, "a", "ok"),
            ],
            None,
            &mut log,
        );
        assert_eq!(
            log.0,
            [
                "start a 1 d0 pNone",
                "orphan x 9",
                "end a 1 0..10 self 10 ok"
            ]
        );
        assert_eq!(summary.orphans, 1);
    }

    #[test]
    fn thread_filter_keeps_one_thread_and_lists_the_others() {
        let mut log = Log::default();
        let summary = replay(
            &[
                (S, 0, 1, 1, "a", ""),
                (S, 1, 2, 2, "b", ""),
                (E, 2, 2, 2, "b", "ok"),
                (E, 3, 1, 1, "a", "ok"),
            ],
            Some(2),
            &mut log,
        );
        assert_eq!(log.0, ["start b 2 d0 pNone", "end b 2 1..2 self 1 ok"]);
        assert_eq!(summary.other_tids, [1]);
    }

    #[test]
    fn same_name_in_two_modules_gets_labels_that_tell_them_apart() {
        let mut names = Names::default();
        names.intern_function("malloc", "/usr/lib/libc.so.6");
        names.intern_function("malloc", "/opt/app");
        names.intern_function("main", "/opt/app");
        assert_eq!(
            names.labels(),
            ["malloc [libc.so.6]", "malloc [app]", "main"]
        );
    }
}
