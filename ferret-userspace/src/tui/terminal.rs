//! The real terminal: raw mode, the alternate screen and mouse reporting on
//! the way in, all of it undone on every way out.
//!
//! [`TerminalGuard`] restores the terminal when dropped (normal exit, an
//! error returned with `?`, a panic unwinding through it), and a panic hook
//! restores it before the panic message is printed, so the message lands on
//! the normal screen where it can be read. Restoring twice is harmless; it
//! happens once.

use std::{
    io::{self, Stdout, Write as _},
    sync::{
        Arc, Once,
        atomic::{AtomicBool, Ordering},
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
