//! The `ferret` binary: parse the command line, run the subcommand, and turn
//! failures into one `error:` line with a hint and a non-zero exit status.

use std::process::ExitCode;

use clap::Parser as _;
use ferret::{
    cli::{Cli, Invocation},
    commands,
};

fn main() -> ExitCode {
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
            let message = format!("{e:#}");
            eprintln!("error: {message}");
            if let Some(hint) = ferret::hint_for(&message) {
                eprintln!("hint: {hint}");
            }
            ExitCode::FAILURE
        }
    }
}
