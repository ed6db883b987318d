//! A progress bar for long reads, on stderr, only on a terminal.
//!
//! Most recordings are read in well under a second, where a bar would only
//! flicker; the bar appears once a read has taken [`DELAY`], and never when
//! stderr is not a terminal (pipes, CI logs, tests).

use std::io::IsTerminal as _;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How long a read runs before the bar is shown.
pub const DELAY: Duration = Duration::from_millis(700);

/// Rows-read progress of one pass over a recording.
#[derive(Debug)]
pub struct Progress {
    bar: ProgressBar,
    started: Instant,
    /// Whether stderr is a terminal (the bar may ever be shown).
    enabled: bool,
    shown: bool,
}

impl Progress {
    /// A bar for reading `total_rows` rows, labelled `what`; hidden until
    /// `DELAY` has passed.
    pub fn new(total_rows: u64, what: &str) -> Self {
        let bar = ProgressBar::with_draw_target(Some(total_rows), ProgressDrawTarget::hidden());
        if let Ok(style) = ProgressStyle::with_template(
            "{msg} [{bar:30}] {percent:>3}%  {human_pos}/{human_len} rows  {elapsed} (eta {eta})",
        ) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_message(what.to_owned());
        Self {
            bar,
            started: Instant::now(),
            enabled: std::io::stderr().is_terminal(),
            shown: false,
        }
    }

    /// A bar that is never shown.
    pub fn hidden() -> Self {
        let mut p = Self::new(0, "");
        p.enabled = false;
        p
    }

    /// `rows` rows have been read.
    pub fn update(&mut self, rows: u64) {
        if !self.enabled {
            return;
        }
        if !self.shown && self.started.elapsed() >= DELAY {
            self.bar.set_draw_target(ProgressDrawTarget::stderr());
            self.shown = true;
        }
        self.bar.set_position(rows);
    }

    /// Remove the bar (before printing results).
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        // An error return must not leave a half-drawn bar above the message.
        self.bar.finish_and_clear();
    }
}
