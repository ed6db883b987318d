//! ferret's end-to-end tests, one binary with a module per area: real
//! probes on programs built here (`tests/programs`), checked against what
//! the programs themselves counted, and the post-mortem commands on those
//! recordings and on synthetic or broken files.
//!
//! Tests that attach probes need root. They are marked
//! `#[ignore = "needs root: …"]`, so a plain `cargo test` as a normal user
//! passes and lists them as ignored; `cargo xtask test` runs them all
//! (`--include-ignored`, as root), and each of them calls
//! [`support::require_root`] first, so without the privilege they fail
//! loudly instead of skipping. The rest need no privilege and always run.
//!
//! The modules run side by side in one process: what they share (the
//! recordings of [`postmortem`], the programs [`support::build`] compiles)
//! is made once and guarded; files go into per-test or per-module folders.

mod analyze;
mod cost;
mod debuginfo;
mod errors;
mod export;
mod go;
mod hot;
mod metrics;
mod otlp;
mod postmortem;
mod record;
mod robust;
mod sched;
mod stall;
mod stall_pool;
mod stop;
mod support;
mod watch;
