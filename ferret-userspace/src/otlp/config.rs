//! Where spans go and how many: the command line's `--otlp-*` flags and
//! the standard `OTEL_*` environment variables, resolved once into a
//! [`Config`].
//!
//! Precedence follows the OpenTelemetry specification, with the command
//! line above it all: `--otlp-endpoint URL` (a base URL, as
//! `OTEL_EXPORTER_OTLP_ENDPOINT`: `/v1/traces` and `/v1/metrics` are
//! appended), then the per-signal `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` /
//! `OTEL_EXPORTER_OTLP_METRICS_ENDPOINT` (used as they are), then
//! `OTEL_EXPORTER_OTLP_ENDPOINT`. Resolution is a pure function of the
//! options and an environment lookup, so it is tested on literals.

use std::time::Duration;

use super::OtlpError;
use crate::cli::OtlpOptions;

/// Everything the exporter needs to know before it starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Where trace requests are POSTed (`…/v1/traces`).
    pub traces_url: String,
    /// Where metric requests are POSTed (`…/v1/metrics`); `None` sends no
    /// metrics (only a traces endpoint was given).
    pub metrics_url: Option<String>,
    /// Extra request headers (`OTEL_EXPORTER_OTLP_HEADERS`), e.g. an API key.
    pub headers: Vec<(String, String)>,
    /// `OTEL_SERVICE_NAME`: replaces the executable's name as `service.name`.
    pub service_name: Option<String>,
    /// `OTEL_RESOURCE_ATTRIBUTES`: more resource attributes (strings).
    pub resource_attributes: Vec<(String, String)>,
    /// Only spans at least this long are sent, with their ancestors.
    pub min_duration: Duration,
    /// At most this many spans per second (of span end time) are chosen; 0:
    /// no cap. Ancestors of chosen spans are sent above it.
    pub max_spans_per_s: u64,
    /// `CLOCK_REALTIME − CLOCK_MONOTONIC`: turns event times into Unix time.
    pub realtime_offset_ns: i64,
    /// Spans the queue to the exporter thread holds at most; beyond it
    /// spans are dropped (and counted), never waited for.
    pub max_queue_spans: usize,
    /// Spans per request at most.
    pub batch_spans: usize,
    /// A partial batch (and the metrics) is sent this often.
    pub flush_every: Duration,
    /// How long one request may take.
    pub request_timeout: Duration,
    /// Attempts per request for transient failures (429, 502, 503, 504,
    /// connection errors, timeouts), with exponential backoff between.
    pub max_attempts: u32,
    /// The first backoff; it doubles per attempt (at most 5 s, or what a
    /// `Retry-After` header asks, at most 30 s).
    pub first_backoff: Duration,
    /// Mixed into every trace id, so two sessions never share one; `None`
    /// picks a random one at start (tests fix it).
    pub trace_salt: Option<u64>,
    /// Things the user should hear about the configuration (an ignored
    /// variable), said once at start.
    pub notes: Vec<String>,
}

/// The defaults: queue, batch and timing.
pub const DEFAULT_MAX_QUEUE_SPANS: usize = 64 * 1024;
/// Spans per request.
pub const DEFAULT_BATCH_SPANS: usize = 2048;

impl Config {
    /// A configuration sending to `base` (`/v1/traces` and `/v1/metrics`
    /// appended) with every other setting at its default.
    pub fn new(base: &str) -> Result<Self, OtlpError> {
        Ok(Self {
            traces_url: signal_url(base, "traces")?,
            metrics_url: Some(signal_url(base, "metrics")?),
            headers: Vec::new(),
            service_name: None,
            resource_attributes: Vec::new(),
            min_duration: Duration::ZERO,
            max_spans_per_s: 0,
            realtime_offset_ns: 0,
            max_queue_spans: DEFAULT_MAX_QUEUE_SPANS,
            batch_spans: DEFAULT_BATCH_SPANS,
            flush_every: Duration::from_secs(1),
            request_timeout: Duration::from_secs(10),
            max_attempts: 5,
            first_backoff: Duration::from_millis(250),
            trace_salt: None,
            notes: Vec::new(),
        })
    }

    /// Resolves the command line's options and the environment (`env`
    /// looks a variable up); `None` when no endpoint is given anywhere, so
    /// nothing is exported.
    pub fn resolve(
        options: &OtlpOptions,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<Self>, OtlpError> {
        let var = |name: &str| {
            env(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let base = options
            .endpoint
            .clone()
            .or_else(|| var("OTEL_EXPORTER_OTLP_ENDPOINT"));
        let traces_env = var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT");
        let metrics_env = var("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT");
        let (traces_url, metrics_url) = match (&options.endpoint, base, traces_env) {
            (Some(flag), _, _) => (
                signal_url(flag, "traces")?,
                Some(signal_url(flag, "metrics")?),
            ),
            (None, base, Some(traces)) => (
                exact_url(&traces)?,
                match (metrics_env, base) {
                    (Some(m), _) => Some(exact_url(&m)?),
                    (None, Some(b)) => Some(signal_url(&b, "metrics")?),
                    (None, None) => None,
                },
            ),
            (None, Some(base), None) => (
                signal_url(&base, "traces")?,
                Some(match metrics_env {
                    Some(m) => exact_url(&m)?,
                    None => signal_url(&base, "metrics")?,
                }),
            ),
            (None, None, None) => return Ok(None),
        };
        let mut config = Self::new("http://localhost:4318")?;
        config.traces_url = traces_url;
        config.metrics_url = metrics_url;
        if let Some(headers) = var("OTEL_EXPORTER_OTLP_HEADERS") {
            config.headers = parse_pairs(&headers).map_err(|why| OtlpError::Headers {
                variable: "OTEL_EXPORTER_OTLP_HEADERS",
                why,
            })?;
        }
        if let Some(attributes) = var("OTEL_RESOURCE_ATTRIBUTES") {
            config.resource_attributes =
                parse_pairs(&attributes).map_err(|why| OtlpError::Headers {
                    variable: "OTEL_RESOURCE_ATTRIBUTES",
                    why,
                })?;
        }
        // OTEL_SERVICE_NAME first, then a service.name among the attributes.
        config.service_name = var("OTEL_SERVICE_NAME").or_else(|| {
            config
                .resource_attributes
                .iter()
                .find(|(k, _)| k == "service.name")
                .map(|(_, v)| v.clone())
        });
        if let Some(protocol) = var("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
            .or_else(|| var("OTEL_EXPORTER_OTLP_PROTOCOL"))
            .filter(|p| p != "http/protobuf")
        {
            config.notes.push(format!(
                "OTEL_EXPORTER_OTLP_PROTOCOL={protocol} ignored: ferret sends OTLP/HTTP protobuf"
            ));
        }
        config.min_duration = options.min_duration;
        config.max_spans_per_s = options.max_spans_per_s;
        Ok(Some(config))
    }
}

/// `base` with `/v1/<signal>` appended, as the specification says for
/// `OTEL_EXPORTER_OTLP_ENDPOINT` (one slash between them, whatever `base`
/// ends with).
fn signal_url(base: &str, signal: &str) -> Result<String, OtlpError> {
    let base = exact_url(base)?;
    Ok(format!("{}/v1/{signal}", base.trim_end_matches('/')))
}

/// `url`, checked: `http://` or `https://` and a host.
fn exact_url(url: &str) -> Result<String, OtlpError> {
    let bad = |why: &str| OtlpError::Endpoint {
        url: url.to_owned(),
        why: why.to_owned(),
    };
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or_else(|| bad("it must begin with http:// or https://"))?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if authority.is_empty() {
        return Err(bad("it names no host"));
    }
    let uri: Result<ureq::http::Uri, _> = url.parse();
    uri.map_err(|e| bad(&e.to_string()))?;
    Ok(url.to_owned())
}

/// Parses the W3C-baggage-like `key=value,key2=value2` lists of
/// `OTEL_EXPORTER_OTLP_HEADERS` and `OTEL_RESOURCE_ATTRIBUTES`: keys and
/// values trimmed, values percent-decoded, empty entries skipped.
pub fn parse_pairs(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut pairs = Vec::new();
    for entry in text.split(',') {
        let entry = entry.trim();
        if entry.is_empty() {
            continue;
        }
        let (key, value) = entry
            .split_once('=')
            .ok_or_else(|| format!("`{entry}` is not key=value"))?;
        let key = key.trim();
        if key.is_empty() {
            return Err(format!("`{entry}` has an empty key"));
        }
        pairs.push((key.to_owned(), percent_decode(value.trim())?));
    }
    Ok(pairs)
}

fn percent_decode(text: &str) -> Result<String, String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("bad percent escape in `{text}`"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("`{text}` does not decode to UTF-8"))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn resolve(flag: Option<&str>, vars: &[(&str, &str)]) -> Result<Option<Config>, OtlpError> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let options = OtlpOptions {
            endpoint: flag.map(str::to_owned),
            min_duration: Duration::from_millis(5),
            max_spans_per_s: 100,
        };
        Config::resolve(&options, |name| vars.get(name).cloned())
    }

    #[test]
    fn nothing_configured_means_no_export() {
        assert_eq!(resolve(None, &[]).unwrap(), None);
        assert_eq!(
            resolve(None, &[("OTEL_EXPORTER_OTLP_ENDPOINT", "  ")]).unwrap(),
            None
        );
    }

    #[test]
    fn the_flag_is_a_base_url_and_wins_over_the_environment() {
        let c = resolve(
            Some("http://collector:4318/"),
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://other:4318"),
                ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://other/t"),
            ],
        )
        .unwrap()
        .unwrap();
        assert_eq!(c.traces_url, "http://collector:4318/v1/traces");
        assert_eq!(
            c.metrics_url.as_deref(),
            Some("http://collector:4318/v1/metrics")
        );
        assert_eq!(c.min_duration, Duration::from_millis(5));
        assert_eq!(c.max_spans_per_s, 100);
    }

    #[test]
    fn signal_endpoints_are_used_as_given_and_beat_the_base() {
        let c = resolve(
            None,
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "https://base.example/otlp"),
                ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "https://t.example/x"),
            ],
        )
        .unwrap()
        .unwrap();
        assert_eq!(c.traces_url, "https://t.example/x");
        assert_eq!(
            c.metrics_url.as_deref(),
            Some("https://base.example/otlp/v1/metrics")
        );
        let c = resolve(
            None,
            &[(
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "http://t:4318/v1/traces",
            )],
        )
        .unwrap()
        .unwrap();
        assert_eq!(c.metrics_url, None, "no metrics without a metrics endpoint");
        let c = resolve(
            None,
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://b:4318"),
                ("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "http://m/metrics"),
            ],
        )
        .unwrap()
        .unwrap();
        assert_eq!(c.traces_url, "http://b:4318/v1/traces");
        assert_eq!(c.metrics_url.as_deref(), Some("http://m/metrics"));
    }

    #[test]
    fn headers_service_name_and_resource_attributes_come_from_the_environment() {
        let c = resolve(
            Some("http://localhost:4318"),
            &[
                (
                    "OTEL_EXPORTER_OTLP_HEADERS",
                    "x-honeycomb-team = abc%3D%3D , authorization=Basic%20dXNlcg==,",
                ),
                ("OTEL_SERVICE_NAME", "checkout"),
                ("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=prod"),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ],
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            c.headers,
            [
                ("x-honeycomb-team".to_owned(), "abc==".to_owned()),
                ("authorization".to_owned(), "Basic dXNlcg==".to_owned()),
            ]
        );
        assert_eq!(c.service_name.as_deref(), Some("checkout"));
        assert_eq!(
            c.resource_attributes,
            [("deployment.environment".to_owned(), "prod".to_owned())]
        );
        assert!(c.notes[0].contains("grpc"), "{:?}", c.notes);
    }

    #[test]
    fn bad_urls_and_headers_are_refused_with_the_reason() {
        let e = resolve(Some("localhost:4318"), &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("http://"), "{e}");
        assert!(resolve(Some("http://"), &[]).is_err());
        assert!(resolve(Some("http:// spaced"), &[]).is_err());
        let e = resolve(
            Some("http://c:4318"),
            &[("OTEL_EXPORTER_OTLP_HEADERS", "novalue")],
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("OTEL_EXPORTER_OTLP_HEADERS"), "{e}");
        assert!(parse_pairs("k=%zz").is_err());
        assert!(parse_pairs("=v").is_err());
    }
}
