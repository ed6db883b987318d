//! Converting a recording for other tools: speedscope, Chrome trace
//! (Perfetto, chrome://tracing), folded stacks, SVG flame graphs.
//!
//! Each format is a [`crate::analyze::replay::Visitor`] over the same
//! streaming replay as `ferret analyze`, so spans still open at the end of
//! the recording close at its end, stacks are well nested, and memory stays
//! bounded: Chrome events are written as spans end, speedscope spools
//! per-thread events to a temporary file past a budget, folded stacks and
//! flame graphs keep one node per distinct call path. Output goes to a
//! temporary file renamed into place at the end ([`output`]).

pub mod chrome;
pub mod folded;
pub mod output;
pub mod speedscope;

use std::io::Write as _;
use std::path::{Path, PathBuf};

use crate::analyze::{Progress, ReadError, Recording, Summary};
use output::Output;

/// The formats `ferret export` writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// speedscope's evented profiles, one per thread.
    Speedscope,
    /// Chrome trace event JSON.
    Chrome,
    /// Folded stacks weighted by self time in ns.
    Folded,
    /// An SVG flame graph.
    Svg,
}

/// Why an export failed.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The recording could not be read.
    #[error(transparent)]
    Read(#[from] ReadError),
    /// The output could not be created.
    #[error("cannot create {}", path.display())]
    Create {
        /// The output path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Writing the output failed (a full disk, a closed pipe…).
    #[error("writing {}", path.display())]
    Write {
        /// The output path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A flame graph of a recording without a single call.
    #[error("{} has no calls with a duration: there is no flame graph to draw", path.display())]
    Empty {
        /// The recording.
        path: PathBuf,
    },
}

/// What an export wrote.
#[derive(Clone, Debug)]
pub struct ExportSummary {
    /// What the replay saw.
    pub replay: Summary,
    /// Spans left out because the format needs their place in a stack and
    /// the file gives none (`SPAN_END`s without a start).
    pub left_out: u64,
    /// Whether speedscope events went through a spill file.
    pub spilled: bool,
}

/// Export `recording` to `output` (`-` for stdout) in `format`.
pub fn export(
    recording: &Recording,
    format: Format,
    output: &Path,
    progress: &mut Progress,
) -> Result<ExportSummary, ExportError> {
    let mut out = Output::create(output)?;
    let write_err = |source| ExportError::Write {
        path: output.to_owned(),
        source,
    };
    let info = recording.info();
    let version = info.version.clone().unwrap_or_else(|| "?".to_owned());
    let title = recording.path().file_name().map_or_else(
        || recording.path().display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let mut tick = |rows| progress.update(rows);
    let (replay, left_out, spilled) = match format {
        Format::Chrome => {
            // Statistics give the first timestamp before any row is read;
            // without them, times stay absolute.
            let t0 = info.first_ts_ns.unwrap_or(0);
            let mut chrome = chrome::Chrome::new(&mut out, t0);
            let summary = recording.replay(None, &mut chrome, &mut tick)?;
            chrome
                .finish(&summary.names, &version, info.target.as_deref())
                .map_err(write_err)?;
            (summary, 0, false)
        }
        Format::Speedscope => {
            let mut s = speedscope::Speedscope::new(&out.spill_dir());
            let summary = recording.replay(None, &mut s, &mut tick)?;
            let (left_out, spilled) = (s.orphans, s.spilled());
            let t0 = summary.first_ts_ns.unwrap_or(0);
            s.finish(&mut out, &summary.names, t0, &title, &version)
                .map_err(write_err)?;
            (summary, left_out, spilled)
        }
        Format::Folded => {
            let mut f = folded::Folded::new();
            let summary = recording.replay(None, &mut f, &mut tick)?;
            f.write(&mut out, &summary.names).map_err(write_err)?;
            (summary, 0, false)
        }
        Format::Svg => {
            let mut f = folded::Folded::new();
            let summary = recording.replay(None, &mut f, &mut tick)?;
            let subtitle = info
                .target
                .as_ref()
                .map(|t| format!("ferret record -- {t}"));
            let drawn = f
                .write_svg(
                    &mut out,
                    &summary.names,
                    &format!("ferret: {title}"),
                    subtitle,
                )
                .map_err(write_err)?;
            if !drawn {
                return Err(ExportError::Empty {
                    path: recording.path().to_owned(),
                });
            }
            (summary, 0, false)
        }
    };
    progress.finish();
    out.flush().map_err(write_err)?;
    out.commit()?;
    Ok(ExportSummary {
        replay,
        left_out,
        spilled,
    })
}

/// `text` as a JSON string literal, quotes included.
pub(crate) fn json_string(text: &str) -> String {
    // Serializing a str cannot fail; the fallback keeps that a non-panic.
    serde_json::to_string(text).unwrap_or_else(|_| "\"?\"".to_owned())
}
