//! `ferret export`: convert a recording to speedscope, Chrome trace, folded
//! stacks, an SVG flame graph or OTLP JSON lines, and say on stderr what was written.

use std::path::Path;

use anyhow::Result;

use crate::analyze::render::count;
use crate::analyze::{Progress, Recording, samples};
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
    let to_stdout = config.output == Path::new("-");
    if let Some(code) = export_samples(config, &recording, format, to_stdout)? {
        return Ok(code);
    }
    let mut progress = Progress::new(recording.info().rows, "exporting");
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

/// With `--samples`, or for a recording of CPU samples and no calls: the
/// samples' flame graph, folded stacks or speedscope profiles. `None` when
/// the calls are to be exported.
fn export_samples(
    config: &ExportConfig,
    recording: &Recording,
    format: Format,
    to_stdout: bool,
) -> Result<Option<i32>> {
    let wanted = config.samples
        || (matches!(format, Format::Folded | Format::Svg | Format::Speedscope)
            && !has_calls(&config.file));
    if !wanted
        && matches!(format, Format::Chrome | Format::Otlp)
        && !has_calls(&config.file)
        && samples::may_have_samples(&config.file)
    {
        eprintln!(
            "ferret: note: {} has no calls, only CPU samples; they export as svg, folded or \
             speedscope",
            config.file.display()
        );
    }
    if !wanted || !samples::may_have_samples(&config.file) {
        if config.samples {
            anyhow::bail!(
                "{} has no CPU samples (SAMPLE rows): it was recorded with -s and no --sample-hz",
                config.file.display()
            );
        }
        return Ok(None);
    }
    let mut progress = Progress::new(recording.info().rows, "reading samples");
    let Some(profile) = samples::read(&config.file, None, &mut |rows| progress.update(rows))?
    else {
        progress.finish();
        if config.samples {
            anyhow::bail!("{} has no CPU samples (SAMPLE rows)", config.file.display());
        }
        return Ok(None);
    };
    progress.finish();
    let title = config.file.file_name().map_or_else(
        || config.file.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let subtitle = recording
        .info()
        .target
        .as_ref()
        .map(|t| format!("CPU samples of {t}"));
    match export::samples::export(
        &profile,
        format,
        &config.output,
        &format!("ferret: {title}"),
        subtitle,
    ) {
        Ok(()) => {}
        Err(ExportError::Write { source, .. })
            if to_stdout && source.kind() == std::io::ErrorKind::BrokenPipe =>
        {
            return Ok(Some(0));
        }
        Err(e) => return Err(e.into()),
    }
    if !to_stdout {
        eprintln!(
            "ferret: wrote {} CPU samples ({} distinct stacks) on {} threads to {}",
            count(profile.samples),
            count(profile.stacks.len() as u64),
            count(profile.threads),
            config.output.display()
        );
    }
    Ok(Some(0))
}

/// Whether the recording traced any function (its metadata says how many
/// were probed; a file without the key is taken to have calls).
fn has_calls(path: &Path) -> bool {
    crate::sink::read_metadata(path)
        .ok()
        .and_then(|m| m.get(crate::sink::meta_key::FUNCTIONS)?.parse::<u64>().ok())
        .is_none_or(|n| n > 0)
}
