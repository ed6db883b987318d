//! `ferret analyze` (being written).

use anyhow::Result;

use crate::cli::AnalyzeConfig;

/// Runs `ferret analyze`.
pub fn run(config: &AnalyzeConfig) -> Result<i32> {
    let _ = config;
    anyhow::bail!("`ferret analyze` is not implemented yet")
}
