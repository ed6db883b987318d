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

/// Builds the Go program `source` (one `main` package, standard library
/// only) into `dir/out` with `go build` and `flags`. The Go build cache and
/// module path live in cargo's target directory, never in `$HOME`, and
/// nothing is fetched from the network.
pub fn go_build(dir: &Path, out: &str, source: &str, flags: &[&str]) -> PathBuf {
    let src = dir.join(format!("{out}-src"));
    std::fs::create_dir_all(&src).expect("create Go source dir");
    std::fs::write(src.join("main.go"), source).expect("write Go source");
    std::fs::write(src.join("go.mod"), "module ferrettest\n\ngo 1.17\n").expect("write go.mod");
    let cache = go_cache_dir();
    let bin = dir.join(out);
    run(Command::new("go")
        .arg("build")
        .arg("-o")
        .arg(&bin)
        .args(flags)
        .arg(".")
        .current_dir(&src)
        .env("GOCACHE", cache.join("build"))
        .env("GOPATH", cache.join("path"))
        .env("GOFLAGS", "-mod=mod")
        .env("GOPROXY", "off")
        .env("GOTOOLCHAIN", "local")
        .env("CGO_ENABLED", "0"));
    bin
}

/// `target/go-cache`, found from the test binary's own path
/// (`target/debug/deps/…`).
fn go_cache_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let target = exe
        .ancestors()
        .nth(3)
        .expect("the test binary sits in target/PROFILE/deps");
    target.join("go-cache")
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
