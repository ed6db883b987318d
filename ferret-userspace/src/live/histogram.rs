//! A log-linear histogram of durations: fixed memory, percentiles within
//! about 3 %.
//!
//! A live view cannot keep every duration of a function called a million
//! times, and exact percentiles are not what a person reads off a dashboard.
//! Values below 16 ns get a bucket each; above that every power of two is
//! split into 16 equal buckets, so a bucket is at most 1/16 of its value
//! wide and its midpoint is within 1/32 of any value in it. 976 buckets cover
//! every `u64`.

use crate::log_buckets::{LogLinear, nearest_rank};

/// 16 buckets per power of two.
type Layout = LogLinear<4>;
/// Buckets needed for every `u64`.
const BUCKETS: usize = Layout::BUCKETS;

/// Counts of durations (ns) in log-linear buckets, with exact count, sum,
/// minimum and maximum.
#[derive(Clone, Debug, Default)]
pub struct Histogram {
    /// Allocated on the first value: most probed functions of a large
    /// selection are never called, and cost nothing then.
    counts: Option<Box<[u32; BUCKETS]>>,
    count: u64,
    min: u64,
    max: u64,
}

impl Histogram {
    /// An empty histogram.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one value.
    pub fn record(&mut self, value: u64) {
        let counts = self.counts.get_or_insert_with(|| Box::new([0; BUCKETS]));
        let bucket = &mut counts[Layout::bucket_of(value)];
        // Saturate rather than wrap: a bucket that has seen four billion
        // calls is not made wrong by ignoring more.
        *bucket = bucket.saturating_add(1);
        if self.count == 0 {
            self.min = value;
            self.max = value;
        } else {
            self.min = self.min.min(value);
            self.max = self.max.max(value);
        }
        self.count += 1;
    }

    /// Number of values recorded.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The largest value recorded (exact); 0 when empty.
    pub fn max(&self) -> u64 {
        self.max
    }

    /// The value at quantile `q` (0.0–1.0): the midpoint of the bucket
    /// holding the `ceil(q · count)`-th smallest value, clamped to the exact
    /// minimum and maximum (and the maximum itself for the last rank).
    /// `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<u64> {
        let counts = self.counts.as_ref()?;
        if self.count == 0 {
            return None;
        }
        let total: u64 = counts.iter().map(|&c| u64::from(c)).sum();
        let rank = nearest_rank(q, total);
        if rank == total {
            return Some(self.max);
        }
        let mut seen = 0u64;
        for (index, &c) in counts.iter().enumerate() {
            seen += u64::from(c);
            if seen >= rank {
                return Some(Layout::midpoint(index).clamp(self.min, self.max));
            }
        }
        Some(self.max)
    }

    /// Several quantiles in one pass over the buckets; `qs` must be
    /// ascending. Each is as [`Self::quantile`] would return.
    pub fn quantiles<const N: usize>(&self, qs: [f64; N]) -> [Option<u64>; N] {
        let mut out = [None; N];
        let Some(counts) = self.counts.as_ref() else {
            return out;
        };
        let total: u64 = counts.iter().map(|&c| u64::from(c)).sum();
        if total == 0 {
            return out;
        }
        let ranks = qs.map(|q| nearest_rank(q, total));
        let mut next = 0;
        let mut seen = 0u64;
        for (index, &c) in counts.iter().enumerate() {
            seen += u64::from(c);
            while next < N && seen >= ranks[next] {
                out[next] = Some(if ranks[next] == total {
                    self.max
                } else {
                    Layout::midpoint(index).clamp(self.min, self.max)
                });
                next += 1;
            }
            if next == N {
                break;
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn empty_has_no_quantiles() {
        let h = Histogram::new();
        assert_eq!(h.quantile(0.5), None);
        assert_eq!(h.quantiles([0.5, 0.99]), [None, None]);
        assert_eq!((h.count(), h.max()), (0, 0));
    }

    #[test]
    fn one_value_is_every_quantile() {
        let mut h = Histogram::new();
        h.record(1_234_567);
        assert_eq!(h.quantiles([0.0, 0.5, 1.0]), [Some(1_234_567); 3]);
    }

    #[test]
    fn percentiles_of_a_uniform_spread() {
        let mut h = Histogram::new();
        for v in 1..=10_000u64 {
            h.record(v * 1000);
        }
        let [p50, p95, p99] = h.quantiles([0.5, 0.95, 0.99]).map(Option::unwrap);
        for (got, want) in [(p50, 5_000_000u64), (p95, 9_500_000), (p99, 9_900_000)] {
            let error = (got as f64 - want as f64).abs() / want as f64;
            assert!(error < 0.035, "{got} vs {want}");
        }
        assert_eq!(h.max(), 10_000_000);
        assert_eq!(h.count(), 10_000);
    }

    #[test]
    fn a_slow_outlier_shows_in_p99_only() {
        let mut h = Histogram::new();
        for _ in 0..990 {
            h.record(10_000);
        }
        for _ in 0..10 {
            h.record(1_000_000_000);
        }
        let [p50, p95, p99, p100] = h.quantiles([0.5, 0.95, 0.99, 1.0]).map(Option::unwrap);
        assert!(p50.abs_diff(10_000) < 400, "{p50}");
        assert!(p95.abs_diff(10_000) < 400, "{p95}");
        assert!(p99.abs_diff(10_000) < 400, "{p99}: rank 990 is still fast");
        assert_eq!(p100, 1_000_000_000);
    }

    proptest! {
        #[test]
        fn quantile_is_within_a_thirty_second_of_the_true_value(
            mut values in proptest::collection::vec(0u64..u64::MAX / 2, 1..200),
            q in 0.0f64..=1.0,
        ) {
            let mut h = Histogram::new();
            for &v in &values {
                h.record(v);
            }
            values.sort_unstable();
            let rank = ((q * values.len() as f64).ceil() as usize).clamp(1, values.len());
            let exact = values[rank - 1];
            let got = h.quantile(q).unwrap();
            prop_assert!(got.abs_diff(exact) as f64 <= exact as f64 / 32.0 + 1.0,
                "q {q}: {got} vs {exact}");
            prop_assert_eq!(h.quantiles([q])[0], Some(got));
        }
    }
}
