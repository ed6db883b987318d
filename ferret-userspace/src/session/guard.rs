//! The overhead guard: how ferret keeps tracing from swamping the target.
//!
//! Two limits, checked every [`super::GUARD_EVERY`]:
//! - `--max-overhead PERCENT` (the budget, default 5): ferret estimates the
//!   time its probes take from the target's threads (calls × the calibrated
//!   cost of each function's probes, see [`crate::cost`]) against the time
//!   the target spends on its own work (its CPU time less that estimate,
//!   and never less than a tenth of one CPU: see [`MIN_OWN_CPU_SHARE`]).
//!   When the estimate stays over the budget for two checks in a row (about
//!   half a second), the functions that cost most are detached until the
//!   rest fit. A target that calls a few hundred tiny functions flat out
//!   loses them in the first half second; a slow function called now and
//!   then stays traced. This is what keeps `-s '*'` from slowing a program
//!   down by an order of magnitude, which no per-function rate can: the
//!   slowdown itself keeps every function's rate low.
//! - `--max-rate` (the per-function cap): a function called more often than
//!   the limit per second is detached.
//!
//! Detaching is a generation swap of the module's `uprobe_multi` links
//! ([`Engine::reattach_without`]): no call is reported twice or lost while
//! the links are replaced, and the functions still traced keep exact counts.

use std::{collections::HashSet, collections::VecDeque, sync::Arc};

use crate::{
    clock::monotonic_ns,
    metrics,
    probe::Engine,
    trace::{FunctionCost, SpanEvent},
};

use super::plan::Plan;

/// Checks kept for the budget's estimate (four seconds at the guard's pace).
const BUCKETS: usize = 16;

/// The estimate covers the newest checks holding at least this much of the
/// target's CPU time (or all it keeps): short windows for a busy target, so
/// the guard acts within half a second, long ones for a quiet one, so one
/// clock tick of CPU time more or less does not decide.
const WINDOW_CPU_NS: u64 = 250_000_000;

/// The least share of one CPU an estimate assumes the target used over its
/// window: a target that mostly waits (a server at 20 requests a second
/// uses a few ms of CPU a second) is judged as if it used a tenth of a CPU,
/// so probes taking under half a percent of one CPU (at the default 5 %)
/// are never detached. Without it, four functions of a request handler at
/// 22 calls a second each (about 2 ms of probes a second) read 6 % of such
/// a program's own time and two of them were detached. It also keeps the
/// least own time of a one-check window (25 ms) above a few clock ticks,
/// the granularity of the kernel's CPU times in /proc (10 ms here), so a
/// quiet target's tick more or less does not decide.
const MIN_OWN_CPU_SHARE: f64 = 0.1;

/// The budget's id for the scheduler hooks that keep the split of each
/// call's time (see [`crate::probe::Engine::attach_sched`]), weighed beside
/// the functions: when they are what costs most, the split is turned off
/// rather than functions detached.
pub const SCHED_HOOKS: u32 = u32::MAX;

/// What one run of a scheduler program on a traced thread costs that
/// thread (a switch out, a switch in or a wakeup of it), counted by the
/// kernel side ([`ferret_common::counts::SCHED_HOOKS`]). From `cargo xtask
/// bench --only sched`: two traced threads ping-ponging 48k switches a
/// second ran 11.6 % slower, 2.4 µs per switch as they saw it, and each
/// switch between them is three hook runs (the wakeup, the switch out, the
/// switch in); the programs' own time (BPF statistics: 426 ns a switch,
/// 222 ns a wakeup) is a third of it, the rest is the cache and the
/// tracepoint machinery they bring into the switch.
pub const SCHED_HOOK_NS: u64 = 800;

/// The budget's id for the Go scheduler's hand-off probes (see
/// [`ferret_common::go_sched`]), weighed with the scheduler hooks: when
/// either costs most, the split is turned off and these are detached.
pub const GO_HAND_OFFS: u32 = u32::MAX - 1;

/// What one hit of a Go hand-off probe costs the target: a uprobe trap. A
/// channel ping-pong on GOMAXPROCS=1 (two probe hits per switch) went from
/// 98 ns to 19.5 µs a switch on this project's VM.
pub const GO_HAND_OFF_NS: u64 = 9_700;

/// One check's worth of what the budget weighs.
#[derive(Debug)]
struct Bucket {
    /// The target's CPU time in it.
    cpu_ns: u64,
    /// The probes' estimated time in it.
    probe_ns: u64,
    /// Calls per function, where non-zero.
    calls: Vec<(u32, u64)>,
}

/// `--max-overhead`: the estimate and the choice of what to detach (pure;
/// the guard feeds it calls and CPU times).
#[derive(Debug)]
pub struct Budget {
    /// Percent of the target's own time; 0: off.
    percent: f64,
    costs: Arc<[FunctionCost]>,
    /// Calls per function since the last check.
    current: Vec<u64>,
    /// Scheduler hook runs since the last check.
    sched_hooks: u64,
    /// Go hand-off probe hits since the last check.
    go_hand_offs: u64,
    buckets: VecDeque<Bucket>,
    /// Consecutive checks over the budget.
    over: u32,
    /// Checks over the budget that decide: two (half a second) at first;
    /// one right after a detach, whose estimate has proved itself.
    needed: u32,
    estimate: Option<f64>,
}

/// What the budget decided at a check.
#[derive(Debug, PartialEq)]
pub struct OverBudget {
    /// The estimate that decided it, percent of the target's own time.
    pub estimate: f64,
    /// Functions to detach, costliest first, with their calls per second.
    pub functions: Vec<(u32, u64)>,
}

impl Budget {
    /// A budget of `percent` for `functions` functions whose calls cost
    /// `costs` (by function id).
    pub fn new(percent: f64, functions: usize, costs: Arc<[FunctionCost]>) -> Self {
        Self {
            percent,
            costs,
            current: vec![0; functions],
            sched_hooks: 0,
            go_hand_offs: 0,
            buckets: VecDeque::with_capacity(BUCKETS),
            over: 0,
            needed: 2,
            estimate: None,
        }
    }

    /// New calibrated costs (a recalibration).
    pub fn set_costs(&mut self, costs: Arc<[FunctionCost]>) {
        self.costs = costs;
    }

    /// The probe table grew to `functions` entries.
    pub fn grow(&mut self, functions: usize) {
        if self.current.len() < functions {
            self.current.resize(functions, 0);
        }
    }

    /// Whether the budget is on.
    pub fn is_on(&self) -> bool {
        self.percent > 0.0
    }

    /// One call of `function`.
    #[inline]
    pub fn call(&mut self, function: u32) {
        if let Some(count) = self.current.get_mut(function as usize) {
            *count += 1;
        }
    }

    /// `hooks` more runs of the scheduler programs on the target's threads.
    pub fn sched_hooks(&mut self, hooks: u64) {
        self.sched_hooks += hooks;
    }

    /// `hits` more hits of the Go scheduler's hand-off probes.
    pub fn go_hand_offs(&mut self, hits: u64) {
        self.go_hand_offs += hits;
    }

    /// What one hit of budget id `id` costs: a call of a function, or a
    /// scheduler hook run ([`SCHED_HOOKS`]).
    fn hit_ns(&self, id: u32) -> u64 {
        if id == SCHED_HOOKS {
            SCHED_HOOK_NS
        } else if id == GO_HAND_OFFS {
            GO_HAND_OFF_NS
        } else {
            self.costs.get(id as usize).map_or(0, |c| c.hit_ns)
        }
    }

    /// The newest estimate: ferret's probes as a percentage of the target's
    /// own time.
    pub fn estimate(&self) -> Option<f64> {
        self.estimate
    }

    /// Closes a check that saw `cpu_ns` of the target's CPU time; returns
    /// what to detach when the estimate stayed over the budget for two
    /// checks in a row.
    pub fn check(&mut self, cpu_ns: u64) -> Option<OverBudget> {
        let mut calls = Vec::new();
        let mut probe_ns = 0u64;
        for (id, count) in self.current.iter_mut().enumerate() {
            if *count > 0 {
                let hit = self.costs.get(id).map_or(0, |c| c.hit_ns);
                probe_ns = probe_ns.saturating_add(count.saturating_mul(hit));
                calls.push((id as u32, *count));
                *count = 0;
            }
        }
        if self.sched_hooks > 0 {
            probe_ns = probe_ns.saturating_add(self.sched_hooks.saturating_mul(SCHED_HOOK_NS));
            calls.push((SCHED_HOOKS, self.sched_hooks));
            self.sched_hooks = 0;
        }
        if self.go_hand_offs > 0 {
            probe_ns = probe_ns.saturating_add(self.go_hand_offs.saturating_mul(GO_HAND_OFF_NS));
            calls.push((GO_HAND_OFFS, self.go_hand_offs));
            self.go_hand_offs = 0;
        }
        if self.buckets.len() == BUCKETS {
            self.buckets.pop_front();
        }
        self.buckets.push_back(Bucket {
            cpu_ns,
            probe_ns,
            calls,
        });
        // The newest checks (at least two) holding enough CPU time.
        let mut window = 0;
        let (mut cpu, mut probe) = (0u64, 0u64);
        for bucket in self.buckets.iter().rev() {
            window += 1;
            cpu += bucket.cpu_ns;
            probe += bucket.probe_ns;
            if window >= 2 && cpu >= WINDOW_CPU_NS {
                break;
            }
        }
        let floor =
            (window as f64 * super::GUARD_EVERY.as_nanos() as f64 * MIN_OWN_CPU_SHARE) as u64;
        let own = cpu.saturating_sub(probe).max(floor);
        let estimate = probe as f64 * 100.0 / own as f64;
        self.estimate = Some(estimate);
        if !self.is_on() || estimate <= self.percent {
            self.over = 0;
            return None;
        }
        self.over += 1;
        if self.over < self.needed {
            return None;
        }
        // The costliest functions first, until the rest fit.
        let mut cost: std::collections::HashMap<u32, (u64, u64)> = std::collections::HashMap::new();
        for bucket in self.buckets.iter().rev().take(window) {
            for &(id, count) in &bucket.calls {
                let hit = self.hit_ns(id);
                let entry = cost.entry(id).or_default();
                entry.0 += count * hit;
                entry.1 += count;
            }
        }
        let mut ranked: Vec<(u32, u64, u64)> =
            cost.into_iter().map(|(id, (ns, n))| (id, ns, n)).collect();
        ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        // Half the budget: the functions kept run faster once the others
        // are gone, and the estimate of the target's own time is the
        // least certain part (its CPU time less an estimate).
        let allowed = (self.percent / 200.0 * own as f64) as u64;
        let seconds = (window as f64 * super::GUARD_EVERY.as_secs_f64()).max(1e-3);
        let mut left = probe;
        let mut functions = Vec::new();
        for (id, ns, n) in ranked {
            if left <= allowed {
                break;
            }
            // The split goes only when it is what costs most: behind
            // costlier functions, the functions make room instead (the
            // next checks weigh it again without them).
            if (id == SCHED_HOOKS || id == GO_HAND_OFFS) && !functions.is_empty() {
                continue;
            }
            left = left.saturating_sub(ns);
            functions.push((id, (n as f64 / seconds).round() as u64));
        }
        self.over = 0;
        self.needed = 1;
        // What was measured with the detached functions says nothing of
        // what comes next.
        self.buckets.clear();
        Some(OverBudget {
            estimate,
            functions,
        })
    }
}

/// A function the guard detached, and why.
#[derive(Clone, Debug)]
pub struct Detached {
    /// Its name.
    pub name: String,
    /// Its calls per second when detached.
    pub rate: u64,
    /// `--max-rate` or `--max-overhead`.
    pub why: &'static str,
}

/// The guard: the budget and the per-function cap, and the functions they
/// detached.
pub struct OverheadGuard {
    max_rate: u64,
    rate_calls: Vec<u64>,
    window_start_ns: u64,
    budget: Budget,
    /// The target, whose CPU time the budget weighs.
    pid: u32,
    /// The target's CPU time at the last check.
    last_check: Option<u64>,
    ticks_ns: u64,
    disabled: HashSet<u32>,
    /// The functions detached, in detach order.
    pub detached: Vec<Detached>,
    /// The guard gave up (detaching needs `uprobe_multi` links).
    off: bool,
    /// The scheduler hooks' run count at the last check, while they run.
    sched_hooks: Option<u64>,
    /// The kernel side's count of Go hand-off probe hits at the last check.
    go_hand_offs: Option<u64>,
    /// Why the split of time was turned off, if the budget did.
    pub sched_stopped: Option<String>,
}

impl OverheadGuard {
    /// A guard for `functions` functions of process `pid`; `max_rate` 0
    /// and `max_overhead` 0 turn the two limits off.
    pub fn new(
        pid: u32,
        functions: usize,
        max_rate: u64,
        max_overhead: f64,
        costs: Arc<[FunctionCost]>,
    ) -> Self {
        let ticks_ns = 1_000_000_000 / rustix::param::clock_ticks_per_second().max(1);
        Self {
            max_rate,
            rate_calls: vec![0; functions],
            window_start_ns: monotonic_ns(),
            budget: Budget::new(max_overhead, functions, costs),
            pid,
            // From the start, so the first check already weighs.
            last_check: cpu_time_ns(pid, ticks_ns),
            ticks_ns,
            disabled: HashSet::new(),
            detached: Vec::new(),
            off: false,
            sched_hooks: None,
            go_hand_offs: None,
            sched_stopped: None,
        }
    }

    /// New calibrated costs.
    pub fn set_costs(&mut self, costs: Arc<[FunctionCost]>) {
        self.budget.set_costs(costs);
    }

    /// The probe table grew to `functions` entries (functions traced while
    /// the session runs): their calls count from now on.
    pub fn grow(&mut self, functions: usize) {
        if self.rate_calls.len() < functions {
            self.rate_calls.resize(functions, 0);
        }
        self.budget.grow(functions);
    }

    /// The functions detached so far, by a limit or by the user; the
    /// guard's own swaps leave them out.
    pub fn disabled(&self) -> &HashSet<u32> {
        &self.disabled
    }

    /// The functions detached from now on (the user detached or re-traced
    /// some: see `session::retrace`).
    pub fn set_disabled(&mut self, disabled: HashSet<u32>) {
        self.disabled = disabled;
    }

    /// The budget's newest estimate, percent of the target's own time, and
    /// the budget (`None` when off).
    pub fn estimate(&self) -> (Option<f64>, Option<f64>) {
        (
            self.budget.estimate(),
            self.budget.is_on().then_some(self.budget.percent),
        )
    }

    /// Counts the calls among freshly produced span events.
    pub fn observe(&mut self, spans: &[SpanEvent]) {
        if self.off || (self.max_rate == 0 && !self.budget.is_on()) {
            return;
        }
        for span in spans {
            // A call adopted at attach (already running) fired no entry
            // probe: a thousand of them at once are no hot function.
            if let SpanEvent::Start(start) = span
                && !start.before_attach
            {
                if let Some(count) = self.rate_calls.get_mut(start.function as usize) {
                    *count += 1;
                }
                self.budget.call(start.function);
            }
        }
    }

    /// Every [`super::GUARD_EVERY`]: detaches what is over a limit. Returns
    /// a notice per decision.
    pub fn check(&mut self, engine: &mut Engine, plan: &Plan) -> Vec<String> {
        if self.off {
            return Vec::new();
        }
        let now = monotonic_ns();
        let mut hot: Vec<(u32, u64, &'static str)> = Vec::new();
        let mut notices = Vec::new();

        if engine.sched_on()
            && let Ok(hooks) = engine.count(ferret_common::counts::SCHED_HOOKS)
        {
            let then = self.sched_hooks.replace(hooks).unwrap_or(hooks);
            self.budget.sched_hooks(hooks.saturating_sub(then));
        }
        if let Ok(hits) = engine.count(ferret_common::counts::GO_HAND_OFFS) {
            let then = self.go_hand_offs.replace(hits).unwrap_or(hits);
            self.budget.go_hand_offs(hits.saturating_sub(then));
        }
        let cpu = cpu_time_ns(self.pid, self.ticks_ns);
        if let (Some(cpu), Some(then_cpu)) = (cpu, self.last_check)
            && let Some(over) = self.budget.check(cpu.saturating_sub(then_cpu))
        {
            let (sched, functions): (Vec<_>, Vec<_>) = over
                .functions
                .into_iter()
                .partition(|&(id, _)| id == SCHED_HOOKS || id == GO_HAND_OFFS);
            if let Some(&(id, rate)) = sched.first() {
                if engine.sched_on() {
                    notices.push(self.stop_sched(engine, over.estimate, id, rate));
                }
                // The hand-off probes cost their trap whether or not the
                // split is on: they go with it.
                hot.extend(
                    plan.points
                        .iter()
                        .enumerate()
                        .filter(|(_, p)| p.go_sched != 0)
                        .map(|(i, _)| u32::try_from(i).expect("fewer than 2^32 points"))
                        .filter(|i| !self.disabled.contains(i))
                        .map(|i| (i, rate, "--max-overhead")),
                );
            }
            let fresh: Vec<(u32, u64)> = functions
                .into_iter()
                .filter(|(id, _)| !self.disabled.contains(id))
                .collect();
            if !fresh.is_empty() {
                let costliest: Vec<String> = fresh
                    .iter()
                    .take(3)
                    .map(|&(id, rate)| format!("{} ({rate} calls/s)", name(plan, id)))
                    .collect();
                notices.push(format!(
                    "detaching {} function{} to keep within --max-overhead {}%: the \
                     probes took an estimated {:.0}% of the target's own time; costliest: {}",
                    fresh.len(),
                    if fresh.len() == 1 { "" } else { "s" },
                    self.budget.percent,
                    over.estimate,
                    costliest.join(", ")
                ));
                hot.extend(
                    fresh
                        .into_iter()
                        .map(|(id, rate)| (id, rate, "--max-overhead")),
                );
            }
        }
        if cpu.is_some() {
            self.last_check = cpu;
        }

        let elapsed = now.saturating_sub(self.window_start_ns);
        if elapsed >= 1_000_000_000 {
            let seconds = elapsed as f64 / 1e9;
            for (id, count) in self.rate_calls.iter_mut().enumerate() {
                let rate = (*count as f64 / seconds) as u64;
                *count = 0;
                let id = id as u32;
                if self.max_rate > 0
                    && rate > self.max_rate
                    && !self.disabled.contains(&id)
                    && !hot.iter().any(|h| h.0 == id)
                {
                    hot.push((id, rate, "--max-rate"));
                }
            }
            self.window_start_ns = now;
        }
        if hot.is_empty() {
            return notices;
        }
        let mut disabled = self.disabled.clone();
        disabled.extend(hot.iter().map(|&(id, ..)| id));
        let pid = self.pid;
        match engine.reattach_without(&plan.points, &disabled, || {
            crate::target::freeze::running_threads(pid)
        }) {
            Ok(took) => {
                self.disabled = disabled;
                for (id, rate, why) in hot {
                    let name = name(plan, id);
                    if why == "--max-rate" {
                        notices.push(format!(
                            "detached `{name}`: {rate} calls/s exceeds --max-rate {} \
                             (re-attached the rest in {:.1} ms)",
                            self.max_rate,
                            took.as_secs_f64() * 1e3
                        ));
                    }
                    self.detached.push(Detached { name, rate, why });
                }
            }
            Err(e) => {
                // Do not retry every check.
                self.off = true;
                notices.push(format!("overhead guard off: {e}"));
            }
        }
        notices
    }

    /// Turns the split of time off: the scheduler hooks, at `rate` runs a
    /// second, were the costliest part of an `estimate` over the budget.
    fn stop_sched(&mut self, engine: &mut Engine, estimate: f64, id: u32, rate: u64) -> String {
        self.sched_hooks = None;
        let what = if id == GO_HAND_OFFS {
            format!("Go scheduler hand-off probe hits/s at {GO_HAND_OFF_NS} ns each")
        } else {
            format!("scheduler hook runs/s on the target's threads at {SCHED_HOOK_NS} ns each")
        };
        let why = format!(
            "{rate} {what}, the costliest part of an estimated {estimate:.0}% of the target's \
             own time (--max-overhead {}%)",
            self.budget.percent
        );
        let notice = match engine.stop_sched() {
            Ok(()) => format!(
                "stopped splitting calls' time into CPU / runnable / blocked (calls from now \
                 on have none): {why}"
            ),
            Err(e) => format!(
                "could not stop the scheduler hooks ({}): {why}",
                anyhow::Error::new(e)
            ),
        };
        self.sched_stopped = Some(why);
        notice
    }

    /// For the recording's metadata: `name (calls/s); ...`, with the limit
    /// for functions the budget detached.
    pub fn metadata(&self) -> String {
        self.detached
            .iter()
            .map(|d| match d.why {
                "--max-rate" => format!("{} ({} calls/s)", d.name, d.rate),
                why => format!("{} ({} calls/s, {why})", d.name, d.rate),
            })
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// The process's CPU time so far, ns.
fn cpu_time_ns(pid: u32, ticks_ns: u64) -> Option<u64> {
    metrics::read_stat(pid)
        .ok()
        .map(|s| (s.utime_ticks + s.stime_ticks) * ticks_ns)
}

fn name(plan: &Plan, id: u32) -> String {
    plan.functions
        .get(id as usize)
        .map_or_else(|| format!("#{id}"), |f| f.name.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    fn costs(hits: &[u64]) -> Arc<[FunctionCost]> {
        hits.iter()
            .map(|&hit_ns| FunctionCost {
                hit_ns,
                bias_ns: hit_ns / 2,
                entry_ns: hit_ns / 2,
            })
            .collect()
    }

    fn calls(budget: &mut Budget, function: u32, n: u64) {
        for _ in 0..n {
            budget.call(function);
        }
    }

    #[test]
    fn a_program_swamped_by_probes_loses_its_costliest_functions_after_two_checks() {
        // Function 0: 20 µs probes, called 20,000 times a check (400 ms);
        // function 1 a little less; function 2 is slow and rare.
        let mut budget = Budget::new(5.0, 3, costs(&[20_000, 20_000, 20_000]));
        let check = |budget: &mut Budget| {
            calls(budget, 0, 20_000);
            calls(budget, 1, 5_000);
            calls(budget, 2, 2);
            // The target is on a CPU all the time: 250 ms a check, of which
            // 500 ms of probes is more than all of it.
            budget.check(250 * MS)
        };
        assert_eq!(check(&mut budget), None, "one check over is not enough");
        assert!(budget.estimate().unwrap() > 1000.0);
        let over = check(&mut budget).expect("over the budget twice");
        let ids: Vec<u32> = over.functions.iter().map(|f| f.0).collect();
        assert_eq!(ids, [0, 1], "the slow, rare function stays");
        assert_eq!(over.functions[0].1, 80_000, "calls per second");
    }

    #[test]
    fn scheduler_hooks_that_cost_most_turn_the_split_off_and_leave_the_functions() {
        // A target switching ~48k times a second (three hook runs each, as
        // the bench's ping-pong): 36k hook runs a check, 28.8 ms at 800 ns,
        // in 250 ms of CPU; its one traced function is called 10 times.
        let mut budget = Budget::new(5.0, 1, costs(&[20_000]));
        let check = |budget: &mut Budget| {
            calls(budget, 0, 10);
            budget.sched_hooks(36_000);
            budget.check(250 * MS)
        };
        assert_eq!(check(&mut budget), None, "one check over is not enough");
        let estimate = budget.estimate().unwrap();
        assert!((12.0..14.0).contains(&estimate), "{estimate}");
        let over = check(&mut budget).expect("over the budget twice");
        assert_eq!(
            over.functions,
            [(SCHED_HOOKS, 144_000)],
            "the hooks alone, with their runs a second"
        );
    }

    #[test]
    fn go_hand_off_probes_are_charged_at_a_uprobe_each_and_come_first() {
        // A Go program switching goroutines 10k times a second: 5k hand-off
        // hits a check (48.5 ms at 9.7 µs) and the hooks of its threads'
        // switches (1.2 ms) in 250 ms of CPU.
        let mut budget = Budget::new(5.0, 1, costs(&[20_000]));
        let check = |budget: &mut Budget| {
            calls(budget, 0, 10);
            budget.go_hand_offs(5_000);
            budget.sched_hooks(1_500);
            budget.check(250 * MS)
        };
        assert_eq!(check(&mut budget), None, "one check over is not enough");
        let estimate = budget.estimate().unwrap();
        assert!((24.0..26.0).contains(&estimate), "{estimate}");
        let over = check(&mut budget).expect("over the budget twice");
        assert_eq!(over.functions, [(GO_HAND_OFFS, 20_000)]);
    }

    #[test]
    fn a_split_cheaper_than_the_functions_stays_while_they_go() {
        // Seen on gofmt with `-s 'go/*'`: the functions' probes took seven
        // times the target's time, the hand-offs (210 hits a second) a
        // fraction of one per cent of it.
        let mut budget = Budget::new(5.0, 2, costs(&[20_000, 20_000]));
        let check = |budget: &mut Budget| {
            calls(budget, 0, 10_000);
            calls(budget, 1, 2_000);
            budget.go_hand_offs(50);
            budget.sched_hooks(300);
            budget.check(250 * MS)
        };
        assert_eq!(check(&mut budget), None, "one check over is not enough");
        let over = check(&mut budget).expect("over the budget twice");
        let ids: Vec<u32> = over.functions.iter().map(|f| f.0).collect();
        assert_eq!(ids, [0, 1], "the functions go, the split stays");
    }

    #[test]
    fn scheduler_hooks_of_a_target_that_seldom_switches_stay() {
        // 1,000 switches a second: 750 hook runs a check, 0.6 ms in 250 ms.
        let mut budget = Budget::new(5.0, 1, costs(&[20_000]));
        for _ in 0..BUCKETS {
            budget.sched_hooks(750);
            assert_eq!(budget.check(250 * MS), None);
        }
        let estimate = budget.estimate().unwrap();
        assert!((0.2..0.3).contains(&estimate), "{estimate}");
    }

    #[test]
    fn a_cheap_session_stays_whole() {
        let mut budget = Budget::new(5.0, 2, costs(&[10_000, 10_000]));
        for _ in 0..10 {
            calls(&mut budget, 0, 10);
            assert_eq!(budget.check(200 * MS), None);
        }
        // 10 calls × 10 µs in 200 ms of CPU: 0.05 %.
        let estimate = budget.estimate().unwrap();
        assert!((0.04..0.06).contains(&estimate), "{estimate}");
    }

    #[test]
    fn a_quiet_target_is_weighed_over_a_longer_window() {
        // 1 ms of CPU time a check: a single tick more or less must not
        // decide. 4 calls × 10 µs = 40 µs of probes per check is 4 %.
        let mut budget = Budget::new(5.0, 1, costs(&[10_000]));
        for i in 0..BUCKETS {
            calls(&mut budget, 0, 4);
            // The CPU time arrives in ticks: 10 ms every tenth check.
            let cpu = if i % 10 == 9 { 10 * MS } else { 0 };
            assert_eq!(budget.check(cpu), None, "check {i}");
        }
    }

    #[test]
    fn a_mostly_waiting_server_keeps_its_request_handler() {
        // 24 requests a second through four traced functions, 25 µs of
        // probes each: 2.4 ms of probes a second in 10 ms of CPU (24 %),
        // but a quarter of a percent of one CPU.
        let mut budget = Budget::new(5.0, 4, costs(&[25_000; 4]));
        for i in 0..BUCKETS {
            for f in 0..4 {
                calls(&mut budget, f, 6);
            }
            assert_eq!(budget.check(2_500_000), None, "check {i}");
        }
        // A hundred times as many calls in the same quiet target (240 ms
        // of probes a second) are over the budget.
        let mut budget = Budget::new(5.0, 1, costs(&[25_000]));
        let mut over = None;
        for _ in 0..BUCKETS {
            calls(&mut budget, 0, 2_400);
            over = over.or(budget.check(2_500_000));
        }
        assert!(
            over.is_some(),
            "240 ms of probes a second is not left alone"
        );
    }

    #[test]
    fn off_means_estimating_only() {
        let mut budget = Budget::new(0.0, 1, costs(&[20_000]));
        for _ in 0..4 {
            calls(&mut budget, 0, 100_000);
            assert_eq!(budget.check(250 * MS), None);
        }
        assert!(budget.estimate().unwrap() > 100.0);
    }
}
