//! ferret's developer tasks: `cargo xtask setup | test | install | demo | bench`.
//!
//! `--dry-run` (any task) runs the read-only checks but only prints the
//! commands that would build, install or run something.

mod bench;
mod setup;
mod sh;

use std::ffi::OsString;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context as _, Result, bail};
use clap::{Parser, Subcommand};

use crate::sh::Sh;

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    about = "ferret's developer tasks"
)]
struct Cli {
    /// Run the checks but only print the commands that would change something.
    #[arg(long, global = true)]
    dry_run: bool,
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install what is missing: nightly rust-src, bpf-linker, Debian packages
    /// (gcc g++ tmux bpftrace golang-go) and the python duckdb module. Safe to re-run.
    Setup,
    /// Run every check: setup, rustfmt, clippy, then the whole test suite
    /// (which needs root: re-run under sudo when not root).
    Test {
        /// Extra arguments for `cargo test`, after `--`; a second `--` passes
        /// arguments to the test binaries (`-- -p ferret-userspace -- --nocapture`).
        #[arg(last = true, value_name = "CARGO_TEST_ARGS")]
        cargo_test_args: Vec<String>,
    },
    /// Install the `ferret` binary (release build) into cargo's bin folder.
    Install,
    /// Watch the demo workload live with `ferret watch` (recording it too;
    /// q quits), then summarise the recording.
    Demo {
        /// How long to record, when the demo records instead of watching.
        #[arg(long, default_value_t = 10, value_name = "N")]
        seconds: u64,
    },
    /// Measure what ferret costs (needs root; re-runs itself under sudo):
    /// per-call overhead against an empty BPF program and bpftrace, pipeline
    /// throughput, sustained load, attach at scale, memory over time. Prints
    /// a table and writes target/bench/results.json. Not part of `test`.
    Bench(bench::Options),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let sh = Sh::new(cli.dry_run);
    let result = match cli.task {
        Task::Setup => setup::run(&sh),
        Task::Test { cargo_test_args } => test(&sh, &cargo_test_args),
        Task::Install => install(&sh),
        Task::Demo { seconds } => demo(&sh, seconds),
        Task::Bench(options) => bench::run(&sh, &options),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

// --- test ------------------------------------------------------------------

const TEST_STEPS: usize = 4;

/// The whole workspace. `ferret-ebpf` is built for `bpfel-unknown-none` by
/// `ferret-userspace`'s build script; on the host it compiles as an empty
/// program, so clippy checks its code too.
const HOST_CRATES: &[&str] = &["--workspace"];

fn header(step: usize, name: &str) {
    println!("\n==> [{step}/{TEST_STEPS}] {name}");
}

/// The one command that runs every check. Setup must succeed; after that
/// every step runs even when an earlier one failed, and the failures are
/// named at the end.
fn test(sh: &Sh, extra: &[String]) -> Result<()> {
    header(1, "setup");
    setup::run(sh).context("step `setup` failed")?;

    let mut failed = Vec::new();

    header(2, "fmt");
    let mut fmt = sh.cargo();
    fmt.args(["fmt", "--all", "--", "--check"]);
    if !sh.status(&mut fmt)?.success() {
        failed.push("fmt");
    }

    header(3, "clippy");
    let mut clippy = sh.cargo();
    clippy
        .arg("clippy")
        .args(HOST_CRATES)
        .args(["--all-targets", "--", "-D", "warnings"]);
    if !sh.status(&mut clippy)?.success() {
        failed.push("clippy");
    }

    header(4, "test");
    let (tests_ok, passed, failed_tests) = cargo_test(sh, extra)?;
    if !tests_ok {
        failed.push("test");
    }

    if !failed.is_empty() {
        println!("\n{passed} passed, {failed_tests} failed");
        bail!("failed steps: {}", failed.join(", "));
    }
    if sh.dry_run {
        println!("\n==> dry run: nothing was built or tested");
    } else {
        println!("\n==> all {TEST_STEPS} steps passed");
        // The suite's total, alone on the last line.
        println!("{passed} passed, {failed_tests} failed");
    }
    Ok(())
}

/// `cargo test` arguments: the host crates (unless `extra` picks packages
/// itself) followed by `extra`, and `--include-ignored` for the test
/// binaries: the end-to-end tests that need root are `#[ignore]`d so that a
/// plain `cargo test` passes for a normal user, and this suite runs them
/// all (unless `extra` already chose which ignored tests run). Also returns
/// the cargo options alone (before a second `--`), for a build-only run.
fn cargo_test_args(extra: &[String]) -> (Vec<String>, Vec<String>) {
    let mut parts = extra.splitn(2, |a| a == "--");
    let cargo_options = parts.next().unwrap_or_default();
    let binary_options = parts.next();
    let picks_packages = cargo_options.iter().any(|a| {
        a == "--workspace"
            || a == "--all"
            || a == "--package"
            || a.starts_with("--package=")
            || a.starts_with("-p")
    });
    let scope: Vec<String> = if picks_packages {
        Vec::new()
    } else {
        HOST_CRATES.iter().map(|s| (*s).to_owned()).collect()
    };
    let mut run = vec!["test".to_owned()];
    run.extend(scope.iter().cloned());
    run.extend(extra.iter().cloned());
    let chose = binary_options.is_some_and(|o| {
        o.iter()
            .any(|a| a == "--ignored" || a == "--include-ignored")
    });
    if !chose {
        if binary_options.is_none() {
            run.push("--".to_owned());
        }
        run.push("--include-ignored".to_owned());
    }
    let mut build = vec!["test".to_owned(), "--no-run".to_owned()];
    build.extend(scope);
    build.extend(cargo_options.iter().cloned());
    (run, build)
}

/// Runs the test suite as root. When not root, everything is compiled first
/// as the current user (so `target/` and `~/.cargo` stay theirs), then the
/// tests run under `sudo -E`. The end-to-end tests are never skipped: a run
/// that reports an ignored test fails.
fn cargo_test(sh: &Sh, extra: &[String]) -> Result<(bool, u64, u64)> {
    let (run_args, build_args) = cargo_test_args(extra);
    let none_ignored = |ignored: u64| {
        if ignored > 0 {
            println!("{ignored} tests were ignored: this suite runs every test");
        }
        ignored == 0
    };
    if sh.is_root {
        let (status, passed, failed, ignored) = sh.test_status(sh.cargo().args(&run_args))?;
        return Ok((status.success() && none_ignored(ignored), passed, failed));
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut sudo_test = sh
        .as_root(cargo, "the end-to-end tests (eBPF)")
        .context("cannot run the test suite")?;
    sudo_test.args(&run_args);
    println!("not root: building the tests as you, then running them with sudo");
    if !sh.status(sh.cargo().args(&build_args))?.success() {
        return Ok((false, 0, 0));
    }
    let (status, passed, failed, ignored) = sh.test_status(&mut sudo_test)?;
    Ok((status.success() && none_ignored(ignored), passed, failed))
}

// --- install ---------------------------------------------------------------

fn install(sh: &Sh) -> Result<()> {
    sh.run(sh.cargo().args([
        "install",
        "--path",
        "ferret-userspace",
        "--locked",
        "--force",
    ]))?;
    let ferret = sh.cargo_bin.join("ferret");
    if !sh.dry_run {
        println!("installed {}", ferret.display());
    }
    if !sh.cargo_bin_on_user_path {
        println!(
            "note: {} is not on your PATH; add it to run `ferret` by name",
            sh.cargo_bin.display()
        );
    }
    Ok(())
}

// --- demo ------------------------------------------------------------------

/// What the demo shows: the live dashboard. `View::Record` records for
/// `--seconds` and summarises instead.
const VIEW: View = View::Watch;

/// The functions the demo traces: everything in the demo crate.
const DEMO_SYMBOLS: &str = "ferret_demo::*";

#[cfg_attr(
    not(test),
    expect(dead_code, reason = "`Record` is kept for switching `VIEW` back")
)]
enum View {
    /// `ferret record` for a fixed time, then a summary.
    Record,
    /// The live dashboard (also writing the Parquet file), then a summary.
    Watch,
}

impl View {
    /// `ferret` arguments up to the `--` before the demo command.
    fn ferret_args(&self, out: &Path, seconds: u64) -> Vec<OsString> {
        let mut args: Vec<OsString> = match self {
            View::Record => vec!["record".into()],
            View::Watch => vec!["watch".into()],
        };
        args.extend(["-s".into(), DEMO_SYMBOLS.into(), "-o".into(), out.into()]);
        if let View::Record = self {
            args.extend(["-d".into(), format!("{seconds}s").into()]);
        }
        args
    }

    /// Demo arguments. When recording, the demo stops by itself at ferret's
    /// deadline: `ferret record -d` stops recording but then waits for the
    /// command it launched, so a longer-running demo would only keep it waiting.
    /// Under `watch` the demo runs until the dashboard quits, which ends it.
    fn demo_args(&self, seconds: u64) -> Vec<String> {
        match self {
            View::Record => vec!["--seconds".into(), seconds.to_string()],
            View::Watch => Vec::new(),
        }
    }
}

fn demo(sh: &Sh, seconds: u64) -> Result<()> {
    setup::run(sh)?;
    sh.run(sh.cargo().args([
        "build",
        "--release",
        "--package",
        "ferret-userspace",
        "--bin",
        "ferret",
    ]))?;
    sh.run(
        sh.cargo()
            .args(["build", "--release", "--package", "ferret-demo"]),
    )?;
    let target = sh.target_dir()?;
    let ferret = target.join("release").join("ferret");
    let workload = target.join("release").join("ferret-demo");
    let out = target.join("demo.parquet");

    if !sh.dry_run {
        match std::fs::remove_file(&out) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(e).with_context(|| format!("cannot remove old {}", out.display()));
            }
            _ => {}
        }
    }
    let mut run = sh.as_root(&ferret, "ferret (eBPF uprobes)")?;
    run.args(VIEW.ferret_args(&out, seconds))
        .arg("--")
        .arg(&workload)
        .args(VIEW.demo_args(seconds));
    sh.run(&mut run)?;

    if !sh.dry_run && !out.exists() {
        bail!("ferret finished but wrote no {}", out.display());
    }
    summarise(sh, &ferret, &out)
}

/// The ten functions with the most total time, as `ferret analyze` puts
/// them (the recording belongs to the invoking user: no root needed).
fn summarise(sh: &Sh, ferret: &Path, parquet: &Path) -> Result<()> {
    sh.run(
        sh.cmd(ferret)
            .arg("analyze")
            .arg(parquet)
            .args(["--top", "10"]),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory as _;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn test_args_after_double_dash_pass_through() {
        let cli = Cli::parse_from([
            "xtask",
            "test",
            "--",
            "-p",
            "ferret-userspace",
            "--",
            "--nocapture",
        ]);
        let Task::Test { cargo_test_args } = cli.task else {
            panic!("not the test task");
        };
        assert_eq!(
            cargo_test_args,
            ["-p", "ferret-userspace", "--", "--nocapture"]
        );
    }

    #[test]
    fn test_args_scope_the_host_crates_unless_packages_are_picked() {
        let strings = |list: &[&str]| list.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        let (run, build) = cargo_test_args(&[]);
        assert_eq!(run, ["test", "--workspace", "--", "--include-ignored"]);
        assert_eq!(build, ["test", "--no-run", "--workspace"]);

        let (run, build) = cargo_test_args(&strings(&["--release", "--", "--nocapture"]));
        assert_eq!(
            run,
            strings(&[
                "test",
                "--workspace",
                "--release",
                "--",
                "--nocapture",
                "--include-ignored"
            ])
        );
        assert_eq!(
            build,
            strings(&["test", "--no-run", "--workspace", "--release"])
        );

        let (run, build) = cargo_test_args(&strings(&["-p", "ferret-demo", "--", "-p"]));
        assert_eq!(
            run,
            ["test", "-p", "ferret-demo", "--", "-p", "--include-ignored"]
        );
        assert_eq!(build, ["test", "--no-run", "-p", "ferret-demo"]);
    }

    #[test]
    fn test_args_run_the_ignored_root_tests_unless_told_otherwise() {
        let strings = |list: &[&str]| list.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        let (run, _) = cargo_test_args(&strings(&["--", "--ignored"]));
        assert_eq!(run, ["test", "--workspace", "--", "--ignored"]);
        let (run, _) = cargo_test_args(&strings(&["--", "stall", "--include-ignored"]));
        assert_eq!(
            run,
            ["test", "--workspace", "--", "stall", "--include-ignored"]
        );
    }

    #[test]
    fn record_view_runs_for_the_requested_time() {
        let args = View::Record.ferret_args(Path::new("/t/demo.parquet"), 10);
        assert_eq!(
            args,
            [
                "record",
                "-s",
                "ferret_demo::*",
                "-o",
                "/t/demo.parquet",
                "-d",
                "10s"
            ]
        );
        assert_eq!(View::Record.demo_args(10), ["--seconds", "10"]);
        let watch = View::Watch.ferret_args(Path::new("/t/demo.parquet"), 10);
        assert_eq!(watch[0], "watch");
        assert!(!watch.contains(&"-d".into()));
    }
}
