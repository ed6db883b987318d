//! A recording's CPU samples (`SAMPLE` rows) as a profile: per function,
//! the samples with it innermost (self) and anywhere on the stack (total),
//! and the distinct stacks with their counts, which the flame graph and
//! folded exports draw.
//!
//! Like the replay, it streams: one record batch at a time, only the
//! columns it needs. Memory is the distinct functions and stacks, not the
//! samples. Frames are read back from the `stack` column's lines
//! (`function (file:line)`, ` [inlined]`), so an inlined call is a frame
//! of its own, as the stack shows it; the bracketed last line of a walk
//! that stopped early is not a frame.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::path::Path;

use arrow::array::{Array, ArrayRef, AsArray as _, StringArray};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Int32Type, Int64Type};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::errors::ParquetError;
use serde::Serialize;

use super::ReadError;
use super::replay::recording::BATCH_ROWS;
use crate::sink::{KIND_SAMPLE, col, contained};

/// One function of the profile.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SampledFunction {
    /// Its name as the stack shows it.
    pub function: String,
    /// The module of its innermost samples, when the rows say.
    pub module: Option<String>,
    /// Samples with it innermost.
    pub self_samples: u64,
    /// Samples with it anywhere on the stack (once per sample).
    pub total_samples: u64,
}

/// The samples of a recording.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SampleProfile {
    /// Samples read (of the selected thread).
    pub samples: u64,
    /// Threads they came from.
    pub threads: u64,
    /// Earliest and latest sample.
    pub first_ts_ns: Option<i64>,
    /// Latest sample.
    pub last_ts_ns: Option<i64>,
    /// Most self samples first (then most total, then by name).
    pub functions: Vec<SampledFunction>,
    /// Each distinct stack, outermost frame first, with its samples.
    pub stacks: Vec<(Vec<String>, u64)>,
    /// Stack lines per thread, in time order, run-length: (thread id,
    /// thread name, stack index into `stacks`, samples in the run). For
    /// speedscope's per-thread sampled profiles.
    pub runs: Vec<(i32, String, u32, u64)>,
}

/// The function a stack line names, or `None` for a note (`[stack walk
/// stopped: …]`).
pub fn frame_name(line: &str) -> Option<&str> {
    let line = line.trim_end();
    if line.is_empty() || line.starts_with('[') {
        return None;
    }
    let line = line.strip_suffix(" [inlined]").unwrap_or(line);
    // `name (file:line)` or `name (file)`: a last parenthesis that holds a
    // path (a `/`, or a `:` and the line number), not a C++ `(int)` or the
    // `()` of `std::function<void ()>`.
    let location = line
        .strip_suffix(')')
        .and_then(|rest| rest.rfind(" (").map(|at| (at, &rest[at + 2..])))
        .filter(|(_, inner)| {
            let numbered = inner
                .rsplit_once(':')
                .is_some_and(|(_, n)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
            !inner.contains(['(', ')', '<', '>']) && (inner.contains('/') || numbered)
        });
    Some(location.map_or(line, |(at, _)| &line[..at]))
}

/// Whether `path` may hold `SAMPLE` rows: its footer's statistics say
/// some `stack` cell is not null (a recording of spans alone has none, and
/// is not read a second time for them).
pub fn may_have_samples(path: &Path) -> bool {
    use parquet::file::reader::{FileReader as _, SerializedFileReader};
    let Ok(file) = File::open(path) else {
        return false;
    };
    let Ok(reader) = contained(|| SerializedFileReader::new(file)) else {
        return false;
    };
    let metadata = reader.metadata();
    let schema = metadata.file_metadata().schema_descr();
    let Some(index) = (0..schema.num_columns()).find(|&i| schema.column(i).name() == col::STACK)
    else {
        return false;
    };
    metadata.row_groups().iter().any(|group| {
        let rows = u64::try_from(group.num_rows()).unwrap_or(0);
        group
            .column(index)
            .statistics()
            .and_then(parquet::file::statistics::Statistics::null_count_opt)
            .is_none_or(|nulls| nulls < rows)
    })
}

/// Reads the `SAMPLE` rows of `path` (of thread `thread` only, if given);
/// `None` when it has none. `progress` is told the rows read so far.
pub fn read(
    path: &Path,
    thread: Option<i32>,
    progress: &mut dyn FnMut(u64),
) -> Result<Option<SampleProfile>, ReadError> {
    let read_err = |source| ReadError::Read {
        path: path.to_owned(),
        source,
    };
    let file = File::open(path).map_err(|source| ReadError::Open {
        path: path.to_owned(),
        source,
    })?;
    let mut reader = contained(|| {
        let builder = ParquetRecordBatchReaderBuilder::try_new(file)?;
        let schema = builder.schema().clone();
        let wanted = [
            col::KIND,
            col::TS_NS,
            col::TID,
            col::THREAD_NAME,
            col::FUNCTION,
            col::MODULE,
            col::STACK,
        ];
        let indices: Vec<usize> = wanted
            .iter()
            .filter_map(|name| schema.index_of(name).ok())
            .collect();
        let mask = ProjectionMask::roots(builder.parquet_schema(), indices);
        builder
            .with_projection(mask)
            .with_batch_size(BATCH_ROWS)
            .build()
    })
    .map_err(|source| ReadError::NotParquet {
        path: path.to_owned(),
        source,
    })?;

    let mut profile = Builder::default();
    let mut rows = 0u64;
    while let Some(batch) =
        contained(|| reader.next().transpose().map_err(ParquetError::from)).map_err(read_err)?
    {
        rows += batch.num_rows() as u64;
        progress(rows);
        let column = |name: &str| batch.column_by_name(name).cloned();
        let strings = |name: &str| -> Result<Option<StringArray>, ParquetError> {
            column(name)
                .map(|c| as_strings(&c))
                .transpose()
                .map_err(|e| ParquetError::General(e.to_string()))
        };
        let (Some(kind), Some(stack)) = (
            strings(col::KIND).map_err(read_err)?,
            strings(col::STACK).map_err(read_err)?,
        ) else {
            // No `stack` column: a recording from before sampling.
            return Ok(None);
        };
        let function = strings(col::FUNCTION).map_err(read_err)?;
        let module = strings(col::MODULE).map_err(read_err)?;
        let names = strings(col::THREAD_NAME).map_err(read_err)?;
        let tids = column(col::TID)
            .and_then(|c| cast(&c, &DataType::Int32).ok())
            .map(|c| c.as_primitive::<Int32Type>().clone());
        let ts = column(col::TS_NS)
            .and_then(|c| cast(&c, &DataType::Int64).ok())
            .map(|c| c.as_primitive::<Int64Type>().clone());
        for row in 0..batch.num_rows() {
            if kind.is_null(row) || kind.value(row) != KIND_SAMPLE {
                continue;
            }
            let tid = tids
                .as_ref()
                .and_then(|t| (!t.is_null(row)).then(|| t.value(row)))
                .unwrap_or(0);
            if thread.is_some_and(|t| t != tid) {
                continue;
            }
            profile.add(
                ts.as_ref().map(|t| t.value(row)),
                tid,
                text(names.as_ref(), row).unwrap_or(""),
                text(Some(&stack), row).unwrap_or(""),
                text(function.as_ref(), row),
                text(module.as_ref(), row),
            );
        }
    }
    Ok(profile.finish())
}

/// Row `row` of a string column, unless null or absent.
fn text(array: Option<&StringArray>, row: usize) -> Option<&str> {
    array.and_then(|a| (!a.is_null(row)).then(|| a.value(row)))
}

fn as_strings(array: &ArrayRef) -> Result<StringArray, arrow::error::ArrowError> {
    Ok(cast(array, &DataType::Utf8)?.as_string::<i32>().clone())
}

/// The profile as it is read.
#[derive(Default)]
struct Builder {
    samples: u64,
    threads: HashSet<i32>,
    first: Option<i64>,
    last: Option<i64>,
    /// By name: (module, self, total).
    functions: HashMap<String, (Option<String>, u64, u64)>,
    /// Outermost first, joined by `\n`.
    stacks: HashMap<String, u32>,
    stack_list: Vec<(Vec<String>, u64)>,
    runs: Vec<(i32, String, u32, u64)>,
    /// Each thread's last run, by index into `runs`.
    last_run: HashMap<i32, usize>,
}

impl Builder {
    fn add(
        &mut self,
        ts: Option<i64>,
        tid: i32,
        thread_name: &str,
        stack: &str,
        function: Option<&str>,
        module: Option<&str>,
    ) {
        self.samples += 1;
        self.threads.insert(tid);
        if let Some(ts) = ts {
            self.first = Some(self.first.map_or(ts, |f| f.min(ts)));
            self.last = Some(self.last.map_or(ts, |l| l.max(ts)));
        }
        let mut frames: Vec<&str> = stack.lines().filter_map(frame_name).collect();
        if frames.is_empty()
            && let Some(function) = function
        {
            frames.push(function);
        }
        for (i, &frame) in frames.iter().enumerate() {
            let entry = self
                .functions
                .entry(frame.to_owned())
                .or_insert((None, 0, 0));
            if i == 0 {
                entry.1 += 1;
                if entry.0.is_none() {
                    entry.0 = module.map(str::to_owned);
                }
            }
            if !frames[..i].contains(&frame) {
                entry.2 += 1;
            }
        }
        frames.reverse();
        let key = frames.join("\n");
        let index = if let Some(&index) = self.stacks.get(&key) {
            index
        } else {
            let index = self.stack_list.len() as u32;
            self.stack_list
                .push((frames.iter().map(|f| (*f).to_owned()).collect(), 0));
            self.stacks.insert(key, index);
            index
        };
        self.stack_list[index as usize].1 += 1;
        match self.last_run.get(&tid) {
            Some(&run) if self.runs[run].2 == index => self.runs[run].3 += 1,
            _ => {
                self.last_run.insert(tid, self.runs.len());
                self.runs.push((tid, thread_name.to_owned(), index, 1));
            }
        }
    }

    fn finish(self) -> Option<SampleProfile> {
        if self.samples == 0 {
            return None;
        }
        let mut functions: Vec<SampledFunction> = self
            .functions
            .into_iter()
            .map(
                |(function, (module, self_samples, total_samples))| SampledFunction {
                    function,
                    module,
                    self_samples,
                    total_samples,
                },
            )
            .collect();
        functions.sort_by(|a, b| {
            b.self_samples
                .cmp(&a.self_samples)
                .then(b.total_samples.cmp(&a.total_samples))
                .then_with(|| a.function.cmp(&b.function))
        });
        Some(SampleProfile {
            samples: self.samples,
            threads: self.threads.len() as u64,
            first_ts_ns: self.first,
            last_ts_ns: self.last,
            functions,
            stacks: self.stack_list,
            runs: self.runs,
        })
    }
}

/// Writes the profile as a table: the first `top` functions (all when 0)
/// by self samples, those matching `only` if given.
pub fn write_table(
    w: &mut dyn std::io::Write,
    file: &str,
    target: Option<&str>,
    profile: &SampleProfile,
    top: usize,
    only: Option<&crate::symbols::Glob>,
) -> std::io::Result<()> {
    use super::render::{count, duration};
    let span_ns = profile
        .last_ts_ns
        .zip(profile.first_ts_ns)
        .map_or(0, |(l, f)| l.abs_diff(f));
    let mut line = format!(
        "{file}: {} CPU samples on {} thread{} over {}",
        count(profile.samples),
        count(profile.threads),
        if profile.threads == 1 { "" } else { "s" },
        duration(span_ns)
    );
    if let Some(target) = target {
        use std::fmt::Write as _;
        let _ = write!(line, "  (target: {target})");
    }
    writeln!(w, "{line}")?;
    writeln!(
        w,
        "self: samples with the function innermost; total: anywhere on the stack"
    )?;
    writeln!(w)?;
    writeln!(
        w,
        "{:>9} {:>6} {:>9} {:>6}  function",
        "self", "self%", "total", "total%"
    )?;
    let share = |n: u64| {
        #[expect(clippy::cast_precision_loss, reason = "a percentage")]
        let share = n as f64 * 100.0 / profile.samples.max(1) as f64;
        format!("{share:.1}")
    };
    let rows = profile
        .functions
        .iter()
        .filter(|f| only.is_none_or(|g| g.matches(&f.function)));
    for f in rows.take(if top == 0 { usize::MAX } else { top }) {
        let module = f
            .module
            .as_deref()
            .and_then(|m| Path::new(m).file_name())
            .map(|m| format!("  [{}]", m.to_string_lossy()))
            .unwrap_or_default();
        writeln!(
            w,
            "{:>9} {:>6} {:>9} {:>6}  {}{module}",
            count(f.self_samples),
            share(f.self_samples),
            count(f.total_samples),
            share(f.total_samples),
            f.function
        )?;
    }
    Ok(())
}

/// Writes the profile as JSON: the first `top` functions (all when 0).
pub fn write_json(
    w: &mut dyn std::io::Write,
    file: &str,
    target: Option<&str>,
    profile: &SampleProfile,
    top: usize,
    only: Option<&crate::symbols::Glob>,
) -> std::io::Result<()> {
    #[derive(Serialize)]
    struct Out<'a> {
        file: &'a str,
        target: Option<&'a str>,
        samples: u64,
        threads: u64,
        first_ts_ns: Option<i64>,
        last_ts_ns: Option<i64>,
        sampled_functions: Vec<&'a SampledFunction>,
    }
    let functions = profile
        .functions
        .iter()
        .filter(|f| only.is_none_or(|g| g.matches(&f.function)))
        .take(if top == 0 { usize::MAX } else { top })
        .collect();
    serde_json::to_writer_pretty(
        &mut *w,
        &Out {
            file,
            target,
            samples: profile.samples,
            threads: profile.threads,
            first_ts_ns: profile.first_ts_ns,
            last_ts_ns: profile.last_ts_ns,
            sampled_functions: functions,
        },
    )?;
    writeln!(w)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stack_lines_name_their_function() {
        assert_eq!(frame_name("crunch (/src/hot.c:18)"), Some("crunch"));
        assert_eq!(frame_name("memcpy (string.h:29) [inlined]"), Some("memcpy"));
        assert_eq!(frame_name("_start"), Some("_start"));
        assert_eq!(
            frame_name("0x4011d6 in /bin/prog"),
            Some("0x4011d6 in /bin/prog")
        );
        assert_eq!(
            frame_name("ns::Widget::run(int) (/src/w.cpp:9)"),
            Some("ns::Widget::run(int)")
        );
        assert_eq!(
            frame_name("ns::Widget::run(int)"),
            Some("ns::Widget::run(int)")
        );
        assert_eq!(
            frame_name(
                "std::function<void ()>::operator()() const (/usr/include/c++/12/bits/std_function.h:591)"
            ),
            Some("std::function<void ()>::operator()() const")
        );
        assert_eq!(
            frame_name("std::function<void ()>::operator()() const"),
            Some("std::function<void ()>::operator()() const")
        );
        assert_eq!(frame_name("f (./csu/libc-start.c)"), Some("f"));
        assert_eq!(frame_name("[stack walk stopped: no unwind info]"), None);
    }

    #[test]
    fn self_total_and_stacks_from_rows() {
        let mut b = Builder::default();
        let hot = "crunch (a.c:18)\nbusy_loop (a.c:25)\nmain (a.c:48)";
        for ts in 0..3 {
            b.add(Some(ts), 7, "main", hot, Some("crunch"), Some("/bin/a"));
        }
        b.add(
            Some(3),
            8,
            "bursts",
            "counted (a.c:30)\nbursts (a.c:33)\n[stack walk stopped: x]",
            Some("counted"),
            None,
        );
        b.add(Some(4), 7, "main", "walk\nwalk\nmain", Some("walk"), None);
        let p = b.finish().unwrap();
        assert_eq!((p.samples, p.threads), (5, 2));
        assert_eq!((p.first_ts_ns, p.last_ts_ns), (Some(0), Some(4)));
        let f = |name: &str| p.functions.iter().find(|f| f.function == name).unwrap();
        assert_eq!(p.functions[0].function, "crunch");
        assert_eq!(
            (f("crunch").self_samples, f("crunch").total_samples),
            (3, 3)
        );
        assert_eq!(f("crunch").module.as_deref(), Some("/bin/a"));
        assert_eq!((f("main").self_samples, f("main").total_samples), (0, 4));
        assert_eq!(f("walk").total_samples, 1, "recursion counts once");
        assert_eq!(
            p.stacks[0],
            (vec!["main".into(), "busy_loop".into(), "crunch".into()], 3)
        );
        assert_eq!(p.stacks[1].0, ["bursts", "counted"], "the note is no frame");
        // Runs per thread: three of one stack on 7, then 8, then 7 again.
        let runs: Vec<(i32, u32, u64)> = p.runs.iter().map(|r| (r.0, r.2, r.3)).collect();
        assert_eq!(runs, [(7, 0, 3), (8, 1, 1), (7, 2, 1)]);
        assert_eq!(Builder::default().finish(), None);
    }
}
