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
//! runs. A binary shipped without its symbol table gets it from its
//! separate debug file ([`debuginfo`]: by build id, `.gnu_debuglink` or
//! debuginfod). Parsing is pure over bytes and `&str`; the thin wrappers
//! that read files are [`Module::open`], [`debuginfo::find`] and
//! [`resolve_needed`].

pub mod debuginfo;
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
    #[error(
        "no function matches `{pattern}` in {}{}{}",
        bounded(modules),
        did_you_mean(suggestions),
        no_symbols(stripped)
    )]
    NoMatch {
        pattern: String,
        /// The modules searched, as the target sees them.
        modules: Vec<String>,
        suggestions: Vec<String>,
        /// Those of `modules` that have no symbol table anywhere.
        stripped: Vec<String>,
    },
    /// A module whose functions were wanted has only its exported symbols:
    /// no `.symtab`, and no debug file was found.
    #[error("{module} is stripped ({}); {}", missing.reason(), missing.remedy())]
    Stripped {
        module: String,
        missing: Box<debuginfo::Missing>,
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

fn no_symbols(stripped: &[String]) -> String {
    match stripped {
        [] => String::new(),
        [one] => format!(
            "; {one} has no symbol table (stripped, no debug file found): install its debug \
             symbols, set DEBUGINFOD_URLS, or rebuild without strip"
        ),
        many => format!(
            "; {} have no symbol table (stripped, no debug file found): install their debug \
             symbols, set DEBUGINFOD_URLS, or rebuild without strip",
            bounded(many)
        ),
    }
}

/// At most a handful of names, so the message stays one line.
fn bounded(names: &[String]) -> String {
    const SHOWN: usize = 4;
    let mut out = names
        .iter()
        .take(SHOWN)
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > SHOWN {
        let _ = write!(out, " and {} more", names.len() - SHOWN);
    }
    out
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
            modules: vec!["/usr/bin/app".to_owned()],
            suggestions: vec!["process".to_owned(), "progress".to_owned()],
            stripped: Vec::new(),
        };
        assert_eq!(
            err.to_string(),
            "no function matches `proces*` in /usr/bin/app; closest names: process, progress"
        );
    }

    #[test]
    fn no_match_names_many_modules_and_the_stripped_ones() {
        let modules: Vec<String> = (0..6).map(|i| format!("/lib/lib{i}.so")).collect();
        let err = SymbolError::NoMatch {
            pattern: "lib*:nothing".to_owned(),
            modules: modules.clone(),
            suggestions: Vec::new(),
            stripped: vec![modules[1].clone()],
        };
        assert_eq!(
            err.to_string(),
            "no function matches `lib*:nothing` in /lib/lib0.so, /lib/lib1.so, /lib/lib2.so, \
             /lib/lib3.so and 2 more; /lib/lib1.so has no symbol table (stripped, no debug file \
             found): install its debug symbols, set DEBUGINFOD_URLS, or rebuild without strip"
        );
    }

    #[test]
    fn stripped_message_is_one_line_with_the_remedy() {
        let err = SymbolError::Stripped {
            module: "/usr/bin/miniserve".to_owned(),
            missing: Box::new(debuginfo::Missing {
                build_id: Some("5e1f".to_owned()),
                dirs: vec!["/usr/lib/debug".into()],
                ..debuginfo::Missing::default()
            }),
        };
        assert_eq!(
            err.to_string(),
            "/usr/bin/miniserve is stripped (no .symtab, no debug file for build id 5e1f in \
             /usr/lib/debug); install its debug symbols, set DEBUGINFOD_URLS, or rebuild without strip"
        );
        assert!(!err.to_string().contains('\n'));
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
