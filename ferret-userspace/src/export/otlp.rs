//! OTLP JSON lines: a recording as the OpenTelemetry Collector's file
//! exporter writes traces, so its `otlpjsonfile` receiver (or anything
//! reading the OTLP/JSON encoding) can send a recording made offline.
//!
//! One `ExportTraceServiceRequest` per line, in the protobuf JSON mapping
//! OTLP prescribes (trace and span ids as hex, 64-bit nanoseconds as
//! strings, enums as numbers), serialized by `opentelemetry-proto`'s own
//! serde definitions; the spans map as the live exporter maps them (see
//! [`crate::otlp::map`]). Spans are written as they end, a line per
//! [`LINE_SPANS`], so the export streams.
//!
//! Trace ids are salted with the recording's identity (target, start
//! offset), so exporting a file twice gives the same ids: a collector sees
//! the same spans, not copies. `METRIC` and `STALL` rows are not exported.

use std::io::{self, Write};
use std::path::Path;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;

use crate::analyze::replay::{Ended, Names, Started, Status, Visitor};
use crate::otlp::exporter::encode_spans;
use crate::otlp::map::{self, Resource};
use crate::otlp::select::Finished;
use crate::trace::FunctionInfo;
use crate::trace::{SpanStatus, ThreadName};

/// Spans per line (per request).
pub const LINE_SPANS: usize = 1024;

/// Writes the lines while a replay runs; check [`Self::finish`] for errors.
pub struct OtlpJson<W: Write> {
    w: W,
    resource: Resource,
    salt: u64,
    realtime_offset_ns: i64,
    /// The spans of the line being built; names as a probe table.
    pending: Vec<Finished>,
    functions: Vec<FunctionInfo>,
    /// Function index in the replay → in `functions`, where known.
    function_map: Vec<Option<u32>>,
    error: Option<io::Error>,
    /// Spans written.
    pub spans: u64,
    /// Lines written.
    pub lines: u64,
}

impl<W: Write> OtlpJson<W> {
    /// A writer for a recording of `target` (its metadata's `ferret.target`)
    /// whose clocks differ by `realtime_offset_ns`.
    pub fn new(w: W, target: Option<&str>, realtime_offset_ns: i64) -> Self {
        let (executable, command_line) = target.map_or(("", ""), split_target);
        let mut resource = Resource::new(0, Path::new(executable), command_line.to_owned());
        if executable.is_empty() {
            "ferret-recording".clone_into(&mut resource.service_name);
        }
        // Where the recording was made is not in the file; this host would
        // be a guess.
        resource.host_name.clear();
        Self {
            w,
            resource,
            salt: map::stable_salt(&[target.unwrap_or(""), &realtime_offset_ns.to_string()]),
            realtime_offset_ns,
            pending: Vec::with_capacity(LINE_SPANS),
            functions: Vec::new(),
            function_map: Vec::new(),
            error: None,
            spans: 0,
            lines: 0,
        }
    }

    fn push(&mut self, names: &Names, span: &Ended, parent: Option<u64>, root: u64) {
        let ix = span.function.0 as usize;
        if ix >= self.function_map.len() {
            self.function_map.resize(ix + 1, None);
        }
        let function = *self.function_map[ix].get_or_insert_with(|| {
            let f = names.function(span.function);
            self.functions.push(FunctionInfo {
                name: f.name.clone(),
                module: f.module.clone(),
            });
            self.functions.len() as u32 - 1
        });
        let thread = names.thread(span.thread);
        self.pending.push(Finished {
            span_id: span.id as u64,
            parent_span_id: parent,
            root_span_id: root,
            pid: thread.pid as u32,
            tid: thread.tid as u32,
            thread_name: ThreadName::new(&thread.name),
            function,
            start_ns: span.start_ns as u64,
            end_ns: span.end_ns as u64,
            status: match span.status {
                Status::Ok => SpanStatus::Ok,
                Status::Unwound => SpanStatus::Unwound,
                Status::Open | Status::Cut => SpanStatus::Open,
            },
            overhead_ns: span.overhead_ns,
            notes: Vec::new(),
            dropped_notes: 0,
        });
        if self.pending.len() >= LINE_SPANS {
            self.flush_line();
        }
    }

    fn flush_line(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let request: ExportTraceServiceRequest = encode_spans(
            &self.pending,
            &self.resource,
            &self.functions,
            self.salt,
            self.realtime_offset_ns,
        );
        self.spans += self.pending.len() as u64;
        self.pending.clear();
        if self.error.is_some() {
            return;
        }
        let written = serde_json::to_writer(&mut self.w, &request)
            .map_err(io::Error::from)
            .and_then(|()| self.w.write_all(b"\n"));
        match written {
            Ok(()) => self.lines += 1,
            Err(e) => self.error = Some(e),
        }
    }

    /// Writes the last line and returns the writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.flush_line();
        match self.error {
            Some(e) => Err(e),
            None => Ok(self.w),
        }
    }
}

/// A span's own id and the id of the root call it runs under.
#[derive(Clone, Copy, Debug)]
pub struct Frame {
    id: u64,
    root: u64,
}

impl<W: Write> Visitor for OtlpJson<W> {
    type Frame = Frame;

    fn start(&mut self, _: &Names, span: &Started, parent: Option<&mut Frame>) -> Frame {
        let id = span.id as u64;
        Frame {
            id,
            root: parent.map_or(id, |p| p.root),
        }
    }

    fn end(&mut self, names: &Names, span: &Ended, frame: Frame, parent: Option<&mut Frame>) {
        self.push(names, span, parent.map(|p| p.id), frame.root);
    }

    fn orphan(&mut self, names: &Names, span: &Ended) {
        // Its place in a stack is unknown: a trace of its own.
        self.push(names, span, None, span.id as u64);
    }
}

/// The executable and command line in a recording's `ferret.target`:
/// `pid 1234 (CMDLINE)` for an attached process, the command line itself
/// for a launched one.
fn split_target(target: &str) -> (&str, &str) {
    let command_line = target
        .strip_prefix("pid ")
        .and_then(|rest| rest.split_once(" ("))
        .and_then(|(_, rest)| rest.strip_suffix(')'))
        .unwrap_or(target);
    let executable = command_line.split_whitespace().next().unwrap_or("");
    (executable, command_line)
}

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::common::v1::any_value::Value;

    use super::*;
    use crate::analyze::replay::tests::{Spec, replay};

    #[test]
    fn targets_name_the_executable_and_command_line() {
        assert_eq!(
            split_target("pid 42 (/usr/bin/app --flag x)"),
            ("/usr/bin/app", "/usr/bin/app --flag x")
        );
        assert_eq!(split_target("./prog 4 300"), ("./prog", "./prog 4 300"));
        assert_eq!(split_target(""), ("", ""));
    }

    #[test]
    fn lines_parse_back_as_requests_with_parents_and_traces() {
        // Thread 1: a [0, 100] → b [10, 20], then c [200, 250] unwound.
        let rows: Vec<Spec<'_>> = vec![
            (true, 0, 1, 1, "a", "ok"),
            (true, 10, 1, 2, "b", "ok"),
            (false, 20, 1, 2, "b", "ok"),
            (false, 100, 1, 1, "a", "ok"),
            (true, 200, 1, 3, "c", "ok"),
            (false, 250, 1, 3, "c", "unwound"),
        ];
        let mut out = OtlpJson::new(Vec::new(), Some("./prog 1"), 1_000);
        replay(&rows, None, &mut out);
        let bytes = out.finish().unwrap();
        let text = String::from_utf8(bytes).unwrap();
        assert_eq!(text.lines().count(), 1);
        let json: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
        let span0 = &json["resourceSpans"][0]["scopeSpans"][0]["spans"][0];
        assert_eq!(span0["spanId"], "0000000000000002", "hex ids");
        assert_eq!(span0["parentSpanId"], "0000000000000001");
        assert_eq!(span0["startTimeUnixNano"], "1010", "int64 as a string");
        let request: ExportTraceServiceRequest = serde_json::from_str(text.trim()).unwrap();
        let resource = request.resource_spans[0].resource.as_ref().unwrap();
        let service = resource
            .attributes
            .iter()
            .find(|a| a.key == "service.name")
            .and_then(|a| a.value.as_ref()?.value.clone());
        assert_eq!(service, Some(Value::StringValue("prog".into())));
        let spans = &request.resource_spans[0].scope_spans[0].spans;
        let names: Vec<&str> = spans.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["b", "a", "c"]);
        assert_eq!(spans[0].trace_id, spans[1].trace_id, "b under a");
        assert_ne!(spans[1].trace_id, spans[2].trace_id, "c is a root");
        assert!(spans[1].parent_span_id.is_empty());
        assert_eq!(spans[2].status.as_ref().map(|s| s.code), Some(2));
        assert_eq!(
            spans[1].end_time_unix_nano - spans[1].start_time_unix_nano,
            100
        );
    }

    #[test]
    fn the_same_recording_exports_to_the_same_ids() {
        let rows: Vec<Spec<'_>> = vec![(true, 0, 1, 1, "a", "ok"), (false, 5, 1, 1, "a", "ok")];
        let export = || {
            let mut out = OtlpJson::new(Vec::new(), Some("./prog"), 7);
            replay(&rows, None, &mut out);
            out.finish().unwrap()
        };
        assert_eq!(export(), export());
    }
}
