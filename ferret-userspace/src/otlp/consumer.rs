//! The exporter as one of the session's consumers (see
//! [`crate::session::Consumer`]): span events, metric samples and stall
//! reports go to [`Exporter`]; at the end it sends what it still holds, for
//! at most [`FINISH_TIMEOUT`], and adds its counts to the recording's
//! metadata (it finishes before the recording does).

use std::time::Duration;

use anyhow::Result;

use super::{Config, Exporter, Resource, Stats};
use crate::{
    cli::OtlpOptions,
    clock::realtime_offset_ns,
    session::{Consumer, SessionEnd, plan::ResolvedTarget},
    sink::MetricSample,
    stall::{StallNews, Watchdog},
    trace::{FunctionInfo, SpanEvent},
};

/// How long the end of a session waits for the exporter to send what it
/// still holds.
pub const FINISH_TIMEOUT: Duration = Duration::from_secs(5);

/// Resolves `--otlp-*` and the `OTEL_*` variables; `None` when nothing is
/// to be exported. Runs before anything is attached, so a bad URL fails
/// early.
pub fn config(options: &OtlpOptions) -> Result<Option<Config>> {
    Ok(Config::resolve(options, |name| std::env::var(name).ok())?)
}

/// Sends a session's spans, metrics and stalls to a collector.
pub struct OtlpConsumer {
    exporter: Option<Exporter>,
    endpoint: String,
    /// The counts at the end.
    finished: Option<Stats>,
}

impl OtlpConsumer {
    /// Starts the exporter for the target `target` (pid `pid`, attached),
    /// if `config` asks for one, and says where spans go.
    pub fn start(
        config: Option<Config>,
        target: &ResolvedTarget,
        pid: u32,
        functions: std::sync::Arc<[FunctionInfo]>,
    ) -> Result<Option<Self>> {
        let Some(mut config) = config else {
            return Ok(None);
        };
        for note in &config.notes {
            eprintln!("ferret: {note}");
        }
        config.realtime_offset_ns = realtime_offset_ns();
        // From what ferret resolved, not /proc: a launched command may not
        // have exec'd yet.
        let resource = match target {
            ResolvedTarget::Pid(info) => Resource::new(pid, &info.exe, info.cmdline.clone()),
            ResolvedTarget::Command { exe, .. } => Resource::new(pid, exe, target.describe()),
        };
        let exporter = Exporter::start(config, resource, functions)?;
        let endpoint = exporter.endpoint().to_owned();
        eprintln!("ferret: sending spans to {endpoint} (OTLP/HTTP)");
        Ok(Some(Self {
            exporter: Some(exporter),
            endpoint,
            finished: None,
        }))
    }

    /// The counts so far (or at the end).
    pub fn stats(&self) -> Stats {
        self.exporter
            .as_ref()
            .map(Exporter::stats)
            .or_else(|| self.finished.clone())
            .unwrap_or_default()
    }

    /// One line for stderr once finished: what was sent and not.
    pub fn summary(&self) -> Option<String> {
        self.finished
            .as_ref()
            .map(|stats| stats.summary(&self.endpoint))
    }
}

impl Consumer for OtlpConsumer {
    fn spans(&mut self, spans: &[SpanEvent]) -> Result<()> {
        if let Some(exporter) = &mut self.exporter {
            exporter.spans(spans);
        }
        Ok(())
    }

    fn metric(&mut self, sample: &MetricSample) -> Result<()> {
        if let Some(exporter) = &mut self.exporter {
            exporter.metric(sample);
        }
        Ok(())
    }

    fn stalls(&mut self, news: &StallNews, _watchdog: &Watchdog) -> Result<()> {
        if let Some(exporter) = &mut self.exporter {
            exporter.stalls(&news.rows);
        }
        Ok(())
    }

    fn functions_changed(&mut self, functions: &std::sync::Arc<[FunctionInfo]>) -> Result<()> {
        if let Some(exporter) = &mut self.exporter {
            exporter.set_functions(functions.clone());
        }
        Ok(())
    }

    fn finish(&mut self, end: &mut SessionEnd) -> Result<()> {
        if let Some(exporter) = self.exporter.take() {
            let stats = exporter.finish(FINISH_TIMEOUT);
            end.metadata.extend(stats.metadata(&self.endpoint));
            self.finished = Some(stats);
        }
        Ok(())
    }
}
