//! A session's event log on disk: the writer, plus the promise that a file
//! that was not finished does not stay behind looking complete.
//!
//! `record` and `watch -o` create the file before anything is attached (a
//! bad path fails early). If the session then fails, or ferret panics, the
//! [`OutputGuard`] deletes the half-written file; only
//! [`Recording::finish`] keeps it.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use super::{MetricSample, RecordingMeta, RecordingWriter, SampleRow, SinkError, StallRow};
use crate::trace::{FunctionInfo, SpanEvent};

/// The Parquet event log of a session; deleted again unless
/// [`Self::finish`] completes.
pub struct Recording {
    writer: RecordingWriter,
    guard: OutputGuard,
    path: PathBuf,
    /// Metadata added by parts of the session (the overhead guard, the
    /// stall watchdog), written at finish.
    metadata: Vec<(String, String)>,
}

impl Recording {
    /// Creates `path` for a recording of the functions in `functions`.
    pub fn create(
        path: &Path,
        functions: Arc<[FunctionInfo]>,
        meta: RecordingMeta,
    ) -> Result<Self, SinkError> {
        let writer = RecordingWriter::create(path, functions, meta)?;
        Ok(Self {
            writer,
            guard: OutputGuard {
                path: Some(path.to_owned()),
            },
            path: path.to_owned(),
            metadata: Vec::new(),
        })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Adds a key-value pair to the file's metadata (written at finish).
    pub fn add_metadata(&mut self, key: &str, value: String) {
        self.metadata.push((key.to_owned(), value));
    }

    /// Writes span events; returns how many of them ended a span.
    pub fn write_spans(&mut self, spans: &[SpanEvent]) -> Result<u64, SinkError> {
        let mut ends = 0;
        for span in spans {
            ends += u64::from(matches!(span, SpanEvent::End(_)));
            self.writer.write_span(span)?;
        }
        Ok(ends)
    }

    /// Writes one metrics row.
    pub fn write_metric(&mut self, sample: &MetricSample) -> Result<(), SinkError> {
        self.writer.write_metric(sample)
    }

    /// Writes one STALL row.
    pub fn write_stall(&mut self, row: &StallRow<'_>) -> Result<(), SinkError> {
        self.writer.write_stall(row)
    }

    /// Writes one SAMPLE row.
    pub fn write_sample(&mut self, row: &SampleRow<'_>) -> Result<(), SinkError> {
        self.writer.write_sample(row)
    }

    /// The probe table grew; later spans may name the new functions.
    pub fn set_functions(&mut self, functions: Arc<[FunctionInfo]>) {
        self.writer.set_functions(functions);
    }

    /// Writes buffered rows out, so a crash loses little.
    pub fn flush(&mut self) -> Result<(), SinkError> {
        self.writer.flush()
    }

    /// Writes the footer with `lost` events and the metadata added so far;
    /// returns the number of rows. The file is kept from here on.
    pub fn finish(mut self, lost: u64) -> Result<u64, SinkError> {
        let rows = self.writer.rows_written();
        self.writer.finish(lost, &self.metadata)?;
        self.guard.path = None;
        Ok(rows)
    }
}

/// Deletes a half-written output file unless the session finished it.
pub struct OutputGuard {
    /// The file; `None` once finished.
    pub path: Option<PathBuf>,
}

impl Drop for OutputGuard {
    fn drop(&mut self) {
        if let Some(path) = self.path.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}
