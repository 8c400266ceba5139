//! A circuit breaker per upstream: closed → open (after too many failures in a window) →
//! half-open (one probe request after a pause) → closed again (probe succeeded) or open.
//!
//! The window is fixed (counts reset every `window`), which is coarse but needs no history:
//! what matters is that a failing upstream stops being called within a window and is tried
//! again, by one request only, after `open_for`.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// What the breaker lets through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Calls go through; failures are counted.
    Closed,
    /// One probe call may go through.
    HalfOpen,
    /// Calls are refused until the pause is over.
    Open,
}

impl State {
    /// The `agw_breaker_state` value: 0 closed, 1 half-open, 2 open.
    pub fn gauge(self) -> i64 {
        match self {
            State::Closed => 0,
            State::HalfOpen => 1,
            State::Open => 2,
        }
    }
}

/// The thresholds.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// Failure rate (percent) that opens the breaker.
    pub failure_percent: u32,
    /// Calls in the window before the rate is judged.
    pub min_requests: u32,
    /// Counting window.
    pub window: Duration,
    /// Pause before the half-open probe.
    pub open_for: Duration,
}

#[derive(Debug)]
struct Inner {
    state: State,
    window_start: Instant,
    calls: u32,
    failures: u32,
    opened_at: Instant,
    /// When the half-open probe was let through; a probe whose caller vanished (cancelled)
    /// never reports back, so another one is allowed after `open_for`.
    probe_at: Option<Instant>,
}

/// One upstream's breaker. Cheap: a mutex held for a few comparisons.
#[derive(Debug)]
pub struct Breaker {
    settings: Settings,
    inner: Mutex<Inner>,
}

impl Breaker {
    /// A closed breaker.
    pub fn new(settings: Settings) -> Self {
        let now = Instant::now();
        Breaker {
            settings,
            inner: Mutex::new(Inner {
                state: State::Closed,
                window_start: now,
                calls: 0,
                failures: 0,
                opened_at: now,
                probe_at: None,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The state now (an open breaker whose pause is over reads as half-open).
    pub fn state(&self) -> State {
        let g = self.lock();
        match g.state {
            State::Open if g.opened_at.elapsed() >= self.settings.open_for => State::HalfOpen,
            s => s,
        }
    }

    /// Whether a call may go now; in half-open state only one (the probe) may.
    pub fn try_acquire(&self) -> bool {
        let now = Instant::now();
        let mut g = self.lock();
        match g.state {
            State::Closed => true,
            State::Open if now.duration_since(g.opened_at) < self.settings.open_for => false,
            State::Open | State::HalfOpen => {
                g.state = State::HalfOpen;
                match g.probe_at {
                    Some(at) if now.duration_since(at) < self.settings.open_for => false,
                    _ => {
                        g.probe_at = Some(now);
                        true
                    }
                }
            }
        }
    }

    /// Back to closed with empty counts: the upstream behind it is another one now (a new
    /// winner on another chute), whose health says nothing about the old one's.
    pub fn reset(&self) {
        let now = Instant::now();
        let mut g = self.lock();
        g.state = State::Closed;
        g.window_start = now;
        g.calls = 0;
        g.failures = 0;
        g.probe_at = None;
    }

    /// Records a call's outcome; returns the state after it.
    pub fn record(&self, success: bool) -> State {
        let now = Instant::now();
        let mut g = self.lock();
        match g.state {
            State::HalfOpen => {
                g.probe_at = None;
                if success {
                    g.state = State::Closed;
                    g.window_start = now;
                    g.calls = 0;
                    g.failures = 0;
                } else {
                    g.state = State::Open;
                    g.opened_at = now;
                }
            }
            // A call that started before the breaker opened: it changes nothing.
            State::Open => {}
            State::Closed => {
                if now.duration_since(g.window_start) >= self.settings.window {
                    g.window_start = now;
                    g.calls = 0;
                    g.failures = 0;
                }
                g.calls = g.calls.saturating_add(1);
                if !success {
                    g.failures = g.failures.saturating_add(1);
                }
                let s = &self.settings;
                if g.calls >= s.min_requests
                    && u64::from(g.failures) * 100
                        >= u64::from(g.calls) * u64::from(s.failure_percent)
                {
                    g.state = State::Open;
                    g.opened_at = now;
                }
            }
        }
        g.state
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(open_ms: u64) -> Settings {
        Settings {
            failure_percent: 50,
            min_requests: 4,
            window: Duration::from_secs(60),
            open_for: Duration::from_millis(open_ms),
        }
    }

    #[test]
    fn opens_at_the_threshold_only_after_enough_calls() {
        let b = Breaker::new(settings(60_000));
        assert_eq!(b.record(false), State::Closed);
        assert_eq!(b.record(false), State::Closed);
        assert_eq!(b.record(true), State::Closed);
        // 3 failures of 4 calls: 75 % ≥ 50 %.
        assert_eq!(b.record(false), State::Open);
        assert!(!b.try_acquire());
        assert_eq!(b.state().gauge(), 2);
    }

    #[test]
    fn successes_keep_it_closed() {
        let b = Breaker::new(settings(60_000));
        for _ in 0..10 {
            b.record(true);
            b.record(true);
            assert_eq!(b.record(false), State::Closed);
        }
    }

    #[test]
    fn half_open_lets_one_probe_through_and_closes_on_success() {
        let b = Breaker::new(settings(0));
        for _ in 0..4 {
            b.record(false);
        }
        assert_eq!(b.state(), State::HalfOpen);
        assert!(b.try_acquire(), "the probe");
        assert_eq!(b.record(true), State::Closed);
        assert!(b.try_acquire());
    }

    #[test]
    fn reset_closes_it_with_empty_counts() {
        let b = Breaker::new(settings(60_000));
        for _ in 0..4 {
            b.record(false);
        }
        assert_eq!(b.state(), State::Open);
        b.reset();
        assert!(b.try_acquire());
        assert_eq!(b.record(false), State::Closed, "old failures forgotten");
    }

    #[test]
    fn a_failed_probe_opens_it_again() {
        let b = Breaker::new(settings(50));
        for _ in 0..4 {
            b.record(false);
        }
        assert!(!b.try_acquire());
        std::thread::sleep(Duration::from_millis(60));
        assert!(b.try_acquire());
        assert!(!b.try_acquire(), "only one probe at a time");
        assert_eq!(b.record(false), State::Open);
        assert!(!b.try_acquire());
    }
}
