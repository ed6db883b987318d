//! ferret's values as OTLP messages (the official protobuf definitions of
//! `opentelemetry-proto`): spans, the resource, gauges. Pure; shared by the
//! live exporter and `ferret export --format otlp`.
//!
//! The mapping:
//! - one trace per root call on a thread: its id is the session's salt and
//!   the root's span id, scrambled (a bijection, so roots never share a
//!   trace, and the low bytes look random to samplers that hash them);
//! - span id = ferret's span id (8 bytes, big-endian), so a span in a
//!   backend is found in the Parquet recording by its number; parent =
//!   the enclosing span ferret rebuilt on the same thread; kind INTERNAL;
//! - name = the function; `code.function` (name), `code.namespace` (the
//!   binary or library), `thread.id`, `thread.name`;
//! - status: `ok` → UNSET; `unwound` → ERROR with a message; `open` (still
//!   running when tracing stopped) → UNSET with `ferret.cut_off = true`, its
//!   end being the stop, not the call's; `ferret.status` names the two;
//! - stall reports → span events named `ferret.stall`.

use opentelemetry_proto::tonic::{
    common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value::Value},
    metrics::v1::{Gauge, Metric, NumberDataPoint, metric, number_data_point},
    resource::v1::Resource as ProtoResource,
    trace::v1::{Span, Status, span, status::StatusCode},
};

use super::select::StallNote;
use crate::sink::{MetricSample, metric as metric_defs};
use crate::trace::SpanStatus;

/// The process the spans come from, as the OTLP resource describes it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Resource {
    /// `service.name`: the executable's file name unless configured.
    pub service_name: String,
    /// `process.pid`.
    pub pid: u32,
    /// `process.executable.path`.
    pub executable_path: String,
    /// `process.command_line`.
    pub command_line: String,
    /// `host.name`.
    pub host_name: String,
    /// More attributes (`OTEL_RESOURCE_ATTRIBUTES`), strings.
    pub extra: Vec<(String, String)>,
}

impl Resource {
    /// The resource of process `pid` running `executable` as `command_line`,
    /// on this host; `service.name` is the executable's file name.
    pub fn new(pid: u32, executable: &std::path::Path, command_line: String) -> Self {
        Self {
            service_name: executable.file_name().map_or_else(
                || "ferret-target".to_owned(),
                |n| n.to_string_lossy().into_owned(),
            ),
            pid,
            executable_path: executable.display().to_string(),
            command_line,
            host_name: host_name(),
            extra: Vec::new(),
        }
    }

    /// The OTLP message for process `pid` (a followed fork has its own).
    pub fn to_proto(&self, pid: u32) -> ProtoResource {
        let mut attributes = vec![
            string("service.name", &self.service_name),
            int("process.pid", i64::from(pid)),
        ];
        if !self.executable_path.is_empty() {
            attributes.push(string("process.executable.path", &self.executable_path));
        }
        if !self.command_line.is_empty() {
            attributes.push(string("process.command_line", &self.command_line));
        }
        if !self.host_name.is_empty() {
            attributes.push(string("host.name", &self.host_name));
        }
        for (key, value) in &self.extra {
            if attributes.iter().all(|a| a.key != *key) {
                attributes.push(string(key, value));
            }
        }
        ProtoResource {
            attributes,
            ..Default::default()
        }
    }
}

/// The kernel's host name (empty if unreadable).
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_default()
}

/// Who made the spans: ferret, at this version.
pub fn scope() -> InstrumentationScope {
    InstrumentationScope {
        name: "ferret".to_owned(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        ..Default::default()
    }
}

/// One span, as the mapping needs it: ids, names, Unix times.
#[derive(Clone, Copy, Debug)]
pub struct SpanData<'a> {
    /// The trace ([`trace_id`]).
    pub trace_id: [u8; 16],
    /// ferret's span id.
    pub span_id: u64,
    /// The enclosing span's id.
    pub parent_span_id: Option<u64>,
    /// Function name.
    pub function: &'a str,
    /// The binary or library holding it.
    pub module: &'a str,
    /// Thread id.
    pub tid: u32,
    /// Thread name.
    pub thread_name: &'a str,
    /// Start, Unix ns.
    pub start_unix_ns: u64,
    /// End, Unix ns.
    pub end_unix_ns: u64,
    /// How it ended.
    pub status: SpanStatus,
    /// ferret's probe time inside it; the times above are as measured.
    pub overhead_ns: u64,
    /// Stall reports while it ran (times `CLOCK_MONOTONIC`).
    pub notes: &'a [StallNote],
    /// Stall reports not kept.
    pub dropped_notes: u32,
    /// Added to a note's time gives Unix time.
    pub realtime_offset_ns: i64,
}

/// The message for `span`.
pub fn span(data: &SpanData<'_>) -> Span {
    let mut attributes = Vec::with_capacity(6);
    attributes.push(string("code.function", data.function));
    if !data.module.is_empty() {
        attributes.push(string("code.namespace", data.module));
    }
    attributes.push(int("thread.id", i64::from(data.tid)));
    attributes.push(string("thread.name", data.thread_name));
    if data.overhead_ns > 0 {
        attributes.push(int(
            "ferret.overhead_ns",
            i64::try_from(data.overhead_ns).unwrap_or(i64::MAX),
        ));
    }
    let status = match data.status {
        SpanStatus::Ok => None,
        SpanStatus::Unwound => {
            attributes.push(string("ferret.status", "unwound"));
            Some(Status {
                code: StatusCode::Error as i32,
                message: "unwound: left without a return (exception, panic, longjmp, \
                          thread or process exit)"
                    .to_owned(),
            })
        }
        SpanStatus::Open => {
            attributes.push(string("ferret.status", "open"));
            attributes.push(KeyValue {
                key: "ferret.cut_off".to_owned(),
                value: Some(AnyValue {
                    value: Some(Value::BoolValue(true)),
                }),
                ..Default::default()
            });
            None
        }
    };
    Span {
        trace_id: data.trace_id.to_vec(),
        span_id: data.span_id.to_be_bytes().to_vec(),
        parent_span_id: data
            .parent_span_id
            .map(|p| p.to_be_bytes().to_vec())
            .unwrap_or_default(),
        name: data.function.to_owned(),
        kind: span::SpanKind::Internal as i32,
        start_time_unix_nano: data.start_unix_ns,
        end_time_unix_nano: data.end_unix_ns.max(data.start_unix_ns),
        attributes,
        events: data
            .notes
            .iter()
            .map(|note| span::Event {
                time_unix_nano: unix_ns(note.ts_ns, data.realtime_offset_ns),
                name: "ferret.stall".to_owned(),
                attributes: vec![
                    string("ferret.stall.wait", &note.wait),
                    string("ferret.stall.stack", &note.stack),
                    KeyValue {
                        key: "ferret.stall.deadlock".to_owned(),
                        value: Some(AnyValue {
                            value: Some(Value::BoolValue(note.deadlock)),
                        }),
                        ..Default::default()
                    },
                ],
                ..Default::default()
            })
            .collect(),
        dropped_events_count: data.dropped_notes,
        status,
        ..Default::default()
    }
}

/// The trace id of the root call `root` in the session salted `salt`.
pub fn trace_id(salt: u64, root: u64) -> [u8; 16] {
    let mut id = [0u8; 16];
    // A nonzero high half keeps the id valid (all-zero ids are invalid).
    id[..8].copy_from_slice(&(salt | 1 << 63).to_be_bytes());
    id[8..].copy_from_slice(&mix(root ^ salt.rotate_left(32)).to_be_bytes());
    id
}

/// splitmix64's finalizer: a bijection on u64 that scatters nearby values.
const fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A random salt: the hasher std seeds from the OS for each `RandomState`,
/// with the time and pid mixed in.
pub fn random_salt() -> u64 {
    use std::hash::{BuildHasher as _, Hasher as _};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    hasher.write_u32(std::process::id());
    hasher.finish()
}

/// A salt that depends only on `parts` (the same in every ferret build).
pub fn stable_salt(parts: &[&str]) -> u64 {
    let mut h = 0x6665_7272_6574_u64;
    for part in parts {
        for chunk in part.as_bytes().chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            h = mix(h ^ u64::from_le_bytes(word));
        }
        h = mix(h ^ part.len() as u64);
    }
    h
}

/// `CLOCK_MONOTONIC` ns plus the offset, as Unix ns (0 before the epoch).
pub fn unix_ns(ts_ns: u64, realtime_offset_ns: i64) -> u64 {
    u64::try_from(i128::from(ts_ns) + i128::from(realtime_offset_ns)).unwrap_or(0)
}

/// One gauge per measured value of `sample`: `process.memory.usage` (RSS,
/// bytes) and `process.thread.count` as the semantic conventions name
/// them; ferret's own units elsewhere (CPU in percent of one core is not
/// the conventions' `process.cpu.utilization`), named `ferret.process.*`
/// after the Parquet columns.
pub fn gauges(sample: &MetricSample, realtime_offset_ns: i64) -> Vec<Metric> {
    let time = unix_ns(sample.ts_ns, realtime_offset_ns);
    let gauge =
        |name: &str, unit: &str, description: &str, value: number_data_point::Value| Metric {
            name: name.to_owned(),
            description: description.to_owned(),
            unit: unit.to_owned(),
            data: Some(metric::Data::Gauge(Gauge {
                data_points: vec![NumberDataPoint {
                    time_unix_nano: time,
                    value: Some(value),
                    ..Default::default()
                }],
            })),
            ..Default::default()
        };
    let mut metrics = Vec::new();
    if let Some(cpu) = sample.cpu_percent {
        metrics.push(gauge(
            "ferret.process.cpu_percent",
            "%",
            "CPU used over the last interval; 100 is one core",
            number_data_point::Value::AsDouble(cpu),
        ));
    }
    if let Some(rss) = sample.rss_bytes {
        metrics.push(gauge(
            "process.memory.usage",
            "By",
            "Resident memory",
            number_data_point::Value::AsInt(rss as i64),
        ));
    }
    if let Some(threads) = sample.threads {
        metrics.push(gauge(
            "process.thread.count",
            "{thread}",
            "Threads",
            number_data_point::Value::AsInt(i64::from(threads)),
        ));
    }
    for (def, value) in metric_defs::DEFS.iter().zip(sample.extra) {
        let Some(value) = value else { continue };
        let (unit, value) = match def.unit {
            metric_defs::Unit::Percent => ("%", number_data_point::Value::AsDouble(value)),
            metric_defs::Unit::Bytes => ("By", number_data_point::Value::AsInt(value as i64)),
            metric_defs::Unit::Count => ("{count}", number_data_point::Value::AsInt(value as i64)),
            metric_defs::Unit::BytesPerS => ("By/s", number_data_point::Value::AsDouble(value)),
            metric_defs::Unit::PerS => ("1/s", number_data_point::Value::AsDouble(value)),
            metric_defs::Unit::Ratio => ("1", number_data_point::Value::AsDouble(value)),
        };
        metrics.push(gauge(
            &format!("ferret.process.{}", def.column),
            unit,
            def.label,
            value,
        ));
    }
    metrics
}

/// A string attribute.
pub fn string(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue {
            value: Some(Value::StringValue(value.to_owned())),
        }),
        ..Default::default()
    }
}

/// An integer attribute.
pub fn int(key: &str, value: i64) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue {
            value: Some(Value::IntValue(value)),
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attr<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a Value> {
        attributes
            .iter()
            .find(|a| a.key == key)
            .and_then(|a| a.value.as_ref()?.value.as_ref())
    }

    fn data(status: SpanStatus) -> SpanData<'static> {
        SpanData {
            trace_id: trace_id(42, 7),
            span_id: 0x0102,
            parent_span_id: Some(7),
            function: "app::handle",
            module: "/usr/bin/app",
            tid: 1234,
            thread_name: "worker-1",
            start_unix_ns: 1_700_000_000_000_000_000,
            end_unix_ns: 1_700_000_000_000_500_000,
            status,
            overhead_ns: 0,
            notes: &[],
            dropped_notes: 0,
            realtime_offset_ns: 0,
        }
    }

    #[test]
    fn a_returned_call_is_an_internal_span_named_after_its_function() {
        let s = span(&data(SpanStatus::Ok));
        assert_eq!(s.name, "app::handle");
        assert_eq!(s.span_id, [0, 0, 0, 0, 0, 0, 1, 2]);
        assert_eq!(s.parent_span_id, 7u64.to_be_bytes());
        assert_eq!(s.trace_id, trace_id(42, 7));
        assert_eq!(s.kind, span::SpanKind::Internal as i32);
        assert_eq!(s.end_time_unix_nano - s.start_time_unix_nano, 500_000);
        assert_eq!(s.status, None);
        let a = &s.attributes;
        assert_eq!(
            attr(a, "code.function"),
            Some(&Value::StringValue("app::handle".into()))
        );
        assert_eq!(
            attr(a, "code.namespace"),
            Some(&Value::StringValue("/usr/bin/app".into()))
        );
        assert_eq!(attr(a, "thread.id"), Some(&Value::IntValue(1234)));
        assert_eq!(
            attr(a, "thread.name"),
            Some(&Value::StringValue("worker-1".into()))
        );
        assert_eq!(attr(a, "ferret.status"), None);
    }

    #[test]
    fn a_root_has_no_parent_bytes() {
        let mut d = data(SpanStatus::Ok);
        d.parent_span_id = None;
        assert!(span(&d).parent_span_id.is_empty());
    }

    #[test]
    fn unwound_is_an_error_and_open_is_cut_off() {
        let s = span(&data(SpanStatus::Unwound));
        let status = s.status.unwrap();
        assert_eq!(status.code, StatusCode::Error as i32);
        assert!(status.message.contains("unwound"));
        let s = span(&data(SpanStatus::Open));
        assert_eq!(s.status, None, "not an error: it was still running");
        assert_eq!(
            attr(&s.attributes, "ferret.cut_off"),
            Some(&Value::BoolValue(true))
        );
        assert_eq!(
            attr(&s.attributes, "ferret.status"),
            Some(&Value::StringValue("open".into()))
        );
    }

    #[test]
    fn stall_notes_become_events_in_unix_time() {
        let notes = [StallNote {
            ts_ns: 10,
            wait: "sleeping in futex".into(),
            stack: "f1 (f.c:3)".into(),
            deadlock: true,
        }];
        let mut d = data(SpanStatus::Ok);
        d.notes = &notes;
        d.realtime_offset_ns = 1_000;
        d.dropped_notes = 2;
        let s = span(&d);
        assert_eq!(s.events.len(), 1);
        assert_eq!(s.events[0].name, "ferret.stall");
        assert_eq!(s.events[0].time_unix_nano, 1_010);
        assert_eq!(
            attr(&s.events[0].attributes, "ferret.stall.deadlock"),
            Some(&Value::BoolValue(true))
        );
        assert_eq!(s.dropped_events_count, 2);
    }

    #[test]
    fn trace_ids_are_valid_distinct_per_root_and_per_salt() {
        let mut seen = std::collections::HashSet::new();
        for salt in [0, 1, u64::MAX] {
            for root in 0..1000 {
                let id = trace_id(salt, root);
                assert_ne!(id, [0; 16]);
                assert!(seen.insert(id), "salt {salt} root {root}");
            }
        }
        assert_ne!(random_salt(), random_salt());
    }

    #[test]
    fn unix_time_adds_the_offset_and_never_wraps() {
        assert_eq!(unix_ns(5, 10), 15);
        assert_eq!(unix_ns(5, -10), 0);
    }

    #[test]
    fn resource_names_the_process_and_host() {
        let mut r = Resource::new(
            4321,
            std::path::Path::new("/opt/shop/bin/checkout"),
            "/opt/shop/bin/checkout --port 80".into(),
        );
        r.extra = vec![
            ("deployment.environment".into(), "prod".into()),
            ("service.name".into(), "ignored: set by the resource".into()),
        ];
        let p = r.to_proto(4321);
        let a = &p.attributes;
        assert_eq!(
            attr(a, "service.name"),
            Some(&Value::StringValue("checkout".into()))
        );
        assert_eq!(attr(a, "process.pid"), Some(&Value::IntValue(4321)));
        assert_eq!(
            attr(a, "process.executable.path"),
            Some(&Value::StringValue("/opt/shop/bin/checkout".into()))
        );
        assert_eq!(
            attr(a, "process.command_line"),
            Some(&Value::StringValue(
                "/opt/shop/bin/checkout --port 80".into()
            ))
        );
        assert!(attr(a, "host.name").is_some());
        assert_eq!(
            attr(a, "deployment.environment"),
            Some(&Value::StringValue("prod".into()))
        );
        assert_eq!(a.iter().filter(|k| k.key == "service.name").count(), 1);
    }

    #[test]
    fn metrics_are_gauges_with_units() {
        let mut sample = MetricSample::basic(2, 9, "app".into(), Some(50.0), Some(4096), Some(3));
        sample.extra[metric_defs::IPC] = Some(1.5);
        let metrics = gauges(&sample, 1);
        let names: Vec<&str> = metrics.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "ferret.process.cpu_percent",
                "process.memory.usage",
                "process.thread.count",
                "ferret.process.ipc"
            ]
        );
        let Some(metric::Data::Gauge(g)) = &metrics[1].data else {
            panic!("a gauge")
        };
        assert_eq!(g.data_points[0].time_unix_nano, 3);
        assert_eq!(
            g.data_points[0].value,
            Some(number_data_point::Value::AsInt(4096))
        );
        assert_eq!(metrics[1].unit, "By");
    }
}
