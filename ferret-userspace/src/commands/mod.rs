//! The subcommands, each turning a config struct into work. `record` and
//! `watch` run a [`crate::session`]; `analyze` and `export` read a
//! recording; `symbols` lists what can be traced.

pub mod analyze;
pub mod export;
pub mod record;
pub mod symbols;
pub mod watch;
