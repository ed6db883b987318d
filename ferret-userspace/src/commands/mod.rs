//! The subcommands, each turning a config struct into work. Shared steps
//! (resolving the target and its functions, planning probes) live in
//! [`plan`].

pub mod analyze;
pub mod export;
pub mod plan;
pub mod record;
pub mod session;
pub mod symbols;
pub mod watch;
