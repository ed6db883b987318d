//! What `record` and `watch` share: choosing the functions, attaching, the
//! event pipeline (ring buffer → decoder → reconstructor), the stop
//! conditions, and a tidy ending.
//!
//! The order of the steps matters. Everything that can fail on bad input
//! (pid, command, patterns, output path) runs before any probe is attached
//! or any command launched; a launched command is held before its first
//! instruction until every probe is in place; and at the end the probes are
//! detached before the remaining events are drained, so the target runs
//! unprobed as early as possible.

use std::{
    os::fd::{AsRawFd as _, OwnedFd},
    time::Duration,
};

use anyhow::{Context as _, Result};
use aya::maps::{MapData, RingBuf};
use tokio::{
    io::{Interest, unix::AsyncFd},
    signal::unix::{Signal, SignalKind, signal},
};

use super::plan::{self, Plan, ResolvedTarget, Started};
use crate::{
    cli::{ProbeConfig, Target},
    probe::{AttachStats, Engine, LinkKind, decode::Decoder},
    sink::RecordingMeta,
    target::{self, ExitStatus, Redirect},
    trace::{Reconstructor, SpanEvent},
};

/// How the drain timer and the kernel's batched wakeups share the work: the
/// kernel wakes the reader when 256 KiB are waiting; otherwise this timer does.
pub const DRAIN_EVERY: Duration = Duration::from_millis(20);

/// A target and its chosen functions, before anything is attached.
pub struct Prepared {
    /// The target.
    pub target: ResolvedTarget,
    /// The functions and their probe points.
    pub plan: Plan,
    /// The patterns, as the user gave them (for metadata and headers).
    pub probes_text: String,
}

/// Resolves the target and selects the functions; says what was chosen.
pub fn prepare(target: &Target, probes: &ProbeConfig) -> Result<Prepared> {
    let target = ResolvedTarget::resolve(target)?;
    let plan = plan::plan(&target, probes)?;
    eprintln!(
        "ferret: tracing {} function{} of {}",
        plan.points.len(),
        if plan.points.len() == 1 { "" } else { "s" },
        target.describe()
    );
    for note in &plan.exit_notes {
        eprintln!("ferret:   {note}");
    }
    let probes_text = probes
        .includes
        .iter()
        .map(|p| format!("-s {p}"))
        .chain(probes.excludes.iter().map(|p| format!("-x {p}")))
        .collect::<Vec<_>>()
        .join(" ");
    Ok(Prepared {
        target,
        plan,
        probes_text,
    })
}

impl Prepared {
    /// Metadata for a recording of this session.
    pub fn recording_meta(&self) -> RecordingMeta {
        RecordingMeta {
            target: self.target.describe(),
            probes: self.probes_text.clone(),
            realtime_offset_ns: realtime_offset_ns(),
        }
    }

    /// Loads the eBPF programs, starts the target (a command is launched
    /// held at its gate, streams redirected if asked), attaches every probe,
    /// then lets the command run. On failure nothing is left attached and a
    /// launched command never runs.
    pub fn attach(&self, redirect: Option<&Redirect>) -> Result<Attached> {
        let mut engine = Engine::load(None)?;
        let mut started = plan::start(&self.target, redirect)?;
        let pid = started.pid();
        let attached = (|| -> Result<(OwnedFd, AttachStats)> {
            let pidfd = target::pidfd_open(pid)?;
            engine.add_target(pid)?;
            engine.attach_thread_exit()?;
            let stats = engine.attach(&self.plan.points, pid)?;
            if let Some(ms) = std::env::var("FERRET_TEST_PAUSE_IN_ATTACH_MS")
                .ok()
                .and_then(|v| v.parse().ok())
            {
                // Test hook: widen the attach window so a test can make the
                // target exit inside it deterministically.
                std::thread::sleep(Duration::from_millis(ms));
            }
            if let Started::Pid(_) = started
                && has_exited(&pidfd)
            {
                anyhow::bail!("pid {pid} exited while ferret was attaching");
            }
            Ok((pidfd, stats))
        })();
        let (pidfd, stats) = match attached {
            Ok(ok) => ok,
            Err(e) => {
                engine.detach();
                if let Started::Launched(child) = started {
                    child.abandon();
                }
                return Err(e);
            }
        };
        eprintln!(
            "ferret: {} probes attached through {} {} link{} in {:.1} ms",
            stats.probes,
            stats.links,
            match stats.kind {
                LinkKind::Multi => "uprobe_multi",
                LinkKind::PerProbe => "perf",
            },
            if stats.links == 1 { "" } else { "s" },
            stats.elapsed.as_secs_f64() * 1e3
        );
        let ring = engine.take_ring()?;
        if let Started::Launched(child) = &mut started {
            child.release()?;
        }
        Ok(Attached {
            engine,
            started,
            pid,
            pidfd: Some(pidfd),
            ring: Some(ring),
            stats,
        })
    }
}

/// A running target with probes attached.
pub struct Attached {
    /// Programs, maps and links; dropping it detaches.
    pub engine: Engine,
    /// The target.
    pub started: Started,
    /// Its pid.
    pub pid: u32,
    /// Readable once the target exits (taken by [`Stopper::new`]).
    pub pidfd: Option<OwnedFd>,
    /// The event stream (taken by the reader).
    pub ring: Option<RingBuf<MapData>>,
    /// How the probes were attached.
    pub stats: AttachStats,
}

impl Attached {
    /// The ring buffer, registered with the current tokio runtime.
    pub fn take_ring(&mut self) -> Result<AsyncFd<RingBuf<MapData>>> {
        let ring = self.ring.take().expect("ring taken once");
        // SAFETY: the ring buffer owns its fd for as long as the AsyncFd
        // lives and always returns the same one.
        unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE) }
            .map_err(|e| e.into_parts().1)
            .context("polling the ring buffer")
    }

    /// After the session: for a launched command, waits for it (saying so
    /// if it still runs) and returns its exit code; 0 for a pid target.
    pub fn finish_target(self) -> Result<i32> {
        match self.started {
            Started::Pid(_) => Ok(0),
            Started::Launched(child) => {
                let status = if let Some(status) = target::try_wait(child.pid)? {
                    status
                } else {
                    eprintln!(
                        "ferret: tracing stopped; {} runs on untraced, waiting for it to exit",
                        child.display()
                    );
                    target::wait(child.pid)?
                };
                eprintln!("ferret: {} ended with {status}", child.display());
                Ok(match status {
                    ExitStatus::Code(c) => c,
                    ExitStatus::Signal(_) => status.shell_code(),
                })
            }
        }
    }
}

/// Ring-buffer records to span events.
#[derive(Default)]
pub struct Pipeline {
    /// Record decoder.
    pub decoder: Decoder,
    /// Open stacks.
    pub reconstructor: Reconstructor,
    /// Span events produced and not yet consumed.
    pub spans: Vec<SpanEvent>,
    /// Records decoded so far.
    pub events: u64,
    /// Events the kernel dropped, as last read.
    pub lost: u64,
}

impl Pipeline {
    /// Decodes everything waiting in the ring buffer into [`Self::spans`].
    pub fn drain(&mut self, ring: &mut RingBuf<MapData>) {
        while let Some(item) = ring.next() {
            if let Some(event) = self.decoder.decode_bytes(&item) {
                self.events += 1;
                self.reconstructor.push(&event, &mut self.spans);
            }
        }
    }

    /// Reads the kernel's drop counter; new drops mean some threads' stacks
    /// may have lost frames, which the reconstructor is told about.
    pub fn check_lost(&mut self, engine: &Engine) {
        if let Ok(lost) = engine.lost()
            && lost > self.lost
        {
            self.reconstructor.mark_lost(lost - self.lost);
            self.lost = lost;
        }
    }

    /// Ends what is still open: as `unwound` if the target exited, else as
    /// `open` (still running when tracing stopped).
    pub fn close(&mut self, stop: Stop, pid: u32) {
        let now = monotonic_ns();
        if stop == Stop::TargetExited {
            self.reconstructor.process_exit(pid, now, &mut self.spans);
        }
        self.reconstructor.finish(now, &mut self.spans);
    }
}

/// Why tracing stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// The target exited.
    TargetExited,
    /// `-d` elapsed.
    Duration,
    /// SIGINT (Ctrl-C).
    Interrupt,
    /// SIGTERM.
    Terminate,
    /// The user quit the dashboard.
    Quit,
}

/// The stop conditions other than the user's own: target exit, signals,
/// a deadline.
pub struct Stopper {
    pidfd: AsyncFd<OwnedFd>,
    sigint: Signal,
    sigterm: Signal,
    deadline: Option<tokio::time::Instant>,
    launched: Option<u32>,
}

impl Stopper {
    /// Must be called inside a tokio runtime.
    pub fn new(attached: &mut Attached, duration: Option<Duration>) -> Result<Self> {
        let pidfd = attached.pidfd.take().expect("pidfd taken once");
        // SAFETY: the OwnedFd owns its fd for as long as the AsyncFd lives.
        let pidfd = unsafe { AsyncFd::register_with_interest(pidfd, Interest::READABLE) }
            .map_err(|e| e.into_parts().1)
            .context("polling the target's pidfd")?;
        Ok(Self {
            pidfd,
            sigint: signal(SignalKind::interrupt()).context("installing a SIGINT handler")?,
            sigterm: signal(SignalKind::terminate()).context("installing a SIGTERM handler")?,
            deadline: duration.map(|d| tokio::time::Instant::now() + d),
            launched: match &attached.started {
                Started::Launched(child) => Some(child.pid),
                Started::Pid(_) => None,
            },
        })
    }

    /// Resolves at the first stop condition. On SIGTERM a launched command
    /// (ours) is asked to stop too.
    pub async fn next(&mut self) -> Stop {
        let deadline = self.deadline;
        tokio::select! {
            _ = self.pidfd.readable() => Stop::TargetExited,
            _ = self.sigint.recv() => Stop::Interrupt,
            _ = self.sigterm.recv() => {
                if let Some(pid) = self.launched {
                    target::signal(pid, libc::SIGTERM);
                }
                Stop::Terminate
            }
            () = sleep_until(deadline) => Stop::Duration,
        }
    }

    /// After a signal, gives a launched command up to two seconds to exit,
    /// so its way out is traced too.
    pub async fn grace(&self, stop: Stop) {
        if self.launched.is_some() && matches!(stop, Stop::Interrupt | Stop::Terminate) {
            let _ = tokio::time::timeout(Duration::from_secs(2), self.pidfd.readable()).await;
        }
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn has_exited(pidfd: &OwnedFd) -> bool {
    let mut pfd = libc::pollfd {
        fd: pidfd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: poll on one live pollfd with a zero timeout.
    unsafe { libc::poll(&raw mut pfd, 1, 0) > 0 }
}

fn clock_ns(clock: libc::clockid_t) -> i64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into a live local.
    unsafe { libc::clock_gettime(clock, &raw mut ts) };
    ts.tv_sec * 1_000_000_000 + ts.tv_nsec
}

/// CLOCK_MONOTONIC now, the clock `bpf_ktime_get_ns` reads.
pub fn monotonic_ns() -> u64 {
    clock_ns(libc::CLOCK_MONOTONIC) as u64
}

/// CLOCK_REALTIME − CLOCK_MONOTONIC: adds to a BPF timestamp to give wall time.
pub fn realtime_offset_ns() -> i64 {
    clock_ns(libc::CLOCK_REALTIME) - clock_ns(libc::CLOCK_MONOTONIC)
}

/// Deletes a half-written output file unless the session finished it.
pub struct OutputGuard {
    /// The file; `None` once finished.
    pub path: Option<std::path::PathBuf>,
}

impl Drop for OutputGuard {
    fn drop(&mut self) {
        if let Some(path) = self.path.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}
