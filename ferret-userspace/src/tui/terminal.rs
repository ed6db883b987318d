//! The real terminal: raw mode, the alternate screen and mouse reporting on
//! the way in, all of it undone on every way out.
//!
//! [`TerminalGuard`] restores the terminal when dropped (normal exit, an
//! error returned with `?`, a panic unwinding through it), and a panic hook
//! restores it before the panic message is printed, so the message lands on
//! the normal screen where it can be read. Restoring twice is harmless; it
//! happens once.
//!
//! While the dashboard is up, ferret's own stderr (a warning from a library
//! being read, a debuginfod download, a function traced from the dashboard
//! that cannot carry all its probes) would scribble over the screen: it is
//! held in a pipe and printed, in order, once the terminal is restored.

use std::{
    io::{self, Read as _, Stdout, Write as _},
    os::fd::OwnedFd,
    sync::{
        Arc, Mutex, Once, PoisonError,
        atomic::{AtomicBool, Ordering},
        mpsc,
    },
    time::Duration,
};

use ratatui::{
    Terminal,
    backend::CrosstermBackend,
    crossterm::{
        cursor,
        event::{self, DisableMouseCapture, EnableMouseCapture},
        execute,
        terminal::{self, EnterAlternateScreen, LeaveAlternateScreen},
    },
};

use super::{EventSource, app::Event};
use crate::{
    live::{Mailbox, Snapshot},
    session::ProbeRequest,
};

/// Whether the terminal is in dashboard mode (and needs restoring).
static ACTIVE: AtomicBool = AtomicBool::new(false);
static HOOK: Once = Once::new();
/// The real stderr and the thread holding what was written to fd 2 while
/// the dashboard was up.
static HELD_STDERR: Mutex<Option<(OwnedFd, mpsc::Receiver<Vec<u8>>)>> = Mutex::new(None);

/// The most of ferret's stderr kept while the dashboard is up (the start
/// and the end of anything longer are printed).
const HELD_BYTES: usize = 256 * 1024;

/// The dashboard's terminal, restored when dropped.
pub struct TerminalGuard {
    terminal: Terminal<CrosstermBackend<Stdout>>,
}

impl TerminalGuard {
    /// Raw mode, alternate screen, mouse capture, hidden cursor.
    pub fn enter() -> io::Result<Self> {
        install_panic_hook();
        terminal::enable_raw_mode()?;
        ACTIVE.store(true, Ordering::SeqCst);
        hold_stderr();
        let mut stdout = io::stdout();
        if let Err(e) = execute!(
            stdout,
            EnterAlternateScreen,
            EnableMouseCapture,
            cursor::Hide
        ) {
            restore();
            return Err(e);
        }
        match Terminal::new(CrosstermBackend::new(stdout)) {
            Ok(terminal) => Ok(Self { terminal }),
            Err(e) => {
                restore();
                Err(e)
            }
        }
    }

    /// The terminal to draw on.
    pub fn terminal(&mut self) -> &mut Terminal<CrosstermBackend<Stdout>> {
        &mut self.terminal
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        restore();
    }
}

/// Puts the terminal back as it was: normal screen, cooked mode, cursor
/// shown, no mouse reporting. Does nothing if it already is.
pub fn restore() {
    if !ACTIVE.swap(false, Ordering::SeqCst) {
        return;
    }
    let mut stdout = io::stdout();
    // Best effort: on the way out there is nobody left to report to.
    let _ = execute!(
        stdout,
        DisableMouseCapture,
        LeaveAlternateScreen,
        cursor::Show
    );
    let _ = terminal::disable_raw_mode();
    let _ = stdout.flush();
    release_stderr();
}

/// Points fd 2 at a pipe drained by a thread, remembering the real stderr.
/// Best effort: if any step fails, stderr stays where it was.
fn hold_stderr() {
    let Ok(real) = rustix::io::dup(rustix::stdio::stderr()) else {
        return;
    };
    let Ok((reader, writer)) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC) else {
        return;
    };
    let (held, drained) = mpsc::channel();
    let drain = std::thread::Builder::new()
        .name("ferret-stderr".to_owned())
        .spawn(move || {
            let mut reader = std::fs::File::from(reader);
            let (mut head, mut tail) = (Vec::new(), std::collections::VecDeque::new());
            let mut buf = [0u8; 4096];
            let mut skipped = 0usize;
            while let Ok(n @ 1..) = reader.read(&mut buf) {
                for &b in &buf[..n] {
                    if head.len() < HELD_BYTES / 2 {
                        head.push(b);
                    } else {
                        tail.push_back(b);
                        if tail.len() > HELD_BYTES / 2 {
                            tail.pop_front();
                            skipped += 1;
                        }
                    }
                }
            }
            if skipped > 0 {
                head.extend_from_slice(
                    format!("ferret: … {skipped} bytes of messages left out …\n").as_bytes(),
                );
            }
            head.extend(tail);
            let _ = held.send(head);
        });
    if drain.is_err() {
        return;
    }
    if rustix::stdio::dup2_stderr(&writer).is_err() {
        // The thread ends when `writer` closes here.
        return;
    }
    drop(writer);
    *HELD_STDERR.lock().unwrap_or_else(PoisonError::into_inner) = Some((real, drained));
}

/// Puts the real stderr back and prints what was held, if it was.
fn release_stderr() {
    let Some((real, drain)) = HELD_STDERR
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take()
    else {
        return;
    };
    // The pipe's last writer was fd 2: replacing it ends the drain (unless
    // a child process started meanwhile still holds a copy: the messages
    // are then given up after a second rather than waited for).
    let _ = rustix::stdio::dup2_stderr(&real);
    if let Ok(held) = drain.recv_timeout(Duration::from_secs(1)) {
        let mut stderr = io::stderr();
        let _ = stderr.write_all(&held);
        let _ = stderr.flush();
    }
}

fn install_panic_hook() {
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore();
            previous(info);
        }));
    });
}

/// Events from the real terminal and the ingestion thread's mailbox.
pub struct TerminalEvents {
    mailbox: Arc<Mailbox>,
    seen: Arc<Snapshot>,
    requests: Option<tokio::sync::mpsc::UnboundedSender<ProbeRequest>>,
}

impl TerminalEvents {
    /// Reads keys, mouse and resizes from the terminal and snapshots from
    /// `mailbox`.
    pub fn new(mailbox: Arc<Mailbox>) -> Self {
        let seen = mailbox.latest();
        Self {
            mailbox,
            seen,
            requests: None,
        }
    }

    /// The same, handing what the user asks for (trace, detach) to the
    /// session through `requests`.
    #[must_use]
    pub fn with_requests(
        mut self,
        requests: tokio::sync::mpsc::UnboundedSender<ProbeRequest>,
    ) -> Self {
        self.requests = Some(requests);
        self
    }

    fn new_snapshot(&mut self) -> Option<Event> {
        let latest = self.mailbox.latest();
        if Arc::ptr_eq(&latest, &self.seen) {
            return None;
        }
        self.seen = latest.clone();
        Some(Event::Snapshot(latest))
    }
}

impl EventSource for TerminalEvents {
    fn next(&mut self, timeout: Duration) -> io::Result<Option<Event>> {
        if let Some(snapshot) = self.new_snapshot() {
            return Ok(Some(snapshot));
        }
        if event::poll(timeout)? {
            return Ok(match event::read()? {
                event::Event::Key(key) => Some(Event::Key(key)),
                event::Event::Mouse(mouse) => Some(Event::Mouse(mouse)),
                event::Event::Resize(w, h) => Some(Event::Resize(w, h)),
                _ => None,
            }
            .or_else(|| self.new_snapshot()));
        }
        Ok(self.new_snapshot())
    }

    fn send(&mut self, request: ProbeRequest) {
        if let Some(requests) = &self.requests {
            // The session may be over already; then nothing is to be done.
            let _ = requests.send(request);
        }
    }

    fn now_ns(&mut self) -> u64 {
        crate::clock::monotonic_ns()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_written_while_the_dashboard_is_up_come_after_it() {
        // fd 2 into a file, so what reaches "the real stderr" can be read.
        use std::os::fd::AsRawFd as _;
        let file = tempfile::tempfile().unwrap();
        let path = format!("/proc/self/fd/{}", file.as_raw_fd());
        let before = rustix::io::dup(rustix::stdio::stderr()).unwrap();
        rustix::stdio::dup2_stderr(&file).unwrap();
        hold_stderr();
        rustix::io::write(rustix::stdio::stderr(), b"ferret: warning: while drawing\n").unwrap();
        let during = std::fs::read_to_string(&path).unwrap();
        release_stderr();
        rustix::io::write(rustix::stdio::stderr(), b"ferret: after\n").unwrap();
        rustix::stdio::dup2_stderr(&before).unwrap();
        let after = std::fs::read_to_string(&path).unwrap();
        assert!(!during.contains("while drawing"), "held: {during:?}");
        assert!(
            after.contains("ferret: warning: while drawing\nferret: after\n"),
            "printed once restored, in order: {after:?}"
        );
    }
}
