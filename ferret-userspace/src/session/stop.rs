//! How a session ends: the stop conditions and the grace a launched
//! command gets to finish, traced.
//!
//! A session stops at the first of: the target exiting (its pidfd becomes
//! readable), `-d` elapsing, SIGINT, SIGTERM, or the dashboard's quit. On
//! SIGTERM a command ferret launched is asked to stop too; after a signal or
//! a quit it gets up to [`GRACE`] to exit by itself, so its way out is
//! traced.

use std::{os::fd::OwnedFd, time::Duration};

use anyhow::{Context as _, Result};
use tokio::{
    io::{Interest, unix::AsyncFd},
    signal::unix::{Signal, SignalKind, signal},
    sync::oneshot,
};

use crate::target;

/// How long a launched command has to exit after it was asked to stop.
pub const GRACE: Duration = Duration::from_secs(2);

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

impl Stop {
    /// Whether the session ended because its target did.
    pub const fn target_gone(self) -> bool {
        matches!(self, Self::TargetExited)
    }

    /// Whether someone asked ferret to stop (a signal or the dashboard),
    /// rather than the target or the clock ending it.
    pub const fn asked(self) -> bool {
        matches!(self, Self::Interrupt | Self::Terminate | Self::Quit)
    }
}

/// The stop conditions, as one future.
pub struct Stopper {
    pidfd: AsyncFd<OwnedFd>,
    sigint: Signal,
    sigterm: Signal,
    deadline: Option<tokio::time::Instant>,
    quit: Option<oneshot::Receiver<()>>,
    launched: Option<u32>,
}

impl Stopper {
    /// Watches `pidfd` (the target), the signals, `duration` from now and
    /// `quit` (the dashboard). `launched` is the pid of a command ferret
    /// launched. Must be called inside a tokio runtime.
    pub fn new(
        pidfd: OwnedFd,
        duration: Option<Duration>,
        quit: Option<oneshot::Receiver<()>>,
        launched: Option<u32>,
    ) -> Result<Self> {
        // SAFETY: the OwnedFd owns its fd for as long as the AsyncFd lives.
        let pidfd = unsafe { AsyncFd::register_with_interest(pidfd, Interest::READABLE) }
            .map_err(|e| e.into_parts().1)
            .context("polling the target's pidfd")?;
        Ok(Self {
            pidfd,
            sigint: signal(SignalKind::interrupt()).context("installing a SIGINT handler")?,
            sigterm: signal(SignalKind::terminate()).context("installing a SIGTERM handler")?,
            deadline: duration.map(|d| tokio::time::Instant::now() + d),
            quit,
            launched,
        })
    }

    /// Resolves at the first stop condition. On SIGTERM a launched command
    /// (ours) is asked to stop too.
    pub async fn next(&mut self) -> Stop {
        let deadline = self.deadline;
        let quit = self.quit.as_mut();
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
            () = quit_requested(quit) => Stop::Quit,
        }
    }

    /// Resolves once the target has exited, or after `timeout`.
    pub async fn target_exit(&self, timeout: Duration) {
        let _ = tokio::time::timeout(timeout, self.pidfd.readable()).await;
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Resolves when the dashboard asks to quit (or goes away without asking).
async fn quit_requested(quit: Option<&mut oneshot::Receiver<()>>) {
    match quit {
        Some(quit) => {
            let _ = quit.await;
        }
        None => std::future::pending().await,
    }
}
