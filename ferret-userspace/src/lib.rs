//! ferret: an external function-level profiler for Linux.
//!
//! The binary (`main.rs`) is thin; everything lives here so the integration
//! tests can reach the pure parts. Data flows one way: `target` picks the
//! process, `symbols` picks the functions, `probe` attaches and decodes the
//! ring buffer, `trace` rebuilds per-thread stacks into spans, `metrics`
//! samples procfs, and `session` runs the one event loop that hands spans,
//! samples and stalls to the consumers: `sink` (the Parquet event log),
//! `live` (the dashboard's aggregates) and `otlp` (spans sent to an
//! OpenTelemetry collector). `clock` is the one place time is
//! read. The contracts (command line, Parquet schema, metadata) are in
//! `docs/CONTRACTS.md`.

pub mod analyze;
pub mod cli;
pub mod clock;
pub mod commands;
pub mod cost;
pub mod export;
pub mod live;
pub(crate) mod log_buckets;
pub mod metrics;
pub mod otlp;
pub(crate) mod owner;
pub mod probe;
pub mod sample;
pub mod session;
pub mod sink;
pub mod stall;
pub mod symbols;
pub mod target;
pub mod trace;
pub(crate) mod tui;
