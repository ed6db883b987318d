//! The `ferret` binary: parse the command line, run the subcommand, and turn
//! failures into one `error:` line with a hint and a non-zero exit status.

use std::process::ExitCode;

use clap::Parser as _;
use ferret::{
    cli::{Cli, Invocation},
    commands,
    export::ExportError,
    probe::ProbeError,
    session::plan::PlanError,
    sink::SinkError,
    target::TargetError,
};

fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args
        .get(1)
        .is_some_and(|a| a == ferret::cost::calibrate::CHILD_ARG)
    {
        // A helper ferret started to measure its probes' cost.
        let code = ferret::cost::calibrate::run_child(&args[2..]);
        return ExitCode::from(u8::try_from(code).unwrap_or(1));
    }
    let invocation = match Cli::try_parse().and_then(Cli::into_invocation) {
        Ok(invocation) => invocation,
        Err(e) => e.exit(),
    };
    let result = match &invocation {
        Invocation::Watch(config) => commands::watch::run(config),
        Invocation::Record(config) => commands::record::run(config),
        Invocation::Analyze(config) => commands::analyze::run(config),
        Invocation::Export(config) => commands::export::run(config),
        Invocation::Symbols(config) => commands::symbols::run(config),
    };
    match result {
        Ok(code) => ExitCode::from(u8::try_from(code.clamp(0, 255)).unwrap_or(1)),
        Err(e) => {
            eprintln!("error: {}", one_line(&e));
            if let Some(hint) = hint_for(&e) {
                eprintln!("hint: {hint}");
            }
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line, `outer: inner: root`, leaving out
/// a cause whose text the line already holds (many errors name their
/// source in their own message).
fn one_line(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

/// A hint for an error, where one helps, chosen by what the error is
/// (never by its text).
fn hint_for(e: &anyhow::Error) -> Option<&'static str> {
    let root = rustix::process::geteuid().is_root();
    e.chain().find_map(|cause| {
        if let Some(e) = cause.downcast_ref::<TargetError>() {
            return match e {
                TargetError::NoSuchPid(_) => Some("check the pid with `ps -e` or `pgrep NAME`"),
                TargetError::CommandNotFound(_) => {
                    Some("give a path (./prog) or a command on PATH")
                }
                _ => None,
            };
        }
        // An unwritable output is about the path, not about privilege, even
        // when the OS says "Permission denied".
        if matches!(cause.downcast_ref(), Some(SinkError::Create { .. }))
            || matches!(cause.downcast_ref(), Some(ExportError::Create { .. }))
        {
            return Some("check that the output's directory exists and is writable");
        }
        if let Some(PlanError::UretprobeInGo { .. }) = cause.downcast_ref() {
            return Some(
                "leave --exit-probes out (or say `ret`): ferret probes a Go program's \
                 return instructions, which is safe",
            );
        }
        if let Some(e) = cause.downcast_ref::<ProbeError>()
            && e.is_permission_denied()
            && !root
        {
            return Some(
                "ferret needs root, or the CAP_BPF and CAP_PERFMON capabilities: \
                 try `sudo ferret ...`",
            );
        }
        None
    })
}
