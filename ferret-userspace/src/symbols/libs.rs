//! Finding the shared libraries a program will load, before it runs.
//!
//! ferret attaches before a launched command executes its first instruction,
//! when `/proc/PID/maps` lists no library yet, so `LIB:GLOB` patterns are
//! resolved the way ld.so will resolve them. The emulation covers what
//! decides the outcome on a normal system; it reads `/etc/ld.so.conf` rather
//! than the binary `ld.so.cache` it is compiled from, and ignores
//! `$PLATFORM`, `$LIB` and hardware-capability subdirectories.

use std::collections::{HashSet, VecDeque};
use std::path::{Path, PathBuf};

use super::elf::Module;
use super::glob::Glob;

/// Where ld.so looks after every other source, on x86-64 Linux.
const DEFAULT_DIRS: [&str; 6] = [
    "/lib/x86_64-linux-gnu",
    "/usr/lib/x86_64-linux-gnu",
    "/lib64",
    "/usr/lib64",
    "/lib",
    "/usr/lib",
];

/// Include files nest; a cycle must not hang ferret.
const MAX_INCLUDE_DEPTH: usize = 8;

/// One meaningful line of `ld.so.conf`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LdConfEntry {
    /// A library directory.
    Dir(String),
    /// `include PATTERN`: more configuration files, by glob (relative to the
    /// including file's directory unless absolute).
    Include(String),
}

/// Parses `ld.so.conf` text: comments and `hwcap` lines dropped, `include`
/// lines split into their patterns.
pub fn parse_ld_so_conf(text: &str) -> Vec<LdConfEntry> {
    let mut entries = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let mut words = line.split_whitespace();
        match words.next() {
            Some("include") => entries.extend(words.map(|w| LdConfEntry::Include(w.to_owned()))),
            Some("hwcap") => {}
            _ => {
                // Old ldconfig accepted `DIR=TYPE`; the type is irrelevant here.
                let dir = line.split('=').next().unwrap_or(line).trim_end();
                entries.push(LdConfEntry::Dir(dir.trim_end_matches('/').to_owned()));
            }
        }
    }
    entries
}

/// Resolve `DT_NEEDED` like ld.so for a not-yet-started program: for each
/// name, `DT_RPATH` of the requesting object and the objects that loaded it
/// (unless the requester has a `DT_RUNPATH`), then `ld_library_path`, then
/// the requester's `DT_RUNPATH`, then the directories of `/etc/ld.so.conf`,
/// then the default directories. Breadth-first over the whole dependency
/// tree, each library once; a candidate that is not an x86-64 ELF file is
/// passed over, as ld.so does with a 32-bit library of the same name.
///
/// Returns the resolved paths in load order, and the names that were not
/// found (the program would fail to start; the caller should warn).
pub fn resolve_needed(exe: &Module, ld_library_path: Option<&str>) -> (Vec<PathBuf>, Vec<String>) {
    let conf_dirs = ld_so_conf_dirs(Path::new("/etc/ld.so.conf"), 0);
    let env_dirs: Vec<String> = ld_library_path
        .unwrap_or("")
        .split([':', ';'])
        .filter(|d| !d.is_empty())
        .map(str::to_owned)
        .collect();

    // Node 0 is the executable; node i > 0 is `loaded[i - 1]`. `loader[i]`
    // is the node whose dependency first pulled node i in.
    let mut loaded: Vec<(PathBuf, Module)> = Vec::new();
    let mut loader: Vec<usize> = vec![0];
    let mut seen_names: HashSet<String> = HashSet::new();
    let mut seen_files: HashSet<PathBuf> = HashSet::new();
    let mut unresolved = Vec::new();
    let mut queue = VecDeque::from([0usize]);

    while let Some(node) = queue.pop_front() {
        let requester = if node == 0 { exe } else { &loaded[node - 1].1 };
        let mut search: Vec<String> = Vec::new();
        if !requester.has_runpath() {
            let mut at = node;
            loop {
                let module = if at == 0 { exe } else { &loaded[at - 1].1 };
                if !module.has_runpath() {
                    search.extend(module.run_paths().0);
                }
                if at == 0 {
                    break;
                }
                at = loader[at];
            }
        }
        search.extend(env_dirs.iter().cloned());
        search.extend(requester.run_paths().1);
        search.extend(conf_dirs.iter().map(|d| d.to_string_lossy().into_owned()));
        search.extend(DEFAULT_DIRS.iter().map(|d| (*d).to_owned()));

        for name in requester.needed() {
            if !seen_names.insert(name.clone()) {
                continue;
            }
            match find_library(&name, &search) {
                Some((path, module)) => {
                    let identity = std::fs::canonicalize(&path).unwrap_or_else(|_| path.clone());
                    if seen_files.insert(identity) {
                        loaded.push((path, module));
                        loader.push(node);
                        queue.push_back(loaded.len());
                    }
                }
                None => unresolved.push(name),
            }
        }
    }
    (
        loaded.into_iter().map(|(path, _)| path).collect(),
        unresolved,
    )
}

/// The first loadable x86-64 ELF file called `name` in `dirs` (or at `name`
/// itself if it contains a `/`).
fn find_library(name: &str, dirs: &[String]) -> Option<(PathBuf, Module)> {
    let open = |path: PathBuf| {
        if !path.is_file() {
            return None;
        }
        Module::open(&path).ok().map(|module| (path, module))
    };
    if name.contains('/') {
        return open(PathBuf::from(name));
    }
    dirs.iter().find_map(|dir| open(Path::new(dir).join(name)))
}

/// The library directories `conf` names, following its `include` lines.
/// Unreadable files contribute nothing: ld.so.conf is optional.
fn ld_so_conf_dirs(conf: &Path, depth: usize) -> Vec<PathBuf> {
    let Ok(text) = std::fs::read_to_string(conf) else {
        return Vec::new();
    };
    let base = conf.parent().unwrap_or(Path::new("/"));
    let mut dirs = Vec::new();
    for entry in parse_ld_so_conf(&text) {
        match entry {
            LdConfEntry::Dir(dir) => dirs.push(PathBuf::from(dir)),
            LdConfEntry::Include(pattern) if depth < MAX_INCLUDE_DEPTH => {
                for file in expand_include(&base.join(pattern)) {
                    dirs.extend(ld_so_conf_dirs(&file, depth + 1));
                }
            }
            LdConfEntry::Include(_) => {}
        }
    }
    dirs
}

/// Files matching `pattern`, whose wildcards may only be in the last
/// component (as in every distribution's `include /etc/ld.so.conf.d/*.conf`),
/// in name order like glob(3).
fn expand_include(pattern: &Path) -> Vec<PathBuf> {
    let (Some(dir), Some(file_glob)) = (pattern.parent(), pattern.file_name()) else {
        return Vec::new();
    };
    let Ok(glob) = Glob::new(&file_glob.to_string_lossy()) else {
        return Vec::new();
    };
    if glob.is_literal() {
        return vec![pattern.to_path_buf()];
    }
    let Ok(listing) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = listing
        .filter_map(Result::ok)
        .filter(|e| glob.matches(&e.file_name().to_string_lossy()))
        .map(|e| e.path())
        .collect();
    files.sort();
    files
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::symbols::testutil::compile;

    #[test]
    fn ld_so_conf_lines() {
        let text = "\
# multiarch support
include /etc/ld.so.conf.d/*.conf
include   a.conf b.conf   # two at once
/usr/local/lib/
/opt/vendor/lib=libc6  
hwcap 0 nosegneg

";
        assert_eq!(
            parse_ld_so_conf(text),
            vec![
                LdConfEntry::Include("/etc/ld.so.conf.d/*.conf".to_owned()),
                LdConfEntry::Include("a.conf".to_owned()),
                LdConfEntry::Include("b.conf".to_owned()),
                LdConfEntry::Dir("/usr/local/lib".to_owned()),
                LdConfEntry::Dir("/opt/vendor/lib".to_owned()),
            ]
        );
    }

    #[test]
    fn includes_follow_globs_and_relative_paths() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        std::fs::create_dir(d.join("conf.d")).expect("mkdir");
        std::fs::write(
            d.join("ld.so.conf"),
            "include conf.d/*.conf\n/top\ninclude ld.so.conf\n",
        )
        .expect("write");
        std::fs::write(d.join("conf.d/b.conf"), "/from-b\n").expect("write");
        std::fs::write(d.join("conf.d/a.conf"), "/from-a\n").expect("write");
        std::fs::write(d.join("conf.d/ignored.txt"), "/nope\n").expect("write");
        let dirs = ld_so_conf_dirs(&d.join("ld.so.conf"), 0);
        // The self-include is cut off at the depth limit, not looped forever.
        assert_eq!(
            dirs[..3],
            [PathBuf::from("/from-a"), "/from-b".into(), "/top".into()]
        );
        assert!(!dirs.contains(&PathBuf::from("/nope")));
        assert!(ld_so_conf_dirs(&d.join("missing.conf"), 0).is_empty());
    }

    /// Builds `exe` needing `libone.so`, which needs `libtwo.so`, both in
    /// `dir/lib`; `exe_rpath` is passed to the linker for the executable.
    fn build_tree(dir: &Path, exe_link_args: &[&str]) -> PathBuf {
        let lib = dir.join("lib");
        std::fs::create_dir_all(&lib).expect("mkdir");
        let lib_arg = format!("-L{}", lib.display());
        compile(
            &lib,
            "libtwo.so",
            false,
            "int two(void) { return 2; }",
            &["-shared", "-fPIC"],
        );
        compile(
            &lib,
            "libone.so",
            false,
            "int two(void); int one(void) { return two() + 1; }",
            // libtwo is found through libone's own RUNPATH.
            &[
                "-shared",
                "-fPIC",
                &lib_arg,
                "-Wl,-rpath,$ORIGIN",
                "-Wl,--enable-new-dtags",
                "-ltwo",
            ],
        );
        let mut args = vec![lib_arg.as_str()];
        args.extend_from_slice(exe_link_args);
        args.push("-lone");
        compile(
            dir,
            "exe",
            false,
            "int one(void); int main(void) { return one(); }",
            &args,
        )
    }

    fn file_names(paths: &[PathBuf]) -> Vec<String> {
        paths
            .iter()
            .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect()
    }

    #[test]
    fn resolves_through_origin_rpath_breadth_first() {
        let dir = tempfile::tempdir().expect("tempdir");
        let exe = build_tree(
            dir.path(),
            &["-Wl,-rpath,$ORIGIN/lib", "-Wl,--disable-new-dtags"],
        );
        let module = Module::open(&exe).expect("exe opens");
        let (rpath, runpath) = module.run_paths();
        assert!(runpath.is_empty());
        let canonical_lib = std::fs::canonicalize(dir.path().join("lib")).expect("canonical");
        assert_eq!(rpath, vec![canonical_lib.to_string_lossy().into_owned()]);

        let (found, missing) = resolve_needed(&module, None);
        assert!(missing.is_empty(), "{missing:?}");
        let names = file_names(&found);
        assert_eq!(&names[..2], ["libone.so", "libc.so.6"], "{found:?}");
        assert!(names.contains(&"libtwo.so".to_owned()), "{found:?}");
        assert!(names.iter().any(|n| n.starts_with("ld-linux")), "{found:?}");
        assert_eq!(names.len(), names.iter().collect::<HashSet<_>>().len());
    }

    #[test]
    fn without_rpath_needs_ld_library_path() {
        let dir = tempfile::tempdir().expect("tempdir");
        let exe = build_tree(dir.path(), &[]);
        let module = Module::open(&exe).expect("exe opens");

        let (found, missing) = resolve_needed(&module, None);
        assert_eq!(missing, vec!["libone.so".to_owned()]);
        assert!(file_names(&found).contains(&"libc.so.6".to_owned()));

        let lib = dir.path().join("lib");
        let env = format!("/nonexistent:{}", lib.display());
        let (found, missing) = resolve_needed(&module, Some(&env));
        assert!(missing.is_empty(), "{missing:?}");
        assert_eq!(found[0], lib.join("libone.so"));
        assert!(found.contains(&lib.join("libtwo.so")));
    }
}
