//! Duration percentiles in bounded memory.
//!
//! A function may be called billions of times in a recording larger than
//! memory, so its durations cannot all be kept. [`Histogram`] keeps them
//! exactly while there are few ([`EXACT_LIMIT`]), which makes small
//! recordings' percentiles exact, and otherwise counts them in log-linear
//! buckets (the HdrHistogram layout): every power of two is split into
//! 128 equal buckets (`crate::log_buckets`), so a bucket is at most 1/128 of its lower
//! bound wide and its midpoint is within 0.4 % of any value in it. Values
//! below 128 ns get a bucket each and stay exact.
//!
//! Percentiles use the nearest-rank definition: the p-th percentile of `n`
//! values is the `ceil(p·n)`-th smallest (1-based), an actual observation
//! rather than an interpolation, which is what `ORDER BY … OFFSET` gives in
//! SQL and what the tests recompute.

use crate::log_buckets::{LogLinear, nearest_rank};

/// Durations kept exactly before switching to buckets: 8 KiB per function.
pub const EXACT_LIMIT: usize = 1024;

/// 128 buckets per power of two.
type Layout = LogLinear<7>;

/// The worst relative error of a bucketed percentile: half a bucket's width
/// over its lower bound (< 0.4 %).
pub const MAX_RELATIVE_ERROR: f64 = Layout::MAX_RELATIVE_ERROR;

/// Durations of one function's calls: count, min, max, and percentiles exact
/// up to [`EXACT_LIMIT`] values and within [`MAX_RELATIVE_ERROR`] beyond.
#[derive(Clone, Debug, Default)]
pub struct Histogram {
    count: u64,
    min: u64,
    max: u64,
    store: Store,
}

#[derive(Clone, Debug)]
enum Store {
    /// Every value, unsorted.
    Exact(Vec<u64>),
    /// Counts of buckets `first..first + counts.len()`: dense between the
    /// smallest and largest bucket seen, since one function's durations
    /// usually span a few decades (a few thousand buckets at most).
    Buckets { first: usize, counts: Vec<u64> },
}

impl Default for Store {
    fn default() -> Self {
        Self::Exact(Vec::new())
    }
}

impl Histogram {
    /// An empty histogram.
    pub fn new() -> Self {
        Self::default()
    }

    /// Record one duration.
    pub fn record(&mut self, value: u64) {
        if self.count == 0 {
            self.min = value;
            self.max = value;
        } else {
            self.min = self.min.min(value);
            self.max = self.max.max(value);
        }
        self.count += 1;
        match &mut self.store {
            Store::Exact(values) if values.len() < EXACT_LIMIT => values.push(value),
            Store::Exact(values) => {
                let values = std::mem::take(values);
                self.store = Store::Buckets {
                    first: Layout::bucket_of(value),
                    counts: Vec::new(),
                };
                for v in values.into_iter().chain(std::iter::once(value)) {
                    self.bump(v);
                }
            }
            Store::Buckets { .. } => self.bump(value),
        }
    }

    fn bump(&mut self, value: u64) {
        let Store::Buckets { first, counts } = &mut self.store else {
            return;
        };
        let bucket = Layout::bucket_of(value);
        if counts.is_empty() {
            *first = bucket;
        } else if bucket < *first {
            // Grow downwards: shift the existing counts up.
            let grow = *first - bucket;
            counts.splice(0..0, std::iter::repeat_n(0, grow));
            *first = bucket;
        }
        let slot = bucket - *first;
        if slot >= counts.len() {
            counts.resize(slot + 1, 0);
        }
        counts[slot] += 1;
    }

    /// How many durations were recorded.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The smallest duration (0 when empty).
    pub fn min(&self) -> u64 {
        self.min
    }

    /// The largest duration (0 when empty).
    pub fn max(&self) -> u64 {
        self.max
    }

    /// Whether every recorded value is still held (percentiles are exact).
    pub fn is_exact(&self) -> bool {
        matches!(self.store, Store::Exact(_))
    }

    /// Percentiles for each of `quantiles` (each in `0.0..=1.0`), by
    /// nearest rank; 0 for an empty histogram. Takes `&mut self` because
    /// the exact store sorts its values in place.
    pub fn quantiles<const N: usize>(&mut self, quantiles: [f64; N]) -> [u64; N] {
        let count = self.count;
        let (min, max) = (self.min, self.max);
        let mut out = [0; N];
        if count == 0 {
            return out;
        }
        match &mut self.store {
            Store::Exact(values) => {
                values.sort_unstable();
                for (o, q) in out.iter_mut().zip(quantiles) {
                    let rank = nearest_rank(q, count);
                    *o = values.get(rank as usize - 1).copied().unwrap_or(max);
                }
            }
            Store::Buckets { first, counts } => {
                for (o, q) in out.iter_mut().zip(quantiles) {
                    let rank = nearest_rank(q, count);
                    // The extremes are known exactly.
                    if rank == 1 {
                        *o = min;
                        continue;
                    }
                    if rank == count {
                        *o = max;
                        continue;
                    }
                    let mut seen = 0u64;
                    let mut value = max;
                    for (slot, &c) in counts.iter().enumerate() {
                        seen += c;
                        if seen >= rank {
                            value = Layout::midpoint(*first + slot);
                            break;
                        }
                    }
                    // A bucket's midpoint must not report a value outside
                    // what the calls had.
                    *o = value.clamp(min, max);
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn nearest_rank(sorted: &[u64], q: f64) -> u64 {
        sorted[crate::log_buckets::nearest_rank(q, sorted.len() as u64) as usize - 1]
    }

    #[test]
    fn small_sets_are_exact() {
        let mut h = Histogram::new();
        for v in [50, 10, 40, 20, 30] {
            h.record(v);
        }
        assert!(h.is_exact());
        assert_eq!(
            h.quantiles([0.0, 0.2, 0.5, 0.95, 1.0]),
            [10, 10, 30, 50, 50]
        );
        assert_eq!((h.count(), h.min(), h.max()), (5, 10, 50));
    }

    #[test]
    fn empty_histogram_reports_zeros() {
        let mut h = Histogram::new();
        assert_eq!(h.quantiles([0.5, 0.99]), [0, 0]);
        assert_eq!((h.count(), h.min(), h.max()), (0, 0, 0));
    }

    #[test]
    fn switches_to_buckets_past_the_limit_and_keeps_extremes_exact() {
        let mut h = Histogram::new();
        for v in 1..=10_000u64 {
            h.record(v * 1000 + 7);
        }
        assert!(!h.is_exact());
        let [p0, p100] = h.quantiles([0.0, 1.0]);
        assert_eq!((p0, p100), (1007, 10_000_007));
    }

    #[test]
    fn error_bound_holds_at_bucket_edges() {
        // The worst case: a value at a bucket's lower edge reported as the
        // midpoint.
        let mut h = Histogram::new();
        let edge = 1u64 << 30;
        for _ in 0..=EXACT_LIMIT {
            h.record(edge);
        }
        h.record(u64::MAX);
        let [p50] = h.quantiles([0.5]);
        let error = p50.abs_diff(edge) as f64 / edge as f64;
        assert!(error <= MAX_RELATIVE_ERROR, "error {error}");
        const { assert!(MAX_RELATIVE_ERROR < 0.01) };
    }

    proptest! {
        #[test]
        fn percentiles_within_bound_of_nearest_rank(
            values in prop::collection::vec(
                prop_oneof![0u64..200, 0u64..1_000_000, 0u64..u64::MAX / 2],
                1..4000,
            ),
            q in 0.0f64..=1.0,
        ) {
            let mut h = Histogram::new();
            for &v in &values {
                h.record(v);
            }
            let mut sorted = values.clone();
            sorted.sort_unstable();
            let exact = nearest_rank(&sorted, q);
            let [got] = h.quantiles([q]);
            let error = got.abs_diff(exact) as f64 / exact.max(1) as f64;
            prop_assert!(error <= MAX_RELATIVE_ERROR, "q={q} exact={exact} got={got}");
            if values.len() <= EXACT_LIMIT {
                prop_assert_eq!(got, exact);
            }
            prop_assert_eq!(h.min(), sorted[0]);
            prop_assert_eq!(h.max(), *sorted.last().unwrap());
        }
    }
}
