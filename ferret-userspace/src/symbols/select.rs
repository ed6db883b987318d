//! Applying `-s`/`-x` patterns to the target's modules.

use std::collections::HashSet;
use std::path::Path;

use super::SymbolError;
use super::elf::{Entry, Function, Module, Skipped};
use super::glob::{Pattern, closest_names};

/// How many suggestions a pattern that matched nothing gets.
const SUGGESTIONS: usize = 5;

/// The outcome of [`select`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selection {
    /// Functions to probe, in the order the include patterns found them;
    /// each `(module, file_offset)` once.
    pub functions: Vec<Function>,
    /// Symbols an include pattern matched that cannot be probed (imports,
    /// ifunc resolvers, …), for the caller to report.
    pub skipped: Vec<Skipped>,
}

/// Picks the functions the patterns name.
///
/// `exe` is the main executable; `libs` the shared libraries (already
/// resolved paths). A pattern without a library part matches functions of
/// `exe`; with one, functions of the libs whose file name matches the library
/// glob. A function matches if any of its names does: demangled, raw, an
/// alias's, or a C++ name without its parameter list (so `ns::Widget::run`
/// picks `ns::Widget::run(int)`).
///
/// Excludes remove matches; an exclude without a library part applies to
/// every module, since `-x free` means "never probe `free`" wherever it was
/// included from.
///
/// Errors: an include whose library glob matches no library is `NoLibrary`;
/// an include that matches no symbol at all in the modules it addressed is
/// `NoMatch`, naming those modules, with suggestions from them; or
/// `Stripped` when it addressed one module and that one has no symbol
/// table anywhere (no `.symtab`, no debug file). An include that matches
/// only unprobe-able symbols is not an error: they are in `skipped`, whose
/// reasons explain more than "no match" could.
pub fn select(
    exe: &Module,
    libs: &[Module],
    includes: &[Pattern],
    excludes: &[Pattern],
) -> Result<Selection, SymbolError> {
    let mut selection = Selection::default();
    let mut chosen: HashSet<(&Path, u64)> = HashSet::new();
    let mut reported: HashSet<(&Path, &str)> = HashSet::new();

    for pattern in includes {
        let modules = addressed(exe, libs, pattern);
        if pattern.library.is_some() && modules.is_empty() {
            return Err(SymbolError::NoLibrary {
                pattern: pattern.to_string(),
                libraries: libs
                    .iter()
                    .map(|m| {
                        m.path.file_name().map_or_else(
                            || m.path.display().to_string(),
                            |n| n.to_string_lossy().into_owned(),
                        )
                    })
                    .collect(),
            });
        }
        let mut matched = false;
        for module in &modules {
            let catalog = module.catalog()?;
            for entry in &catalog.entries {
                if !entry_matches(&pattern.name, entry) {
                    continue;
                }
                matched = true;
                if excluded(excludes, module, |glob| entry_matches(glob, entry)) {
                    continue;
                }
                let f = &entry.function;
                if chosen.insert((&module.path, f.file_offset)) {
                    selection.functions.push(f.clone());
                }
            }
            for skipped in &catalog.skipped {
                if !pattern.name.matches(&skipped.name) {
                    continue;
                }
                matched = true;
                if excluded(excludes, module, |glob| glob.matches(&skipped.name))
                    || !reported.insert((&module.path, &skipped.name))
                {
                    continue;
                }
                selection.skipped.push(skipped.clone());
            }
        }
        if !matched {
            if let [module] = modules.as_slice()
                && let Some(stripped) = module.stripped_error()
            {
                return Err(stripped);
            }
            let mut candidates = Vec::new();
            for module in &modules {
                candidates.extend(
                    module
                        .catalog()?
                        .entries
                        .iter()
                        .map(|e| e.function.name.as_str()),
                );
            }
            let shown = |m: &&Module| m.shown_path().display().to_string();
            return Err(SymbolError::NoMatch {
                pattern: pattern.to_string(),
                modules: modules.iter().map(shown).collect(),
                stripped: modules
                    .iter()
                    .filter(|m| m.missing_symbols().is_some())
                    .map(shown)
                    .collect(),
                suggestions: closest_names(
                    pattern.name.as_str(),
                    candidates.into_iter(),
                    SUGGESTIONS,
                )
                .into_iter()
                .map(str::to_owned)
                .collect(),
            });
        }
    }
    Ok(selection)
}

/// The modules a pattern's library part picks.
fn addressed<'m>(exe: &'m Module, libs: &'m [Module], pattern: &Pattern) -> Vec<&'m Module> {
    match pattern.library {
        None => vec![exe],
        Some(_) => libs
            .iter()
            .filter(|m| pattern.matches_library(&m.path))
            .collect(),
    }
}

fn entry_matches(glob: &super::glob::Glob, entry: &Entry) -> bool {
    entry.names.iter().any(|name| glob.matches(name))
}

fn excluded(
    excludes: &[Pattern],
    module: &Module,
    name_matches: impl Fn(&super::glob::Glob) -> bool,
) -> bool {
    excludes
        .iter()
        .any(|x| (x.library.is_none() || x.matches_library(&module.path)) && name_matches(&x.name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::symbols::SkipReason;
    use crate::symbols::testutil::compile;

    const APP: &str = r#"
        __attribute__((noinline)) int app_parse(int x) { return x + 1; }
        __attribute__((noinline)) int app_render(int x) { return x * 2; }
        __attribute__((noinline)) int helper(int x) { return x - 1; }
        int __impl_long(int x) { return x + 7; }
        extern int short_a(int) __attribute__((alias("__impl_long")));
        int shared_name(int x);
        int main(int argc, char **argv) {
            (void)argv;
            return app_parse(argc) + app_render(argc) + helper(argc) + short_a(argc) + shared_name(argc);
        }
    "#;
    const LIB: &str = r"
        __attribute__((noinline)) int lib_work(int x) { return x * 5; }
        int shared_name(int x) { return lib_work(x) + 1; }
    ";

    struct Fixture {
        _dir: tempfile::TempDir,
        exe: Module,
        libs: Vec<Module>,
    }

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        let lib = compile(
            dir.path(),
            "libdemo.so.1",
            false,
            LIB,
            &["-O1", "-shared", "-fPIC"],
        );
        let lib_arg = lib.display().to_string();
        let exe = compile(dir.path(), "app", false, APP, &["-O1", &lib_arg]);
        Fixture {
            exe: Module::open(&exe).expect("exe"),
            libs: vec![Module::open(&lib).expect("lib")],
            _dir: dir,
        }
    }

    fn patterns(texts: &[&str]) -> Vec<Pattern> {
        texts
            .iter()
            .map(|t| t.parse().expect("valid pattern"))
            .collect()
    }

    fn names(selection: &Selection) -> Vec<&str> {
        selection
            .functions
            .iter()
            .map(|f| f.name.as_str())
            .collect()
    }

    #[test]
    fn plain_pattern_addresses_the_executable() {
        let fx = fixture();
        let sel = select(&fx.exe, &fx.libs, &patterns(&["app_*"]), &[]).expect("selects");
        assert_eq!(names(&sel), ["app_parse", "app_render"]);
        assert!(sel.functions.iter().all(|f| f.module == fx.exe.path));
    }

    #[test]
    fn library_pattern_addresses_libraries() {
        let fx = fixture();
        let sel = select(&fx.exe, &fx.libs, &patterns(&["libdemo*:*_*"]), &[]).expect("selects");
        let mut got = names(&sel);
        got.sort_unstable();
        assert_eq!(got, ["lib_work", "shared_name"]);
        assert!(sel.functions.iter().all(|f| f.module == fx.libs[0].path));
    }

    #[test]
    fn imported_name_is_skipped_not_unmatched() {
        let fx = fixture();
        let sel = select(&fx.exe, &fx.libs, &patterns(&["shared_name"]), &[]).expect("selects");
        assert!(sel.functions.is_empty());
        assert_eq!(sel.skipped.len(), 1);
        assert_eq!(sel.skipped[0].reason, SkipReason::Undefined);
    }

    #[test]
    fn excludes_and_duplicates() {
        let fx = fixture();
        let sel = select(
            &fx.exe,
            &fx.libs,
            &patterns(&["app_*", "*", "libdemo.so.1:*"]),
            &patterns(&["*render", "libdemo.so.1:lib_*"]),
        )
        .expect("selects");
        let got = names(&sel);
        assert!(got.contains(&"app_parse"));
        assert!(got.contains(&"helper"));
        assert!(got.contains(&"shared_name"));
        assert!(!got.contains(&"app_render"));
        assert!(!got.contains(&"lib_work"));
        let mut keys: Vec<_> = sel
            .functions
            .iter()
            .map(|f| (f.module.clone(), f.file_offset))
            .collect();
        let before = keys.len();
        keys.sort();
        keys.dedup();
        assert_eq!(keys.len(), before, "each (module, file_offset) once");
    }

    #[test]
    fn alias_names_select_the_kept_function() {
        let fx = fixture();
        let sel = select(&fx.exe, &fx.libs, &patterns(&["__impl_long"]), &[]).expect("selects");
        assert_eq!(names(&sel), ["short_a"]);
    }

    #[test]
    fn no_match_suggests_close_names() {
        let fx = fixture();
        let err = select(&fx.exe, &fx.libs, &patterns(&["app_pars"]), &[]).expect_err("no match");
        match err {
            SymbolError::NoMatch {
                pattern,
                modules,
                suggestions,
                stripped,
            } => {
                assert_eq!(pattern, "app_pars");
                assert_eq!(modules, [fx.exe.path.display().to_string()]);
                assert!(stripped.is_empty());
                assert_eq!(suggestions.first().map(String::as_str), Some("app_parse"));
            }
            other => panic!("unexpected {other:?}"),
        }
        // The executable's functions are not suggested for a library pattern.
        let err = select(&fx.exe, &fx.libs, &patterns(&["libdemo*:app_parse"]), &[])
            .expect_err("no match");
        let SymbolError::NoMatch { suggestions, .. } = err else {
            panic!("unexpected {err:?}");
        };
        assert!(
            !suggestions.contains(&"app_parse".to_owned()),
            "{suggestions:?}"
        );
    }

    #[test]
    fn unknown_library_lists_libraries() {
        let fx = fixture();
        let err = select(&fx.exe, &fx.libs, &patterns(&["libnope*:f"]), &[]).expect_err("no lib");
        match err {
            SymbolError::NoLibrary { pattern, libraries } => {
                assert_eq!(pattern, "libnope*:f");
                assert_eq!(libraries, ["libdemo.so.1"]);
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn excluded_match_is_not_an_error() {
        let fx = fixture();
        let sel = select(
            &fx.exe,
            &fx.libs,
            &patterns(&["helper"]),
            &patterns(&["help*"]),
        )
        .expect("matched, then excluded");
        assert!(sel.functions.is_empty());
    }
}
