//! The live dashboard of `ferret watch`: state → event → view.
//!
//! `app::App` holds the state and changes only in `app::App::update`,
//! fed one `app::Event` at a time; `view` draws it (`impl Widget for
//! &App`) and does nothing else; `terminal` owns the real terminal (raw
//! mode, alternate screen, mouse) and puts it back on every way out, panics
//! included. [`run`] ties them together and is generic over the ratatui
//! backend and the event source, so tests drive it with a `TestBackend` and
//! a scripted list of events.
//!
//! The dashboard never computes anything from the event stream itself: it
//! draws [`crate::live::Snapshot`]s that the ingestion thread publishes, and
//! waits on nothing but the terminal (at most [`FRAME`] at a time).

pub(crate) mod app;
pub(crate) mod format;
pub(crate) mod layout;
pub(crate) mod terminal;
pub(crate) mod view;

use std::{io, time::Duration};

use ratatui::{Terminal, backend::Backend, layout::Rect};

use self::app::{App, Event};
use crate::session::ProbeRequest;

/// The longest the dashboard waits before drawing again: elapsed times tick
/// at least this often, and a new snapshot shows within it.
pub const FRAME: Duration = Duration::from_millis(100);

/// Where events come from: the terminal and the ingestion thread in real
/// use, a script in tests.
pub trait EventSource {
    /// The next event, waiting at most `timeout`; `None` if nothing came.
    fn next(&mut self, timeout: Duration) -> io::Result<Option<Event>>;

    /// `CLOCK_MONOTONIC` ns now.
    fn now_ns(&mut self) -> u64;

    /// Hands what the user asked for (trace or detach a function) to the
    /// session; a source without one ignores it.
    fn send(&mut self, _request: ProbeRequest) {}
}

/// Draws and updates until the user quits (or the session asks to close).
///
/// Each turn: tick the clock, draw, then wait up to [`FRAME`] for an event
/// and apply it together with any others already waiting, so a burst of
/// key repeats or wheel steps costs one frame.
pub fn run<B, E>(terminal: &mut Terminal<B>, app: &mut App, events: &mut E) -> io::Result<()>
where
    B: Backend,
    B::Error: std::error::Error + Send + Sync + 'static,
    E: EventSource,
{
    loop {
        let size = terminal.size().map_err(io::Error::other)?;
        if Rect::new(0, 0, size.width, size.height) != app.size {
            app.update(Event::Resize(size.width, size.height));
        }
        app.update(Event::Tick(events.now_ns()));
        terminal
            .draw(|frame| frame.render_widget(&*app, frame.area()))
            .map_err(io::Error::other)?;
        if app.should_quit() {
            return Ok(());
        }
        let mut timeout = FRAME;
        while let Some(event) = events.next(timeout)? {
            app.update(event);
            for request in app.take_requests() {
                events.send(request);
            }
            if app.should_quit() {
                return Ok(());
            }
            timeout = Duration::ZERO;
        }
    }
}
