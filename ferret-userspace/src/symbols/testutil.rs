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
