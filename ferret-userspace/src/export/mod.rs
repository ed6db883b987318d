//! Converting a recording for other tools: speedscope, Chrome trace
//! (Perfetto, chrome://tracing), folded stacks, SVG flame graphs, OTLP
//! JSON lines (OpenTelemetry).
//!
//! Each format is a `crate::analyze::replay::Visitor` over the same
//! streaming replay as `ferret analyze`, so spans still open at the end of
//! the recording close at its end, stacks are well nested, and memory stays
//! bounded: Chrome events are written as spans end, speedscope spools
//! per-thread events to a temporary file past a budget, folded stacks and
//! flame graphs keep one node per distinct call path. Output goes to a
//! temporary file renamed into place at the end (`output`).

pub(crate) mod chrome;
pub(crate) mod folded;
pub(crate) mod otlp;
pub(crate) mod output;
pub(crate) mod samples;
pub(crate) mod speedscope;

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
    /// OTLP JSON lines (the Collector's file exporter format).
    Otlp,
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
    let (replay, left_out) = match format {
        Format::Chrome => {
            // Statistics give the first timestamp before any row is read;
            // without them, times stay absolute.
            let t0 = info.first_ts_ns.unwrap_or(0);
            let mut chrome = chrome::Chrome::new(&mut out, t0);
            let summary = recording.replay(None, &mut chrome, &mut tick)?;
            chrome
                .finish(&summary.names, &version, info.target.as_deref())
                .map_err(write_err)?;
            (summary, 0)
        }
        Format::Speedscope => {
            let mut s = speedscope::Speedscope::new(&out.spill_dir());
            let summary = recording.replay(None, &mut s, &mut tick)?;
            let left_out = s.orphans;
            let t0 = summary.first_ts_ns.unwrap_or(0);
            s.finish(&mut out, &summary.names, t0, &title, &version)
                .map_err(write_err)?;
            (summary, left_out)
        }
        Format::Otlp => {
            // The offset turns the recording's monotonic times into Unix
            // time; a file without it keeps them as they are.
            let offset = crate::sink::read_metadata(recording.path())
                .ok()
                .and_then(|m| {
                    m.get(crate::sink::meta_key::REALTIME_OFFSET_NS)?
                        .parse()
                        .ok()
                })
                .unwrap_or(0);
            let mut o = otlp::OtlpJson::new(&mut out, info.target.as_deref(), offset);
            let summary = recording.replay(None, &mut o, &mut tick)?;
            o.finish().map_err(write_err)?;
            (summary, 0)
        }
        Format::Folded => {
            let mut f = folded::Folded::new();
            let summary = recording.replay(None, &mut f, &mut tick)?;
            f.write(&mut out, &summary.names).map_err(write_err)?;
            (summary, 0)
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
            (summary, 0)
        }
    };
    progress.finish();
    out.flush().map_err(write_err)?;
    out.commit()?;
    Ok(ExportSummary { replay, left_out })
}

/// `text` as a JSON string literal, quotes included.
pub(crate) fn json_string(text: &str) -> String {
    // Serializing a str cannot fail; the fallback keeps that a non-panic.
    serde_json::to_string(text).unwrap_or_else(|_| "\"?\"".to_owned())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::chrome::Chrome;
    use super::folded::Folded;
    use super::speedscope::Speedscope;
    use crate::analyze::replay::tests::{Spec, replay};
    use crate::analyze::replay::{Ended, Names, Started, Visitor};
    use crate::analyze::stats::{SortBy, StatsVisitor};
    use crate::analyze::tree::TreeVisitor;

    /// Every visitor at once, and the roots' total as the replay reports it.
    struct All {
        stats: StatsVisitor,
        trees: TreeVisitor,
        folded: Folded,
        speedscope: Speedscope,
        chrome: Chrome<Vec<u8>>,
        root_ns: u64,
        orphan_ns: u64,
    }

    type Frames = (
        (),
        <TreeVisitor as Visitor>::Frame,
        <Folded as Visitor>::Frame,
    );

    impl Visitor for All {
        type Frame = Frames;

        fn start(&mut self, n: &Names, s: &Started, parent: Option<&mut Frames>) -> Frames {
            let (t, f) = match parent {
                Some(p) => (Some(&mut p.1), Some(&mut p.2)),
                None => (None, None),
            };
            self.stats.start(n, s, None);
            self.speedscope.start(n, s, None);
            self.chrome.start(n, s, None);
            ((), self.trees.start(n, s, t), self.folded.start(n, s, f))
        }

        fn end(&mut self, n: &Names, s: &Ended, frame: Frames, parent: Option<&mut Frames>) {
            assert!(s.self_ns <= s.duration_ns(), "self within duration");
            if s.depth == 0 {
                self.root_ns += s.duration_ns();
            }
            let (t, f) = match parent {
                Some(p) => (Some(&mut p.1), Some(&mut p.2)),
                None => (None, None),
            };
            self.stats.end(n, s, (), None);
            self.speedscope.end(n, s, (), None);
            self.chrome.end(n, s, (), None);
            self.trees.end(n, s, frame.1, t);
            self.folded.end(n, s, frame.2, f);
        }

        fn orphan(&mut self, n: &Names, s: &Ended) {
            self.orphan_ns += s.duration_ns();
            self.stats.orphan(n, s);
            self.speedscope.orphan(n, s);
            self.chrome.orphan(n, s);
            self.folded.orphan(n, s);
        }
    }

    fn row() -> impl Strategy<Value = (bool, i64, i32, i64, usize, usize)> {
        (
            any::<bool>(),
            0i64..1_000,
            1i32..4,
            1i64..30,
            0usize..4,
            0usize..3,
        )
    }

    proptest! {
        /// Whatever rows a file holds (ends before starts, duplicate ids,
        /// ends of other threads' spans, time going backwards), nothing
        /// panics, speedscope stays well nested, Chrome stays valid JSON,
        /// and the flame graph's weights add up to the replayed time.
        #[test]
        fn arbitrary_rows_never_break_an_export(
            rows in prop::collection::vec(row(), 0..120),
            backwards in any::<bool>(),
        ) {
            let functions = ["a", "b", "c;d", "e\"f"];
            let statuses = ["ok", "unwound", "open"];
            let mut ts = 0i64;
            let rows: Vec<Spec<'_>> = rows
                .iter()
                .map(|&(start, step, tid, id, f, st)| {
                    // Forward in time, or (a broken clock) any way.
                    ts += if backwards { step - 500 } else { step };
                    (start, ts, tid, id, functions[f], statuses[st])
                })
                .collect();
            let dir = tempfile::tempdir().unwrap();
            let mut all = All {
                stats: StatsVisitor::new(),
                trees: TreeVisitor::new(3, None),
                folded: Folded::new(),
                speedscope: Speedscope::with_budget(dir.path(), 7),
                chrome: Chrome::new(Vec::new(), 0),
                root_ns: 0,
                orphan_ns: 0,
            };
            let summary = replay(&rows, None, &mut all);
            let names = &summary.names;

            let stats = all.stats.finish(names, None, SortBy::Total);
            let calls: u64 = stats.iter().map(|s| s.calls).sum();
            prop_assert_eq!(calls, summary.spans + summary.orphans);
            let (trees, _) = all.trees.finish();
            prop_assert!(trees.len() <= 3);

            let mut folded = Vec::new();
            all.folded.write(&mut folded, names).unwrap();
            let weight: u64 = String::from_utf8(folded)
                .unwrap()
                .lines()
                .map(|l| l.rsplit_once(' ').unwrap().1.parse::<u64>().unwrap())
                .sum();
            // With a sane clock, self times add up to the roots' time
            // (a child running past its parent breaks that, nothing else).
            if !backwards {
                prop_assert_eq!(weight, all.root_ns + all.orphan_ns);
            }

            let bytes = all
                .speedscope
                .finish(Vec::new(), names, summary.first_ts_ns.unwrap_or(0), "t", "0")
                .unwrap();
            let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
            for profile in json["profiles"].as_array().unwrap() {
                let mut stack = Vec::new();
                let mut last = 0;
                for e in profile["events"].as_array().unwrap() {
                    let at = e["at"].as_u64().unwrap();
                    prop_assert!(at >= last);
                    last = at;
                    if e["type"] == "O" {
                        stack.push(e["frame"].as_u64());
                    } else {
                        prop_assert_eq!(stack.pop(), Some(e["frame"].as_u64()));
                    }
                }
                prop_assert!(stack.is_empty());
                prop_assert!(profile["endValue"].as_u64().unwrap() >= last);
            }

            let bytes = all.chrome.finish(names, "0", None).unwrap();
            let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
            let complete = json["traceEvents"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|e| e["ph"] == "X")
                .count() as u64;
            prop_assert_eq!(complete, summary.spans + summary.orphans);
        }
    }
}
