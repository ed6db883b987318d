//! The process being traced: launched by ferret and held before its first
//! instruction until the probes are in place, or an existing process by pid.
//!
//! Launching is a plain fork and exec with a gate: the child blocks reading a
//! pipe between fork and exec, so uprobes (which attach to files, filtered by
//! pid) are in place before the program runs anything. If ferret dies or gives
//! up before opening the gate, the child sees end-of-file and exits without
//! ever running the command.

pub mod freeze;

use std::{
    ffi::{CString, OsStr, OsString},
    fs, io,
    os::{
        fd::{AsRawFd as _, OwnedFd},
        unix::{ffi::OsStrExt as _, fs::OpenOptionsExt as _},
    },
    path::{Path, PathBuf},
};

use rustix::{
    io::Errno,
    pipe::PipeFlags,
    process::{Pid, PidfdFlags, Signal, WaitOptions},
};

/// Errors about the target process.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    /// No process with that id.
    #[error("no process with pid {0}")]
    NoSuchPid(u32),
    /// The process exists but we may not look at it.
    #[error("cannot inspect pid {pid}: {source}")]
    Inspect {
        /// The pid.
        pid: u32,
        /// The error.
        source: io::Error,
    },
    /// The command is not a file and not on PATH.
    #[error("command not found: {0}")]
    CommandNotFound(String),
    /// exec failed in the child.
    #[error("cannot run {command}: {source}")]
    Exec {
        /// The command.
        command: String,
        /// The errno from exec.
        source: io::Error,
    },
    /// fork, pipe or waitpid failed.
    #[error("{call} failed: {source}")]
    Sys {
        /// The call.
        call: &'static str,
        /// The errno.
        source: io::Error,
    },
}

/// Facts about a running process needed to resolve its symbols.
#[derive(Clone, Debug)]
pub struct ProcessInfo {
    /// The pid.
    pub pid: u32,
    /// Its executable as the process sees it (`readlink /proc/PID/exe`).
    pub exe: PathBuf,
    /// Its `comm`.
    pub comm: String,
    /// Its command line, space-joined (for display).
    pub cmdline: String,
}

/// Reads [`ProcessInfo`] for `pid`.
pub fn process_info(pid: u32) -> Result<ProcessInfo, TargetError> {
    let proc = PathBuf::from(format!("/proc/{pid}"));
    if !proc.exists() {
        return Err(TargetError::NoSuchPid(pid));
    }
    let inspect = |source: io::Error| {
        if source.kind() == io::ErrorKind::NotFound {
            TargetError::NoSuchPid(pid)
        } else {
            TargetError::Inspect { pid, source }
        }
    };
    let exe = fs::read_link(proc.join("exe")).map_err(inspect)?;
    let comm = fs::read_to_string(proc.join("comm"))
        .map_err(inspect)?
        .trim_end()
        .to_owned();
    let cmdline = fs::read(proc.join("cmdline"))
        .map_err(inspect)?
        .split(|&b| b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect::<Vec<_>>()
        .join(" ");
    Ok(ProcessInfo {
        pid,
        exe,
        comm,
        cmdline,
    })
}

/// The path through which ferret reads (and the kernel resolves) a file the
/// process sees at `path`: via `/proc/PID/root`, so targets in other mount
/// namespaces (containers) work.
pub fn path_in_process(pid: u32, path: &Path) -> PathBuf {
    let relative = path.strip_prefix("/").unwrap_or(path);
    PathBuf::from(format!("/proc/{pid}/root")).join(relative)
}

/// Finds `command` the way `execvp` would: a name with a slash is a path,
/// anything else is searched on `PATH`.
pub fn resolve_command(command: &OsStr) -> Result<PathBuf, TargetError> {
    let not_found = || TargetError::CommandNotFound(command.to_string_lossy().into_owned());
    if command.as_bytes().contains(&b'/') {
        let path = PathBuf::from(command);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(not_found())
        };
    }
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into());
    std::env::split_paths(&path)
        .map(|dir| dir.join(command))
        .find(|candidate| is_executable_file(candidate))
        .ok_or_else(not_found)
}

fn is_executable_file(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Where a launched command's standard streams go instead of ferret's own.
#[derive(Debug)]
pub struct Redirect {
    /// Standard input.
    pub stdin: OwnedFd,
    /// Standard output.
    pub stdout: OwnedFd,
    /// Standard error.
    pub stderr: OwnedFd,
}

impl Redirect {
    /// stdin from /dev/null, stdout and stderr appended to `log`.
    pub fn to_log(log: &Path) -> io::Result<Self> {
        let out = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(log)?;
        crate::owner::give_to_invoking_user(&out);
        Ok(Self {
            stdin: fs::File::open("/dev/null")?.into(),
            stdout: out.try_clone()?.into(),
            stderr: out.into(),
        })
    }
}

/// A launched command held before `exec`.
#[derive(Debug)]
pub struct Launched {
    /// Its pid (unchanged by exec).
    pub pid: u32,
    /// The resolved executable.
    pub exe: PathBuf,
    gate: Option<OwnedFd>,
    exec_error: Option<OwnedFd>,
    display: String,
}

impl Launched {
    /// Forks; the child waits at the gate, then execs `exe` with `args`
    /// (`args[0]` is the name as typed). stdin/stdout/stderr are inherited,
    /// or replaced by `redirect`'s (the live dashboard owns the terminal).
    pub fn spawn(
        exe: &Path,
        args: &[OsString],
        redirect: Option<&Redirect>,
    ) -> Result<Self, TargetError> {
        let c_exe = cstring(exe.as_os_str())?;
        let c_args = args
            .iter()
            .map(|a| cstring(a))
            .collect::<Result<Vec<_>, _>>()?;
        let mut argv: Vec<*const libc::c_char> = c_args.iter().map(|a| a.as_ptr()).collect();
        argv.push(std::ptr::null());
        let (gate_read, gate_write) = pipe()?;
        let (err_read, err_write) = pipe()?;
        // SAFETY: the child only calls async-signal-safe functions (read,
        // close, execv, write, _exit) on memory prepared before the fork.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(sys("fork"));
        }
        if pid == 0 {
            // SAFETY: in the child; see above.
            unsafe {
                libc::close(gate_write.as_raw_fd());
                libc::close(err_read.as_raw_fd());
                let mut byte = 0u8;
                let n = libc::read(gate_read.as_raw_fd(), (&raw mut byte).cast(), 1);
                if n != 1 {
                    // ferret went away or gave up: never run the command untraced.
                    libc::_exit(127);
                }
                libc::close(gate_read.as_raw_fd());
                if let Some(r) = redirect {
                    libc::dup2(r.stdin.as_raw_fd(), 0);
                    libc::dup2(r.stdout.as_raw_fd(), 1);
                    libc::dup2(r.stderr.as_raw_fd(), 2);
                }
                libc::execv(c_exe.as_ptr(), argv.as_ptr());
                let errno = *libc::__errno_location();
                libc::write(
                    err_write.as_raw_fd(),
                    (&raw const errno).cast(),
                    size_of::<i32>(),
                );
                libc::_exit(127);
            }
        }
        drop(gate_read);
        drop(err_write);
        Ok(Self {
            pid: pid as u32,
            exe: exe.to_path_buf(),
            gate: Some(gate_write),
            exec_error: Some(err_read),
            display: args
                .iter()
                .map(|a| a.to_string_lossy())
                .collect::<Vec<_>>()
                .join(" "),
        })
    }

    /// The command line, for display.
    pub fn display(&self) -> &str {
        &self.display
    }

    /// Opens the gate: the child execs. Returns once exec succeeded, or the
    /// exec error (the child has then exited and is reaped).
    pub fn release(&mut self) -> Result<(), TargetError> {
        let gate = self.gate.take().expect("released once");
        match rustix::io::write(&gate, &[1]) {
            Ok(1) => {}
            Ok(_) => return Err(sys_error("write(gate)", io::ErrorKind::WriteZero.into())),
            Err(e) => return Err(sys_error("write(gate)", e.into())),
        }
        drop(gate);
        let err = self.exec_error.take().expect("released once");
        let mut errno = [0u8; size_of::<i32>()];
        // EOF (0) means exec succeeded and closed the close-on-exec pipe.
        if rustix::io::read(&err, &mut errno) == Ok(errno.len()) {
            let _ = wait(self.pid);
            return Err(TargetError::Exec {
                command: self.display.clone(),
                source: io::Error::from_raw_os_error(i32::from_ne_bytes(errno)),
            });
        }
        Ok(())
    }

    /// Abandons a child that was never released: it exits at the closed gate.
    pub fn abandon(mut self) {
        if self.gate.take().is_some() {
            let _ = wait(self.pid);
        }
    }
}

impl Drop for Launched {
    fn drop(&mut self) {
        // A child still held at the gate would exit on its own when the pipe
        // closes; reap it so no zombie is left.
        if self.gate.take().is_some() {
            let _ = wait(self.pid);
        }
    }
}

/// How a process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitStatus {
    /// Exited with this code.
    Code(i32),
    /// Killed by this signal.
    Signal(i32),
}

impl ExitStatus {
    /// The shell's convention: the code, or 128 + signal.
    pub const fn shell_code(self) -> i32 {
        match self {
            Self::Code(c) => c,
            Self::Signal(s) => 128 + s,
        }
    }
}

impl std::fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Code(c) => write!(f, "exit status {c}"),
            Self::Signal(s) => write!(f, "killed by signal {s}"),
        }
    }
}

/// Waits for child `pid` to end.
pub fn wait(pid: u32) -> Result<ExitStatus, TargetError> {
    waitpid(pid, WaitOptions::empty()).map(|s| s.expect("blocking wait returns a status"))
}

/// The status of child `pid` if it has ended, without waiting.
pub fn try_wait(pid: u32) -> Result<Option<ExitStatus>, TargetError> {
    waitpid(pid, WaitOptions::NOHANG)
}

fn waitpid(pid: u32, options: WaitOptions) -> Result<Option<ExitStatus>, TargetError> {
    let Some(pid) = Pid::from_raw(pid as i32) else {
        return Err(sys_error("waitpid", Errno::CHILD.into()));
    };
    let status = loop {
        match rustix::process::waitpid(Some(pid), options) {
            Ok(Some((_, status))) => break status,
            Ok(None) => return Ok(None),
            Err(Errno::INTR) => {}
            Err(e) => return Err(sys_error("waitpid", e.into())),
        }
    };
    Ok(Some(match status.terminating_signal() {
        Some(signal) => ExitStatus::Signal(signal),
        None => ExitStatus::Code(status.exit_status().unwrap_or(0)),
    }))
}

/// A pidfd: becomes readable when the process exits (any process, not only children).
pub fn pidfd_open(pid: u32) -> Result<OwnedFd, TargetError> {
    let Some(raw) = Pid::from_raw(pid as i32) else {
        return Err(sys_error("pidfd_open", Errno::INVAL.into()));
    };
    rustix::process::pidfd_open(raw, PidfdFlags::empty()).map_err(|e| match e {
        Errno::SRCH => TargetError::NoSuchPid(pid),
        e => sys_error("pidfd_open", e.into()),
    })
}

/// Sends `signal` to `pid`, ignoring a process that is already gone (and a
/// pid or signal number that names none).
pub fn signal(pid: u32, signal: i32) {
    if let (Some(pid), Some(signal)) = (Pid::from_raw(pid as i32), Signal::from_named_raw(signal)) {
        let _ = rustix::process::kill_process(pid, signal);
    }
}

fn pipe() -> Result<(OwnedFd, OwnedFd), TargetError> {
    rustix::pipe::pipe_with(PipeFlags::CLOEXEC).map_err(|e| sys_error("pipe2", e.into()))
}

fn cstring(s: &OsStr) -> Result<CString, TargetError> {
    CString::new(s.as_bytes()).map_err(|_| TargetError::Sys {
        call: "exec",
        source: io::Error::new(io::ErrorKind::InvalidInput, "argument contains a NUL byte"),
    })
}

fn sys(call: &'static str) -> TargetError {
    sys_error(call, io::Error::last_os_error())
}

fn sys_error(call: &'static str, source: io::Error) -> TargetError {
    TargetError::Sys { call, source }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolve_command_searches_path_and_rejects_missing() {
        assert!(resolve_command(OsStr::new("sh")).unwrap().ends_with("sh"));
        assert!(matches!(
            resolve_command(OsStr::new("no-such-command-ferret")),
            Err(TargetError::CommandNotFound(_))
        ));
        assert!(matches!(
            resolve_command(OsStr::new("./no/such/file")),
            Err(TargetError::CommandNotFound(_))
        ));
    }

    #[test]
    fn launched_child_runs_only_after_release_and_reports_its_status() {
        let exe = resolve_command(OsStr::new("sh")).unwrap();
        let args: Vec<OsString> = ["sh", "-c", "exit 7"].iter().map(OsString::from).collect();
        let mut child = Launched::spawn(&exe, &args, None).unwrap();
        // Held at the gate: still our forked copy, not yet sh.
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert_eq!(
            fs::read_link(format!("/proc/{}/exe", child.pid)).unwrap(),
            std::env::current_exe().unwrap()
        );
        child.release().unwrap();
        assert_eq!(wait(child.pid).unwrap(), ExitStatus::Code(7));
    }

    #[test]
    fn abandoned_child_never_runs_the_command() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("ran");
        let exe = resolve_command(OsStr::new("touch")).unwrap();
        let args = vec![OsString::from("touch"), marker.clone().into_os_string()];
        let child = Launched::spawn(&exe, &args, None).unwrap();
        child.abandon();
        assert!(!marker.exists());
    }

    #[test]
    fn exec_failure_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let not_exec = dir.path().join("data");
        fs::write(&not_exec, b"not a program").unwrap();
        let mut child = Launched::spawn(&not_exec, &[OsString::from("data")], None).unwrap();
        let err = child.release().unwrap_err();
        assert!(matches!(err, TargetError::Exec { .. }), "{err}");
    }

    #[test]
    fn process_info_reads_our_own_process_and_rejects_missing_pid() {
        let me = process_info(std::process::id()).unwrap();
        assert_eq!(me.exe, std::env::current_exe().unwrap());
        assert!(matches!(
            process_info(u32::MAX - 1),
            Err(TargetError::NoSuchPid(_))
        ));
    }
}
