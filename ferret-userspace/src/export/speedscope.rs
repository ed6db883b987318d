//! speedscope's file format: one evented profile per thread.
//!
//! An evented profile lists a thread's frame opens (`O`) and closes (`C`)
//! in time order, and speedscope rejects a close that does not match the
//! innermost open frame; the replay's well-nested stacks guarantee that.
//! The file groups events by thread while the recording interleaves
//! threads, so events are spooled per thread: in memory up to
//! [`SPOOL_BUDGET`] events, then in chunks appended to one unlinked
//! temporary file, read back thread by thread at the end. Memory stays
//! bounded and small recordings never touch the disk.
//!
//! Times are nanoseconds relative to the recording's first timestamp:
//! speedscope holds them in doubles, exact only below 2^53 ns, and absolute
//! `CLOCK_MONOTONIC` values on a machine up for months are past that.

use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};

use super::json_string;
use crate::analyze::replay::{Ended, Names, Started, Visitor};

/// Events held in memory, over all threads, before spooling to disk
/// (16 bytes each: 32 MiB).
pub const SPOOL_BUDGET: usize = 2 << 20;

/// The published schema's address, written as `$schema`.
pub const SCHEMA_URL: &str = "https://www.speedscope.app/file-format-schema.json";

/// One event: when, which frame, open or close (the top bit of `frame`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Event {
    at: i64,
    frame: u32,
}

const CLOSE: u32 = 1 << 31;
/// Bytes per event on disk: `at` then `frame`, little-endian.
const DISK_EVENT: usize = 12;
/// Events read back from disk at a time.
const READ_EVENTS: usize = 64 * 1024;

#[derive(Debug, Default)]
struct ThreadSpool {
    /// Events not yet on disk.
    buffered: Vec<Event>,
    /// (offset, events) of this thread's chunks in the spool file, in order.
    chunks: Vec<(u64, usize)>,
    first_at: Option<i64>,
    last_at: i64,
    events: u64,
    /// Time covered by root spans: picks the profile shown first.
    busy_ns: u64,
}

/// Collects the events during a replay; [`Self::finish`] writes the file.
#[derive(Debug)]
pub struct Speedscope {
    spill_dir: PathBuf,
    file: Option<File>,
    file_len: u64,
    threads: Vec<ThreadSpool>,
    buffered: usize,
    budget: usize,
    error: Option<io::Error>,
    /// `SPAN_END`s without a start, left out (they have no place in a stack).
    pub orphans: u64,
}

impl Speedscope {
    /// A collector that spills to a temporary file in `spill_dir` past
    /// [`SPOOL_BUDGET`] buffered events.
    pub fn new(spill_dir: &Path) -> Self {
        Self::with_budget(spill_dir, SPOOL_BUDGET)
    }

    /// Same, with another budget (tests use a tiny one to exercise the spool).
    pub fn with_budget(spill_dir: &Path, budget: usize) -> Self {
        Self {
            spill_dir: spill_dir.to_owned(),
            file: None,
            file_len: 0,
            threads: Vec::new(),
            buffered: 0,
            budget: budget.max(1),
            error: None,
            orphans: 0,
        }
    }

    /// Whether events went to disk (what the spill tests check).
    #[cfg(test)]
    pub fn spilled(&self) -> bool {
        self.file.is_some()
    }

    fn push(&mut self, thread: usize, at: i64, frame: u32) {
        if thread >= self.threads.len() {
            self.threads.resize_with(thread + 1, ThreadSpool::default);
        }
        let t = &mut self.threads[thread];
        // speedscope requires non-decreasing times within a profile; a
        // thread that migrated between CPUs can show a few ns of skew.
        let at = if t.first_at.is_some() {
            at.max(t.last_at)
        } else {
            at
        };
        t.first_at.get_or_insert(at);
        t.last_at = at;
        t.events += 1;
        t.buffered.push(Event { at, frame });
        self.buffered += 1;
        if self.buffered >= self.budget
            && let Err(e) = self.spill()
        {
            self.error.get_or_insert(e);
            // Keep going in memory rather than lose events.
            self.budget = usize::MAX;
        }
    }

    /// Move every buffered event to the spool file, one chunk per thread.
    fn spill(&mut self) -> io::Result<()> {
        if self.file.is_none() {
            self.file = Some(tempfile::tempfile_in(&self.spill_dir)?);
        }
        let Some(file) = &self.file else {
            return Ok(());
        };
        let mut bytes = Vec::new();
        for t in &mut self.threads {
            if t.buffered.is_empty() {
                continue;
            }
            bytes.clear();
            for e in &t.buffered {
                bytes.extend_from_slice(&e.at.to_le_bytes());
                bytes.extend_from_slice(&e.frame.to_le_bytes());
            }
            file.write_all_at(&bytes, self.file_len)?;
            t.chunks.push((self.file_len, t.buffered.len()));
            self.file_len += bytes.len() as u64;
            t.buffered.clear();
        }
        self.buffered = 0;
        Ok(())
    }

    /// Write the speedscope file for the spans replayed; `t0` is the
    /// recording's first timestamp and `name` the profile's title.
    pub fn finish<W: Write>(
        self,
        mut w: W,
        names: &Names,
        t0: i64,
        name: &str,
        version: &str,
    ) -> io::Result<W> {
        if let Some(e) = self.error {
            return Err(e);
        }
        write!(
            w,
            "{{\"$schema\":\"{SCHEMA_URL}\",\"shared\":{{\"frames\":["
        )?;
        for (i, f) in names.functions().iter().enumerate() {
            if i > 0 {
                w.write_all(b",")?;
            }
            write!(
                w,
                "\n{{\"name\":{},\"file\":{}}}",
                json_string(&f.name),
                json_string(&f.module)
            )?;
        }
        w.write_all(b"]},\"profiles\":[")?;
        let pids: std::collections::HashSet<i32> = names.threads().iter().map(|t| t.pid).collect();
        let mut written = 0usize;
        let mut active = (0usize, 0u64);
        // Every profile spans the whole recording, so switching threads in
        // speedscope keeps one time axis and threads can be compared.
        let end = self
            .threads
            .iter()
            .filter(|t| t.first_at.is_some())
            .map(|t| t.last_at)
            .max()
            .unwrap_or(t0)
            .max(t0);
        for (i, t) in self.threads.iter().enumerate() {
            if t.first_at.is_none() {
                continue;
            }
            let info = names.thread(crate::analyze::replay::ThreadIx(i as u32));
            let title = match (pids.len() > 1, info.goroutine) {
                (true, None) => format!("{} (pid {}, tid {})", info.name, info.pid, info.tid),
                (false, None) => format!("{} (tid {})", info.name, info.tid),
                (true, Some(_)) => format!("{} (pid {})", info.name, info.pid),
                (false, Some(_)) => info.name.clone(),
            };
            if written > 0 {
                w.write_all(b",")?;
            }
            if t.busy_ns > active.1 {
                active = (written, t.busy_ns);
            }
            written += 1;
            write!(
                w,
                "\n{{\"type\":\"evented\",\"name\":{},\"unit\":\"nanoseconds\",\"startValue\":{},\"endValue\":{},\"events\":[",
                json_string(&title),
                0,
                end.saturating_sub(t0)
            )?;
            let mut comma = false;
            let mut event = |w: &mut W, e: Event| -> io::Result<()> {
                let sep = if comma { "," } else { "" };
                comma = true;
                let kind = if e.frame & CLOSE == 0 { 'O' } else { 'C' };
                write!(
                    w,
                    "{sep}\n{{\"type\":\"{kind}\",\"frame\":{},\"at\":{}}}",
                    e.frame & !CLOSE,
                    e.at.saturating_sub(t0)
                )
            };
            if let Some(file) = &self.file {
                // Read back in pieces: a chunk can hold most of the budget.
                let mut bytes = vec![0u8; READ_EVENTS * DISK_EVENT];
                for &(offset, count) in &t.chunks {
                    let mut done = 0usize;
                    while done < count {
                        let n = (count - done).min(READ_EVENTS);
                        let piece = &mut bytes[..n * DISK_EVENT];
                        file.read_exact_at(piece, offset + (done * DISK_EVENT) as u64)?;
                        for raw in piece.chunks_exact(DISK_EVENT) {
                            let (at, frame) = raw.split_at(8);
                            let at = i64::from_le_bytes(at.try_into().unwrap_or_default());
                            let frame = u32::from_le_bytes(frame.try_into().unwrap_or_default());
                            event(&mut w, Event { at, frame })?;
                        }
                        done += n;
                    }
                }
            }
            for &e in &t.buffered {
                event(&mut w, e)?;
            }
            w.write_all(b"]}")?;
        }
        write!(
            w,
            "],\n\"name\":{},\"activeProfileIndex\":{},\"exporter\":{}}}\n",
            json_string(name),
            active.0,
            json_string(&format!("ferret {version}"))
        )?;
        Ok(w)
    }
}

impl Visitor for Speedscope {
    type Frame = ();

    fn start(&mut self, _: &Names, span: &Started, _: Option<&mut ()>) {
        self.push(span.thread.0 as usize, span.start_ns, span.function.0);
    }

    fn end(&mut self, _: &Names, span: &Ended, (): (), _: Option<&mut ()>) {
        let thread = span.thread.0 as usize;
        self.push(thread, span.end_ns, span.function.0 | CLOSE);
        if span.depth == 0
            && let Some(t) = self.threads.get_mut(thread)
        {
            t.busy_ns = t.busy_ns.saturating_add(span.duration_ns());
        }
    }

    fn orphan(&mut self, _: &Names, _: &Ended) {
        self.orphans += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analyze::replay::tests::{Spec, replay};

    fn export(rows: &[Spec<'_>], budget: usize) -> (serde_json::Value, bool) {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Speedscope::with_budget(dir.path(), budget);
        let summary = replay(rows, None, &mut s);
        let spilled = s.spilled();
        let bytes = s
            .finish(
                Vec::new(),
                &summary.names,
                summary.first_ts_ns.unwrap(),
                "t",
                "0",
            )
            .unwrap();
        (serde_json::from_slice(&bytes).unwrap(), spilled)
    }

    fn rows() -> Vec<Spec<'static>> {
        vec![
            (true, 1000, 1, 1, "a", ""),
            (true, 1010, 2, 2, "b", ""),
            (true, 1020, 1, 3, "b", ""),
            (false, 1030, 1, 3, "b", "ok"),
            (false, 1040, 2, 2, "b", "ok"),
            (true, 1050, 2, 4, "a", ""),
            (false, 1060, 2, 4, "a", "ok"),
            (false, 1100, 1, 1, "a", "ok"),
        ]
    }

    fn events(profile: &serde_json::Value) -> Vec<String> {
        profile["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| format!("{}{}@{}", e["type"].as_str().unwrap(), e["frame"], e["at"]))
            .collect()
    }

    #[test]
    fn one_profile_per_thread_in_time_order() {
        for budget in [SPOOL_BUDGET, 1, 3] {
            let (v, spilled) = export(&rows(), budget);
            assert_eq!(spilled, budget < SPOOL_BUDGET, "budget {budget}");
            assert_eq!(v["shared"]["frames"][0]["name"], "a");
            assert_eq!(v["shared"]["frames"][1]["file"], "/bin/x");
            let profiles = v["profiles"].as_array().unwrap();
            assert_eq!(profiles.len(), 2);
            assert_eq!(
                events(&profiles[0]),
                ["O0@0", "O1@20", "C1@30", "C0@100"],
                "budget {budget}"
            );
            assert_eq!(
                events(&profiles[1]),
                ["O1@10", "C1@40", "O0@50", "C0@60"],
                "budget {budget}"
            );
            for p in profiles {
                assert_eq!(p["startValue"], 0, "one time axis for all threads");
                assert_eq!(p["endValue"], 100);
            }
            assert_eq!(profiles[0]["unit"], "nanoseconds");
            assert_eq!(profiles[0]["name"], "t (tid 1)");
            assert_eq!(v["activeProfileIndex"], 0, "the busiest thread first");
        }
    }

    #[test]
    fn skewed_times_never_go_backwards() {
        let (v, _) = export(
            &[
                (true, 100, 1, 1, "a", ""),
                (true, 90, 1, 2, "b", ""),
                (false, 95, 1, 2, "b", "ok"),
                (false, 120, 1, 1, "a", "ok"),
            ],
            SPOOL_BUDGET,
        );
        assert_eq!(
            events(&v["profiles"][0]),
            ["O0@10", "O1@10", "C1@10", "C0@30"]
        );
    }
}
