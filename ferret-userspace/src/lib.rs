//! ferret: an external function-level profiler for Linux.
//!
//! The binary (`main.rs`) is thin; everything lives here so the integration
//! tests can reach the pure parts. Data flows one way: `target` picks the
//! process, `symbols` picks the functions, `probe` attaches and decodes the
//! ring buffer, `trace` rebuilds per-thread stacks into spans, `metrics`
//! samples procfs, `sink` writes the Parquet event log, and `otlp` sends
//! spans to an OpenTelemetry collector.

pub mod analyze;
pub mod cli;
pub mod commands;
pub mod export;
pub(crate) mod fxhash;
pub mod live;
pub mod log_buckets;
pub mod metrics;
pub mod otlp;
pub mod owner;
pub mod probe;
pub mod sink;
pub mod stall;
pub mod symbols;
pub mod target;
pub mod trace;
pub mod tui;

/// A hint for an error message, where one helps.
pub fn hint_for(message: &str) -> Option<&'static str> {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    // An unwritable output is about the path, not about privilege, even
    // when the OS says "Permission denied".
    if message.contains("cannot create") {
        Some("check that the output's directory exists and is writable")
    } else if (message.contains("Operation not permitted") || message.contains("Permission denied"))
        && !root
    {
        Some(
            "ferret needs root, or the CAP_BPF and CAP_PERFMON capabilities: try `sudo ferret ...`",
        )
    } else if message.contains("no process with pid") {
        Some("check the pid with `ps -e` or `pgrep NAME`")
    } else if message.contains("command not found") {
        Some("give a path (./prog) or a command on PATH")
    } else {
        None
    }
}
