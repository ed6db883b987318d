//! ferret: an external function-level profiler for Linux.
//!
//! The binary (`main.rs`) is thin; everything lives here so the integration
//! tests can reach the pure parts. Data flows one way: `target` picks the
//! process, `symbols` picks the functions, `probe` attaches and decodes the
//! ring buffer, `trace` rebuilds per-thread stacks into spans, `metrics`
//! samples procfs, and `sink` writes the Parquet event log.

pub mod metrics;
pub mod probe;
pub mod sink;
pub mod symbols;
pub mod target;
pub mod trace;
