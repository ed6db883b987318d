//! OpenTelemetry export: ferret's spans, stalls and process metrics sent
//! as OTLP/HTTP protobuf to a collector (`--otlp-endpoint`, the `OTEL_*`
//! variables), and the recording → OTLP JSON mapping `ferret export
//! --format otlp` shares.
//!
//! Independent of any event loop: [`Exporter::start`], then
//! [`Exporter::spans`] with each batch of span events, [`Exporter::metric`]
//! per sample, [`Exporter::stalls`] with the watchdog's reports, and
//! [`Exporter::finish`] at the end. None of those calls waits for the
//! network: [`select`] chooses on the caller's thread what is sent
//! (`--otlp-min-duration` with ancestors, the per-second cap), and
//! [`exporter`]'s own thread encodes, gzips, POSTs and retries, behind a
//! bounded queue that drops (and counts) rather than blocks. [`map`] is
//! the pure mapping to the `opentelemetry-proto` messages; [`mod@config`]
//! resolves the flags and the environment.

pub mod config;
mod consumer;
pub mod exporter;
pub mod map;
pub mod select;

use std::fmt::Write as _;

pub use config::Config;
pub use consumer::{FINISH_TIMEOUT, OtlpConsumer, config};
pub use exporter::Exporter;
pub use map::Resource;

/// Why the exporter could not start.
#[derive(Debug, thiserror::Error)]
pub enum OtlpError {
    /// The endpoint is not a URL ferret can send to.
    #[error("OTLP endpoint `{url}`: {why}")]
    Endpoint {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        why: String,
    },
    /// A `key=value,…` variable does not parse.
    #[error("{variable}: {why}")]
    Headers {
        /// The variable.
        variable: &'static str,
        /// What is wrong with it.
        why: String,
    },
    /// The exporter thread could not be started.
    #[error("starting the OTLP exporter thread")]
    Thread(#[source] std::io::Error),
}

/// What the exporter did with the spans, counted. Every span that ended is
/// either left out on purpose (`below_min_duration`, `over_cap`) or
/// chosen; every chosen span is `sent`, or unsent (`dropped`, `failed`,
/// `unsent_at_finish`), or still `queued`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Spans that ended while exporting.
    pub ended: u64,
    /// Spans chosen for sending.
    pub chosen: u64,
    /// Left out: shorter than `--otlp-min-duration`, no ancestor of a sent span.
    pub below_min_duration: u64,
    /// Left out: over the per-second cap.
    pub over_cap: u64,
    /// Chosen, but the queue was full (the collector slow or away).
    pub dropped: u64,
    /// Chosen and waiting in the queue or on the exporter thread.
    pub queued: u64,
    /// Accepted by the collector.
    pub sent: u64,
    /// Refused by the collector, or failed after the retries.
    pub failed: u64,
    /// Still queued when [`Exporter::finish`]'s wait ran out.
    pub unsent_at_finish: u64,
    /// Metric samples accepted.
    pub metric_samples_sent: u64,
    /// Metric samples not sent (queue full, refused, failed).
    pub metric_samples_unsent: u64,
    /// Stall reports attached to their span as events.
    pub stall_events: u64,
    /// Stall reports whose span was not open in the exporter.
    pub stalls_unattached: u64,
    /// HTTP requests made (retries included).
    pub requests: u64,
    /// Of those, retries.
    pub retries: u64,
    /// The latest failure, for the user.
    pub last_error: Option<String>,
}

impl Stats {
    /// Chosen spans that will never reach the collector.
    pub fn unsent(&self) -> u64 {
        self.dropped + self.failed + self.unsent_at_finish
    }

    /// One line for stderr: `sent 10 spans to URL; 3 unsent (…)`.
    pub fn summary(&self, endpoint: &str) -> String {
        let mut line = format!("sent {} spans to {endpoint}", self.sent);
        if self.unsent() > 0 {
            let _ = write!(line, "; {} unsent (", self.unsent());
            let mut parts = Vec::new();
            if self.dropped > 0 {
                parts.push(format!("{} dropped, queue full", self.dropped));
            }
            if self.failed > 0 {
                parts.push(format!("{} failed", self.failed));
            }
            if self.unsent_at_finish > 0 {
                parts.push(format!("{} still queued at the end", self.unsent_at_finish));
            }
            line.push_str(&parts.join(", "));
            line.push(')');
        }
        if self.below_min_duration > 0 {
            let _ = write!(
                line,
                "; {} shorter than --otlp-min-duration",
                self.below_min_duration
            );
        }
        if self.over_cap > 0 {
            let _ = write!(line, "; {} over the per-second cap", self.over_cap);
        }
        if self.metric_samples_sent + self.metric_samples_unsent > 0 {
            let _ = write!(
                line,
                "; {} metric samples sent, {} unsent",
                self.metric_samples_sent, self.metric_samples_unsent
            );
        }
        if self.unsent() + self.metric_samples_unsent > 0
            && let Some(e) = &self.last_error
        {
            let _ = write!(line, "; last error: {e}");
        }
        line
    }

    /// Key-value pairs for the recording's metadata (`ferret.otlp_*`).
    pub fn metadata(&self, endpoint: &str) -> Vec<(&'static str, String)> {
        use crate::sink::meta_key;
        let mut pairs = vec![
            (meta_key::OTLP_ENDPOINT, endpoint.to_owned()),
            (meta_key::OTLP_SENT, self.sent.to_string()),
            (meta_key::OTLP_UNSENT, self.unsent().to_string()),
            (meta_key::OTLP_DROPPED, self.dropped.to_string()),
            (meta_key::OTLP_FAILED, self.failed.to_string()),
            (
                meta_key::OTLP_BELOW_MIN_DURATION,
                self.below_min_duration.to_string(),
            ),
            (meta_key::OTLP_OVER_CAP, self.over_cap.to_string()),
        ];
        if let Some(e) = &self.last_error {
            pairs.push((meta_key::OTLP_LAST_ERROR, e.clone()));
        }
        pairs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_says_what_was_not_sent_and_why() {
        let stats = Stats {
            sent: 10,
            dropped: 2,
            failed: 3,
            over_cap: 4,
            last_error: Some("connection refused".into()),
            ..Stats::default()
        };
        let line = stats.summary("http://c/v1/traces");
        assert_eq!(
            line,
            "sent 10 spans to http://c/v1/traces; 5 unsent (2 dropped, queue full, 3 failed); \
             4 over the per-second cap; last error: connection refused"
        );
        let meta = stats.metadata("http://c/v1/traces");
        assert!(meta.contains(&("ferret.otlp_unsent", "5".into())));
        let clean = Stats {
            sent: 1,
            last_error: Some("old".into()),
            ..Stats::default()
        };
        assert_eq!(clean.summary("u"), "sent 1 spans to u");
    }
}
