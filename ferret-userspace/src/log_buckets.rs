//! The log-linear bucket layout of ferret's two duration histograms (the
//! HdrHistogram layout): values below `2^BITS` get a bucket each; above,
//! every power of two is split into `2^BITS` equal buckets, so a bucket is
//! at most `2^-BITS` of its lower bound wide. The live dashboard uses 4 bits
//! (fixed memory, within about 3 %: [`crate::live::histogram`]); `analyze`
//! uses 7 (within 0.4 %, after an exact phase: [`crate::analyze::histogram`]).

/// The layout with `2^BITS` buckets per power of two.
#[derive(Clone, Copy, Debug)]
pub struct LogLinear<const BITS: u32>;

impl<const BITS: u32> LogLinear<BITS> {
    /// Buckets per power of two.
    pub const SUB: u64 = 1 << BITS;
    /// Buckets needed for every `u64`: `SUB` exact ones, then `SUB` per
    /// power of two from `2^BITS` to `2^63`.
    pub const BUCKETS: usize = (Self::SUB + (64 - BITS as u64) * Self::SUB) as usize;
    /// The worst relative error of a bucket's midpoint: half a bucket's
    /// width over its lower bound.
    pub const MAX_RELATIVE_ERROR: f64 = 0.5 / Self::SUB as f64;

    /// The bucket holding `value`.
    pub fn bucket_of(value: u64) -> usize {
        if value < Self::SUB {
            return value as usize;
        }
        let exponent = value.ilog2(); // ≥ BITS
        let shift = exponent - BITS;
        let sub = (value >> shift) - Self::SUB; // 0..SUB
        (Self::SUB + u64::from(shift) * Self::SUB + sub) as usize
    }

    /// The smallest value in `bucket`, and the bucket's width.
    pub fn bounds(bucket: usize) -> (u64, u64) {
        let bucket = bucket as u64;
        if bucket < Self::SUB {
            return (bucket, 1);
        }
        let shift = (bucket - Self::SUB) / Self::SUB;
        let sub = (bucket - Self::SUB) % Self::SUB;
        ((Self::SUB + sub) << shift, 1 << shift)
    }

    /// The value a bucket reports: its middle (exact for width-1 buckets),
    /// always inside the bucket.
    pub fn midpoint(bucket: usize) -> u64 {
        let (low, width) = Self::bounds(bucket);
        low.saturating_add((width - 1) / 2)
    }
}

/// The 1-based nearest rank of quantile `q` among `count` values (`q` is
/// clamped to 0–1, NaN counts as 1): the p-th percentile of `n` values is
/// the `ceil(p·n)`-th smallest, an actual observation rather than an
/// interpolation, as `ORDER BY … OFFSET` gives in SQL. `count` must be > 0.
pub fn nearest_rank(q: f64, count: u64) -> u64 {
    let q = if q.is_nan() { 1.0 } else { q.clamp(0.0, 1.0) };
    ((q * count as f64).ceil() as u64).clamp(1, count)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn covers_every_value_once_in_order<const BITS: u32>() {
        type L<const B: u32> = LogLinear<B>;
        let last = L::<BITS>::BUCKETS - 1;
        assert_eq!(L::<BITS>::bucket_of(u64::MAX), last);
        for bucket in 0..=last {
            let (low, width) = L::<BITS>::bounds(bucket);
            assert_eq!(L::<BITS>::bucket_of(low), bucket, "low end of {bucket}");
            assert_eq!(
                L::<BITS>::bucket_of(low + (width - 1)),
                bucket,
                "high end of {bucket}"
            );
            let mid = L::<BITS>::midpoint(bucket);
            assert!(low <= mid && mid - low < width);
            if bucket < last {
                assert_eq!(L::<BITS>::bounds(bucket + 1).0, low + width, "contiguous");
            }
        }
    }

    #[test]
    fn layouts_cover_every_value_once_in_order() {
        covers_every_value_once_in_order::<4>();
        covers_every_value_once_in_order::<7>();
        assert_eq!(LogLinear::<4>::BUCKETS, 976);
        assert_eq!(LogLinear::<4>::bucket_of(33), 32);
    }

    #[test]
    fn nearest_rank_is_an_observation() {
        assert_eq!(nearest_rank(0.0, 10), 1);
        assert_eq!(nearest_rank(0.5, 10), 5);
        assert_eq!(nearest_rank(0.51, 10), 6);
        assert_eq!(nearest_rank(1.0, 10), 10);
        assert_eq!(nearest_rank(f64::NAN, 10), 10);
        assert_eq!(nearest_rank(-3.0, 10), 1);
    }
}
