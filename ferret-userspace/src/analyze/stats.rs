//! Per-function statistics: calls, total and self time, duration
//! percentiles, share unwound, and where the time went (on a CPU,
//! runnable, blocked, and in what).
//!
//! Totals are inclusive and summed over calls, so a recursive function's
//! nested calls each count their own duration (`mean = total / calls`
//! holds); self time never double counts, and the self times of all
//! functions add up to the time covered by the root spans.

use serde::Serialize;

use super::histogram::Histogram;
use super::replay::{Ended, Names, Started, Status, Visitor};
use crate::symbols::Glob;
use crate::trace::{BlockedIn, SchedSplit};

/// The order of the function table; every key sorts largest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SortBy {
    /// Number of calls.
    Calls,
    /// Total (inclusive) time.
    Total,
    /// Self (exclusive) time.
    SelfTime,
    /// Mean duration.
    Mean,
    /// 95th percentile.
    P95,
    /// 99th percentile.
    P99,
    /// Longest call.
    Max,
    /// Time on a CPU.
    Cpu,
    /// Time waiting for a CPU.
    Runnable,
    /// Time blocked.
    Blocked,
}

impl SortBy {
    /// The name used on the command line.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Calls => "calls",
            Self::Total => "total",
            Self::SelfTime => "self",
            Self::Mean => "mean",
            Self::P95 => "p95",
            Self::P99 => "p99",
            Self::Max => "max",
            Self::Cpu => "cpu",
            Self::Runnable => "runnable",
            Self::Blocked => "blocked",
        }
    }
}

/// Running sums for one function.
#[derive(Clone, Debug, Default)]
struct Acc {
    total_ns: u64,
    self_ns: u64,
    unwound: u64,
    open: u64,
    durations: Histogram,
    split: SplitSum,
}

/// Where the time of some calls went: the sums of their splits, over the
/// calls that have one, and their blocked time by what they were most
/// blocked in.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SplitSum {
    /// Calls with a split.
    pub calls: u64,
    /// Their time on a CPU (ferret's probe time taken out unless `--raw`).
    pub cpu_ns: u64,
    /// Their time waiting for a CPU.
    pub runnable_ns: u64,
    /// Their time blocked.
    pub blocked_ns: u64,
    /// Blocked time by each call's `blocked_in`.
    by_syscall: Vec<(BlockedIn, u64)>,
}

impl SplitSum {
    /// Adds one call's split.
    pub fn add(&mut self, split: Option<&SchedSplit>) {
        let Some(s) = split else { return };
        self.calls += 1;
        self.cpu_ns = self.cpu_ns.saturating_add(s.cpu_ns);
        self.runnable_ns = self.runnable_ns.saturating_add(s.runnable_ns);
        self.blocked_ns = self.blocked_ns.saturating_add(s.blocked_ns);
        if let Some(syscall) = s.blocked_in {
            match self.by_syscall.iter_mut().find(|(k, _)| *k == syscall) {
                Some((_, ns)) => *ns += s.blocked_ns,
                None => self.by_syscall.push((syscall, s.blocked_ns)),
            }
        }
    }

    /// What the calls were most blocked in.
    pub fn top_blocked_in(&self) -> Option<BlockedIn> {
        self.by_syscall
            .iter()
            .max_by_key(|&&(s, ns)| (ns, std::cmp::Reverse(s)))
            .map(|&(s, _)| s)
    }

    /// `cpu_ns` as a share of the calls' time (0 to 1), if any has a split.
    pub fn cpu_share(&self) -> Option<f64> {
        let all = self.cpu_ns + self.runnable_ns + self.blocked_ns;
        (self.calls > 0 && all > 0).then(|| self.cpu_ns as f64 / all as f64)
    }
}

impl Acc {
    fn add(&mut self, span: &Ended) {
        let duration = span.duration_ns();
        self.total_ns = self.total_ns.saturating_add(duration);
        self.self_ns = self.self_ns.saturating_add(span.self_ns);
        match span.status {
            Status::Unwound => self.unwound += 1,
            Status::Open | Status::Cut => self.open += 1,
            Status::Ok => {}
        }
        self.durations.record(duration);
        self.split.add(span.split.as_ref());
    }
}

/// Collects [`Acc`]s during a replay.
#[derive(Debug, Default)]
pub struct StatsVisitor {
    /// Indexed by [`FnIx`].
    acc: Vec<Acc>,
}

impl StatsVisitor {
    /// An empty collector.
    pub fn new() -> Self {
        Self::default()
    }

    fn add(&mut self, span: &Ended) {
        let i = span.function.0 as usize;
        if i >= self.acc.len() {
            self.acc.resize_with(i + 1, Acc::default);
        }
        self.acc[i].add(span);
    }

    /// The statistics of every function with at least one call whose name
    /// matches `only` (all when `None`), sorted by `sort`.
    pub fn finish(self, names: &Names, only: Option<&Glob>, sort: SortBy) -> Vec<FunctionStats> {
        let labels = names.labels();
        let mut rows: Vec<FunctionStats> = self
            .acc
            .into_iter()
            .enumerate()
            .filter(|(_, acc)| acc.durations.count() > 0)
            .filter(|(i, _)| only.is_none_or(|g| g.matches(&names.functions()[*i].name)))
            .map(|(i, mut acc)| {
                let f = &names.functions()[i];
                let calls = acc.durations.count();
                let [p50, p95, p99] = acc.durations.quantiles([0.50, 0.95, 0.99]);
                FunctionStats {
                    function: f.name.clone(),
                    label: labels[i].clone(),
                    module: f.module.clone(),
                    calls,
                    total_ns: acc.total_ns,
                    self_ns: acc.self_ns,
                    mean_ns: div_round(acc.total_ns, calls),
                    min_ns: acc.durations.min(),
                    p50_ns: p50,
                    p95_ns: p95,
                    p99_ns: p99,
                    max_ns: acc.durations.max(),
                    unwound: acc.unwound as f64 / calls as f64,
                    unwound_calls: acc.unwound,
                    open_calls: acc.open,
                    exact: acc.durations.is_exact(),
                    split_calls: acc.split.calls,
                    cpu_ns: (acc.split.calls > 0).then_some(acc.split.cpu_ns),
                    runnable_ns: (acc.split.calls > 0).then_some(acc.split.runnable_ns),
                    blocked_ns: (acc.split.calls > 0).then_some(acc.split.blocked_ns),
                    blocked_in: acc.split.top_blocked_in().map(|s| s.name().into_owned()),
                }
            })
            .collect();
        sort_rows(&mut rows, sort);
        rows
    }
}

impl Visitor for StatsVisitor {
    type Frame = ();

    fn start(&mut self, _: &Names, _: &Started, _: Option<&mut ()>) {}

    fn end(&mut self, _: &Names, span: &Ended, (): (), _: Option<&mut ()>) {
        self.add(span);
    }

    fn orphan(&mut self, _: &Names, span: &Ended) {
        self.add(span);
    }
}

/// `a / b` rounded to nearest (0 when `b` is 0).
fn div_round(a: u64, b: u64) -> u64 {
    if b == 0 {
        0
    } else {
        ((u128::from(a) + u128::from(b) / 2) / u128::from(b)) as u64
    }
}

/// One function's statistics; the field names are the stable JSON ones.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FunctionStats {
    /// Demangled name.
    pub function: String,
    /// The name as displayed: with its library when two functions share it.
    #[serde(skip)]
    pub label: String,
    /// Binary or library path.
    pub module: String,
    /// Number of calls.
    pub calls: u64,
    /// Sum of call durations.
    pub total_ns: u64,
    /// Sum of call durations minus time in traced direct children.
    pub self_ns: u64,
    /// `total_ns / calls`, rounded.
    pub mean_ns: u64,
    /// Shortest call.
    pub min_ns: u64,
    /// Median call (nearest rank).
    pub p50_ns: u64,
    /// 95th percentile (nearest rank).
    pub p95_ns: u64,
    /// 99th percentile (nearest rank).
    pub p99_ns: u64,
    /// Longest call.
    pub max_ns: u64,
    /// Share of calls left without a return, 0 to 1.
    pub unwound: f64,
    /// Number of calls left without a return.
    pub unwound_calls: u64,
    /// Calls still running when the recording stopped (or it was cut short).
    pub open_calls: u64,
    /// Whether the percentiles are exact (otherwise within 0.4 %).
    pub exact: bool,
    /// Calls whose split (`cpu_ns`, `runnable_ns`, `blocked_ns`) is known;
    /// the three sums below are over these.
    pub split_calls: u64,
    /// Sum of their time on a CPU; `None` if no call has a split.
    pub cpu_ns: Option<u64>,
    /// Sum of their time waiting for a CPU.
    pub runnable_ns: Option<u64>,
    /// Sum of their time blocked.
    pub blocked_ns: Option<u64>,
    /// The system call the function's calls were most blocked in (each
    /// call's blocked time counted under its own `blocked_in`).
    pub blocked_in: Option<String>,
}

impl FunctionStats {
    fn key(&self, sort: SortBy) -> u64 {
        match sort {
            SortBy::Calls => self.calls,
            SortBy::Total => self.total_ns,
            SortBy::SelfTime => self.self_ns,
            SortBy::Mean => self.mean_ns,
            SortBy::P95 => self.p95_ns,
            SortBy::P99 => self.p99_ns,
            SortBy::Max => self.max_ns,
            SortBy::Cpu => self.cpu_ns.unwrap_or(0),
            SortBy::Runnable => self.runnable_ns.unwrap_or(0),
            SortBy::Blocked => self.blocked_ns.unwrap_or(0),
        }
    }
}

/// Largest first by the key, then by total time, then by name, so equal
/// keys come out in the same order every run.
pub fn sort_rows(rows: &mut [FunctionStats], sort: SortBy) {
    rows.sort_by(|a, b| {
        b.key(sort)
            .cmp(&a.key(sort))
            .then_with(|| b.total_ns.cmp(&a.total_ns))
            .then_with(|| a.label.cmp(&b.label))
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analyze::replay::tests::{Spec, replay};

    const S: bool = true;
    const E: bool = false;

    fn stats(rows: &[Spec<'_>], sort: SortBy) -> Vec<FunctionStats> {
        let mut v = StatsVisitor::new();
        let summary = replay(rows, None, &mut v);
        v.finish(&summary.names, None, sort)
    }

    #[test]
    fn totals_self_times_and_percentiles_of_a_small_tree() {
        let rows = stats(
            &[
                (S, 0, 1, 1, "main", ""),
                (S, 10, 1, 2, "work", ""),
                (E, 40, 1, 2, "work", "ok"),
                (S, 50, 1, 3, "work", ""),
                (E, 60, 1, 3, "work", "unwound"),
                (S, 70, 1, 4, "work", ""),
                (E, 90, 1, 4, "work", "ok"),
                (E, 100, 1, 1, "main", "ok"),
            ],
            SortBy::Total,
        );
        let main = &rows[0];
        assert_eq!(main.function, "main");
        assert_eq!((main.calls, main.total_ns, main.self_ns), (1, 100, 40));
        let work = &rows[1];
        assert_eq!(
            (work.calls, work.total_ns, work.self_ns, work.mean_ns),
            (3, 60, 60, 20)
        );
        assert_eq!(
            (
                work.min_ns,
                work.p50_ns,
                work.p95_ns,
                work.p99_ns,
                work.max_ns
            ),
            (10, 20, 30, 30, 30)
        );
        assert!((work.unwound - 1.0 / 3.0).abs() < 1e-12);
        assert_eq!(work.unwound_calls, 1);
        assert!(work.exact);
    }

    #[test]
    fn recursion_counts_every_level_in_total_but_not_in_self() {
        let rows = stats(
            &[
                (S, 0, 1, 1, "f", ""),
                (S, 10, 1, 2, "f", ""),
                (S, 20, 1, 3, "f", ""),
                (E, 30, 1, 3, "f", "ok"),
                (E, 40, 1, 2, "f", "ok"),
                (E, 50, 1, 1, "f", "ok"),
            ],
            SortBy::Total,
        );
        assert_eq!(
            (rows[0].calls, rows[0].total_ns, rows[0].self_ns),
            (3, 50 + 30 + 10, 50)
        );
    }

    #[test]
    fn sort_keys_order_largest_first_with_stable_ties() {
        let rows = &[
            (S, 0, 1, 1, "few_long", ""),
            (E, 100, 1, 1, "few_long", "ok"),
            (S, 100, 1, 2, "many_short", ""),
            (E, 101, 1, 2, "many_short", "ok"),
            (S, 101, 1, 3, "many_short", ""),
            (E, 102, 1, 3, "many_short", "ok"),
            (S, 102, 1, 4, "b_same", ""),
            (E, 103, 1, 4, "b_same", "ok"),
            (S, 103, 1, 5, "a_same", ""),
            (E, 104, 1, 5, "a_same", "ok"),
        ];
        let order =
            |sort| -> Vec<String> { stats(rows, sort).into_iter().map(|r| r.function).collect() };
        assert_eq!(
            order(SortBy::Calls),
            ["many_short", "few_long", "a_same", "b_same"]
        );
        for key in [SortBy::Total, SortBy::Max, SortBy::P99, SortBy::Mean] {
            assert_eq!(order(key)[0], "few_long", "{key:?}");
        }
    }

    #[test]
    fn function_filter_keeps_matching_names() {
        let mut v = StatsVisitor::new();
        let summary = replay(
            &[
                (S, 0, 1, 1, "ns::a", ""),
                (E, 1, 1, 1, "ns::a", "ok"),
                (S, 1, 1, 2, "other", ""),
                (E, 2, 1, 2, "other", "ok"),
            ],
            None,
            &mut v,
        );
        let glob = Glob::new("ns::*").unwrap();
        let rows = v.finish(&summary.names, Some(&glob), SortBy::Total);
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].function, "ns::a");
    }

    #[test]
    fn mean_rounds_to_nearest() {
        assert_eq!(div_round(10, 4), 3);
        assert_eq!(div_round(9, 4), 2);
        assert_eq!(div_round(u64::MAX, 1), u64::MAX);
        assert_eq!(div_round(5, 0), 0);
    }
}
