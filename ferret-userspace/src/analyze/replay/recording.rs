//! Opening a recording: the file is checked to be a ferret event log (its
//! columns found by name, with types the contract allows), its footer read
//! once and kept, and [`Recording::replay`] reads the rows.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder,
};
use parquet::errors::ParquetError;
use parquet::file::metadata::ParquetStatisticsPolicy;
use parquet::file::statistics::Statistics;

use super::columns::{COLUMNS, Columns, castable, dictionary_type};
use super::{Replayer, Summary, Visitor};
use crate::sink::{col, contained, meta_key};

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
    /// Replay times as measured (`--raw`), not corrected.
    raw: bool,
}

/// What the footer says about a recording.
#[derive(Clone, Debug, Default, PartialEq)]
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
    /// The probes' cost ferret measured (`ferret.calibration`), when the
    /// recording has one; `None` for recordings without the overhead
    /// columns, whose times are as measured.
    pub calibration: Option<crate::cost::Calibration>,
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
            raw: false,
        })
    }

    /// Replay times as measured (`--raw`) rather than with ferret's probe
    /// time taken out (the default, when the recording has the overhead
    /// columns).
    pub fn set_raw(&mut self, raw: bool) {
        self.raw = raw;
    }

    /// Whether the replay shows corrected times: the recording measured
    /// its probes' cost and `--raw` was not asked for.
    pub fn corrected(&self) -> bool {
        !self.raw && self.info.calibration.is_some_and(|c| !c.is_none())
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
        let mut reader = contained(|| {
            let builder =
                ParquetRecordBatchReaderBuilder::new_with_metadata(file, self.metadata.clone());
            let mask =
                ProjectionMask::roots(builder.parquet_schema(), self.projection.iter().copied());
            builder
                .with_projection(mask)
                .with_batch_size(BATCH_ROWS)
                .build()
        })
        .map_err(read_err)?;
        let mut replayer = Replayer::new(thread).raw(self.raw);
        let mut rows = 0u64;
        while let Some(batch) =
            contained(|| reader.next().transpose().map_err(ParquetError::from)).map_err(read_err)?
        {
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
    contained(|| ArrowReaderMetadata::load(&file, options)).map_err(|source| {
        ReadError::NotParquet {
            path: path.to_owned(),
            source,
        }
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
        calibration: kv
            .get(meta_key::CALIBRATION)
            .and_then(|json| crate::cost::Calibration::from_metadata(json)),
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
