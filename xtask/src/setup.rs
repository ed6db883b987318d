//! `cargo xtask setup`: install what building and testing ferret needs.
//!
//! Every item is checked first (cheaply: the whole run takes well under two
//! seconds when everything is present) and installed only when missing, so it
//! is safe to run again and again. One line per item: `ok` or `installing`.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::{Context as _, Result, bail};

use crate::sh::{Sh, display, probe};

/// Debian packages the tests, the demo and the benchmarks use, each with
/// the command it provides (looked for where there is no dpkg). The Go
/// toolchain builds the Go programs the tests trace.
const APT_PACKAGES: &[(&str, &str)] = &[
    ("gcc", "gcc"),
    ("g++", "g++"),
    ("tmux", "tmux"),
    ("bpftrace", "bpftrace"),
    ("golang-go", "go"),
];
/// The bpf-linker release series that works with aya 0.14 on this toolchain.
const BPF_LINKER_VERSION: &str = "^0.13";

pub fn run(sh: &Sh) -> Result<()> {
    let mut problems: Vec<&str> = Vec::new();
    let mut note = |item: &'static str, result: Result<()>| {
        if let Err(e) = result {
            println!("{item:<22} FAILED: {e:#}");
            problems.push(item);
        }
    };

    let nightly = nightly_toolchain(sh);
    let have_nightly = nightly.is_ok();
    note("nightly toolchain", nightly);
    if have_nightly {
        note("rust-src (nightly)", rust_src(sh));
        note("bpf-linker", bpf_linker(sh));
    } else {
        let skipped = || Err(anyhow::anyhow!("skipped: needs the nightly toolchain"));
        note("rust-src (nightly)", skipped());
        note("bpf-linker", skipped());
    }
    note("debian packages", apt_packages(sh));
    note("python duckdb", duckdb(sh));
    note("speedscope schema", speedscope_schema(sh));

    if problems.is_empty() {
        Ok(())
    } else {
        bail!("setup incomplete: {}", problems.join(", "))
    }
}

fn ok(item: &str, detail: &str) {
    if detail.is_empty() {
        println!("{item:<22} ok");
    } else {
        println!("{item:<22} ok ({detail})");
    }
}

fn installing(item: &str, how: &str) {
    println!("{item:<22} installing ({how})");
}

fn nightly_installed(sh: &Sh) -> Result<bool> {
    let list = probe(sh.cmd("rustup").args(["toolchain", "list"]))
        .context("`rustup toolchain list` failed; is rustup installed? (https://rustup.rs)")?;
    // `nightly-x86_64-unknown-linux-gnu (default)`, or a linked `nightly`.
    Ok(list.lines().any(|l| {
        let name = l.split_whitespace().next().unwrap_or_default();
        name == "nightly" || name.starts_with("nightly-")
    }))
}

fn nightly_version(sh: &Sh) -> String {
    probe(sh.cmd("rustc").args(["+nightly", "--version"]))
        .map(|v| v.trim().to_owned())
        .unwrap_or_default()
}

fn nightly_toolchain(sh: &Sh) -> Result<()> {
    const ITEM: &str = "nightly toolchain";
    if nightly_installed(sh)? {
        ok(ITEM, &nightly_version(sh));
        return Ok(());
    }
    installing(ITEM, "rustup");
    let tried =
        sh.run(
            sh.cmd("rustup")
                .args(["toolchain", "install", "nightly", "--profile", "minimal"]),
        );
    if sh.dry_run {
        return Ok(());
    }
    if tried.is_err() || !nightly_installed(sh)? {
        bail!(
            "no `nightly` toolchain, and rustup could not install one. The eBPF crate \
             needs nightly Rust (see the README, Toolchain): install it where toolchains \
             can be downloaded (`rustup toolchain install nightly --profile minimal \
             --component rust-src`) or copy it into rustup's toolchains folder"
        );
    }
    ok(ITEM, &nightly_version(sh));
    Ok(())
}

fn rust_src_installed(sh: &Sh) -> Result<bool> {
    let list = probe(sh.cmd("rustup").args([
        "component",
        "list",
        "--toolchain",
        "nightly",
        "--installed",
    ]))
    .context("`rustup component list --toolchain nightly --installed` failed")?;
    Ok(list
        .lines()
        .any(|l| l.trim() == "rust-src" || l.starts_with("rust-src-")))
}

fn rust_src(sh: &Sh) -> Result<()> {
    const ITEM: &str = "rust-src (nightly)";
    if rust_src_installed(sh)? {
        ok(ITEM, "");
        return Ok(());
    }
    installing(ITEM, "rustup");
    sh.run(
        sh.cmd("rustup")
            .args(["component", "add", "rust-src", "--toolchain", "nightly"])
            .stdin(Stdio::null()),
    )?;
    if !sh.dry_run && !rust_src_installed(sh)? {
        bail!("rustup reported success but rust-src is still missing");
    }
    Ok(())
}

/// The name looked for on `PATH`. `XTASK_BPF_LINKER` overrides it, which is
/// only useful to exercise the install path (point it at a missing name, and
/// `CARGO_INSTALL_ROOT` at a scratch folder) without removing the real one.
fn bpf_linker_name() -> String {
    std::env::var("XTASK_BPF_LINKER").unwrap_or_else(|_| "bpf-linker".to_owned())
}

/// `bpf-linker --version`, run the way rustc runs it: in the nightly
/// toolchain's environment, whose library path holds the `libLLVM` it was
/// linked against. Run bare it fails to load that library, which is expected.
fn bpf_linker_version(sh: &Sh, binary: &Path) -> Option<String> {
    probe(
        sh.cmd("rustup")
            .args(["run", "nightly"])
            .arg(binary)
            .arg("--version"),
    )
    .map(|v| v.trim().to_owned())
}

fn bpf_linker(sh: &Sh) -> Result<()> {
    const ITEM: &str = "bpf-linker";
    let name = bpf_linker_name();
    // Our PATH for children is the user's plus cargo's bin folder, so this
    // finds it in either place.
    let found = sh.which(&name);
    if let Some(found) = &found
        && let Some(version) = bpf_linker_version(sh, found)
    {
        if found.starts_with(&sh.cargo_bin) && !sh.cargo_bin_on_user_path {
            ok(
                ITEM,
                &format!(
                    "{version}, in {} which is not on your PATH: add it, or plain \
                     `cargo build` cannot find bpf-linker",
                    sh.cargo_bin.display()
                ),
            );
        } else {
            ok(ITEM, &version);
        }
        return Ok(());
    }

    if let Some(found) = &found {
        println!(
            "{ITEM:<22} {} does not run with the nightly toolchain; rebuilding it",
            found.display()
        );
    }
    // Build it against the nightly toolchain's own libLLVM (README, Toolchain).
    let major = llvm_major(sh)?;
    let library = nightly_libllvm(sh, &major)?;
    let prefix = sh.target_dir()?.join("llvm-prefix");
    installing(
        ITEM,
        &format!("cargo install, LLVM {major}; takes a few minutes"),
    );
    link_libllvm(sh, &prefix, &library)?;
    sh.run(
        sh.cargo()
            .env("LLVM_PREFIX", &prefix)
            .args(["install", "bpf-linker", "--version", BPF_LINKER_VERSION])
            .args(["--no-default-features", "--features"])
            .arg(format!("llvm-{major}"))
            // Replace a broken copy; cargo would keep it as "already installed".
            .args(found.is_some().then_some("--force"))
            .stdin(Stdio::null()),
    )?;
    if sh.dry_run {
        return Ok(());
    }
    let installed = sh.cargo_bin.join("bpf-linker");
    let version = bpf_linker_version(sh, &installed).with_context(|| {
        format!(
            "`cargo install` finished but `{} --version` does not run",
            installed.display()
        )
    })?;
    ok(ITEM, &format!("{version}, {}", installed.display()));
    Ok(())
}

/// `22` from the `LLVM version: 22.1.4` line of `rustc +nightly -vV`.
fn llvm_major(sh: &Sh) -> Result<String> {
    let info =
        probe(sh.cmd("rustc").args(["+nightly", "-vV"])).context("`rustc +nightly -vV` failed")?;
    parse_llvm_major(&info).context("`rustc +nightly -vV` printed no `LLVM version:` line")
}

fn parse_llvm_major(rustc_vv: &str) -> Option<String> {
    let version = rustc_vv
        .lines()
        .find_map(|l| l.strip_prefix("LLVM version:"))?
        .trim();
    let major = version.split('.').next()?;
    (!major.is_empty() && major.chars().all(|c| c.is_ascii_digit())).then(|| major.to_owned())
}

/// The nightly sysroot's `lib/libLLVM.so.<major>*` (e.g.
/// `libLLVM.so.22.1-rust-1.97.0-nightly`).
fn nightly_libllvm(sh: &Sh, major: &str) -> Result<PathBuf> {
    let sysroot = probe(sh.cmd("rustc").args(["+nightly", "--print", "sysroot"]))
        .context("`rustc +nightly --print sysroot` failed")?;
    let lib = Path::new(sysroot.trim()).join("lib");
    let mut names: Vec<String> = std::fs::read_dir(&lib)
        .with_context(|| format!("cannot list {}", lib.display()))?
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .collect();
    names.sort();
    pick_libllvm(&names, major)
        .map(|name| lib.join(name))
        .with_context(|| {
            format!(
                "no libLLVM.so.{major}* in {}: the nightly toolchain ships without its \
                 LLVM library, so bpf-linker cannot be built against it",
                lib.display()
            )
        })
}

fn pick_libllvm<'a>(names: &'a [String], major: &str) -> Option<&'a str> {
    let versioned = format!("libLLVM.so.{major}");
    let dashed = format!("libLLVM-{major}");
    let follows = |rest: &str| rest.is_empty() || rest.starts_with(['.', '-']);
    names
        .iter()
        .find(|n| n.strip_prefix(&versioned).is_some_and(follows))
        .or_else(|| {
            names.iter().find(|n| {
                n.strip_prefix(&dashed).is_some_and(follows)
                    && Path::new(n).extension().is_some_and(|e| e == "so")
            })
        })
        .map(String::as_str)
}

/// `<prefix>/lib/libLLVM.so` → `library`, replacing what was there.
fn link_libllvm(sh: &Sh, prefix: &Path, library: &Path) -> Result<()> {
    let dir = prefix.join("lib");
    let link = dir.join("libLLVM.so");
    println!(
        "{}$ ln -sf {} {}",
        if sh.dry_run { "[dry run] " } else { "" },
        library.display(),
        link.display()
    );
    if sh.dry_run {
        return Ok(());
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    if link.symlink_metadata().is_ok() {
        std::fs::remove_file(&link)
            .with_context(|| format!("cannot replace {}", link.display()))?;
    }
    std::os::unix::fs::symlink(library, &link)
        .with_context(|| format!("cannot create {}", link.display()))
}

fn apt_packages(sh: &Sh) -> Result<()> {
    let missing = missing_packages(sh)?;
    for (package, _) in APT_PACKAGES {
        if !missing.contains(package) {
            ok(&format!("apt {package}"), "");
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    let list = missing.join(" ");
    if !sh.is_root {
        for package in &missing {
            println!("{:<22} missing", format!("apt {package}"));
        }
        bail!(
            "installing Debian packages needs root; run:\n    sudo apt-get update && \
             sudo apt-get install -y --no-install-recommends {list}\nthen run setup again"
        );
    }
    for package in &missing {
        installing(&format!("apt {package}"), "apt-get");
    }
    let apt = |args: &[&str]| {
        let mut cmd = sh.cmd("apt-get");
        cmd.env("DEBIAN_FRONTEND", "noninteractive")
            .args(args)
            .stdin(Stdio::null());
        cmd
    };
    sh.run(&mut apt(&["-qq", "update"]))?;
    let mut install = apt(&["-q", "install", "-y", "--no-install-recommends"]);
    install.args(&missing);
    sh.run(&mut install)?;
    if sh.dry_run {
        return Ok(());
    }
    let still = missing_packages(sh)?;
    if !still.is_empty() {
        bail!(
            "still missing after `{}`: {}",
            display(&install),
            still.join(" ")
        );
    }
    for package in &missing {
        ok(&format!("apt {package}"), "");
    }
    Ok(())
}

/// The packages of [`APT_PACKAGES`] that dpkg does not report as installed.
/// Without dpkg (not Debian), falls back to looking for their commands.
fn missing_packages(sh: &Sh) -> Result<Vec<&'static str>> {
    if sh.which("dpkg-query").is_none() {
        let missing: Vec<&str> = APT_PACKAGES
            .iter()
            .filter(|(_, command)| sh.which(command).is_none())
            .map(|&(package, _)| package)
            .collect();
        if !missing.is_empty() {
            bail!(
                "not a Debian system (no dpkg-query) and these commands are missing: {}; \
                 install them with your package manager",
                missing.join(" ")
            );
        }
        return Ok(missing);
    }
    // One call for all; dpkg-query exits non-zero when some are unknown, but
    // still prints the known ones.
    let output = sh
        .cmd("dpkg-query")
        .args(["-W", "-f", "${Package}\t${Status}\n"])
        .args(APT_PACKAGES.iter().map(|(package, _)| package))
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .context("cannot run dpkg-query")?;
    let listed = String::from_utf8_lossy(&output.stdout);
    Ok(APT_PACKAGES
        .iter()
        .map(|&(package, _)| package)
        .filter(|package| {
            !listed.lines().any(|line| {
                let (name, status) = line.split_once('\t').unwrap_or((line, ""));
                // Multi-arch packages may be listed as `name:arch`.
                let name = name.split(':').next().unwrap_or(name);
                name == *package && status == "install ok installed"
            })
        })
        .collect())
}

fn duckdb_version(sh: &Sh) -> Option<String> {
    probe(
        sh.cmd("python3")
            .args(["-c", "import duckdb; print(duckdb.__version__)"]),
    )
    .map(|v| v.trim().to_owned())
}

fn duckdb(sh: &Sh) -> Result<()> {
    const ITEM: &str = "python duckdb";
    if sh.which("python3").is_none() {
        bail!("python3 is not installed (apt-get install python3 python3-pip)");
    }
    if let Some(version) = duckdb_version(sh) {
        ok(ITEM, &version);
        return Ok(());
    }
    installing(ITEM, "pip");
    let pip = |extra: &[&str]| {
        let mut cmd = sh.cmd("python3");
        cmd.args(["-m", "pip", "install", "--quiet", "duckdb"])
            .args(extra)
            // Silences pip's warning about running as root; older pips ignore it.
            .env("PIP_ROOT_USER_ACTION", "ignore")
            .stdin(Stdio::null());
        cmd
    };
    if sh.run(&mut pip(&[])).is_err() {
        // Debian's own python refuses pip installs (PEP 668). On a throwaway
        // CI machine that is fine to override; elsewhere it is the user's call.
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            println!("{ITEM:<22} retrying with --break-system-packages (CI=true)");
            sh.run(&mut pip(&["--break-system-packages"]))?;
        } else {
            bail!(
                "pip could not install duckdb. If python3 is Debian's system python, \
                 put a virtualenv or pyenv python first on PATH, or run \
                 `python3 -m pip install --break-system-packages duckdb`"
            );
        }
    }
    if sh.dry_run {
        return Ok(());
    }
    let version = duckdb_version(sh)
        .context("pip installed duckdb but `python3 -c 'import duckdb'` still fails")?;
    ok(ITEM, &version);
    Ok(())
}

/// npm packages for `tests/e2e/export.rs`: speedscope ships its published
/// file-format schema, ajv validates exports against it.
const NPM_PACKAGES: &[&str] = &["speedscope@1", "ajv@8"];

/// The files the export tests read, relative to the npm prefix.
const NPM_FILES: &[&str] = &[
    "node_modules/speedscope/dist/release/file-format-schema.json",
    "node_modules/ajv/package.json",
];

/// Installs [`NPM_PACKAGES`] into `<target>/npm` (where the tests look),
/// unless they are there already.
fn speedscope_schema(sh: &Sh) -> Result<()> {
    const ITEM: &str = "speedscope schema";
    let prefix = sh.target_dir()?.join("npm");
    if NPM_FILES.iter().all(|f| prefix.join(f).is_file()) && sh.which("node").is_some() {
        ok(ITEM, &display_path(&prefix));
        return Ok(());
    }
    if sh.which("npm").is_none() || sh.which("node").is_none() {
        if !sh.is_root {
            bail!(
                "node and npm are needed to validate speedscope exports; run:\n    \
                 sudo apt-get install -y --no-install-recommends nodejs npm\nthen run setup again"
            );
        }
        installing("apt nodejs npm", "apt-get");
        let apt = |args: &[&str]| {
            let mut cmd = sh.cmd("apt-get");
            cmd.env("DEBIAN_FRONTEND", "noninteractive")
                .args(args)
                .stdin(Stdio::null());
            cmd
        };
        sh.run(&mut apt(&["-qq", "update"]))?;
        sh.run(&mut apt(&[
            "-q",
            "install",
            "-y",
            "--no-install-recommends",
            "nodejs",
            "npm",
        ]))?;
    }
    installing(ITEM, "npm");
    sh.run(
        sh.cmd("npm")
            .arg("install")
            .arg("--prefix")
            .arg(&prefix)
            .args(["--no-audit", "--no-fund", "--loglevel=error"])
            .args(NPM_PACKAGES)
            .stdin(Stdio::null()),
    )?;
    if sh.dry_run {
        return Ok(());
    }
    if let Some(missing) = NPM_FILES.iter().find(|f| !prefix.join(f).is_file()) {
        bail!(
            "npm install finished but {} is missing",
            prefix.join(missing).display()
        );
    }
    ok(ITEM, &display_path(&prefix));
    Ok(())
}

fn display_path(path: &Path) -> String {
    path.display().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn llvm_major_from_rustc_vv() {
        let vv = "rustc 1.97.0-nightly (e50aa6fba 2026-05-19)\nbinary: rustc\n\
                  host: x86_64-unknown-linux-gnu\nLLVM version: 22.1.4\n";
        assert_eq!(parse_llvm_major(vv).as_deref(), Some("22"));
        assert_eq!(parse_llvm_major("rustc 1.0\n"), None);
    }

    #[test]
    fn picks_the_versioned_libllvm() {
        let names: Vec<String> = [
            "libLLVM-22-rust-1.97.0-nightly.so",
            "libLLVM.so.220.0",
            "libLLVM.so.22.1-rust-1.97.0-nightly",
            "librustc_driver.so",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(
            pick_libllvm(&names, "22"),
            Some("libLLVM.so.22.1-rust-1.97.0-nightly")
        );
        let dashed_only = vec!["libLLVM-22-rust-1.97.0-nightly.so".to_owned()];
        assert_eq!(
            pick_libllvm(&dashed_only, "22"),
            Some("libLLVM-22-rust-1.97.0-nightly.so")
        );
        assert_eq!(pick_libllvm(&names, "21"), None);
    }
}
