//! `ferret symbols`: list the functions a binary or a running process offers.

use std::io::Write as _;

use anyhow::Result;

use crate::{
    cli::{SymbolSource, SymbolsConfig, Target},
    symbols::{self, Function},
};

use crate::session::plan::ResolvedTarget;

/// Prints `name  module  address  size` for every matching function.
pub fn run(config: &SymbolsConfig) -> Result<i32> {
    let target = match &config.source {
        SymbolSource::Pid(pid) => ResolvedTarget::resolve(&Target::Pid(*pid))?,
        SymbolSource::Binary(binary) => {
            ResolvedTarget::resolve(&Target::Command(vec![binary.clone()]))?
        }
    };
    let (exe, libs) = target.modules(true)?;
    let mut rows: Vec<Function> = Vec::new();
    if config.patterns.is_empty() {
        rows.extend(exe.functions()?.0);
    } else {
        let selection = symbols::select(&exe, &libs, &config.patterns, &[])?;
        rows = selection.functions;
    }
    rows.sort_by(|a, b| (&a.module, a.svma).cmp(&(&b.module, b.svma)));
    let mut out = std::io::stdout().lock();
    let name_width = rows.iter().map(|f| f.name.len()).max().unwrap_or(0).min(60);
    for f in &rows {
        let module = f.module.display().to_string();
        let module = module
            .split_once("/root/")
            .filter(|(head, _)| head.starts_with("/proc/"))
            .map_or(module.clone(), |(_, rest)| format!("/{rest}"));
        writeln!(
            out,
            "{:<name_width$}  {module}  {:#x}  {}",
            f.name, f.svma, f.size
        )?;
    }
    if exe.is_stripped() {
        eprintln!(
            "ferret: note: {} is stripped; only its dynamic symbols are listed",
            exe.path.display()
        );
    }
    Ok(0)
}
