//! The exporter: a thread of its own that batches chosen spans into OTLP
//! requests, gzips them and POSTs them, retrying transient failures with
//! backoff, so the caller never waits for the network.
//!
//! The caller's side ([`Exporter`]) does the selection (see [`super::select`])
//! and hands chosen spans over an unbounded channel whose fill is bounded
//! by a counter: when the collector is slow or away the queue fills and
//! further spans are dropped and counted, at the cost of one atomic add.
//! Everything that allocates or encodes (names, attributes, protobuf,
//! gzip, HTTP) happens on the exporter thread.

use std::{
    io::Write as _,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, AtomicUsize, Ordering},
        mpsc,
    },
    thread,
    time::{Duration, Instant},
};

use flate2::{Compression, write::GzEncoder};
use opentelemetry_proto::tonic::{
    collector::{
        metrics::v1::{ExportMetricsServiceRequest, ExportMetricsServiceResponse},
        trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse},
    },
    metrics::v1::{ResourceMetrics, ScopeMetrics},
    trace::v1::{ResourceSpans, ScopeSpans},
};
use prost::Message as _;

use super::{
    Config, OtlpError, Stats,
    map::{self, Resource, SpanData},
    select::{Finished, Selection, Tracker},
};
use crate::stall::StallReport;
use crate::trace::SpanEvent;
use crate::{sink::MetricSample, trace::FunctionInfo};

/// Metric samples queued at most (one a second is usual).
const MAX_QUEUED_METRICS: usize = 120;

/// The caller's handle on the exporter: feed it span events, metric
/// samples and stall reports from any loop; none of these calls waits.
pub struct Exporter {
    tracker: Tracker,
    chosen: Vec<Finished>,
    tx: Option<mpsc::Sender<Message>>,
    done: mpsc::Receiver<()>,
    shared: Arc<Shared>,
    max_queue_spans: usize,
    metrics: bool,
    /// Spans chosen but dropped at a full queue.
    dropped: u64,
    metrics_dropped: u64,
    endpoint: String,
    thread: Option<thread::JoinHandle<()>>,
}

enum Message {
    Spans(Vec<Finished>),
    Metric(Box<MetricSample>),
    /// The probe table grew (functions traced while the session runs).
    Functions(Arc<[FunctionInfo]>),
    /// Send everything, then stop; give up on what is left at the deadline.
    Finish(Instant),
}

/// Counters the exporter thread keeps and the caller reads.
#[derive(Default)]
struct Shared {
    /// Spans in the channel.
    queued: AtomicUsize,
    /// Metric samples in the channel.
    queued_metrics: AtomicUsize,
    /// Spans taken off the channel, not yet sent or given up on.
    pending: AtomicU64,
    sent: AtomicU64,
    failed: AtomicU64,
    unsent_at_finish: AtomicU64,
    metric_samples_sent: AtomicU64,
    metric_samples_failed: AtomicU64,
    requests: AtomicU64,
    retries: AtomicU64,
    last_error: Mutex<Option<String>>,
}

impl Shared {
    fn error(&self, message: String) {
        *self
            .last_error
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(message);
    }
}

impl Exporter {
    /// Starts the exporter thread for spans of the functions in
    /// `functions` (the probe table span events index) from `resource`.
    pub fn start(
        config: Config,
        mut resource: Resource,
        functions: Arc<[FunctionInfo]>,
    ) -> Result<Self, OtlpError> {
        if let Some(name) = &config.service_name {
            resource.service_name.clone_from(name);
        }
        resource.extra.extend(config.resource_attributes.clone());
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(config.request_timeout))
            .timeout_connect(Some(config.request_timeout.min(Duration::from_secs(3))))
            .user_agent(format!("ferret/{}", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        let shared = Arc::new(Shared::default());
        let (tx, rx) = mpsc::channel();
        let (done_tx, done) = mpsc::channel();
        let selection = Selection {
            min_duration_ns: u64::try_from(config.min_duration.as_nanos()).unwrap_or(u64::MAX),
            max_spans_per_s: config.max_spans_per_s,
        };
        let max_queue_spans = config.max_queue_spans.max(1);
        let metrics = config.metrics_url.is_some();
        let endpoint = config.traces_url.clone();
        let worker = Worker {
            salt: config.trace_salt.unwrap_or_else(map::random_salt),
            config,
            resource,
            functions,
            agent,
            shared: Arc::clone(&shared),
            pending: Vec::new(),
            samples: Vec::new(),
            body: Vec::new(),
        };
        let thread = thread::Builder::new()
            .name("ferret-otlp".into())
            .spawn(move || {
                worker.run(&rx);
                let _ = done_tx.send(());
            })
            .map_err(OtlpError::Thread)?;
        Ok(Self {
            tracker: Tracker::new(selection),
            chosen: Vec::new(),
            tx: Some(tx),
            done,
            shared,
            max_queue_spans,
            metrics,
            dropped: 0,
            metrics_dropped: 0,
            endpoint,
            thread: Some(thread),
        })
    }

    /// The traces endpoint.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Follows a batch of span events; ended spans that are chosen go to
    /// the exporter thread, or are dropped (and counted) if its queue is full.
    pub fn spans(&mut self, events: &[SpanEvent]) {
        self.tracker.push(events, &mut self.chosen);
        if self.chosen.is_empty() {
            return;
        }
        let queued = self.shared.queued.load(Ordering::Relaxed);
        let room = self.max_queue_spans.saturating_sub(queued);
        if self.chosen.len() > room {
            self.dropped += (self.chosen.len() - room) as u64;
            self.chosen.truncate(room);
            if room == 0 {
                return;
            }
        }
        let batch = std::mem::take(&mut self.chosen);
        let n = batch.len();
        self.shared.queued.fetch_add(n, Ordering::Relaxed);
        if let Some(tx) = &self.tx
            && tx.send(Message::Spans(batch)).is_ok()
        {
            return;
        }
        // The thread is gone (it panicked): nothing more can be sent.
        self.shared.queued.fetch_sub(n, Ordering::Relaxed);
        self.dropped += n as u64;
    }

    /// Queues a metrics sample for `/v1/metrics` (if there is a metrics endpoint).
    pub fn metric(&mut self, sample: &MetricSample) {
        if !self.metrics {
            return;
        }
        if self.shared.queued_metrics.load(Ordering::Relaxed) >= MAX_QUEUED_METRICS {
            self.metrics_dropped += 1;
            return;
        }
        self.shared.queued_metrics.fetch_add(1, Ordering::Relaxed);
        let sent = self
            .tx
            .as_ref()
            .is_some_and(|tx| tx.send(Message::Metric(Box::new(sample.clone()))).is_ok());
        if !sent {
            self.shared.queued_metrics.fetch_sub(1, Ordering::Relaxed);
            self.metrics_dropped += 1;
        }
    }

    /// The probe table grew: spans sent from now on may name its new
    /// entries (the table travels with the spans, in order).
    pub fn set_functions(&mut self, functions: Arc<[FunctionInfo]>) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(Message::Functions(functions));
        }
    }

    /// Attaches stall reports to their spans, as span events.
    pub fn stalls(&mut self, reports: &[StallReport]) {
        for report in reports {
            self.tracker.stall(report);
        }
    }

    /// The counts so far.
    pub fn stats(&self) -> Stats {
        let s = &self.shared;
        let select = self.tracker.counts();
        Stats {
            ended: select.ended,
            chosen: select.chosen,
            below_min_duration: select.below_min_duration,
            over_cap: select.over_cap,
            dropped: self.dropped,
            queued: s.queued.load(Ordering::Relaxed) as u64 + s.pending.load(Ordering::Relaxed),
            sent: s.sent.load(Ordering::Relaxed),
            failed: s.failed.load(Ordering::Relaxed),
            unsent_at_finish: s.unsent_at_finish.load(Ordering::Relaxed),
            metric_samples_sent: s.metric_samples_sent.load(Ordering::Relaxed),
            metric_samples_unsent: s.metric_samples_failed.load(Ordering::Relaxed)
                + self.metrics_dropped,
            stall_events: select.stall_notes,
            stalls_unattached: select.stalls_unattached,
            requests: s.requests.load(Ordering::Relaxed),
            retries: s.retries.load(Ordering::Relaxed),
            last_error: s
                .last_error
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone(),
        }
    }

    /// Sends what is queued, waiting at most `timeout` (retries stop at the
    /// deadline); returns the final counts. Spans still queued or open then
    /// count as unsent.
    pub fn finish(mut self, timeout: Duration) -> Stats {
        let deadline = Instant::now() + timeout;
        if let Some(tx) = self.tx.take() {
            let _ = tx.send(Message::Finish(deadline));
        }
        // A request under way when the deadline passes is given a little
        // longer to come back (its own timeout is cut to the deadline).
        let finished = self
            .done
            .recv_timeout(timeout + Duration::from_millis(500))
            .is_ok();
        if finished {
            if let Some(thread) = self.thread.take() {
                let _ = thread.join();
            }
        } else {
            // Left to die with the process; what it holds is unsent.
            let s = &self.shared;
            let left =
                s.queued.swap(0, Ordering::Relaxed) as u64 + s.pending.swap(0, Ordering::Relaxed);
            s.unsent_at_finish.fetch_add(left, Ordering::Relaxed);
        }
        self.stats()
    }
}

/// The exporter thread's state.
struct Worker {
    config: Config,
    resource: Resource,
    functions: Arc<[FunctionInfo]>,
    agent: ureq::Agent,
    shared: Arc<Shared>,
    salt: u64,
    pending: Vec<Finished>,
    samples: Vec<MetricSample>,
    /// The gzipped body, reused.
    body: Vec<u8>,
}

/// How a request ended.
enum Posted {
    /// 2xx; the response body.
    Accepted(Vec<u8>),
    /// Refused, or failed after the retries; why.
    Failed(String),
}

impl Worker {
    fn run(mut self, rx: &mpsc::Receiver<Message>) {
        let mut next_flush = Instant::now() + self.config.flush_every;
        loop {
            let wait = next_flush.saturating_duration_since(Instant::now());
            match rx.recv_timeout(wait) {
                Ok(Message::Spans(spans)) => {
                    let n = spans.len();
                    self.shared.pending.fetch_add(n as u64, Ordering::Relaxed);
                    self.shared.queued.fetch_sub(n, Ordering::Relaxed);
                    self.pending.extend(spans);
                    while self.pending.len() >= self.config.batch_spans {
                        self.send_spans(None);
                    }
                }
                Ok(Message::Metric(sample)) => {
                    self.shared.queued_metrics.fetch_sub(1, Ordering::Relaxed);
                    self.samples.push(*sample);
                }
                Ok(Message::Functions(functions)) => self.functions = functions,
                Ok(Message::Finish(deadline)) => {
                    while !self.pending.is_empty() && Instant::now() < deadline {
                        self.send_spans(Some(deadline));
                    }
                    if !self.samples.is_empty() && Instant::now() < deadline {
                        self.send_metrics(Some(deadline));
                    }
                    break;
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    while !self.pending.is_empty() {
                        self.send_spans(None);
                    }
                    if !self.samples.is_empty() {
                        self.send_metrics(None);
                    }
                    next_flush = Instant::now() + self.config.flush_every;
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        let left = self.pending.len() as u64;
        self.shared.pending.fetch_sub(left, Ordering::Relaxed);
        self.shared
            .unsent_at_finish
            .fetch_add(left, Ordering::Relaxed);
        self.shared
            .metric_samples_failed
            .fetch_add(self.samples.len() as u64, Ordering::Relaxed);
    }

    /// Sends one batch (the oldest pending spans).
    fn send_spans(&mut self, deadline: Option<Instant>) {
        let n = self.pending.len().min(self.config.batch_spans);
        let batch: Vec<Finished> = self.pending.drain(..n).collect();
        let request = encode_spans(
            &batch,
            &self.resource,
            &self.functions,
            self.salt,
            self.config.realtime_offset_ns,
        );
        let url = self.config.traces_url.clone();
        let posted = self.post(&url, &request.encode_to_vec(), deadline);
        self.shared.pending.fetch_sub(n as u64, Ordering::Relaxed);
        let n = n as u64;
        match posted {
            Posted::Accepted(body) => {
                let rejected = ExportTraceServiceResponse::decode(body.as_slice())
                    .ok()
                    .and_then(|r| r.partial_success)
                    .map_or(0, |p| {
                        if p.rejected_spans > 0 {
                            self.shared.error(format!(
                                "the collector rejected {} spans: {}",
                                p.rejected_spans, p.error_message
                            ));
                        }
                        u64::try_from(p.rejected_spans).unwrap_or(0).min(n)
                    });
                self.shared.sent.fetch_add(n - rejected, Ordering::Relaxed);
                self.shared.failed.fetch_add(rejected, Ordering::Relaxed);
            }
            Posted::Failed(why) => {
                self.shared.failed.fetch_add(n, Ordering::Relaxed);
                self.shared.error(why);
            }
        }
    }

    fn send_metrics(&mut self, deadline: Option<Instant>) {
        let samples = std::mem::take(&mut self.samples);
        let Some(url) = self.config.metrics_url.clone() else {
            return;
        };
        let request = encode_metrics(&samples, &self.resource, self.config.realtime_offset_ns);
        let n = samples.len() as u64;
        match self.post(&url, &request.encode_to_vec(), deadline) {
            Posted::Accepted(body) => {
                if let Some(p) = ExportMetricsServiceResponse::decode(body.as_slice())
                    .ok()
                    .and_then(|r| r.partial_success)
                    .filter(|p| p.rejected_data_points > 0)
                {
                    self.shared.error(format!(
                        "the collector rejected {} metric points: {}",
                        p.rejected_data_points, p.error_message
                    ));
                }
                self.shared
                    .metric_samples_sent
                    .fetch_add(n, Ordering::Relaxed);
            }
            Posted::Failed(why) => {
                self.shared
                    .metric_samples_failed
                    .fetch_add(n, Ordering::Relaxed);
                self.shared.error(why);
            }
        }
    }

    /// POSTs `message` gzipped to `url`, retrying transient failures.
    fn post(&mut self, url: &str, message: &[u8], deadline: Option<Instant>) -> Posted {
        self.body.clear();
        let mut gz = GzEncoder::new(std::mem::take(&mut self.body), Compression::fast());
        // Writing to a Vec cannot fail.
        let _ = gz.write_all(message);
        self.body = gz.finish().unwrap_or_default();
        let mut backoff = self.config.first_backoff;
        let mut attempt = 1;
        loop {
            let timeout = deadline.map_or(self.config.request_timeout, |d| {
                d.saturating_duration_since(Instant::now())
                    .min(self.config.request_timeout)
            });
            if timeout.is_zero() {
                return Posted::Failed(format!("{url}: out of time at the end of the session"));
            }
            self.shared.requests.fetch_add(1, Ordering::Relaxed);
            let mut request = self
                .agent
                .post(url)
                .config()
                .timeout_global(Some(timeout))
                .build()
                .header("Content-Type", "application/x-protobuf")
                .header("Content-Encoding", "gzip");
            for (key, value) in &self.config.headers {
                request = request.header(key.as_str(), value.as_str());
            }
            let (why, retry_after) = match request.send(self.body.as_slice()) {
                Ok(mut response) => {
                    let status = response.status().as_u16();
                    if (200..300).contains(&status) {
                        let body = response
                            .body_mut()
                            .with_config()
                            .limit(1 << 20)
                            .read_to_vec()
                            .unwrap_or_default();
                        return Posted::Accepted(body);
                    }
                    let why = format!("{url}: HTTP {status}");
                    if !matches!(status, 429 | 502 | 503 | 504) {
                        return Posted::Failed(why);
                    }
                    let retry_after = response
                        .headers()
                        .get("retry-after")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .map(|s| Duration::from_secs(s.min(30)));
                    (why, retry_after)
                }
                Err(e) if transient(&e) => (format!("{url}: {e}"), None),
                Err(e) => return Posted::Failed(format!("{url}: {e}")),
            };
            if attempt >= self.config.max_attempts {
                return Posted::Failed(why);
            }
            let pause = retry_after.unwrap_or(backoff);
            if deadline.is_some_and(|d| Instant::now() + pause >= d) {
                return Posted::Failed(why);
            }
            self.shared.retries.fetch_add(1, Ordering::Relaxed);
            thread::sleep(pause);
            backoff = (backoff * 2).min(Duration::from_secs(5));
            attempt += 1;
        }
    }
}

/// Errors worth trying again: the collector may be back in a moment.
fn transient(e: &ureq::Error) -> bool {
    matches!(
        e,
        ureq::Error::Io(_)
            | ureq::Error::Timeout(_)
            | ureq::Error::ConnectionFailed
            | ureq::Error::HostNotFound
            | ureq::Error::Protocol(_)
    )
}

/// One request for `spans`: a `ResourceSpans` per process (a followed fork
/// is a process of its own), one scope (ferret).
pub fn encode_spans(
    spans: &[Finished],
    resource: &Resource,
    functions: &[FunctionInfo],
    salt: u64,
    realtime_offset_ns: i64,
) -> ExportTraceServiceRequest {
    let mut by_pid: Vec<(u32, ResourceSpans)> = Vec::new();
    for f in spans {
        let info = functions.get(f.function as usize);
        let span = map::span(&SpanData {
            trace_id: map::trace_id(salt, f.root_span_id),
            span_id: f.span_id,
            parent_span_id: f.parent_span_id,
            function: info.map_or("?", |i| i.name.as_str()),
            module: info.map_or("", |i| i.module.as_str()),
            tid: f.tid,
            thread_name: f.thread_name.as_str(),
            start_unix_ns: map::unix_ns(f.start_ns, realtime_offset_ns),
            end_unix_ns: map::unix_ns(f.end_ns, realtime_offset_ns),
            status: f.status,
            overhead_ns: f.overhead_ns,
            notes: &f.notes,
            dropped_notes: f.dropped_notes,
            realtime_offset_ns,
        });
        let index = if let Some(i) = by_pid.iter().position(|(pid, _)| *pid == f.pid) {
            i
        } else {
            by_pid.push((
                f.pid,
                ResourceSpans {
                    resource: Some(resource.to_proto(f.pid)),
                    scope_spans: vec![ScopeSpans {
                        scope: Some(map::scope()),
                        ..Default::default()
                    }],
                    ..Default::default()
                },
            ));
            by_pid.len() - 1
        };
        by_pid[index].1.scope_spans[0].spans.push(span);
    }
    ExportTraceServiceRequest {
        resource_spans: by_pid.into_iter().map(|(_, r)| r).collect(),
    }
}

/// One request for `samples`.
pub fn encode_metrics(
    samples: &[MetricSample],
    resource: &Resource,
    realtime_offset_ns: i64,
) -> ExportMetricsServiceRequest {
    let mut by_pid: Vec<(u32, ResourceMetrics)> = Vec::new();
    for sample in samples {
        let metrics = map::gauges(sample, realtime_offset_ns);
        let index = if let Some(i) = by_pid.iter().position(|(pid, _)| *pid == sample.pid) {
            i
        } else {
            by_pid.push((
                sample.pid,
                ResourceMetrics {
                    resource: Some(resource.to_proto(sample.pid)),
                    scope_metrics: vec![ScopeMetrics {
                        scope: Some(map::scope()),
                        ..Default::default()
                    }],
                    ..Default::default()
                },
            ));
            by_pid.len() - 1
        };
        by_pid[index].1.scope_metrics[0].metrics.extend(metrics);
    }
    ExportMetricsServiceRequest {
        resource_metrics: by_pid.into_iter().map(|(_, r)| r).collect(),
    }
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead as _, BufReader, Read as _};
    use std::net::TcpListener;

    use flate2::read::GzDecoder;

    use super::*;
    use crate::otlp::select::tests::Script;

    /// One request as the test collector got it.
    struct Got {
        headers: Vec<String>,
        body: Vec<u8>,
    }

    /// A collector on loopback answering each request with the next status
    /// of `statuses` (the last one repeats); `hang` holds every connection
    /// without answering.
    fn collector(statuses: Vec<u16>, hang: bool) -> (String, Arc<Mutex<Vec<Got>>>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let got = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&got);
        thread::spawn(move || {
            let mut answered = 0;
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                if hang {
                    // Keep it open, say nothing.
                    std::mem::forget(stream);
                    continue;
                }
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut stream = stream;
                loop {
                    let mut headers = Vec::new();
                    let mut line = String::new();
                    loop {
                        line.clear();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            break;
                        }
                        if line == "\r\n" {
                            break;
                        }
                        headers.push(line.trim_end().to_ascii_lowercase());
                    }
                    if headers.is_empty() {
                        break;
                    }
                    let length: usize = headers
                        .iter()
                        .find_map(|h| h.strip_prefix("content-length: "))
                        .expect("a content-length")
                        .parse()
                        .unwrap();
                    let mut body = vec![0; length];
                    reader.read_exact(&mut body).unwrap();
                    seen.lock().unwrap().push(Got { headers, body });
                    let status = statuses[answered.min(statuses.len() - 1)];
                    answered += 1;
                    let reply = format!(
                        "HTTP/1.1 {status} X\r\ncontent-length: 0\r\nretry-after: 0\r\n\r\n"
                    );
                    if stream.write_all(reply.as_bytes()).is_err() {
                        break;
                    }
                }
            }
        });
        (url, got)
    }

    fn config(url: &str) -> Config {
        let mut c = Config::new(url).unwrap();
        c.first_backoff = Duration::from_millis(10);
        c.flush_every = Duration::from_millis(50);
        c.trace_salt = Some(1);
        c
    }

    fn functions() -> Arc<[FunctionInfo]> {
        (0..4)
            .map(|i| FunctionInfo {
                name: format!("f{i}"),
                module: "/bin/app".into(),
            })
            .collect()
    }

    /// `n` root calls, each with one child: `2 n` spans.
    fn calls(n: u64) -> Vec<SpanEvent> {
        let mut s = Script::default();
        for i in 0..n {
            let (root, child, t) = (2 * i + 1, 2 * i + 2, i * 100);
            s.start(root, None, 0, t)
                .start(child, Some(root), 1, t + 1)
                .end(child, Some(root), t + 1, t + 2)
                .end(root, None, t, t + 3);
        }
        s.events
    }

    fn decode(got: &Got) -> ExportTraceServiceRequest {
        let mut raw = Vec::new();
        GzDecoder::new(got.body.as_slice())
            .read_to_end(&mut raw)
            .unwrap();
        ExportTraceServiceRequest::decode(raw.as_slice()).unwrap()
    }

    #[test]
    fn spans_reach_the_collector_as_gzipped_protobuf_with_the_headers() {
        let (url, got) = collector(vec![200], false);
        let mut c = config(&url);
        c.headers = vec![("x-api-key".into(), "secret".into())];
        let mut exporter = Exporter::start(
            c,
            Resource::new(100, "/bin/app".as_ref(), "app".into()),
            functions(),
        )
        .unwrap();
        exporter.spans(&calls(10));
        let stats = exporter.finish(Duration::from_secs(5));
        assert_eq!(
            (stats.sent, stats.unsent(), stats.queued),
            (20, 0, 0),
            "{stats:?}"
        );
        let got = got.lock().unwrap();
        let traces: Vec<&Got> = got
            .iter()
            .filter(|g| g.headers[0].starts_with("post /v1/traces"))
            .collect();
        assert_eq!(traces.len(), 1);
        let h = &traces[0].headers;
        assert!(
            h.contains(&"content-type: application/x-protobuf".to_owned()),
            "{h:?}"
        );
        assert!(h.contains(&"content-encoding: gzip".to_owned()), "{h:?}");
        assert!(h.contains(&"x-api-key: secret".to_owned()), "{h:?}");
        let request = decode(traces[0]);
        let spans = &request.resource_spans[0].scope_spans[0].spans;
        assert_eq!(spans.len(), 20);
        assert_eq!(spans[0].name, "f2", "the child ends first");
        assert_eq!(spans[0].parent_span_id, spans[1].span_id);
        assert_eq!(spans[0].trace_id, spans[1].trace_id);
        assert_ne!(spans[1].trace_id, spans[3].trace_id, "a trace per root");
    }

    #[test]
    fn transient_failures_are_retried_and_permanent_ones_are_not() {
        let (url, got) = collector(vec![503, 429, 200], false);
        let mut exporter = Exporter::start(config(&url), Resource::default(), functions()).unwrap();
        exporter.spans(&calls(3));
        let stats = exporter.finish(Duration::from_secs(5));
        assert_eq!(
            (stats.sent, stats.retries, stats.failed),
            (6, 2, 0),
            "{stats:?}"
        );
        assert_eq!(got.lock().unwrap().len(), 3);

        let (url, got) = collector(vec![400], false);
        let mut exporter = Exporter::start(config(&url), Resource::default(), functions()).unwrap();
        exporter.spans(&calls(3));
        let stats = exporter.finish(Duration::from_secs(5));
        assert_eq!(
            (stats.sent, stats.retries, stats.failed),
            (0, 0, 6),
            "{stats:?}"
        );
        assert!(stats.last_error.unwrap().contains("HTTP 400"));
        assert_eq!(got.lock().unwrap().len(), 1);
    }

    #[test]
    fn a_full_queue_drops_and_counts_instead_of_waiting() {
        let (url, _got) = collector(vec![200], true);
        let mut c = config(&url);
        c.max_queue_spans = 8;
        c.batch_spans = 4;
        c.request_timeout = Duration::from_secs(30);
        let mut exporter = Exporter::start(c, Resource::default(), functions()).unwrap();
        let began = Instant::now();
        for _ in 0..50 {
            exporter.spans(&calls(5));
        }
        assert!(
            began.elapsed() < Duration::from_millis(500),
            "never waits: {:?}",
            began.elapsed()
        );
        // What is held: the queue, and what the thread took off it before
        // it got stuck in its first request (at most a queue's worth).
        let mid = exporter.stats();
        assert_eq!(mid.dropped + mid.queued, 500, "{mid:?}");
        assert!(mid.queued <= 16, "{mid:?}");
        let began = Instant::now();
        let stats = exporter.finish(Duration::from_millis(300));
        assert!(began.elapsed() < Duration::from_secs(2), "a bounded wait");
        assert_eq!(stats.chosen, 500);
        assert_eq!(stats.sent, 0);
        assert_eq!(stats.unsent(), 500, "{stats:?}");
    }

    #[test]
    fn a_dead_collector_leaves_every_span_counted_unsent() {
        // A port nothing listens on: bind one, then close it.
        let url = {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            format!("http://{}", l.local_addr().unwrap())
        };
        let mut exporter = Exporter::start(config(&url), Resource::default(), functions()).unwrap();
        exporter.spans(&calls(4));
        let stats = exporter.finish(Duration::from_secs(1));
        assert_eq!(stats.sent, 0);
        assert_eq!(stats.unsent(), 8, "{stats:?}");
        assert!(
            stats.retries > 0,
            "connection errors are retried: {stats:?}"
        );
    }

    #[test]
    fn metrics_go_to_their_own_endpoint() {
        let (url, got) = collector(vec![200], false);
        let mut exporter = Exporter::start(config(&url), Resource::default(), functions()).unwrap();
        exporter.metric(&MetricSample::basic(
            1,
            100,
            "app".into(),
            Some(1.0),
            Some(2),
            Some(3),
        ));
        let stats = exporter.finish(Duration::from_secs(5));
        assert_eq!(stats.metric_samples_sent, 1, "{stats:?}");
        let got = got.lock().unwrap();
        assert!(got[0].headers[0].starts_with("post /v1/metrics"));
        let mut raw = Vec::new();
        GzDecoder::new(got[0].body.as_slice())
            .read_to_end(&mut raw)
            .unwrap();
        let request = ExportMetricsServiceRequest::decode(raw.as_slice()).unwrap();
        assert_eq!(
            request.resource_metrics[0].scope_metrics[0].metrics.len(),
            3
        );
    }
}
