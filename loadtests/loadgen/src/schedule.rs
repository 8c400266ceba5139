//! The open-loop schedule: when each request is due, and which ones count.
//!
//! Request `i` is due at `t0 + i / rate` whatever happened to earlier requests. Its latency is
//! measured from that instant, so time a request spends waiting for a free connection, or for
//! a stalled server, is counted instead of silently lowering the offered rate (the "coordinated
//! omission" of closed-loop tools such as wrk).

use std::time::Duration;

/// Offsets and counts of one run; pure arithmetic, no clock.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Schedule {
    rate: f64,
    warmup_requests: u64,
    total_requests: u64,
}

impl Schedule {
    /// `rate` requests per second (finite, > 0) for `warmup`, then for `duration`.
    ///
    /// The counts are how many due times fall inside each window (`ceil(rate * seconds)`), so a
    /// run of 10 s at 2,000/s is exactly 20,000 measured requests.
    pub fn new(rate: f64, warmup: Duration, duration: Duration) -> Self {
        let warmup_requests = requests_within(rate, warmup);
        let total_requests = requests_within(rate, warmup + duration);
        Self {
            rate,
            warmup_requests,
            total_requests,
        }
    }

    /// Offset of request `i`'s due time from the start of the run.
    ///
    /// Computed from `i` directly rather than by adding intervals, so rounding never drifts.
    pub fn offset(&self, i: u64) -> Duration {
        Duration::from_nanos((i as f64 * 1e9 / self.rate) as u64)
    }

    /// Whether request `i` belongs to the warm-up and is left out of the results.
    pub fn is_warmup(&self, i: u64) -> bool {
        i < self.warmup_requests
    }

    /// Requests in the warm-up.
    pub fn warmup_requests(&self) -> u64 {
        self.warmup_requests
    }

    /// Requests of the whole run, warm-up included.
    pub fn total_requests(&self) -> u64 {
        self.total_requests
    }

    /// Requests that are measured.
    pub fn measured_requests(&self) -> u64 {
        self.total_requests - self.warmup_requests
    }

    /// Offset at which measurement starts: the due time of the first measured request.
    pub fn measure_start(&self) -> Duration {
        self.offset(self.warmup_requests)
    }
}

/// Number of `i >= 0` with `i / rate < window`.
fn requests_within(rate: f64, window: Duration) -> u64 {
    // Round to the nanosecond first so 2000 * 0.5 s is 1000, not 1000.0000000001 -> 1001.
    let exact = (window.as_secs_f64() * rate * 1e9).round() / 1e9;
    exact.ceil() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_at_2000_per_second_are_half_milliseconds() {
        let s = Schedule::new(2000.0, Duration::ZERO, Duration::from_secs(1));
        assert_eq!(s.offset(0), Duration::ZERO);
        assert_eq!(s.offset(1), Duration::from_micros(500));
        assert_eq!(s.offset(2000), Duration::from_secs(1));
        assert_eq!(s.offset(29_999), Duration::from_micros(14_999_500));
    }

    #[test]
    fn counts_cover_warmup_and_duration() {
        let s = Schedule::new(2000.0, Duration::from_secs(2), Duration::from_secs(10));
        assert_eq!(s.warmup_requests(), 4000);
        assert_eq!(s.total_requests(), 24_000);
        assert_eq!(s.measured_requests(), 20_000);
        assert!(s.is_warmup(3999));
        assert!(!s.is_warmup(4000));
        assert_eq!(s.measure_start(), Duration::from_secs(2));
        // The last request is due before the end of the run, the next one would not be.
        assert!(s.offset(s.total_requests() - 1) < Duration::from_secs(12));
        assert_eq!(s.offset(s.total_requests()), Duration::from_secs(12));
    }

    #[test]
    fn fractional_windows_round_up_to_whole_requests() {
        // At 3/s over 1 s, requests are due at 0, 1/3 and 2/3 s.
        let s = Schedule::new(3.0, Duration::ZERO, Duration::from_secs(1));
        assert_eq!(s.total_requests(), 3);
        assert_eq!(s.offset(1), Duration::from_nanos(333_333_333));
        assert_eq!(s.offset(2), Duration::from_nanos(666_666_666));
        // 2.5 requests' worth of time holds due times 0, 1 and 2.
        let s = Schedule::new(1.0, Duration::ZERO, Duration::from_millis(2500));
        assert_eq!(s.total_requests(), 3);
        // 2000/s for 0.5 s is exactly 1000 requests, not 1001.
        let s = Schedule::new(
            2000.0,
            Duration::from_millis(500),
            Duration::from_millis(500),
        );
        assert_eq!(s.warmup_requests(), 1000);
        assert_eq!(s.total_requests(), 2000);
    }

    #[test]
    fn no_warmup_measures_everything() {
        let s = Schedule::new(100.0, Duration::ZERO, Duration::from_secs(2));
        assert_eq!(s.warmup_requests(), 0);
        assert_eq!(s.measured_requests(), 200);
        assert!(!s.is_warmup(0));
        assert_eq!(s.measure_start(), Duration::ZERO);
    }

    #[test]
    fn offsets_are_monotonic_and_evenly_spaced() {
        let s = Schedule::new(7_919.0, Duration::ZERO, Duration::from_secs(3));
        let interval = 1e9 / 7_919.0;
        let mut previous = Duration::ZERO;
        for i in 1..s.total_requests() {
            let at = s.offset(i);
            assert!(at > previous, "offset {i} not after {}", i - 1);
            let drift = at.as_nanos() as f64 - i as f64 * interval;
            assert!(drift.abs() <= 1.0, "offset {i} drifted by {drift} ns");
            previous = at;
        }
    }
}
