//! Chrome trace event JSON: what Perfetto and chrome://tracing open.
//!
//! Every span becomes one complete event (`"ph": "X"`) written the moment
//! it ends, so the export streams: nothing is held but the output buffer.
//! Each thread is named by a `thread_name` metadata event before its first
//! span, each process by a `process_name` event at the end (its main
//! thread's name, known only once seen). Times are microseconds, as the
//! format requires, relative to the recording's first timestamp (kept in
//! `otherData.start_ns`) and written with all three decimals so no
//! nanosecond is rounded away; the category is the function's module file
//! name, so a viewer can filter by library.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::Path;

use super::json_string;
use crate::analyze::replay::{Ended, FnIx, Names, Started, Status, ThreadIx, Visitor};

/// Writes the trace while a replay runs; check [`Self::finish`] for errors.
pub struct Chrome<W: Write> {
    w: W,
    t0: i64,
    /// A comma is needed before the next event.
    comma: bool,
    /// Per function: its JSON-escaped name and category, made once.
    escaped: Vec<Option<(String, String)>>,
    /// Per thread: the name announced last.
    announced: Vec<Option<String>>,
    /// The first write error; later events are dropped.
    error: Option<io::Error>,
    /// Events written.
    pub events: u64,
}

impl<W: Write> Chrome<W> {
    /// Start the trace; times are written relative to `t0` (ns).
    pub fn new(mut w: W, t0: i64) -> Self {
        let error = w.write_all(b"{\"traceEvents\":[\n").err();
        Self {
            w,
            t0,
            comma: false,
            escaped: Vec::new(),
            announced: Vec::new(),
            error,
            events: 0,
        }
    }

    fn emit(&mut self, event: impl FnOnce(&mut W) -> io::Result<()>) {
        if self.error.is_some() {
            return;
        }
        let sep: &[u8] = if self.comma { b",\n" } else { b"" };
        self.comma = true;
        if let Err(e) = self.w.write_all(sep).and_then(|()| event(&mut self.w)) {
            self.error = Some(e);
        }
    }

    fn announce(&mut self, names: &Names, thread: ThreadIx) {
        let t = thread.0 as usize;
        if t >= self.announced.len() {
            self.announced.resize(t + 1, None);
        }
        let info = names.thread(thread);
        if self.announced[t].as_deref() == Some(info.name.as_str()) {
            return;
        }
        self.announced[t] = Some(info.name.clone());
        // A goroutine gets a track of its own (its id), whatever threads ran it.
        let (pid, tid, name) = (info.pid, info.track(), json_string(&info.name));
        self.emit(|w| {
            write!(
                w,
                r#"{{"name":"thread_name","ph":"M","pid":{pid},"tid":{tid},"args":{{"name":{name}}}}}"#
            )
        });
    }

    /// Escape a function's name and category once, on its first event.
    fn escape(&mut self, names: &Names, function: FnIx) {
        let i = function.0 as usize;
        if i >= self.escaped.len() {
            self.escaped.resize(i + 1, None);
        }
        self.escaped[i].get_or_insert_with(|| {
            let f = names.function(function);
            let category = Path::new(&f.module)
                .file_name()
                .map_or_else(|| "ferret".to_owned(), |n| n.to_string_lossy().into_owned());
            (json_string(&f.name), json_string(&category))
        });
    }

    fn complete(&mut self, names: &Names, span: &Ended) {
        self.announce(names, span.thread);
        self.escape(names, span.function);
        self.events += 1;
        if self.error.is_some() {
            return;
        }
        let Some((name, category)) = self
            .escaped
            .get(span.function.0 as usize)
            .and_then(Option::as_ref)
        else {
            return;
        };
        let thread = names.thread(span.thread);
        let (pid, tid) = (thread.pid, thread.track());
        let ts = Micros(span.start_ns.saturating_sub(self.t0));
        // The span's place on the (corrected) timeline, so children nest.
        let dur = Micros(span.end_ns.saturating_sub(span.start_ns));
        // Written in place, not through `emit`: this runs once per span,
        // and borrowing the escaped names avoids two allocations each time.
        let sep = if self.comma { ",\n" } else { "" };
        self.comma = true;
        let w = &mut self.w;
        let mut written = write!(
            w,
            r#"{sep}{{"name":{name},"cat":{category},"ph":"X","ts":{ts},"dur":{dur},"pid":{pid},"tid":{tid}"#
        );
        // args: the status of a call that did not return, and where the
        // call's time went (ns) when the recording knows.
        let status = (span.status != Status::Ok).then(|| span.status.as_str());
        if written.is_ok() && (status.is_some() || span.split.is_some()) {
            written = w.write_all(br#","args":{"#);
            let mut sep = "";
            if let (Ok(()), Some(status)) = (&written, status) {
                written = write!(w, r#""status":"{status}""#);
                sep = ",";
            }
            if let (Ok(()), Some(split)) = (&written, span.split) {
                written = write!(
                    w,
                    r#"{sep}"cpu_ns":{},"runnable_ns":{},"blocked_ns":{}"#,
                    split.cpu_ns, split.runnable_ns, split.blocked_ns
                );
                if let (Ok(()), Some(syscall)) = (&written, split.blocked_in) {
                    written = write!(w, r#","blocked_in":"{}""#, syscall.name());
                }
            }
            if written.is_ok() {
                written = w.write_all(b"}");
            }
        }
        if let Err(e) = written.and_then(|()| w.write_all(b"}")) {
            self.error = Some(e);
        }
    }

    /// Name the processes, close the JSON and return the writer.
    pub fn finish(mut self, names: &Names, version: &str, target: Option<&str>) -> io::Result<W> {
        // A process is named after its main thread (tid == pid) when that
        // thread had spans, else after the target.
        let mut processes: BTreeMap<i32, String> = BTreeMap::new();
        for t in names.threads() {
            let entry = processes.entry(t.pid).or_insert_with(|| {
                target
                    .and_then(|c| c.split_whitespace().next())
                    .and_then(|c| Path::new(c).file_name())
                    .map_or_else(|| t.name.clone(), |n| n.to_string_lossy().into_owned())
            });
            if t.tid == t.pid {
                entry.clone_from(&t.name);
            }
        }
        for (pid, name) in processes {
            let name = json_string(&name);
            self.emit(|w| {
                write!(
                    w,
                    r#"{{"name":"process_name","ph":"M","pid":{pid},"tid":0,"args":{{"name":{name}}}}}"#
                )
            });
        }
        if let Some(e) = self.error {
            return Err(e);
        }
        let t0 = self.t0;
        write!(
            self.w,
            "\n],\"displayTimeUnit\":\"ns\",\"otherData\":{{\"exporter\":{},\"start_ns\":{t0}}}}}\n",
            json_string(&format!("ferret {version}"))
        )?;
        Ok(self.w)
    }
}

impl<W: Write> Visitor for Chrome<W> {
    type Frame = ();

    fn start(&mut self, names: &Names, span: &Started, _: Option<&mut ()>) {
        // Name the thread before its first event, as viewers expect.
        self.announce(names, span.thread);
    }

    fn end(&mut self, names: &Names, span: &Ended, (): (), _: Option<&mut ()>) {
        self.complete(names, span);
    }

    fn orphan(&mut self, names: &Names, span: &Ended) {
        // A complete event needs no stack: the viewer nests by time.
        self.complete(names, span);
    }
}

/// Nanoseconds shown as microseconds with exactly three decimals.
struct Micros(i64);

impl std::fmt::Display for Micros {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        write!(f, "{sign}{}.{:03}", abs / 1000, abs % 1000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analyze::replay::tests::replay;

    #[test]
    fn microseconds_keep_every_nanosecond() {
        let micros = |ns| Micros(ns).to_string();
        assert_eq!(micros(0), "0.000");
        assert_eq!(micros(1), "0.001");
        assert_eq!(micros(1_234_567), "1234.567");
        assert_eq!(micros(-1500), "-1.500");
        assert_eq!(micros(i64::MIN), "-9223372036854775.808");
    }

    #[test]
    fn writes_complete_events_and_names_threads_and_processes() {
        let mut chrome = Chrome::new(Vec::new(), 100);
        let summary = replay(
            &[
                (true, 100, 7, 1, "outer", ""),
                (true, 1100, 7, 2, "inner\"q", ""),
                (false, 2100, 7, 2, "inner\"q", "unwound"),
                (false, 5100, 7, 1, "outer", "ok"),
            ],
            None,
            &mut chrome,
        );
        let bytes = chrome
            .finish(&summary.names, "9.9", Some("/bin/prog -x"))
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        let events = v["traceEvents"].as_array().unwrap();
        assert_eq!(events[0]["ph"], "M");
        assert_eq!(events[0]["name"], "thread_name");
        assert_eq!(events[0]["args"]["name"], "t");
        let inner = &events[1];
        assert_eq!(inner["name"], "inner\"q");
        assert_eq!(inner["ph"], "X");
        assert_eq!(inner["ts"].as_f64(), Some(1.0));
        assert_eq!(inner["dur"].as_f64(), Some(1.0));
        assert_eq!(inner["args"]["status"], "unwound");
        assert_eq!(inner["cat"], "x");
        let outer = &events[2];
        assert_eq!(
            (outer["ts"].as_f64(), outer["dur"].as_f64()),
            (Some(0.0), Some(5.0))
        );
        assert!(outer.get("args").is_none());
        assert_eq!(events[3]["name"], "process_name");
        assert_eq!(events[3]["args"]["name"], "prog");
        assert_eq!(v["otherData"]["start_ns"], 100);
        assert_eq!(v["displayTimeUnit"], "ns");
    }
}
