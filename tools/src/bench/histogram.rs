//! A log-linear latency histogram in the spirit of HdrHistogram: values below 2^SUB_BITS are
//! counted exactly, above that every power of two is cut into 2^(SUB_BITS-1) equal buckets, so
//! the relative error is at most 2^-(SUB_BITS-1) (under 1 %). The bucket array is fixed-size and
//! allocated once; recording is a few integer operations and never allocates.

/// Exact linear range is `0..2^SUB_BITS`; each later power of two has `2^(SUB_BITS-1)` buckets.
const SUB_BITS: u32 = 8;
const HALF: usize = 1 << (SUB_BITS - 1);
/// Buckets needed to cover the whole `u64` range.
const BUCKETS: usize = (64 - SUB_BITS as usize + 2) * HALF;

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

fn bucket_of(value: u64) -> usize {
    if value < (1 << SUB_BITS) {
        return value as usize;
    }
    let msb = 63 - value.leading_zeros();
    let shift = msb - (SUB_BITS - 1);
    let mantissa = (value >> shift) as usize; // in HALF..2*HALF
    shift as usize * HALF + mantissa
}

/// Lowest and highest value that land in `bucket`.
fn bucket_range(bucket: usize) -> (u64, u64) {
    if bucket < (1 << SUB_BITS) {
        return (bucket as u64, bucket as u64);
    }
    let shift = (bucket / HALF - 1) as u32;
    let mantissa = (bucket % HALF + HALF) as u64;
    let low = mantissa << shift;
    (low, low + ((1u64 << shift) - 1))
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
        self.counts[bucket_of(value)] += 1;
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
        let fraction = (percentile / 100.0).clamp(0.0, 1.0);
        let rank = ((fraction * self.total_count as f64).ceil() as u64).clamp(1, self.total_count);
        let mut seen = 0u64;
        for (bucket, count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                let (low, high) = bucket_range(bucket);
                let mid = low + (high - low) / 2;
                return mid.clamp(self.min_value, self.max_value);
            }
        }
        self.max_value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_contiguous_and_cover_u64() {
        let mut expected_low = 0u64;
        for bucket in 0..BUCKETS {
            let (low, high) = bucket_range(bucket);
            assert_eq!(low, expected_low, "gap before bucket {bucket}");
            assert_eq!(bucket_of(low), bucket);
            assert_eq!(bucket_of(high), bucket);
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
    fn empty_reports_zero() {
        let h = Histogram::new();
        assert_eq!(h.percentile(99.0), 0);
        assert_eq!(h.min(), 0);
        assert_eq!(h.max(), 0);
    }
}
