//! Running commands: one place that sets `PATH`, echoes what runs, honours
//! `--dry-run`, and tells the user about privileges.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};

use anyhow::{Context as _, Result, bail};

pub struct Sh {
    pub dry_run: bool,
    /// The workspace root; every command runs there.
    pub root: PathBuf,
    /// `PATH` for child processes: ours, with cargo's `bin` folder added when
    /// it was missing (rustup, cargo-installed tools such as `bpf-linker`).
    pub path: OsString,
    /// Where `cargo install` puts binaries (`$CARGO_INSTALL_ROOT/bin`, else
    /// `$CARGO_HOME/bin`, else `~/.cargo/bin`).
    pub cargo_bin: PathBuf,
    /// True when the caller's own `PATH` already contains `cargo_bin`.
    pub cargo_bin_on_user_path: bool,
    pub is_root: bool,
}

impl Sh {
    pub fn new(dry_run: bool) -> Self {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("xtask lives in the workspace root")
            .to_path_buf();
        let home = std::env::var_os("HOME").map(PathBuf::from);
        let cargo_home = std::env::var_os("CARGO_HOME")
            .map(PathBuf::from)
            .or_else(|| home.map(|h| h.join(".cargo")))
            .unwrap_or_else(|| PathBuf::from(".cargo"));
        let cargo_bin = std::env::var_os("CARGO_INSTALL_ROOT")
            .map_or_else(|| cargo_home.join("bin"), |r| PathBuf::from(r).join("bin"));
        let user_path = std::env::var_os("PATH").unwrap_or_default();
        let mut dirs: Vec<PathBuf> = std::env::split_paths(&user_path).collect();
        let cargo_bin_on_user_path = dirs.iter().any(|d| d == &cargo_bin);
        if !cargo_bin_on_user_path {
            dirs.insert(0, cargo_bin.clone());
        }
        let path = std::env::join_paths(dirs).unwrap_or(user_path);
        Sh {
            dry_run,
            root,
            path,
            cargo_bin,
            cargo_bin_on_user_path,
            is_root: effective_uid_is_root(),
        }
    }

    /// A command that runs in the workspace root with our `PATH`.
    pub fn cmd(&self, program: impl AsRef<OsStr>) -> Command {
        let mut cmd = Command::new(program);
        cmd.current_dir(&self.root).env("PATH", &self.path);
        cmd
    }

    /// `cargo` for nested builds: the same cargo that runs xtask.
    pub fn cargo(&self) -> Command {
        self.cmd(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
    }

    /// Runs a command that changes something: echoed first; in a dry run only
    /// echoed. Fails when it cannot start or exits non-zero.
    pub fn run(&self, cmd: &mut Command) -> Result<()> {
        let status = self.status(cmd)?;
        if !status.success() {
            bail!("`{}` failed ({status})", display(cmd));
        }
        Ok(())
    }

    /// Like [`Sh::run`] but returns the exit status instead of failing on it.
    pub fn status(&self, cmd: &mut Command) -> Result<ExitStatus> {
        println!(
            "{}$ {}",
            if self.dry_run { "[dry run] " } else { "" },
            display(cmd)
        );
        if self.dry_run {
            return Ok(ExitStatus::default());
        }
        cmd.status()
            .with_context(|| format!("cannot run `{}`", display(cmd)))
    }

    /// Like [`Self::status`] for `cargo test`: passes the output through and
    /// adds up its `test result:` lines. Returns the status and the totals
    /// (passed, failed, ignored).
    pub fn test_status(&self, cmd: &mut Command) -> Result<(ExitStatus, u64, u64, u64)> {
        use std::io::{BufRead as _, BufReader};
        println!(
            "{}$ {}",
            if self.dry_run { "[dry run] " } else { "" },
            display(cmd)
        );
        if self.dry_run {
            return Ok((ExitStatus::default(), 0, 0, 0));
        }
        let mut child = cmd
            .stdout(std::process::Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot run `{}`", display(cmd)))?;
        let (mut passed, mut failed, mut ignored) = (0, 0, 0);
        for line in BufReader::new(child.stdout.take().expect("piped")).lines() {
            let line = line?;
            println!("{line}");
            let (p, f) = test_result_counts(&line);
            passed += p;
            failed += f;
            ignored += summary_count(&line, "ignored");
        }
        Ok((child.wait()?, passed, failed, ignored))
    }

    /// The full path of `program` found on our child `PATH`.
    pub fn which(&self, program: &str) -> Option<PathBuf> {
        find_on_path(&self.path, program)
    }

    /// Prefix for commands that need root: nothing when we are root, `sudo -E`
    /// (keeping our `PATH` and `HOME`, which sudo would otherwise reset) when
    /// sudo exists, an error otherwise.
    pub fn as_root(&self, program: impl AsRef<OsStr>, why: &str) -> Result<Command> {
        if self.is_root {
            return Ok(self.cmd(program));
        }
        if self.which("sudo").is_none() {
            bail!("{why} needs root, and sudo is not installed: run this command as root");
        }
        let mut cmd = self.cmd("sudo");
        cmd.arg("-E").arg("env").arg(pair("PATH", &self.path));
        for key in ["HOME", "CARGO_HOME", "RUSTUP_HOME", "CARGO_TARGET_DIR"] {
            if let Some(value) = std::env::var_os(key) {
                cmd.arg(pair(key, &value));
            }
        }
        cmd.arg(program);
        Ok(cmd)
    }

    /// The cargo target directory (`cargo metadata`, so `CARGO_TARGET_DIR`
    /// and `build.target-dir` are honoured).
    pub fn target_dir(&self) -> Result<PathBuf> {
        let json = probe(
            self.cargo()
                .args(["metadata", "--format-version", "1", "--no-deps"]),
        )
        .context("`cargo metadata` failed")?;
        json_string_field(&json, "target_directory")
            .map(PathBuf::from)
            .context("no target_directory in `cargo metadata` output")
    }
}

/// Runs a read-only check, quietly, even in a dry run. Returns its stdout
/// when it started and succeeded, `None` otherwise.
pub fn probe(cmd: &mut Command) -> Option<String> {
    let output = cmd
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).into_owned())
}

fn pair(key: &str, value: &OsStr) -> OsString {
    let mut pair = OsString::from(key);
    pair.push("=");
    pair.push(value);
    pair
}

fn find_on_path(path: &OsStr, program: &str) -> Option<PathBuf> {
    std::env::split_paths(path)
        .map(|dir| dir.join(program))
        .find(|candidate| is_executable(candidate))
}

pub fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Effective uid 0, from `/proc/self/status` (`Uid: real effective ...`).
fn effective_uid_is_root() -> bool {
    if let Ok(status) = std::fs::read_to_string("/proc/self/status")
        && let Some(line) = status.lines().find(|l| l.starts_with("Uid:"))
    {
        return line.split_whitespace().nth(2) == Some("0");
    }
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// The value of the first `"name":"..."` string field in a JSON text. Enough
/// for `cargo metadata`'s flat top-level fields; not a JSON parser.
fn json_string_field(json: &str, name: &str) -> Option<String> {
    let start = json.find(&format!("\"{name}\":\""))? + name.len() + 4;
    let mut value = String::new();
    let mut chars = json[start..].chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => return Some(value),
            '\\' => match chars.next()? {
                'n' => value.push('\n'),
                't' => value.push('\t'),
                other => value.push(other),
            },
            c => value.push(c),
        }
    }
    None
}

/// A command as a shell line, quoted where needed, with the environment
/// variables it sets (other than `PATH`) in front.
pub fn display(cmd: &Command) -> String {
    let mut words = Vec::new();
    for (key, value) in cmd.get_envs() {
        if key == "PATH" {
            continue;
        }
        if let Some(value) = value {
            words.push(format!(
                "{}={}",
                key.to_string_lossy(),
                quote(&value.to_string_lossy())
            ));
        }
    }
    let program = cmd.get_program();
    if std::env::var_os("CARGO").is_some_and(|cargo| cargo == program) {
        // The cargo running xtask, by its full toolchain path: say `cargo`.
        words.push("cargo".to_owned());
    } else {
        words.push(quote(&program.to_string_lossy()));
    }
    for arg in cmd.get_args() {
        let arg = arg.to_string_lossy();
        // `sudo -E env PATH=...`: the long PATH is noise.
        if arg.starts_with("PATH=") {
            words.push("PATH=\"$PATH\"".to_owned());
        } else {
            words.push(quote(&arg));
        }
    }
    words.join(" ")
}

pub fn quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:+,@%^".contains(c));
    if plain {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_only_when_needed() {
        assert_eq!(quote("cargo"), "cargo");
        assert_eq!(quote("^0.13"), "^0.13");
        assert_eq!(quote("ferret_demo::*"), "'ferret_demo::*'");
        assert_eq!(quote("it's"), r"'it'\''s'");
        assert_eq!(quote(""), "''");
    }

    #[test]
    fn reads_a_string_field() {
        let json = r#"{"packages":[],"target_directory":"/w/ta\"rget","version":1}"#;
        assert_eq!(
            json_string_field(json, "target_directory").as_deref(),
            Some("/w/ta\"rget")
        );
        assert_eq!(json_string_field(json, "missing"), None);
    }

    #[test]
    fn displays_env_and_args() {
        let mut cmd = Command::new("cargo");
        cmd.env("PATH", "/x")
            .env("LLVM_PREFIX", "/p q")
            .args(["install", "a b"]);
        assert_eq!(display(&cmd), "LLVM_PREFIX='/p q' cargo install 'a b'");
    }
}

/// The counts of a libtest summary line (`test result: ok. 8 passed; 1
/// failed; ...`), or zeros for any other line.
pub fn test_result_counts(line: &str) -> (u64, u64) {
    (summary_count(line, "passed"), summary_count(line, "failed"))
}

/// The count before `word` (`passed`, `failed`, `ignored`) in a libtest
/// summary line, or 0 for any other line.
pub fn summary_count(line: &str, word: &str) -> u64 {
    let Some(rest) = line.trim().strip_prefix("test result: ") else {
        return 0;
    };
    rest.split(';')
        .find_map(|part| {
            part.trim()
                .strip_suffix(word)?
                .trim()
                .rsplit(' ')
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod count_tests {
    use super::test_result_counts;

    #[test]
    fn libtest_summaries_are_counted() {
        assert_eq!(
            test_result_counts(
                "test result: ok. 255 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out"
            ),
            (255, 0)
        );
        assert_eq!(
            test_result_counts("test result: FAILED. 7 passed; 2 failed;"),
            (7, 2)
        );
        assert_eq!(test_result_counts("running 3 tests"), (0, 0));
        assert_eq!(
            super::summary_count(
                "test result: ok. 7 passed; 0 failed; 53 ignored; 0 measured; 0 filtered out",
                "ignored"
            ),
            53
        );
    }
}
