//! `ferret export` (being written).

use anyhow::Result;

use crate::cli::ExportConfig;

/// Runs `ferret export`.
pub fn run(config: &ExportConfig) -> Result<i32> {
    let _ = config;
    anyhow::bail!("`ferret export` is not implemented yet")
}
