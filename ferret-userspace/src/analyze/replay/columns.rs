//! The columns the replay reads, with their contract types, and one record
//! batch's columns cast to those types. String columns are read as
//! dictionaries ([`Strings`]), so each distinct value is resolved once per
//! batch.

use arrow::array::{Array, ArrayRef, AsArray, Int32Array, Int64Array, StringArray};
use arrow::compute::{can_cast_types, cast};
use arrow::datatypes::{DataType, Int32Type, Int64Type};
use arrow::record_batch::RecordBatch;

use crate::sink::col;

/// Columns the replay reads, with their contract types and whether a file
/// without them can still be replayed.
pub(super) const COLUMNS: &[(&str, DataType, bool)] = &[
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
    (col::OVERHEAD_NS, DataType::Int64, false),
    (col::OVERHEAD_OUTSIDE_NS, DataType::Int64, false),
    (col::GOROUTINE, DataType::Int64, false),
    (col::CPU_NS, DataType::Int64, false),
    (col::RUNNABLE_NS, DataType::Int64, false),
    (col::BLOCKED_NS, DataType::Int64, false),
    (col::BLOCKED_IN, DataType::Utf8, false),
];

/// Whether a column of type `found` reads as `expected`: strings of any
/// layout (dictionary, large, view) as strings, integers as integers.
pub(super) fn castable(found: &DataType, expected: &DataType) -> bool {
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

/// A string column as a dictionary: per row a key, per batch a few values.
/// Recordings repeat a handful of strings (kinds, function and thread
/// names) millions of times, so the replay resolves each distinct value
/// once per batch instead of comparing or hashing strings per row.
pub(super) struct Strings {
    keys: Int32Array,
    values: StringArray,
}

impl Strings {
    pub(super) fn new(array: &ArrayRef) -> Result<Self, arrow::error::ArrowError> {
        let dict = cast(array, &dictionary_type())?;
        let dict = dict.as_dictionary::<Int32Type>();
        let values = cast(dict.values(), &DataType::Utf8)?;
        Ok(Self {
            keys: dict.keys().clone(),
            values: values.as_string::<i32>().clone(),
        })
    }

    /// The row's key, `None` when null.
    pub(super) fn key(&self, i: usize) -> Option<usize> {
        self.keys
            .is_valid(i)
            .then(|| self.keys.value(i) as usize)
            .filter(|&k| k < self.values.len() && self.values.is_valid(k))
    }

    pub(super) fn value(&self, key: usize) -> &str {
        self.values.value(key)
    }

    /// One entry per distinct value.
    pub(super) fn map<T>(&self, f: impl Fn(&str) -> T) -> Vec<T> {
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

pub(super) fn dictionary_type() -> DataType {
    DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8))
}

/// One batch's columns, cast to the contract's types.
pub(super) struct Columns {
    pub(super) len: usize,
    pub(super) kind: Strings,
    pub(super) ts_ns: Int64Array,
    pub(super) tid: Int32Array,
    pub(super) span_id: Int64Array,
    pub(super) function: Strings,
    pub(super) pid: Option<Int32Array>,
    pub(super) thread_name: Option<Strings>,
    pub(super) module: Option<Strings>,
    pub(super) start_ns: Option<Int64Array>,
    pub(super) status: Option<Strings>,
    pub(super) overhead_ns: Option<Int64Array>,
    pub(super) overhead_outside_ns: Option<Int64Array>,
    pub(super) goroutine: Option<Int64Array>,
    pub(super) cpu_ns: Option<Int64Array>,
    pub(super) runnable_ns: Option<Int64Array>,
    pub(super) blocked_ns: Option<Int64Array>,
    pub(super) blocked_in: Option<Strings>,
}

impl Columns {
    pub(super) fn new(batch: &RecordBatch) -> Result<Self, parquet::errors::ParquetError> {
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
            overhead_ns: i64s(col::OVERHEAD_NS)?,
            overhead_outside_ns: i64s(col::OVERHEAD_OUTSIDE_NS)?,
            goroutine: i64s(col::GOROUTINE)?,
            cpu_ns: i64s(col::CPU_NS)?,
            runnable_ns: i64s(col::RUNNABLE_NS)?,
            blocked_ns: i64s(col::BLOCKED_NS)?,
            blocked_in: strings(col::BLOCKED_IN)?,
        })
    }
}

pub(super) fn opt_i64(array: Option<&Int64Array>, i: usize) -> Option<i64> {
    array.filter(|a| a.is_valid(i)).map(|a| a.value(i))
}
