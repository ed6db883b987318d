//! Building tiny real binaries for the symbol tests: hand-made ELF bytes
//! would only test our idea of what a compiler emits.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Compiles `source` (C, or C++ if `cxx`) with `args` into `dir/out`.
/// Panics with the compiler's output on failure: a missing compiler is a
/// broken test environment, not a skip.
pub fn compile(dir: &Path, out: &str, cxx: bool, source: &str, args: &[&str]) -> PathBuf {
    let (compiler, ext) = if cxx { ("g++", "cpp") } else { ("cc", "c") };
    let src = dir.join(format!("{out}.{ext}"));
    std::fs::write(&src, source).expect("write test source");
    let bin = dir.join(out);
    // Flags after the source, so that libraries among them resolve its references.
    run(Command::new(compiler)
        .arg("-o")
        .arg(&bin)
        .arg(&src)
        .args(args));
    bin
}

/// Runs a build tool, panicking with its stderr if it fails.
pub fn run(command: &mut Command) {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A program built with `-g`, its debug file, and a stripped copy that
/// links to it: what `objcopy --only-keep-debug` + `strip` +
/// `--add-gnu-debuglink` make of a release build.
pub struct Split {
    /// Holds the files; removed when dropped.
    pub _dir: tempfile::TempDir,
    pub full: PathBuf,
    pub debug: PathBuf,
    pub stripped: PathBuf,
}

pub fn split(source: &str, name: &str) -> Split {
    let dir = tempfile::tempdir().expect("tempdir");
    let full = compile(
        dir.path(),
        name,
        false,
        source,
        &["-O1", "-g", "-Wl,--build-id"],
    );
    let debug = dir.path().join(format!("{name}.debug"));
    let stripped = dir.path().join(format!("{name}.stripped"));
    run(Command::new("objcopy")
        .arg("--only-keep-debug")
        .arg(&full)
        .arg(&debug));
    run(Command::new("strip").arg("-o").arg(&stripped).arg(&full));
    // The link is made from the folder holding the debug file, so it
    // records just its name.
    run(Command::new("objcopy")
        .current_dir(dir.path())
        .arg(format!("--add-gnu-debuglink={name}.debug"))
        .arg(&stripped));
    Split {
        _dir: dir,
        full,
        debug,
        stripped,
    }
}
