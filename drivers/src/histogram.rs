//! Log-linear histograms in the spirit of HdrHistogram, the one bucketing that ferrite's
//! latency figures share: the benchmark's exact-to-1 % histogram ([`Histogram`], 8 bits of
//! precision) and the per-LUN statistics' log2 buckets (1 bit of precision, see
//! `target_iscsi::stats`).
//!
//! With `P` bits of precision, values below `2^P` are counted exactly; above that every power
//! of two is cut into `2^(P-1)` equal buckets, so the relative error is at most `2^-(P-1)`.
//! With `P = 1` bucket `i > 0` holds `[2^(i-1), 2^i)`: plain log2 buckets.

/// Buckets that cover every `u64` at `P` bits of precision.
#[must_use]
pub const fn bucket_count(precision: u32) -> usize {
    (64 - precision as usize + 2) * (1 << (precision - 1))
}

/// The bucket of `value` at `P` bits of precision.
#[must_use]
#[inline]
pub fn bucket_of<const P: u32>(value: u64) -> usize {
    let half = 1usize << (P - 1);
    if value < (1 << P) {
        return value as usize;
    }
    let msb = 63 - value.leading_zeros();
    let shift = msb - (P - 1);
    let mantissa = (value >> shift) as usize; // in half..2*half
    shift as usize * half + mantissa
}

/// Lowest and highest value that land in `bucket` at `P` bits of precision.
#[must_use]
pub fn bucket_range<const P: u32>(bucket: usize) -> (u64, u64) {
    let half = 1usize << (P - 1);
    if bucket < (1 << P) {
        return (bucket as u64, bucket as u64);
    }
    let shift = (bucket / half - 1) as u32;
    let mantissa = (bucket % half + half) as u64;
    let low = mantissa << shift;
    (low, low + ((1u64 << shift) - 1))
}

/// The bucket holding the sample of rank `ceil(fraction * total)` (at least 1) in `counts`;
/// `None` when there is no sample. When the counts end before that rank, the last bucket.
#[must_use]
pub fn quantile_bucket(counts: &[u64], fraction: f64) -> Option<usize> {
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return None;
    }
    #[allow(clippy::cast_precision_loss, clippy::cast_sign_loss)]
    #[allow(clippy::cast_possible_truncation)]
    let rank = ((fraction.clamp(0.0, 1.0) * total as f64).ceil() as u64).clamp(1, total);
    let mut seen = 0u64;
    for (bucket, count) in counts.iter().enumerate() {
        seen += count;
        if seen >= rank {
            return Some(bucket);
        }
    }
    Some(counts.len() - 1)
}

/// Precision of [`Histogram`].
const SUB_BITS: u32 = 8;
/// Buckets of [`Histogram`].
const BUCKETS: usize = bucket_count(SUB_BITS);

/// Latency histogram over nanoseconds (any `u64` values really).
#[derive(Clone)]
pub struct Histogram {
    counts: Box<[u64; BUCKETS]>,
    total_count: u64,
    min_value: u64,
    max_value: u64,
    sum_values: u128,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram::new()
    }
}

impl std::fmt::Debug for Histogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Histogram")
            .field("count", &self.total_count)
            .field("min", &self.min())
            .field("max", &self.max_value)
            .finish_non_exhaustive()
    }
}

impl Histogram {
    /// An empty histogram (one allocation of the fixed bucket array).
    #[must_use]
    pub fn new() -> Histogram {
        Histogram {
            counts: Box::new([0; BUCKETS]),
            total_count: 0,
            min_value: u64::MAX,
            max_value: 0,
            sum_values: 0,
        }
    }

    /// Counts one value.
    #[inline]
    pub fn record(&mut self, value: u64) {
        self.counts[bucket_of::<SUB_BITS>(value)] += 1;
        self.total_count += 1;
        self.min_value = self.min_value.min(value);
        self.max_value = self.max_value.max(value);
        self.sum_values += u128::from(value);
    }

    /// Adds every count of `other`.
    pub fn merge(&mut self, other: &Histogram) {
        for (mine, theirs) in self.counts.iter_mut().zip(other.counts.iter()) {
            *mine += theirs;
        }
        self.total_count += other.total_count;
        self.min_value = self.min_value.min(other.min_value);
        self.max_value = self.max_value.max(other.max_value);
        self.sum_values += other.sum_values;
    }

    /// Values recorded.
    #[must_use]
    pub fn count(&self) -> u64 {
        self.total_count
    }

    /// Smallest value recorded (0 when empty).
    #[must_use]
    pub fn min(&self) -> u64 {
        if self.total_count == 0 {
            0
        } else {
            self.min_value
        }
    }

    /// Largest value recorded, exact (0 when empty).
    #[must_use]
    pub fn max(&self) -> u64 {
        self.max_value
    }

    /// Arithmetic mean (0 when empty).
    #[must_use]
    pub fn mean(&self) -> f64 {
        if self.total_count == 0 {
            0.0
        } else {
            self.sum_values as f64 / self.total_count as f64
        }
    }

    /// The value at `percentile` (0..=100): the middle of the bucket holding the sample of
    /// that rank, clamped to the recorded min and max. 0 when empty.
    #[must_use]
    pub fn percentile(&self, percentile: f64) -> u64 {
        if self.total_count == 0 {
            return 0;
        }
        let Some(bucket) = quantile_bucket(&self.counts[..], percentile / 100.0) else {
            return 0;
        };
        let (low, high) = bucket_range::<SUB_BITS>(bucket);
        let mid = low + (high - low) / 2;
        mid.clamp(self.min_value, self.max_value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_contiguous_and_cover_u64() {
        let mut expected_low = 0u64;
        for bucket in 0..BUCKETS {
            let (low, high) = bucket_range::<SUB_BITS>(bucket);
            assert_eq!(low, expected_low, "gap before bucket {bucket}");
            assert_eq!(bucket_of::<SUB_BITS>(low), bucket);
            assert_eq!(bucket_of::<SUB_BITS>(high), bucket);
            if high == u64::MAX {
                assert_eq!(bucket, BUCKETS - 1);
                return;
            }
            expected_low = high + 1;
        }
        panic!("buckets end before u64::MAX");
    }

    #[test]
    fn small_values_are_exact() {
        let mut h = Histogram::new();
        for v in 1..=100 {
            h.record(v);
        }
        assert_eq!(h.percentile(50.0), 50);
        assert_eq!(h.percentile(99.0), 99);
        assert_eq!(h.percentile(100.0), 100);
        assert_eq!(h.min(), 1);
        assert_eq!(h.max(), 100);
        assert!((h.mean() - 50.5).abs() < 1e-9);
    }

    #[test]
    fn large_values_within_one_percent() {
        let mut h = Histogram::new();
        // 1 µs .. 10 ms in 1 µs steps.
        for v in 1..=10_000u64 {
            h.record(v * 1000);
        }
        for (p, exact) in [(50.0, 5_000_000u64), (99.0, 9_900_000), (99.9, 9_990_000)] {
            let got = h.percentile(p);
            let err = (got as f64 - exact as f64).abs() / exact as f64;
            assert!(err < 0.01, "p{p}: got {got}, exact {exact}");
        }
        assert_eq!(h.max(), 10_000_000);
    }

    #[test]
    fn merge_adds_counts_and_extremes() {
        let (mut a, mut b) = (Histogram::new(), Histogram::new());
        a.record(10);
        b.record(1_000_000);
        b.record(5);
        a.merge(&b);
        assert_eq!(a.count(), 3);
        assert_eq!(a.min(), 5);
        assert_eq!(a.max(), 1_000_000);
        assert_eq!(a.percentile(50.0), 10);
    }

    #[test]
    fn one_bit_of_precision_is_log2() {
        assert_eq!(bucket_count(1), 65);
        for v in [0u64, 1, 2, 3, 4, 1000, 1 << 39, u64::MAX] {
            assert_eq!(bucket_of::<1>(v), 64 - v.leading_zeros() as usize, "{v}");
        }
        assert_eq!(bucket_range::<1>(11), (1024, 2047));
        assert_eq!(quantile_bucket(&[0, 2, 0, 1], 0.5), Some(1));
        assert_eq!(quantile_bucket(&[0, 2, 0, 1], 0.99), Some(3));
        assert_eq!(quantile_bucket(&[0, 0], 0.5), None);
    }

    #[test]
    fn empty_reports_zero() {
        let h = Histogram::new();
        assert_eq!(h.percentile(99.0), 0);
        assert_eq!(h.min(), 0);
        assert_eq!(h.max(), 0);
    }
}
