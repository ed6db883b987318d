//! `ferret record`: trace the chosen functions into a Parquet event log.
//!
//! One thread does everything after attach: drain the ring buffer (woken by
//! the kernel in batches, and on a short timer so a lone event is never
//! stranded), rebuild spans, write rows, sample metrics once an interval,
//! look for stalled threads (the watchdog captures them on its own thread
//! and hands back STALL rows), and watch for the stop conditions: the
//! target exiting, `-d`, Ctrl-C, SIGTERM. Attached to a running process, it
//! first adopts the traced calls already on the threads' stacks, so a
//! process stuck before ferret came shows where.
//! However it stops, probes are detached first, then everything still in
//! the ring buffer is written, open spans are closed as `open`, and the
//! Parquet footer is written.

use std::{
    io::{IsTerminal as _, Write as _},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};

use super::{
    plan::Plan,
    session::{
        self, DRAIN_EVERY, OverheadGuard, Pipeline, Recording, STALL_CHECK_EVERY, Stop, Stopper,
        monotonic_ns,
    },
};
use crate::{
    cli::RecordConfig,
    metrics::Sampler,
    otlp,
    stall::{StallReport, Watchdog},
    trace::SpanEvent,
};

/// Runs `ferret record`; returns the process exit code.
pub fn run(config: &RecordConfig) -> Result<i32> {
    let prepared = session::prepare(&config.target, &config.probes)?;
    let mut recording = Recording::create(&config.output, &prepared)?;
    let otlp = session::otlp_config(&config.otlp)?;
    let mut attached = prepared.attach(None)?;
    let mut otlp = prepared.start_otlp(otlp, attached.pid)?;
    let attached_ns = monotonic_ns();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the event loop")?;
    let mut pipeline = Pipeline::for_target(&attached);
    let mut watchdog = prepared.start_watchdog(config.stall, &attached, attached_ns);
    let mut sampler = Sampler::new(attached.pid);
    let unavailable = sampler.unavailable();
    for (event, why) in &unavailable {
        eprintln!("ferret: perf counter {event} unavailable: {why}");
    }
    let mut overhead = OverheadGuard::new(prepared.plan.points.len(), config.probes.max_rate);
    let stop = runtime.block_on(record(
        &mut attached,
        &mut pipeline,
        &mut recording,
        &mut sampler,
        &mut overhead,
        &prepared.plan,
        watchdog.as_mut(),
        otlp.as_mut(),
        config,
    ))?;

    // Detach first so the target runs unprobed, then flush what the kernel
    // already delivered.
    let detach_time = attached.engine.detach();
    let lost = attached.engine.lost().unwrap_or(0);
    pipeline.close(stop, attached.pid);
    write_spans(&mut pipeline.spans, &mut recording, otlp.as_mut())?;
    if let Some(exporter) = otlp {
        let endpoint = exporter.endpoint().to_owned();
        let stats = exporter.finish(session::OTLP_FINISH_TIMEOUT);
        eprintln!("ferret: otlp: {}", stats.summary(&endpoint));
        for (key, value) in stats.metadata(&endpoint) {
            recording.add_metadata(&key, value);
        }
    }
    recording.add_metadata("ferret.detached_functions", overhead.metadata());
    recording.add_metadata(
        "ferret.stall_threshold_ns",
        config.stall.as_nanos().to_string(),
    );
    let rows = recording.finish(
        stop,
        lost,
        prepared.plan.points.len(),
        pipeline.reconstructor.orphan_exits(),
        &unavailable,
    )?;
    eprintln!(
        "ferret: wrote {rows} rows to {}; {lost} events lost; probes detached in {:.1} ms",
        config.output.display(),
        detach_time.as_secs_f64() * 1e3
    );
    if lost > 0 {
        eprintln!(
            "ferret: warning: the kernel dropped {lost} events (ring buffer full); \
             spans they touched may end as `unwound`"
        );
    }
    attached.finish_target()
}

#[expect(
    clippy::too_many_arguments,
    reason = "the loop's parts are owned by `run`, which finishes them after the loop"
)]
async fn record(
    attached: &mut session::Attached,
    pipeline: &mut Pipeline,
    recording: &mut Recording,
    sampler: &mut Sampler,
    overhead: &mut OverheadGuard,
    plan: &Plan,
    mut watchdog: Option<&mut Watchdog>,
    mut otlp: Option<&mut otlp::Exporter>,
    config: &RecordConfig,
) -> Result<Stop> {
    let mut ring = attached.take_ring()?;
    let mut stopper = Stopper::new(attached, config.duration)?;
    let mut drain_timer = tokio::time::interval(DRAIN_EVERY);
    drain_timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut metrics_timer = tokio::time::interval(config.interval);
    let mut status_timer = tokio::time::interval(Duration::from_millis(500));
    let mut stall_timer = tokio::time::interval(STALL_CHECK_EVERY);
    let mut guard_timer = tokio::time::interval(Duration::from_secs(1));
    let show_status = std::io::stderr().is_terminal();
    let started_at = Instant::now();
    let mut last_status = (Instant::now(), 0u64);
    let mut span_ends = 0u64;

    let stop = loop {
        tokio::select! {
            guard = ring.readable_mut() => {
                let mut guard = guard.context("waiting on the ring buffer")?;
                pipeline.drain(guard.get_inner_mut());
                guard.clear_ready();
            }
            _ = drain_timer.tick() => pipeline.drain(ring.get_mut()),
            _ = metrics_timer.tick() => {
                if let Ok(sample) = sampler.sample(monotonic_ns()) {
                    recording.write_metric(&sample)?;
                    if let Some(otlp) = otlp.as_deref_mut() {
                        otlp.metric(&sample);
                    }
                }
                pipeline.check_lost(&attached.engine);
                recording.flush()?;
            }
            _ = status_timer.tick(), if show_status => {
                let (at, events) = last_status;
                let rate = (pipeline.events - events) as f64 / at.elapsed().as_secs_f64().max(1e-3);
                eprint!(
                    "\r\x1b[2Kferret: {:>6.1}s  {:>9.0} events/s  {} spans  {} lost",
                    started_at.elapsed().as_secs_f64(), rate, span_ends, pipeline.lost
                );
                let _ = std::io::stderr().flush();
                last_status = (Instant::now(), pipeline.events);
            }
            _ = guard_timer.tick() => {
                let notices = overhead.check(&mut attached.engine, plan);
                pipeline.notices.extend(notices);
            }
            _ = stall_timer.tick(), if watchdog.is_some() => {
                if let Some(watchdog) = watchdog.as_deref_mut() {
                    let reports = pipeline.check_stalls(watchdog, ring.get_mut());
                    write_stalls(&reports, recording, show_status)?;
                    if let Some(otlp) = otlp.as_deref_mut() {
                        otlp.stalls(&reports);
                    }
                }
            }
            stop = stopper.next() => break stop,
        }
        overhead.observe(&pipeline.spans);
        span_ends += write_spans(&mut pipeline.spans, recording, otlp.as_deref_mut())?;
        for notice in pipeline.notices.drain(..) {
            if show_status {
                eprint!("\r\x1b[2K");
            }
            eprintln!("ferret: {notice}");
        }
    };
    if show_status {
        eprint!("\r\x1b[2K");
    }
    stopper.grace(stop).await;
    pipeline.drain(ring.get_mut());
    if let Some(watchdog) = watchdog {
        // Captures already asked for still belong in the recording.
        watchdog.settle(Duration::from_secs(2));
        let reports = watchdog.take_reports();
        write_stalls(&reports, recording, false)?;
        if let Some(otlp) = otlp.as_deref_mut() {
            otlp.stalls(&reports);
        }
    }
    write_spans(&mut pipeline.spans, recording, otlp)?;
    for notice in pipeline.notices.drain(..) {
        eprintln!("ferret: {notice}");
    }
    Ok(stop)
}

/// Hands span events to the OTLP exporter (if any), then writes and clears
/// them; returns how many ended.
fn write_spans(
    spans: &mut Vec<SpanEvent>,
    recording: &mut Recording,
    otlp: Option<&mut otlp::Exporter>,
) -> Result<u64> {
    if let Some(otlp) = otlp {
        otlp.spans(spans);
    }
    recording.write_spans(spans)
}

/// Writes STALL rows and says on stderr where each stalled thread is stuck.
fn write_stalls(
    reports: &[StallReport],
    recording: &mut Recording,
    show_status: bool,
) -> Result<()> {
    recording.write_stalls(reports)?;
    for report in reports {
        if show_status {
            eprint!("\r\x1b[2K");
        }
        eprintln!("ferret: {}", report.headline());
    }
    Ok(())
}
