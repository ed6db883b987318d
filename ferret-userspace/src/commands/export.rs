//! `ferret export`: convert a recording to speedscope, Chrome trace, folded
//! stacks, an SVG flame graph or OTLP JSON lines, and say on stderr what was written.

use std::path::Path;

use anyhow::Result;

use crate::analyze::render::count;
use crate::analyze::{Progress, Recording};
use crate::cli::{ExportConfig, ExportFormat};
use crate::export::{self, ExportError, Format};

/// Runs `ferret export`.
pub fn run(config: &ExportConfig) -> Result<i32> {
    let mut recording = Recording::open(&config.file)?;
    // OTLP carries times as measured, as the live exporter sends them,
    // with ferret's share in each span's `ferret.overhead_ns`.
    recording.set_raw(config.raw || config.format == ExportFormat::Otlp);
    let format = match config.format {
        ExportFormat::Speedscope => Format::Speedscope,
        ExportFormat::Chrome => Format::Chrome,
        ExportFormat::Folded => Format::Folded,
        ExportFormat::Svg => Format::Svg,
        ExportFormat::Otlp => Format::Otlp,
    };
    let mut progress = Progress::new(recording.info().rows, "exporting");
    let to_stdout = config.output == Path::new("-");
    let summary = match export::export(&recording, format, &config.output, &mut progress) {
        Ok(summary) => summary,
        // `ferret export … -o - | head` closes the pipe early: not an error.
        Err(ExportError::Write { source, .. })
            if to_stdout && source.kind() == std::io::ErrorKind::BrokenPipe =>
        {
            return Ok(0);
        }
        Err(e) => return Err(e.into()),
    };
    let r = &summary.replay;
    if let Some(lost) = recording.info().lost_events.filter(|&n| n > 0) {
        eprintln!(
            "warning: the kernel lost {lost} events during this recording; some calls are missing"
        );
    }
    if r.cut > 0 {
        eprintln!(
            "warning: the recording was cut short; {} calls with no end were ended at its last timestamp",
            r.cut
        );
    }
    if summary.left_out > 0 {
        eprintln!(
            "warning: {} call ends had no start before them (were the rows re-sorted?) and were left out",
            summary.left_out
        );
    }
    if let Some(calibration) = recording.info().calibration.filter(|c| !c.is_none()) {
        let per_call = calibration.typical_call_ns() / 1e3;
        if recording.corrected() {
            eprintln!(
                "ferret: times corrected for ferret's probe cost ({per_call:.1} µs per traced call \
                 at most); --raw exports them as measured"
            );
        } else {
            eprintln!(
                "ferret: times as measured (--raw), ferret's probe cost included \
                 ({per_call:.1} µs per traced call at most)"
            );
        }
    }
    if !to_stdout {
        eprintln!(
            "ferret: wrote {} calls on {} threads to {}",
            count(r.spans + r.orphans - summary.left_out),
            count(r.names.threads().len() as u64),
            config.output.display()
        );
    }
    Ok(0)
}
