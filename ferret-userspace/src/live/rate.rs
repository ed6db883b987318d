//! Rates over the last few seconds (calls/s, events/s), in fixed memory.
//!
//! A lifetime average hides what is happening now, and an instantaneous rate
//! jumps about; a dashboard wants "about how many per second, lately".
//! Counts go into one-second buckets keyed by the timestamp; the rate is what
//! the last [`WINDOW_SECS`] seconds (the current one partly) hold, divided
//! by the time they span.

/// How far back a rate looks, in whole seconds before the current one.
pub const WINDOW_SECS: u64 = 4;
/// Buckets kept: the window plus the current second.
const SLOTS: usize = WINDOW_SECS as usize + 1;
const NS: u64 = 1_000_000_000;

/// Counts per second over a short sliding window.
#[derive(Clone, Debug, Default)]
pub struct RateWindow {
    counts: [u64; SLOTS],
    /// The second (`ts_ns / 1e9`) the newest bucket belongs to.
    newest: u64,
}

impl RateWindow {
    /// An empty window.
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts `n` things happening at `ts_ns`. Timestamps older than the
    /// window are dropped; slightly out-of-order ones (events of different
    /// CPUs) land in their own second.
    pub fn add(&mut self, ts_ns: u64, n: u64) {
        let second = ts_ns / NS;
        self.advance(second);
        if second + WINDOW_SECS < self.newest {
            return;
        }
        self.counts[(second % SLOTS as u64) as usize] += n;
    }

    /// The rate per second at `now_ns`, over the window or since `since_ns`
    /// (the start of counting) when that is more recent, so a fresh start
    /// is not diluted by seconds in which nothing could be counted.
    pub fn per_second(&self, now_ns: u64, since_ns: u64) -> f64 {
        let second = now_ns / NS;
        let oldest = second.saturating_sub(WINDOW_SECS);
        let total: u64 = (oldest..=second)
            .filter(|&s| s <= self.newest && s + WINDOW_SECS >= self.newest)
            .map(|s| self.counts[(s % SLOTS as u64) as usize])
            .sum();
        let window_start = (oldest * NS).max(since_ns);
        let span_ns = now_ns.saturating_sub(window_start).max(NS / 10);
        total as f64 * NS as f64 / span_ns as f64
    }

    /// Moves the newest bucket to `second`, clearing the ones skipped.
    fn advance(&mut self, second: u64) {
        if second <= self.newest {
            return;
        }
        let steps = (second - self.newest).min(SLOTS as u64);
        for s in 1..=steps {
            self.counts[((self.newest + s) % SLOTS as u64) as usize] = 0;
        }
        self.newest = second;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = NS;

    #[test]
    fn steady_stream() {
        let mut r = RateWindow::new();
        // 100 per second for 10 s.
        for i in 0..1000 {
            r.add(100 * S + i * S / 100, 1);
        }
        let rate = r.per_second(110 * S, 100 * S);
        assert!((rate - 100.0).abs() < 1.0, "{rate}");
    }

    #[test]
    fn fresh_start_is_not_diluted() {
        let mut r = RateWindow::new();
        for i in 0..50 {
            r.add(100 * S + i * S / 100, 1);
        }
        // Half a second of counting at 100/s.
        let rate = r.per_second(100 * S + S / 2, 100 * S);
        assert!((rate - 100.0).abs() < 1.0, "{rate}");
    }

    #[test]
    fn decays_to_zero_when_quiet() {
        let mut r = RateWindow::new();
        r.add(100 * S, 500);
        assert!(r.per_second(101 * S, 90 * S) > 0.0);
        assert!(r.per_second(100 * S + (WINDOW_SECS + 1) * S, 90 * S).abs() < f64::EPSILON);
        // Counting resumes cleanly after a long gap.
        r.add(200 * S, 3);
        let rate = r.per_second(200 * S + S / 2, 90 * S);
        assert!(rate > 0.0 && rate < 10.0, "{rate}");
    }

    #[test]
    fn late_timestamps_in_the_window_count_and_older_ones_do_not() {
        let mut r = RateWindow::new();
        r.add(100 * S, 1);
        r.add(99 * S, 1);
        r.add(10 * S, 1000);
        let rate = r.per_second(100 * S + S / 2, 0);
        assert!((rate - 2.0 / 4.5).abs() < 1e-9, "{rate}");
    }
}
