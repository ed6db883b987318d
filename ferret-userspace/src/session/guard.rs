//! The overhead guard: how ferret keeps tracing from swamping the target.
//!
//! `--max-rate` (the per-function cap): a function called more often than
//! the limit per second is detached, so tracing cannot swamp the target;
//! the rest stay traced. Detaching is a generation swap of the module's
//! `uprobe_multi` links ([`Engine::reattach_without`]): no call is reported
//! twice or lost while the links are replaced.

use std::collections::HashSet;

use crate::{clock::monotonic_ns, probe::Engine, trace::SpanEvent};

use super::plan::Plan;

/// The overhead guard (`--max-rate`): a function called more often than the
/// limit per second is detached, so tracing cannot swamp the target; the
/// rest stay traced.
pub struct OverheadGuard {
    max_rate: u64,
    calls: Vec<u64>,
    window_start_ns: u64,
    disabled: HashSet<u32>,
    /// (function name, calls/s when detached), in detach order.
    pub detached: Vec<(String, u64)>,
}

impl OverheadGuard {
    /// A guard for `functions` functions; `max_rate` 0 turns it off.
    pub fn new(functions: usize, max_rate: u64) -> Self {
        Self {
            max_rate,
            calls: vec![0; functions],
            window_start_ns: monotonic_ns(),
            disabled: HashSet::new(),
            detached: Vec::new(),
        }
    }

    /// Counts the calls among freshly produced span events.
    pub fn observe(&mut self, spans: &[SpanEvent]) {
        if self.max_rate == 0 {
            return;
        }
        for span in spans {
            if let SpanEvent::Start(start) = span
                && let Some(count) = self.calls.get_mut(start.function as usize)
            {
                *count += 1;
            }
        }
    }

    /// Once a second: detaches functions over the limit. Returns a notice per
    /// detached function.
    pub fn check(&mut self, engine: &mut Engine, plan: &Plan) -> Vec<String> {
        let now = monotonic_ns();
        let elapsed = now.saturating_sub(self.window_start_ns);
        if self.max_rate == 0 || elapsed < 1_000_000_000 {
            return Vec::new();
        }
        let seconds = elapsed as f64 / 1e9;
        let mut hot = Vec::new();
        for (id, count) in self.calls.iter_mut().enumerate() {
            let rate = (*count as f64 / seconds) as u64;
            *count = 0;
            let id = id as u32;
            if rate > self.max_rate && !self.disabled.contains(&id) {
                hot.push((id, rate));
            }
        }
        self.window_start_ns = now;
        if hot.is_empty() {
            return Vec::new();
        }
        let mut disabled = self.disabled.clone();
        disabled.extend(hot.iter().map(|&(id, _)| id));
        match engine.reattach_without(&plan.points, &disabled) {
            Ok(took) => {
                self.disabled = disabled;
                hot.into_iter()
                    .map(|(id, rate)| {
                        let name = plan.functions[id as usize].name.clone();
                        let notice = format!(
                            "detached `{name}`: {rate} calls/s exceeds --max-rate {} \
                             (re-attached the rest in {:.1} ms)",
                            self.max_rate,
                            took.as_secs_f64() * 1e3
                        );
                        self.detached.push((name, rate));
                        notice
                    })
                    .collect()
            }
            Err(e) => {
                // Do not retry every second.
                self.max_rate = 0;
                vec![format!("overhead guard off: {e}")]
            }
        }
    }

    /// For the recording's metadata: `name (calls/s); ...`.
    pub fn metadata(&self) -> String {
        self.detached
            .iter()
            .map(|(name, rate)| format!("{name} ({rate} calls/s)"))
            .collect::<Vec<_>>()
            .join("; ")
    }
}
