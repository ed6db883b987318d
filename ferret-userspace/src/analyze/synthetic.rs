//! Synthetic recordings of any size, and a peak-memory measurement, for
//! benchmarks (`cargo xtask bench`) and the bounded-memory tests.
//!
//! `write` drives ferret's own [`RecordingWriter`] with a made-up
//! workload: every thread runs root calls (one of four entry points) whose
//! random call trees (up to [`MAX_DEPTH`] deep, up to three calls per call,
//! each function calling one of three callees of its own) draw on a pool of
//! function names, so the file looks like a real recording (same schema,
//! row groups, encodings, a bounded number of call paths) and its size is
//! chosen in rows. [`measure`] runs a command and reports its wall time
//! and peak resident memory (the kernel's `VmHWM` for it).

use std::io;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::sink::{RecordingMeta, RecordingWriter, SinkError};
use crate::trace::FunctionInfo;
use crate::trace::{SpanEnd, SpanEvent, SpanStart, SpanStatus, ThreadName};

/// Deepest call tree of a synthetic root (its root is depth 0).
pub const MAX_DEPTH: u32 = 5;

/// What to generate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Spec {
    /// Rows to write, at least (the last root call is finished whole).
    pub rows: u64,
    /// Threads, taking turns root call by root call.
    pub threads: u32,
    /// Distinct function names.
    pub functions: u32,
    /// Seed of the pseudo-random shapes and durations.
    pub seed: u64,
}

impl Default for Spec {
    fn default() -> Self {
        Self {
            rows: 1_000_000,
            threads: 8,
            functions: 64,
            seed: 1,
        }
    }
}

/// What was written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Written {
    /// Rows in the file.
    pub rows: u64,
    /// Spans (each is two rows).
    pub spans: u64,
    /// Root calls.
    pub roots: u64,
    /// File size.
    pub bytes: u64,
}

/// xorshift64*: small, fast, and the same sequence everywhere.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

struct Gen<'a> {
    writer: &'a mut RecordingWriter,
    rng: Rng,
    functions: u32,
    next_span: u64,
    spans: u64,
    name: ThreadName,
}

impl Gen<'_> {
    /// One call of `function` at `ts` on `tid` with its subtree; returns
    /// its end time.
    fn call(
        &mut self,
        tid: u32,
        ts: u64,
        depth: u32,
        parent: Option<u64>,
        function: u32,
    ) -> Result<u64, SinkError> {
        let span_id = self.next_span;
        self.next_span += 1;
        self.writer.write_span(&SpanEvent::Start(SpanStart {
            span_id,
            parent_span_id: parent,
            depth,
            pid: 1000,
            tid,
            thread_name: self.name,
            function,
            ts_ns: ts,
            before_attach: false,
            goroutine: None,
        }))?;
        let mut now = ts + 50 + self.rng.below(2_000);
        if depth < MAX_DEPTH {
            for _ in 0..self.rng.below(4) {
                // Each function calls one of three callees of its own, so
                // call paths repeat the way real programs' do.
                let callee =
                    (function * 31 + depth * 7 + 1 + self.rng.below(3) as u32) % self.functions;
                now = self.call(tid, now, depth + 1, Some(span_id), callee)?
                    + 20
                    + self.rng.below(500);
            }
        }
        // One call in a thousand is slow: percentiles have a tail to find.
        if self.rng.below(1000) == 0 {
            now += 1_000_000 + self.rng.below(10_000_000);
        }
        let status = if self.rng.below(200) == 0 {
            SpanStatus::Unwound
        } else {
            SpanStatus::Ok
        };
        self.writer.write_span(&SpanEvent::End(SpanEnd {
            span_id,
            parent_span_id: parent,
            depth,
            pid: 1000,
            tid,
            thread_name: self.name,
            function,
            start_ns: ts,
            ts_ns: now,
            status,
            overhead_ns: 0,
            overhead_outside_ns: 0,
            goroutine: None,
            sched: None,
        }))?;
        self.spans += 1;
        Ok(now)
    }
}

/// Write a synthetic recording of about `spec.rows` rows to `path`.
pub fn write(path: &Path, spec: &Spec) -> Result<Written, SinkError> {
    let table: Arc<[FunctionInfo]> = (0..spec.functions.max(1))
        .map(|i| FunctionInfo {
            name: format!("synthetic::module_{}::function_{i}", i % 7),
            module: "/opt/synthetic/bin/app".to_owned(),
        })
        .collect();
    let meta = RecordingMeta {
        target: "synthetic".to_owned(),
        probes: "synthetic::*".to_owned(),
        realtime_offset_ns: 0,
    };
    let mut writer = RecordingWriter::create(path, table, meta)?;
    let threads = spec.threads.max(1);
    let mut clocks: Vec<u64> = vec![1_000_000_000; threads as usize];
    let mut generator = Gen {
        writer: &mut writer,
        rng: Rng(spec.seed.max(1)),
        functions: spec.functions.max(1),
        next_span: 1,
        spans: 0,
        name: ThreadName::from("synthetic"),
    };
    let mut roots = 0u64;
    while generator.spans * 2 < spec.rows {
        let t = (roots % u64::from(threads)) as usize;
        let tid = 2000 + t as u32;
        // A few entry points, like request handlers.
        let root = generator.rng.below(4) as u32 % generator.functions;
        let end = generator.call(tid, clocks[t], 0, None, root)?;
        clocks[t] = end + 100 + generator.rng.below(10_000);
        roots += 1;
    }
    let spans = generator.spans;
    writer.finish(0, &[])?;
    Ok(Written {
        rows: spans * 2,
        spans,
        roots,
        bytes: std::fs::metadata(path).map_or(0, |m| m.len()),
    })
}

/// A finished command's cost.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Measured {
    /// Wall-clock time from spawn to exit.
    pub wall: Duration,
    /// Peak resident set size, bytes: the largest `VmHWM` seen.
    pub peak_rss_bytes: u64,
    /// Whether it exited with status 0.
    pub success: bool,
}

/// How often [`measure`] reads the child's high-water mark.
const POLL: Duration = Duration::from_millis(2);

/// Run `cmd` (stdout to /dev/null unless set) and measure it.
///
/// The peak comes from the child's own `VmHWM` (its memory's high-water
/// mark since exec), read every `POLL` until it exits, not from
/// `wait4`'s `ru_maxrss`: that one also counts the spawning process's
/// memory when the child was started with `vfork` (as Rust's `Command`
/// does), so a benchmark that has just generated a large file would see
/// its own size. Only memory first touched in the child's last `POLL`
/// can be missed.
pub fn measure(cmd: &mut Command) -> io::Result<Measured> {
    let started = Instant::now();
    let mut child = cmd.stdout(Stdio::null()).spawn()?;
    let status_path = format!("/proc/{}/status", child.id());
    let mut peak = 0u64;
    let status = loop {
        if let Some(hwm) = std::fs::read_to_string(&status_path)
            .ok()
            .and_then(|s| parse_vm_hwm(&s))
        {
            peak = peak.max(hwm);
        }
        if let Some(status) = child.try_wait()? {
            break status;
        }
        std::thread::sleep(POLL);
    };
    Ok(Measured {
        wall: started.elapsed(),
        peak_rss_bytes: peak,
        success: status.success(),
    })
}

/// `VmHWM` of a `/proc/PID/status` text, in bytes.
fn parse_vm_hwm(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analyze::{Progress, Query, Recording, SortBy};

    #[test]
    fn writes_a_readable_recording_of_the_asked_size() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.parquet");
        let written = write(
            &path,
            &Spec {
                rows: 20_000,
                threads: 3,
                functions: 12,
                seed: 7,
            },
        )
        .unwrap();
        assert!(written.rows >= 20_000 && written.rows < 20_000 + 2 * 4096);
        let recording = Recording::open(&path).unwrap();
        assert_eq!(recording.info().rows, written.rows);
        let report = crate::analyze::functions(
            &recording,
            &Query {
                thread: None,
                function: None,
                sort: SortBy::Total,
                top: 0,
            },
            &mut Progress::hidden(),
        )
        .unwrap();
        assert_eq!(report.overview.spans, written.spans);
        assert_eq!(report.overview.threads, 3);
        let calls: u64 = report.functions.iter().map(|f| f.calls).sum();
        assert_eq!(calls, written.spans);
    }

    #[test]
    fn vm_hwm_parses_from_proc_status() {
        let status = "Name:\tferret\nVmPeak:\t  20000 kB\nVmHWM:\t   18620 kB\nVmRSS:\t 1 kB\n";
        assert_eq!(parse_vm_hwm(status), Some(18620 * 1024));
        assert_eq!(parse_vm_hwm("Name: x\n"), None);
    }

    #[test]
    fn measures_a_child_s_peak_memory() {
        // dd reads into a 64 MiB buffer: most of it is resident by the end.
        let m = measure(Command::new("dd").args([
            "if=/dev/zero",
            "of=/dev/null",
            "bs=64M",
            "count=1",
            "status=none",
        ]))
        .unwrap();
        assert!(m.success);
        // (Some of the buffer may be read while the last poll is due.)
        assert!((32 << 20..256 << 20).contains(&m.peak_rss_bytes), "{m:?}");
    }
}
