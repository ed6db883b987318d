//! Shared by the end-to-end tests: building the target programs, running
//! ferret, reading what it wrote. `tests/fuzz.rs` includes it too.
#![allow(dead_code, reason = "the fuzz binary uses a subset")]

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
    sync::{Mutex, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard},
    thread,
    time::{Duration, Instant},
};

/// Root tests share the machine; the few that judge times or CPU use take
/// it alone ([`alone`]), so a neighbour's work does not decide them.
static MACHINE: RwLock<()> = RwLock::new(());

/// Fails loudly (never skips) when the tests lack the privilege they need.
/// Hold what it returns for the whole test: the machine, shared.
#[must_use = "hold it for the test: the timing tests wait for it"]
pub fn require_root() -> RwLockReadGuard<'static, ()> {
    assert_root();
    MACHINE.read().unwrap_or_else(PoisonError::into_inner)
}

/// [`require_root`] for a test that compares times or CPU use: no other
/// root test runs while it holds what this returns.
#[must_use = "hold it for the test"]
pub fn alone() -> RwLockWriteGuard<'static, ()> {
    assert_root();
    MACHINE.write().unwrap_or_else(PoisonError::into_inner)
}

fn assert_root() {
    let euid = rustix::process::geteuid();
    assert!(
        euid.is_root(),
        "these end-to-end tests attach real uprobes and must run as root \
         (CI does); run `sudo -E cargo xtask test`"
    );
}

/// The source folder of the test programs.
pub fn programs_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/programs")
}

fn out_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("programs");
    std::fs::create_dir_all(&dir).expect("create programs dir");
    dir
}

static BUILD_LOCK: Mutex<()> = Mutex::new(());

/// Compiles `tests/programs/<source>` (C, C++, Rust or Go, by extension) once
/// per change, with `flags`, and returns the binary. The flags are part of
/// the output name so variants can coexist.
/// The line number of the first line of `source` (in tests/programs)
/// holding `marker`.
pub fn marker_line(source: &str, marker: &str) -> u32 {
    let text = std::fs::read_to_string(programs_dir().join(source)).unwrap();
    let index = text
        .lines()
        .position(|l| l.contains(marker))
        .unwrap_or_else(|| panic!("no {marker} in {source}"));
    index as u32 + 1
}

pub fn build(source: &str, flags: &[&str]) -> PathBuf {
    let src = programs_dir().join(source);
    build_path(&src, flags)
}

/// Like [`build`] for a source file anywhere.
pub fn build_path(src: &Path, flags: &[&str]) -> PathBuf {
    let _guard = BUILD_LOCK
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let stem = src.file_stem().unwrap().to_string_lossy();
    let tag: String = flags
        .join("")
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect();
    let out = out_dir().join(if tag.is_empty() {
        stem.to_string()
    } else {
        format!("{stem}-{tag}")
    });
    let fresh = std::fs::metadata(&out)
        .and_then(|o| o.modified())
        .ok()
        .zip(std::fs::metadata(src).and_then(|s| s.modified()).ok())
        .is_some_and(|(o, s)| o >= s);
    if fresh {
        return out;
    }
    let ext = src.extension().unwrap().to_string_lossy();
    let mut cmd = match ext.as_ref() {
        "c" => {
            let mut c = Command::new("cc");
            c.args(["-O2", "-g", "-pthread"])
                .arg(src)
                .arg("-o")
                .arg(&out)
                .arg("-lm");
            c
        }
        "cpp" => {
            let mut c = Command::new("g++");
            c.args(["-O2", "-g"]).arg(src).arg("-o").arg(&out);
            c
        }
        "rs" => {
            let mut c = Command::new("rustc");
            c.args(["--edition=2021", "-O", "-g", "-C", "panic=unwind"])
                .arg(src)
                .arg("-o")
                .arg(&out);
            c
        }
        "go" => go_build_command(src, &out),
        other => panic!("unknown program kind .{other}"),
    };
    cmd.args(flags);
    let status = cmd.status().expect("run compiler");
    assert!(status.success(), "compiling {} failed", src.display());
    out
}

/// `ferret` as built by cargo for this test run.
pub fn ferret() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ferret"))
}

/// Runs a command and returns its output, printing ferret's stderr for the
/// test log.
pub fn run(mut cmd: Command) -> Output {
    let output = cmd.output().expect("spawn");
    eprintln!("--- {cmd:?}\n{}", String::from_utf8_lossy(&output.stderr));
    output
}

/// A fresh temporary directory.
pub fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

/// Kills and reaps a child when dropped, so a failing test leaves no process behind.
pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `stall_deadlock` (built from tests/programs) with its threads
/// deadlocking at once and SIGALRM ending it after `alarm_s` seconds, and
/// returns once it says they are deadlocked.
pub fn start_deadlocked(program: &Path, alarm_s: u32) -> KillOnDrop {
    use std::io::BufRead as _;
    let mut child = Command::new(program)
        .args(["0".to_owned(), alarm_s.to_string()])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line, "deadlocked\n");
    KillOnDrop(child)
}

/// `go build` for one file of package `main` that imports only the
/// standard library: the file is copied into a module of its own, and the
/// Go build cache and module path live in cargo's target directory, never
/// in `$HOME`; nothing is fetched from the network.
fn go_build_command(src: &Path, out: &Path) -> Command {
    let module = out.with_extension("go-module");
    std::fs::create_dir_all(&module).expect("create Go module dir");
    std::fs::copy(src, module.join("main.go")).expect("copy Go source");
    std::fs::write(module.join("go.mod"), "module ferrettest\n\ngo 1.17\n").expect("write go.mod");
    let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("go-cache");
    let mut c = Command::new("go");
    c.arg("build")
        .arg("-o")
        .arg(out)
        .current_dir(&module)
        .env("GOCACHE", cache.join("build"))
        .env("GOPATH", cache.join("path"))
        .env("GOFLAGS", "-mod=mod")
        .env("GOPROXY", "off")
        .env("GOTOOLCHAIN", "local")
        .env("CGO_ENABLED", "0");
    c
}

/// The prompt of the shell in [`Tmux`].
pub const PROMPT: &str = "e2e-prompt$";

/// A private tmux server with one 120×40 window running a plain shell;
/// killed (with everything in it) when dropped.
pub struct Tmux {
    socket: String,
}

impl Tmux {
    /// `tag` tells apart the servers of tests running at once.
    pub fn start(tag: &str) -> Self {
        let tmux = Self {
            socket: format!("ferret-watch-e2e-{}-{tag}", std::process::id()),
        };
        let shell = format!(
            "env -i PATH=/usr/bin:/bin TERM=xterm-256color PS1='{PROMPT} ' bash --norc --noprofile"
        );
        tmux.run(&[
            "new-session",
            "-d",
            "-s",
            "e2e",
            "-x",
            "120",
            "-y",
            "40",
            &shell,
        ]);
        tmux.wait_for("shell prompt", Duration::from_secs(5), |s| {
            s.contains(PROMPT)
        });
        tmux
    }

    pub fn run(&self, args: &[&str]) -> String {
        let out = Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("tmux is installed (cargo xtask setup installs it)");
        assert!(
            out.status.success(),
            "tmux {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn screen(&self) -> String {
        self.run(&["capture-pane", "-p", "-t", "e2e"])
    }

    pub fn send(&self, keys: &str) {
        self.run(&["send-keys", "-t", "e2e", keys]);
    }

    pub fn alternate_screen(&self) -> bool {
        self.run(&["display-message", "-p", "-t", "e2e", "#{alternate_on}"])
            .trim()
            == "1"
    }

    /// Polls the screen every 25 ms until `done` holds; panics with the
    /// last screen after `timeout`.
    pub fn wait_for(&self, what: &str, timeout: Duration, done: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let screen = self.screen();
            if done(&screen) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {timeout:?} waiting for {what}; the screen:\n{screen}"
            );
            thread::sleep(Duration::from_millis(25));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .status();
    }
}
