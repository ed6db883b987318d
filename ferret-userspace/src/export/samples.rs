//! Exports drawn from a recording's CPU samples (`SAMPLE` rows) rather
//! than its calls: folded stacks and the SVG flame graph weighted by
//! sample count, and speedscope's sampled profiles, one per thread. A
//! flame graph of samples is where the CPU time went, whatever was traced.

use std::io::{self, Write};
use std::path::Path;

use super::{ExportError, Format, json_string, output::Output, speedscope::SCHEMA_URL};
use crate::analyze::SampleProfile;

/// Writes `profile` (the samples of `recording`, titled `title`) to
/// `output` as `format`. Chrome traces and OTLP hold spans: there is
/// nothing to draw from samples in them.
pub fn export(
    profile: &SampleProfile,
    format: Format,
    output: &Path,
    title: &str,
    subtitle: Option<String>,
) -> Result<(), ExportError> {
    let mut out = Output::create(output)?;
    let write_err = |source| ExportError::Write {
        path: output.to_owned(),
        source,
    };
    match format {
        Format::Folded => write_folded(&mut out, profile).map_err(write_err)?,
        Format::Svg => write_svg(&mut out, profile, title, subtitle).map_err(write_err)?,
        Format::Speedscope => write_speedscope(&mut out, profile, title).map_err(write_err)?,
        Format::Chrome | Format::Otlp => {
            return Err(ExportError::Write {
                path: output.to_owned(),
                source: io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "CPU samples export as speedscope, folded or svg; chrome and otlp need calls",
                ),
            });
        }
    }
    out.flush().map_err(write_err)?;
    out.commit()
}

/// A frame's name in the folded format, where `;` separates frames.
fn folded_name(name: &str) -> String {
    name.replace(';', ":")
}

/// `outer;…;inner COUNT` per distinct stack, in name order.
fn folded_lines(profile: &SampleProfile) -> Vec<String> {
    let mut lines: Vec<String> = profile
        .stacks
        .iter()
        .filter(|(frames, _)| !frames.is_empty())
        .map(|(frames, samples)| {
            let path: Vec<String> = frames.iter().map(|f| folded_name(f)).collect();
            format!("{} {samples}", path.join(";"))
        })
        .collect();
    lines.sort();
    lines
}

fn write_folded(w: &mut impl Write, profile: &SampleProfile) -> io::Result<()> {
    for line in folded_lines(profile) {
        writeln!(w, "{line}")?;
    }
    Ok(())
}

fn write_svg(
    w: &mut impl Write,
    profile: &SampleProfile,
    title: &str,
    subtitle: Option<String>,
) -> io::Result<()> {
    let lines = folded_lines(profile);
    let mut options = inferno::flamegraph::Options::default();
    title.clone_into(&mut options.title);
    options.subtitle = subtitle;
    "samples".clone_into(&mut options.count_name);
    "Function:".clone_into(&mut options.name_type);
    options.hash = true;
    options.deterministic = true;
    inferno::flamegraph::from_lines(&mut options, lines.iter().map(String::as_str), w)
}

/// speedscope's `sampled` profiles, one per thread, weighted by samples.
fn write_speedscope(w: &mut impl Write, profile: &SampleProfile, title: &str) -> io::Result<()> {
    let mut frames: Vec<&str> = Vec::new();
    let mut index: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    let stacks: Vec<Vec<usize>> = profile
        .stacks
        .iter()
        .map(|(names, _)| {
            names
                .iter()
                .map(|name| {
                    *index.entry(name.as_str()).or_insert_with(|| {
                        frames.push(name);
                        frames.len() - 1
                    })
                })
                .collect()
        })
        .collect();
    write!(
        w,
        "{{\"$schema\":\"{SCHEMA_URL}\",\"name\":{},\"exporter\":\"ferret {}\",\"shared\":{{\"frames\":[",
        json_string(title),
        env!("CARGO_PKG_VERSION")
    )?;
    for (i, name) in frames.iter().enumerate() {
        if i > 0 {
            w.write_all(b",")?;
        }
        write!(w, "{{\"name\":{}}}", json_string(name))?;
    }
    w.write_all(b"]},\"profiles\":[")?;
    let mut threads: Vec<(i32, &str)> = Vec::new();
    for (tid, name, ..) in &profile.runs {
        if !threads.iter().any(|(t, _)| t == tid) {
            threads.push((*tid, name));
        }
    }
    for (n, (tid, name)) in threads.iter().enumerate() {
        if n > 0 {
            w.write_all(b",")?;
        }
        let runs: Vec<(u32, u64)> = profile
            .runs
            .iter()
            .filter(|r| r.0 == *tid)
            .map(|r| (r.2, r.3))
            .collect();
        let total: u64 = runs.iter().map(|r| r.1).sum();
        write!(
            w,
            "\n{{\"type\":\"sampled\",\"name\":{},\"unit\":\"none\",\"startValue\":0,\"endValue\":{total},\"samples\":[",
            json_string(&format!("{name} (tid {tid}) · CPU samples"))
        )?;
        for (i, (stack, _)) in runs.iter().enumerate() {
            if i > 0 {
                w.write_all(b",")?;
            }
            w.write_all(b"[")?;
            for (k, frame) in stacks[*stack as usize].iter().enumerate() {
                if k > 0 {
                    w.write_all(b",")?;
                }
                write!(w, "{frame}")?;
            }
            w.write_all(b"]")?;
        }
        w.write_all(b"],\"weights\":[")?;
        for (i, (_, weight)) in runs.iter().enumerate() {
            if i > 0 {
                w.write_all(b",")?;
            }
            write!(w, "{weight}")?;
        }
        w.write_all(b"]}")?;
    }
    w.write_all(b"]}\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile() -> SampleProfile {
        SampleProfile {
            samples: 5,
            threads: 2,
            first_ts_ns: Some(0),
            last_ts_ns: Some(4),
            functions: Vec::new(),
            stacks: vec![
                (vec!["main".into(), "loop".into(), "crunch".into()], 3),
                (vec!["start".into(), "f;g".into()], 2),
            ],
            runs: vec![
                (7, "main".into(), 0, 2),
                (8, "worker".into(), 1, 2),
                (7, "main".into(), 0, 1),
            ],
        }
    }

    #[test]
    fn folded_lines_weigh_stacks_by_samples() {
        let mut out = Vec::new();
        write_folded(&mut out, &profile()).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "main;loop;crunch 3\nstart;f:g 2\n"
        );
        let mut svg = Vec::new();
        write_svg(&mut svg, &profile(), "t", None).unwrap();
        let svg = String::from_utf8(svg).unwrap();
        assert!(
            svg.contains("crunch (3 samples, 60.00%)"),
            "frame titles carry samples"
        );
    }

    #[test]
    fn speedscope_has_a_sampled_profile_per_thread() {
        let mut out = Vec::new();
        write_speedscope(&mut out, &profile(), "t").unwrap();
        let json: serde_json::Value = serde_json::from_slice(&out).unwrap();
        let frames = json["shared"]["frames"].as_array().unwrap();
        assert_eq!(frames.len(), 5);
        let profiles = json["profiles"].as_array().unwrap();
        assert_eq!(profiles.len(), 2);
        assert_eq!(profiles[0]["type"], "sampled");
        assert_eq!(profiles[0]["weights"], serde_json::json!([2, 1]));
        assert_eq!(profiles[0]["endValue"], 3);
        assert_eq!(profiles[0]["samples"][0], serde_json::json!([0, 1, 2]));
        assert_eq!(profiles[1]["samples"][0], serde_json::json!([3, 4]));
    }
}
