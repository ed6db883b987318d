//! The stall watchdog: where a stuck thread is stuck, while it is stuck.
//!
//! A thread is stalled when it has been inside its innermost open span for
//! longer than the threshold without entering or leaving any traced
//! function. (Counting quiet time rather than the span's age keeps a parent
//! that is busy calling traced children from flickering as stalled between
//! two calls.) For each stalled thread the watchdog captures, off the
//! caller's thread, what the kernel says it is doing (scheduler state, the
//! system call and its arguments, the kernel wait channel), the lock it
//! waits for and who holds it, whether those waits form a deadlock, and its
//! user stack walked with DWARF CFI and symbolized to function and
//! file:line. While the stall lasts it looks again every so often (one
//! small read) and captures again when the thread moved; a new row only
//! when its location changed. Stalls in the same place are one group
//! (a thread pool at rest is one line, not a thousand), and threads stuck
//! alike share their walks and symbols, so thousands of stalls cost little.
//!
//! Nothing here stops the target except for the instant it takes to read
//! the registers of a thread that is running in user space (blocked threads
//! are read without touching them); see `ptrace`.
//!
//! The layers, from the session's side down:
//! - `watchdog`: [`Watchdog`], what a session drives, and its capture thread;
//! - `detector`: the policy (who is stalled, when to capture again, which
//!   captures make rows), pure;
//! - `group`: stalls grouped by where they are, and what is news, pure;
//! - `diagnose`: one capture turned into a [`StallReport`] (or a
//!   [`StaleSpan`]): the lock, its holder, the deadlock, the wait summary;
//! - `report`: the report values and their text, pure;
//! - `capture`, `unwind`, `symbolize`, `memory` and `ptrace` do
//!   the I/O; [`procfs`], `syscalls` and `futex` parse, pure and tested
//!   on literals; `existing` finds the calls already running when tracing
//!   began.

pub(crate) mod capture;
mod detector;
mod diagnose;
pub(crate) mod existing;
pub(crate) mod futex;
pub(crate) mod goroutine;
pub mod group;
pub(crate) mod memory;
pub mod procfs;
pub(crate) mod ptrace;
mod report;
pub(crate) mod symbolize;
pub(crate) mod syscalls;
pub(crate) mod unwind;
mod watchdog;

pub use capture::{Capture, CaptureStats, Capturer, RegisterSource};
pub use existing::{ProbedRanges, RunningBefore, RunningCalls, running_before_attach};
pub use futex::LockHolder;
pub use group::{
    Alone, GroupNews, NewsKind, StallGroup, StallNews, group_stalls, stall_ids, tid_list, tid_runs,
};
pub use procfs::SchedState;
pub use report::{Frame, LockWait, StaleSpan, StallReport, WaitKind, wait_summary};
pub use unwind::WalkStats;
pub use watchdog::{CAPTURE_BURST, CAPTURE_SHARE, RECAPTURE_EVERY, Watchdog, WatchdogStats};
