//! The memory backend's one clock.
//!
//! Everything time-dependent in the memory backend reads this clock: key expiry and the
//! quota buckets and leases use its monotonic time, the ledger's hold expiry and done-marks
//! too, and the ledger's timestamps and days (an expired hold's `finished_at`) use the wall
//! time derived from it. It runs on `tokio::time`, which is what makes it injectable: under
//! `#[tokio::test(start_paused = true)]` the memory half of a shared behaviour suite moves
//! time with `tokio::time::advance` (or by sleeping, which a paused runtime skips) instead of
//! waiting for it, and every rule sees the same jump at once. Outside a runtime it is simply
//! the system's monotonic clock.
//!
//! The wall time is the system's at creation plus the monotonic time since, so it never runs
//! backwards and agrees with the monotonic rules; a wall-clock step later (an NTP correction)
//! is not followed, which for a single process's ledger days is the lesser evil.

use std::time::Duration;

use tokio::time::Instant;

/// The monotonic origin and the wall time at it.
#[derive(Debug)]
pub(in crate::store) struct Clock {
    origin: Instant,
    wall_origin_ms: u64,
}

impl Clock {
    /// A clock starting now.
    pub(in crate::store) fn new() -> Clock {
        Clock {
            origin: Instant::now(),
            wall_origin_ms: crate::clock::now_ms(),
        }
    }

    /// Monotonic now, for deadlines.
    pub(in crate::store) fn now(&self) -> Instant {
        Instant::now()
    }

    /// Monotonic milliseconds since the clock started: what buckets, leases, holds and
    /// done-marks are timed in.
    pub(in crate::store) fn ms(&self) -> u64 {
        millis(self.now().saturating_duration_since(self.origin))
    }

    /// Unix milliseconds, derived from the monotonic time.
    pub(in crate::store) fn wall_ms(&self) -> u64 {
        self.wall_origin_ms.saturating_add(self.ms())
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn both_times_follow_tokio_time() {
        let c = Clock::new();
        let (t0, w0) = (c.ms(), c.wall_ms());
        tokio::time::advance(Duration::from_secs(90)).await;
        assert_eq!(c.ms() - t0, 90_000);
        assert_eq!(c.wall_ms() - w0, 90_000);
    }
}
