//! `ferret watch` (being written).

use anyhow::Result;

use crate::cli::WatchConfig;

/// Runs `ferret watch`.
pub fn run(config: &WatchConfig) -> Result<i32> {
    let _ = config;
    anyhow::bail!("`ferret watch` is not implemented yet")
}
