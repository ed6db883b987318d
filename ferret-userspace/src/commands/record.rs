//! `ferret record`: trace the chosen functions into a Parquet event log.
//!
//! The session's one event loop ([`crate::session::Session::run`]) does the
//! work; `record` gives it two consumers: the Parquet event log, and the
//! terminal (a status line, lifecycle notices and one line per stall on
//! stderr). Attached to a running process, the loop first adopts the
//! traced calls already on the threads' stacks, so a process stuck before
//! ferret came shows where. However it stops, probes are detached first,
//! then everything still in the ring buffer is written, open spans are
//! closed as `open`, and the Parquet footer is written.

use std::{
    io::{IsTerminal as _, Write as _},
    time::{Duration, Instant},
};

use anyhow::Result;

use crate::{
    cli::RecordConfig,
    otlp::{self, OtlpConsumer},
    session::{
        self, Consumer, LoopView, RecordingConsumer, RunOptions, SessionEnd, SessionOptions,
    },
    stall::{StallNews, Watchdog},
    trace::SpanEvent,
};

/// Runs `ferret record`; returns the process exit code.
pub fn run(config: &RecordConfig) -> Result<i32> {
    let prepared = session::prepare(&config.target, &config.probes)?;
    let mut recording = RecordingConsumer::new(prepared.create_recording(&config.output)?);
    let otlp = otlp::config(&config.otlp)?;
    let mut session = prepared.start(
        SessionOptions {
            stall: config.stall,
            max_rate: config.probes.max_rate,
            max_overhead: config.probes.max_overhead,
            interval: config.interval,
            sample_hz: config.sample_hz,
        },
        None,
    )?;
    report_unavailable(&session.metrics_unavailable());
    let mut otlp = OtlpConsumer::start(
        otlp,
        &session.prepared().target,
        session.pid(),
        session.functions().clone(),
    )?;
    let mut terminal = Terminal::new();
    // The exporter finishes first: its counts go into the recording.
    let mut consumers: Vec<&mut dyn Consumer> = Vec::new();
    if let Some(otlp) = &mut otlp {
        consumers.push(otlp);
    }
    consumers.push(&mut recording);
    consumers.push(&mut terminal);
    let end = session.run(
        &mut consumers,
        RunOptions {
            duration: config.duration,
            settle_stalls: true,
            ..RunOptions::default()
        },
    )?;
    eprintln!(
        "ferret: wrote {} rows to {}; {} events lost; probes detached in {:.1} ms",
        recording.rows.unwrap_or_default(),
        config.output.display(),
        end.lost,
        end.detach.as_secs_f64() * 1e3
    );
    if end.lost > 0 {
        eprintln!(
            "ferret: warning: the kernel dropped {} events (ring buffer full); \
             spans they touched may end as `unwound`",
            end.lost
        );
    }
    if let Some(line) = otlp.as_ref().and_then(OtlpConsumer::summary) {
        eprintln!("ferret: otlp: {line}");
    }
    session.finish_target()
}

/// Says, in one line, which perf counters this machine cannot count (a VM
/// without a PMU has none of the hardware ones).
fn report_unavailable(unavailable: &[(&'static str, String)]) {
    let mut reasons: Vec<(&str, Vec<&str>)> = Vec::new();
    for (event, why) in unavailable {
        match reasons.iter_mut().find(|(w, _)| w == why) {
            Some((_, events)) => events.push(event),
            None => reasons.push((why, vec![event])),
        }
    }
    if reasons.is_empty() {
        return;
    }
    let text: Vec<String> = reasons
        .iter()
        .map(|(why, events)| format!("{} ({why})", events.join(", ")))
        .collect();
    eprintln!(
        "ferret: perf counters unavailable, their metrics are null: {}",
        text.join("; ")
    );
}

/// stderr while recording: a status line on a terminal (elapsed time,
/// events/s, spans, lost), lifecycle notices, and the stalls' news: one
/// line per group of stalls as it appears (a deadlocked thread is a group
/// of its own; a pool of a thousand idle ones is one line), one when
/// threads leave a group.
struct Terminal {
    show_status: bool,
    started_at: Instant,
    last_status: (Instant, u64),
    span_ends: u64,
}

/// How often the status line is redrawn.
const STATUS_EVERY: Duration = Duration::from_millis(500);

impl Terminal {
    fn new() -> Self {
        Self {
            show_status: std::io::stderr().is_terminal(),
            started_at: Instant::now(),
            last_status: (Instant::now(), 0),
            span_ends: 0,
        }
    }

    /// Prints a line above the status line.
    fn say(&self, line: &str) {
        if self.show_status {
            eprint!("\r\x1b[2K");
        }
        eprintln!("ferret: {line}");
    }
}

impl Consumer for Terminal {
    fn spans(&mut self, spans: &[SpanEvent]) -> Result<()> {
        self.span_ends += spans
            .iter()
            .filter(|s| matches!(s, SpanEvent::End(_)))
            .count() as u64;
        Ok(())
    }

    fn stalls(&mut self, news: &StallNews, _watchdog: &Watchdog) -> Result<()> {
        for group in &news.groups {
            self.say(&group.line);
        }
        Ok(())
    }

    fn notice(&mut self, notice: &str) {
        self.say(notice);
    }

    fn tick(&mut self, view: &LoopView<'_>) -> Result<()> {
        let (at, events) = self.last_status;
        if !self.show_status || at.elapsed() < STATUS_EVERY {
            return Ok(());
        }
        let rate = (view.pipeline.events - events) as f64 / at.elapsed().as_secs_f64().max(1e-3);
        eprint!(
            "\r\x1b[2Kferret: {:>6.1}s  {:>9.0} events/s  {} spans  {} lost",
            self.started_at.elapsed().as_secs_f64(),
            rate,
            self.span_ends,
            view.pipeline.lost
        );
        let _ = std::io::stderr().flush();
        self.last_status = (Instant::now(), view.pipeline.events);
        Ok(())
    }

    fn finish(&mut self, _end: &mut SessionEnd) -> Result<()> {
        if self.show_status {
            eprint!("\r\x1b[2K");
        }
        Ok(())
    }
}
