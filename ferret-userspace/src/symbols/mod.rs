//! Choosing functions by name in ELF files and preparing their probe points.
//!
//! This module owns everything between a user's `-s`/`-x` pattern and the
//! file offsets the kernel's uprobes need: reading ELF symbol tables
//! ([`Module`]), demangling, glob matching ([`Pattern`], [`Glob`]),
//! translating addresses (`svma` in the ELF, `file_offset` in the file,
//! `avma` in the process, converted only in [`Module`] and [`MapsEntry`]),
//! finding every instruction a function leaves through ([`Module::exits`]),
//! judging whether an exception may unwind through a module
//! ([`UnwindPolicy`]), and finding the shared libraries a program uses, from
//! its `DT_NEEDED` entries before it starts or from `/proc/PID/maps` once it
//! runs. Parsing is pure over bytes and `&str`; the thin wrappers that read
//! files are [`Module::open`] and [`resolve_needed`].

mod demangle;
mod elf;
mod exits;
mod glob;
pub mod go;
mod libs;
mod maps;
mod probeable;
mod select;
#[cfg(test)]
mod testutil;

use std::fmt::Write as _;
use std::path::PathBuf;

pub use demangle::{demangle, demangle_without_params};
pub use elf::{Function, Module, SkipReason, Skipped, UnwindPolicy};
pub use exits::{ExitKind, ExitPoint, Exits, scan_exits};
pub use glob::{Glob, Pattern, closest_names};
pub use libs::{LdConfEntry, parse_ld_so_conf, resolve_needed};
pub use maps::{MapsEntry, parse_maps, parse_maps_executables};
pub use probeable::{EntryRefusal, calls_itself, entry_probe_offset, kernel_accepts};
pub use select::{Selection, select};

/// Why symbols could not be read or chosen.
#[derive(Debug, thiserror::Error)]
pub enum SymbolError {
    /// The file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file does not start with the ELF magic bytes.
    #[error("{} is not an ELF file (a shell script or wrapper? point ferret at the real binary)", path.display())]
    NotElf { path: PathBuf },
    /// An ELF file for a machine other than x86-64.
    #[error("{} is built for {arch}; ferret supports x86-64 only", path.display())]
    UnsupportedArch { path: PathBuf, arch: String },
    /// An ELF file the kernel does not map as it is (relocatable object, core dump).
    #[error("{} is {kind}, not an executable or a shared library", path.display())]
    NotLoadable { path: PathBuf, kind: &'static str },
    /// The ELF structures are truncated or inconsistent.
    #[error("{} is a malformed ELF file: {reason}", path.display())]
    Malformed { path: PathBuf, reason: String },
    /// A function whose bytes are not in this module's file (wrong module, or no file-backed code).
    #[error("{name} ({svma:#x}) has no code in {}", path.display())]
    NoCode {
        path: PathBuf,
        name: String,
        svma: u64,
    },
    /// A `-s`/`-x` pattern that cannot be parsed.
    #[error("invalid pattern `{pattern}`: {reason}")]
    BadPattern { pattern: String, reason: String },
    /// An include pattern that matched no function in the modules it addressed.
    #[error("no function matches `{pattern}`{}", did_you_mean(suggestions))]
    NoMatch {
        pattern: String,
        suggestions: Vec<String>,
    },
    /// The library part of a pattern matched no library of the target.
    #[error(
        "no library matches the library part of `{pattern}`{}",
        known_libraries(libraries)
    )]
    NoLibrary {
        pattern: String,
        libraries: Vec<String>,
    },
}

fn did_you_mean(suggestions: &[String]) -> String {
    if suggestions.is_empty() {
        String::new()
    } else {
        format!("; closest names: {}", suggestions.join(", "))
    }
}

/// Lists at most a handful of libraries: a process may map a hundred, and the
/// message must stay one line.
fn known_libraries(libraries: &[String]) -> String {
    const SHOWN: usize = 8;
    if libraries.is_empty() {
        return "; the target uses no shared library".to_owned();
    }
    let mut out = format!(
        "; libraries: {}",
        libraries
            .iter()
            .take(SHOWN)
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join(", ")
    );
    if libraries.len() > SHOWN {
        let _ = write!(out, " and {} more", libraries.len() - SHOWN);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_match_message_lists_suggestions() {
        let err = SymbolError::NoMatch {
            pattern: "proces*".to_owned(),
            suggestions: vec!["process".to_owned(), "progress".to_owned()],
        };
        assert_eq!(
            err.to_string(),
            "no function matches `proces*`; closest names: process, progress"
        );
    }

    #[test]
    fn no_library_message_is_bounded() {
        let libraries: Vec<String> = (0..20).map(|i| format!("lib{i}.so")).collect();
        let err = SymbolError::NoLibrary {
            pattern: "libx*:f".to_owned(),
            libraries,
        };
        let text = err.to_string();
        assert!(text.contains("lib7.so"), "{text}");
        assert!(!text.contains("lib8.so"), "{text}");
        assert!(text.ends_with("and 12 more"), "{text}");
    }
}
