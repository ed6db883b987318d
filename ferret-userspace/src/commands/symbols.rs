//! `ferret symbols`: list the functions a binary or a running process offers.

use std::io::Write as _;

use anyhow::Result;

use crate::{
    cli::{SymbolSource, SymbolsConfig, Target},
    symbols::{self, Function, debuginfo::DebugSearch},
};

use crate::session::plan::ResolvedTarget;

/// Prints `name  module  address  size` for every matching function.
pub fn run(config: &SymbolsConfig) -> Result<i32> {
    DebugSearch::from_env(&config.debug_dirs).install();
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
        if rows.is_empty()
            && let Some(stripped) = exe.stripped_error()
        {
            return Err(stripped.into());
        }
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
    // Every module listed whose symbols are not its own says where they
    // came from, or that only its exports are known.
    let exe_addressed =
        config.patterns.is_empty() || config.patterns.iter().any(|p| p.library.is_none());
    let mut listed: Vec<&symbols::Module> = Vec::new();
    for module in std::iter::once(&exe).chain(&libs) {
        let is_exe = module.path == exe.path;
        if (is_exe && exe_addressed) || rows.iter().any(|f| f.module == module.path) {
            listed.push(module);
        }
    }
    for module in listed {
        if let Some(debug) = module.symbols_debug_file() {
            eprintln!(
                "ferret: {}: symbols from {} ({})",
                module.shown_path().display(),
                debug.path.display(),
                debug.via
            );
        } else if let Some(stripped) = module.stripped_error() {
            eprintln!("ferret: note: {stripped}; only its exported functions are listed");
        }
    }
    Ok(0)
}
