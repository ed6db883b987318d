//! `ferret analyze`: the function table or the slowest call trees of a
//! recording, as text or JSON on stdout. Warnings (lost events, a recording
//! cut short, a filter that matched nothing) go to stderr.

use std::io::{self, BufWriter, IsTerminal as _, Write};

use anyhow::{Context as _, Result};

use crate::analyze::render::{self, Style};
use crate::analyze::{self, Overview, Progress, Query, Recording, SortBy, samples};
use crate::cli::{AnalyzeConfig, AnalyzeFormat, SortKey};
use crate::symbols::closest_names;

/// Runs `ferret analyze`.
pub fn run(config: &AnalyzeConfig) -> Result<i32> {
    let mut recording = Recording::open(&config.file)?;
    recording.set_raw(config.raw);
    let query = Query {
        // A tid that does not fit the column's type matches nothing.
        thread: config.thread.map(|t| i32::try_from(t).unwrap_or(-1)),
        function: config.function.clone(),
        sort: sort_by(config.sort),
        top: config.top,
    };
    let mut progress = Progress::new(recording.info().rows, "analyzing");
    let stdout = io::stdout();
    let style = Style {
        color: stdout.is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
    };
    let mut out = BufWriter::new(stdout.lock());
    // CPU samples (a recording made without -s, or with sampling): their
    // profile, after the calls' table, or alone.
    let samples = if !config.tree && samples::may_have_samples(&config.file) {
        let mut progress = Progress::new(recording.info().rows, "reading samples");
        let profile = samples::read(&config.file, query.thread, &mut |rows| {
            progress.update(rows);
        })?;
        progress.finish();
        profile
    } else {
        None
    };
    if config.samples && samples.is_none() {
        anyhow::bail!(
            "{} has no CPU samples (SAMPLE rows): it was recorded with -s and no --sample-hz",
            config.file.display()
        );
    }
    let file = config.file.display().to_string();
    let target = recording.info().target.clone();
    let write_samples = |out: &mut dyn Write, profile: &analyze::SampleProfile| match config.format
    {
        AnalyzeFormat::Table => samples::write_table(
            out,
            &file,
            target.as_deref(),
            profile,
            config.top,
            config.function.as_ref(),
        ),
        AnalyzeFormat::Json => samples::write_json(
            out,
            &file,
            target.as_deref(),
            profile,
            config.top,
            config.function.as_ref(),
        ),
    };
    let has_spans = || {
        crate::sink::read_metadata(&config.file)
            .ok()
            .and_then(|m| m.get(crate::sink::meta_key::FUNCTIONS)?.parse::<u64>().ok())
            .is_none_or(|n| n > 0)
    };
    if let Some(profile) = &samples
        && (config.samples || !has_spans())
    {
        return match write_samples(&mut out, profile).and_then(|()| out.flush()) {
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(0),
            other => other.map(|()| 0).context("writing to stdout"),
        };
    }
    let written = if config.tree {
        let report = analyze::trees(&recording, &query, &mut progress)?;
        warn(&report.overview, config);
        if report.trees.is_empty()
            && let Some(glob) = &config.function
        {
            let names: Vec<&str> = report
                .names
                .functions()
                .iter()
                .map(|f| f.name.as_str())
                .collect();
            no_match(glob.as_str(), &names);
        }
        match config.format {
            AnalyzeFormat::Table => render::trees(&mut out, &report, style),
            AnalyzeFormat::Json => render::trees_json(&mut out, &report),
        }
    } else {
        let report = analyze::functions(&recording, &query, &mut progress)?;
        warn(&report.overview, config);
        if report.functions.is_empty()
            && let Some(glob) = &config.function
        {
            let names: Vec<&str> = report.all_names.iter().map(String::as_str).collect();
            no_match(glob.as_str(), &names);
        }
        match config.format {
            AnalyzeFormat::Table => render::table(&mut out, &report, config.top, style),
            AnalyzeFormat::Json => {
                render::table_json(&mut out, &report, config.top, query.sort.as_str())
            }
        }
    };
    let written = written.and_then(|()| match (&samples, config.format) {
        (Some(profile), AnalyzeFormat::Table) => {
            writeln!(out)?;
            write_samples(&mut out, profile)
        }
        _ => Ok(()),
    });
    match written.and_then(|()| out.flush()) {
        // `ferret analyze … | head` closes the pipe early: not an error.
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(0),
        other => other.map(|()| 0).context("writing to stdout"),
    }
}

fn sort_by(key: SortKey) -> SortBy {
    match key {
        SortKey::Calls => SortBy::Calls,
        SortKey::Total => SortBy::Total,
        SortKey::SelfTime => SortBy::SelfTime,
        SortKey::Mean => SortBy::Mean,
        SortKey::P95 => SortBy::P95,
        SortKey::P99 => SortBy::P99,
        SortKey::Max => SortBy::Max,
        SortKey::Cpu => SortBy::Cpu,
        SortKey::Runnable => SortBy::Runnable,
        SortKey::Blocked => SortBy::Blocked,
    }
}

/// What a reader of the numbers must know about the recording.
fn warn(o: &Overview, config: &AnalyzeConfig) {
    if let Some(lost) = o.info.lost_events.filter(|&n| n > 0) {
        eprintln!(
            "warning: the kernel lost {lost} events during this recording; some calls are \
             missing and some durations may be too long"
        );
    }
    if o.info.complete == Some(false) || o.cut > 0 {
        eprintln!(
            "warning: the recording was cut short; {} calls with no end were ended at its last \
             timestamp",
            o.cut
        );
    }
    if o.orphans > 0 {
        eprintln!(
            "warning: {} call ends had no start before them (were the rows re-sorted?); they \
             count in the table but not in trees",
            o.orphans
        );
    }
    if let Some(tid) = config.thread
        && o.spans == 0
    {
        let others: Vec<String> = o.other_tids.iter().take(20).map(i32::to_string).collect();
        if others.is_empty() {
            eprintln!("note: no calls on thread {tid}; the recording has no calls at all");
        } else {
            eprintln!(
                "note: no calls on thread {tid}; threads with calls: {}{}",
                others.join(", "),
                if o.other_tids.len() > others.len() {
                    ", …"
                } else {
                    ""
                }
            );
        }
    }
}

fn no_match(pattern: &str, names: &[&str]) {
    let close = closest_names(pattern, names.iter().copied(), 5);
    if close.is_empty() {
        eprintln!("note: no function in the recording matches `{pattern}`");
    } else {
        eprintln!(
            "note: no function in the recording matches `{pattern}`; did you mean {}?",
            close
                .iter()
                .map(|n| format!("`{n}`"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
}
