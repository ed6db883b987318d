//! What the event loop feeds: the [`Consumer`] trait, and the consumer
//! every recording session has, the Parquet event log.
//!
//! The loop ([`super::Session::run`]) owns the event sources (ring buffer,
//! metrics sampler, stall watchdog, overhead guard) and hands what they
//! produce to each consumer in the same order: span events as they are
//! rebuilt, a metrics sample every interval, stall reports as the watchdog
//! finds them, a tick ten times a second for live views, and one call at
//! the end. `record` writes; `watch` aggregates and publishes snapshots;
//! an exporter sends.

use std::{collections::HashSet, sync::Arc};

use anyhow::Result;

use super::{Stop, pipeline::Pipeline, sampling::SamplingStatus};
use crate::{
    sample::Sample,
    sink::{MetricSample, Recording, SampleRow, meta_key},
    stall::{StallNews, Watchdog},
    target::ExitStatus,
    trace::{FunctionInfo, SpanEvent},
};

/// A destination for what a session observes. Every method but
/// [`Self::spans`] has a default that ignores its input. An error stops the
/// session (cleanly: probes detached, every consumer finished).
pub trait Consumer {
    /// Span events rebuilt since the last call, in causal order.
    fn spans(&mut self, spans: &[SpanEvent]) -> Result<()>;

    /// A process metrics sample (every `--interval`).
    fn metric(&mut self, _sample: &MetricSample) -> Result<()> {
        Ok(())
    }

    /// What is new about the stalls (`news`: rows for the stalls that are
    /// new or moved, lines for the groups that appeared or lost threads);
    /// `watchdog` has all current ones and their groups.
    fn stalls(&mut self, _news: &StallNews, _watchdog: &Watchdog) -> Result<()> {
        Ok(())
    }

    /// A lifecycle notice for the user: an exec, a followed fork, a
    /// function detached by the overhead guard.
    fn notice(&mut self, _notice: &str) {}

    /// Every `--interval`, after the metrics sample: write buffered state out.
    fn flush(&mut self) -> Result<()> {
        Ok(())
    }

    /// CPU samples, unwound and symbolized, since the last call (sampling
    /// is on: no `-s`, or `watch`).
    fn samples(&mut self, _samples: &[Sample]) -> Result<()> {
        Ok(())
    }

    /// The probe table grew (functions traced from the dashboard): span
    /// events from now on may name its new entries. Called before any of
    /// them; the old entries keep their indices.
    fn functions_changed(&mut self, _functions: &Arc<[FunctionInfo]>) -> Result<()> {
        Ok(())
    }

    /// Ten times a second ([`super::TICK_EVERY`]): the pipeline's state, for
    /// live views.
    fn tick(&mut self, _view: &LoopView<'_>) -> Result<()> {
        Ok(())
    }

    /// The session ended: probes are detached and every span has ended.
    /// Consumers finish in the order they were given; one may add to
    /// `end.metadata` for those after it (the OTLP exporter's counts reach
    /// the recording that way).
    fn finish(&mut self, _end: &mut SessionEnd) -> Result<()> {
        Ok(())
    }
}

/// What a tick shows of the running session.
pub struct LoopView<'a> {
    /// `CLOCK_MONOTONIC` now.
    pub now_ns: u64,
    /// The pipeline: event counts, losses, the open stacks.
    pub pipeline: &'a Pipeline,
    /// The overhead guard's newest estimate of the probes' cost (percent of
    /// the target's own time) and the budget, if on.
    pub overhead: (Option<f64>, Option<f64>),
    /// The probe table (it grows when functions are traced live).
    pub functions: &'a Arc<[FunctionInfo]>,
    /// Functions of the table no longer traced (detached by the guard or
    /// the user).
    pub detached: &'a HashSet<u32>,
    /// CPU sampling, if on.
    pub sampling: Option<SamplingStatus>,
    /// The scheduler state the kernel keeps for a traced thread now (see
    /// [`ferret_common::SchedState`]); `None` when it has none.
    pub sched: &'a dyn Fn(u32) -> Option<ferret_common::SchedState>,
}

/// How a session ended, for the consumers and the command.
#[derive(Clone, Debug)]
pub struct SessionEnd {
    /// Why tracing stopped.
    pub stop: Stop,
    /// The error that stopped the loop, if one did (the session was still
    /// ended in order).
    pub failed: Option<String>,
    /// Events the kernel dropped.
    pub lost: u64,
    /// Records decoded.
    pub events: u64,
    /// Functions probed.
    pub functions: usize,
    /// Exits without an entry (ignored).
    pub orphan_exits: u64,
    /// How long detaching the probes took.
    pub detach: std::time::Duration,
    /// A launched command's exit status, if it had exited by the end.
    pub exit: Option<ExitStatus>,
    /// How ferret ended a launched command that did not stop by itself.
    pub ended_by_us: Option<&'static str>,
    /// The probes' cost as measured at the start.
    pub calibration: crate::cost::Calibration,
    /// Metadata for recordings: `(key, value)` from the guard, the
    /// watchdog and the metrics sampler.
    pub metadata: Vec<(&'static str, String)>,
}

/// The Parquet event log as a consumer: every span event, metrics sample
/// and stall report becomes a row; the footer carries the session's
/// metadata.
pub struct RecordingConsumer {
    recording: Option<Recording>,
    /// Span ends written so far.
    pub span_ends: u64,
    /// Rows in the finished file.
    pub rows: Option<u64>,
}

impl RecordingConsumer {
    /// Writes into `recording`.
    pub fn new(recording: Recording) -> Self {
        Self {
            recording: Some(recording),
            span_ends: 0,
            rows: None,
        }
    }

    /// The file being written.
    pub fn path(&self) -> Option<&std::path::Path> {
        self.recording.as_ref().map(Recording::path)
    }

    fn recording(&mut self) -> Result<&mut Recording> {
        self.recording
            .as_mut()
            .ok_or_else(|| anyhow::anyhow!("the recording was already finished"))
    }
}

impl Consumer for RecordingConsumer {
    fn spans(&mut self, spans: &[SpanEvent]) -> Result<()> {
        self.span_ends += self.recording()?.write_spans(spans)?;
        Ok(())
    }

    fn metric(&mut self, sample: &MetricSample) -> Result<()> {
        Ok(self.recording()?.write_metric(sample)?)
    }

    fn stalls(&mut self, news: &StallNews, _watchdog: &Watchdog) -> Result<()> {
        let recording = self.recording()?;
        for report in &news.rows {
            let stack = report.stack_text();
            recording.write_stall(&report.row(&stack))?;
        }
        Ok(())
    }

    fn samples(&mut self, samples: &[Sample]) -> Result<()> {
        let recording = self.recording()?;
        for sample in samples {
            let function = sample.function().unwrap_or_default();
            let stack = sample.stack_text();
            recording.write_sample(&SampleRow {
                ts_ns: sample.ts_ns,
                pid: sample.pid,
                tid: sample.tid,
                thread_name: sample.thread_name.as_str(),
                function: &function,
                module: sample.module(),
                stack: &stack,
            })?;
        }
        Ok(())
    }

    fn functions_changed(&mut self, functions: &Arc<[FunctionInfo]>) -> Result<()> {
        self.recording()?.set_functions(functions.clone());
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        Ok(self.recording()?.flush()?)
    }

    fn finish(&mut self, end: &mut SessionEnd) -> Result<()> {
        let mut recording = self
            .recording
            .take()
            .ok_or_else(|| anyhow::anyhow!("the recording was already finished"))?;
        for (key, value) in &end.metadata {
            recording.add_metadata(key, value.clone());
        }
        recording.add_metadata(meta_key::STOP_REASON, format!("{:?}", end.stop));
        recording.add_metadata(meta_key::FUNCTIONS, end.functions.to_string());
        recording.add_metadata(meta_key::ORPHAN_EXITS, end.orphan_exits.to_string());
        self.rows = Some(recording.finish(end.lost)?);
        Ok(())
    }
}
