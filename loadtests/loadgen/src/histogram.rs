//! A small log-linear latency histogram in microseconds.
//!
//! Every latency of a run is kept (no sampling), so the tail percentiles are real. Below
//! [`LINEAR_LIMIT_US`] each microsecond has its own bucket, so values there are exact; above it,
//! each power-of-two range is cut into [`SUB_BUCKETS`] equal buckets, so a reported value is at
//! most 1/128 (< 0.8 %) above the true one. That is the HdrHistogram idea reduced to what a
//! latency report needs: about 5,000 counters cover 1 µs to days, and recording is a couple of
//! integer operations, cheap enough for the hot loop of the load generator.

/// Values below this (µs) are recorded exactly; a power of two so the log part starts cleanly.
pub const LINEAR_LIMIT_US: u64 = 1024;
/// Buckets per power of two above the linear part; the relative error bound is its inverse.
pub const SUB_BUCKETS: u64 = 128;

const LINEAR_BITS: u32 = LINEAR_LIMIT_US.trailing_zeros();
const SUB_BITS: u32 = SUB_BUCKETS.trailing_zeros();
/// Octaves from 2^10 µs up to 2^64 µs, so every `u64` has a bucket.
const OCTAVES: usize = (64 - LINEAR_BITS) as usize;
const BUCKETS: usize = LINEAR_LIMIT_US as usize + OCTAVES * SUB_BUCKETS as usize;

/// Counts of latencies, mergeable across workers.
#[derive(Clone, Debug)]
pub struct Histogram {
    counts: Vec<u64>,
    total: u64,
    min: u64,
    max: u64,
    sum: u128,
}

impl Default for Histogram {
    fn default() -> Self {
        Self::new()
    }
}

impl Histogram {
    /// An empty histogram.
    pub fn new() -> Self {
        Self {
            counts: vec![0; BUCKETS],
            total: 0,
            min: u64::MAX,
            max: 0,
            sum: 0,
        }
    }

    /// Records one value in microseconds.
    pub fn record(&mut self, us: u64) {
        self.counts[bucket_of(us)] += 1;
        self.total += 1;
        self.min = self.min.min(us);
        self.max = self.max.max(us);
        self.sum += u128::from(us);
    }

    /// Adds every value recorded in `other`.
    pub fn merge(&mut self, other: &Histogram) {
        for (mine, theirs) in self.counts.iter_mut().zip(&other.counts) {
            *mine += theirs;
        }
        self.total += other.total;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
        self.sum += other.sum;
    }

    /// Number of recorded values.
    pub fn count(&self) -> u64 {
        self.total
    }

    /// Largest recorded value (exact), or 0 when empty.
    pub fn max(&self) -> u64 {
        self.max
    }

    /// Smallest recorded value (exact), or 0 when empty.
    pub fn min(&self) -> u64 {
        if self.total == 0 { 0 } else { self.min }
    }

    /// Arithmetic mean (exact), or 0 when empty.
    pub fn mean(&self) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            self.sum as f64 / self.total as f64
        }
    }

    /// The nearest-rank percentile: the smallest recorded value such that at least `p` percent
    /// of all values are at or below it, reported as the top of its bucket (never below the
    /// true value, never above the maximum). `p` is clamped to 0..=100; 0 when empty.
    ///
    /// The rank is computed in integers (millionths of a percent), because
    /// `ceil(99.9 / 100 * 1000)` in floating point is 1000, not 999.
    pub fn percentile(&self, p: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let millionths = (p.clamp(0.0, 100.0) * 10_000.0).round() as u128;
        let rank = (u128::from(self.total) * millionths)
            .div_ceil(1_000_000)
            .max(1);
        let mut seen: u128 = 0;
        for (index, &count) in self.counts.iter().enumerate() {
            seen += u128::from(count);
            if seen >= rank {
                return bucket_top(index).min(self.max);
            }
        }
        self.max
    }
}

/// Index of the bucket holding `us`.
fn bucket_of(us: u64) -> usize {
    if us < LINEAR_LIMIT_US {
        return us as usize;
    }
    // `us` has its top bit at `octave_bit` >= LINEAR_BITS; the next SUB_BITS bits pick the bucket.
    let octave_bit = 63 - us.leading_zeros();
    let sub = (us >> (octave_bit - SUB_BITS)) & (SUB_BUCKETS - 1);
    LINEAR_LIMIT_US as usize
        + (octave_bit - LINEAR_BITS) as usize * SUB_BUCKETS as usize
        + sub as usize
}

/// Largest value that lands in bucket `index`.
fn bucket_top(index: usize) -> u64 {
    if index < LINEAR_LIMIT_US as usize {
        return index as u64;
    }
    let log_index = (index - LINEAR_LIMIT_US as usize) as u64;
    let octave_bit = LINEAR_BITS as u64 + log_index / SUB_BUCKETS;
    let sub = log_index % SUB_BUCKETS;
    let width_bits = octave_bit - u64::from(SUB_BITS);
    let bottom = (SUB_BUCKETS + sub) << width_bits;
    // The very last bucket ends at u64::MAX; saturate rather than overflow.
    bottom.saturating_add((1u64 << width_bits) - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filled(values: impl IntoIterator<Item = u64>) -> Histogram {
        let mut h = Histogram::new();
        for v in values {
            h.record(v);
        }
        h
    }

    #[test]
    fn empty_histogram_reports_zero() {
        let h = Histogram::new();
        assert_eq!(h.count(), 0);
        assert_eq!(h.percentile(50.0), 0);
        assert_eq!(h.max(), 0);
        assert_eq!(h.min(), 0);
        assert_eq!(h.mean(), 0.0);
    }

    #[test]
    fn percentiles_of_1_to_1000_are_exact_nearest_rank() {
        let h = filled(1..=1000);
        assert_eq!(h.count(), 1000);
        assert_eq!(h.percentile(0.0), 1);
        assert_eq!(h.percentile(50.0), 500);
        assert_eq!(h.percentile(90.0), 900);
        assert_eq!(h.percentile(99.0), 990);
        assert_eq!(h.percentile(99.9), 999);
        assert_eq!(h.percentile(100.0), 1000);
        assert_eq!(h.min(), 1);
        assert_eq!(h.max(), 1000);
        assert_eq!(h.mean(), 500.5);
    }

    #[test]
    fn rank_rounds_up_between_values() {
        // Nearest rank of p50 over 3 values is ceil(1.5) = 2, p99.9 of 10 values is the 10th.
        assert_eq!(filled([10, 20, 30]).percentile(50.0), 20);
        assert_eq!(filled(1..=10).percentile(99.9), 10);
        assert_eq!(filled(1..=10).percentile(90.0), 9);
    }

    #[test]
    fn repeated_values_and_outlier() {
        let mut values = vec![300; 999];
        values.push(900);
        let h = filled(values);
        assert_eq!(h.percentile(99.0), 300);
        assert_eq!(h.percentile(99.9), 300);
        assert_eq!(h.percentile(99.95), 900);
        assert_eq!(h.max(), 900);
    }

    #[test]
    fn every_bucket_boundary_is_consistent() {
        // Each value must land in a bucket whose top is >= it and whose previous bucket's top is
        // below it, i.e. buckets tile the number line without gaps or overlaps.
        let mut v = 0u64;
        while v < 1 << 24 {
            let index = bucket_of(v);
            assert!(bucket_top(index) >= v, "value {v} above its bucket top");
            if index > 0 {
                assert!(
                    bucket_top(index - 1) < v,
                    "value {v} fits an earlier bucket"
                );
            }
            v += 1 + v / 300;
        }
        assert_eq!(bucket_of(u64::MAX), BUCKETS - 1);
        assert_eq!(bucket_top(BUCKETS - 1), u64::MAX);
    }

    #[test]
    fn large_values_within_relative_error() {
        for v in [
            1024,
            1025,
            1500,
            2047,
            2048,
            12_345,
            999_999,
            60_000_000,
            1 << 40,
        ] {
            let reported = filled([v, 0]).percentile(100.0);
            assert_eq!(reported, v, "max is exact");
            let h = filled([v, v + 10_000_000_000]);
            let p50 = h.percentile(50.0);
            assert!(p50 >= v, "{p50} below {v}");
            let error = (p50 - v) as f64 / v as f64;
            assert!(
                error < 1.0 / SUB_BUCKETS as f64,
                "{v}: reported {p50}, error {error}"
            );
        }
    }

    #[test]
    fn merge_equals_recording_into_one() {
        let a = filled((1..=500).map(|v| v * 7));
        let b = filled((1..=500).map(|v| v * 13));
        let mut merged = a.clone();
        merged.merge(&b);
        let both = filled((1..=500).map(|v| v * 7).chain((1..=500).map(|v| v * 13)));
        for p in [0.0, 50.0, 90.0, 99.0, 99.9, 100.0] {
            assert_eq!(merged.percentile(p), both.percentile(p), "p{p}");
        }
        assert_eq!(merged.count(), 1000);
        assert_eq!(merged.min(), 7);
        assert_eq!(merged.max(), 6500);
        assert_eq!(merged.mean(), both.mean());
    }
}
