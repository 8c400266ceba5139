//! The in-process layer in front of the distributed limiter: a per-IP flood guard and a cache
//! of limiter keys known to be over their limit. Both answer without a Redis round trip.

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

/// Per client IP flood guard: generous, so only floods hit it.
pub struct IpGuard {
    limiter: Option<DefaultKeyedRateLimiter<IpAddr>>,
    clock: DefaultClock,
}

impl std::fmt::Debug for IpGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IpGuard")
            .field("enabled", &self.limiter.is_some())
            .finish()
    }
}

impl IpGuard {
    /// `per_second` sustained with `burst`; `per_second == 0` disables the guard.
    pub fn new(per_second: u32, burst: u32) -> Self {
        let limiter = NonZeroU32::new(per_second).map(|rate| {
            let burst = NonZeroU32::new(burst).unwrap_or(rate);
            RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst))
        });
        IpGuard {
            limiter,
            clock: DefaultClock::default(),
        }
    }

    /// Ok, or how long until the IP may send again.
    pub fn check(&self, ip: IpAddr) -> Result<(), Duration> {
        let Some(l) = &self.limiter else {
            return Ok(());
        };
        let r = l
            .check_key(&ip)
            .map_err(|not_until| not_until.wait_time_from(self.clock.now()));
        // Forget idle addresses now and then so the map does not grow with every address seen.
        if l.len() > 100_000 {
            l.retain_recent();
        }
        r
    }
}

const SHARDS: usize = 16;
/// Entries kept at most; beyond that new marks are dropped (the cache is only an
/// optimisation: a dropped mark costs one Redis round trip, never a wrong answer).
pub const MAX_ENTRIES: usize = 100_000;

/// One shard of the over-limit cache: key → (refused until, code).
type Shard = Mutex<HashMap<String, (Instant, u8)>>;

/// Limiter keys known to be refused until an instant.
pub struct OverLimitCache {
    hasher: RandomState,
    shards: Box<[Shard]>,
}

impl std::fmt::Debug for OverLimitCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OverLimitCache")
    }
}

impl Default for OverLimitCache {
    fn default() -> Self {
        Self::new()
    }
}

impl OverLimitCache {
    /// An empty cache.
    pub fn new() -> Self {
        OverLimitCache {
            hasher: RandomState::new(),
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }

    fn shard(&self, key: &str) -> std::sync::MutexGuard<'_, HashMap<String, (Instant, u8)>> {
        self.shards[(self.hasher.hash_one(key) as usize) % SHARDS]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Records that `key` is refused until `until` with `code`.
    pub fn mark(&self, key: &str, until: Instant, code: u8) {
        let mut s = self.shard(key);
        if s.len() >= MAX_ENTRIES / SHARDS {
            let now = Instant::now();
            s.retain(|_, (u, _)| *u > now);
            if s.len() >= MAX_ENTRIES / SHARDS {
                return;
            }
        }
        s.insert(key.to_owned(), (until, code));
    }

    /// The mark while `now < until`.
    pub fn check(&self, key: &str, now: Instant) -> Option<(Instant, u8)> {
        let mut s = self.shard(key);
        match s.get(key) {
            Some(&(until, code)) if now < until => Some((until, code)),
            Some(_) => {
                s.remove(key);
                None
            }
            None => None,
        }
    }

    /// Forgets a key.
    pub fn clear(&self, key: &str) {
        self.shard(key).remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_guard_allows_the_burst_then_refuses() {
        let g = IpGuard::new(1, 3);
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        for _ in 0..3 {
            assert!(g.check(ip).is_ok());
        }
        let wait = g.check(ip).unwrap_err();
        assert!(wait > Duration::ZERO && wait <= Duration::from_secs(1));
        assert!(
            g.check("10.0.0.2".parse().unwrap()).is_ok(),
            "other IPs are independent"
        );
        let off = IpGuard::new(0, 0);
        for _ in 0..10_000 {
            assert!(off.check(ip).is_ok());
        }
    }

    #[test]
    fn over_limit_marks_expire_and_clear() {
        let c = OverLimitCache::new();
        let now = Instant::now();
        c.mark("k", now + Duration::from_secs(1), 1);
        assert_eq!(c.check("k", now), Some((now + Duration::from_secs(1), 1)));
        assert_eq!(c.check("k", now + Duration::from_secs(1)), None);
        assert_eq!(c.check("k", now), None, "expired entries are dropped");
        c.mark("k", now + Duration::from_secs(1), 2);
        c.clear("k");
        assert_eq!(c.check("k", now), None);
    }

    #[test]
    fn the_cache_is_bounded() {
        let c = OverLimitCache::new();
        let later = Instant::now() + Duration::from_secs(60);
        for i in 0..(MAX_ENTRIES + 5_000) {
            c.mark(&format!("k{i}"), later, 1);
        }
        let total: usize = c.shards.iter().map(|s| s.lock().unwrap().len()).sum();
        assert!(total <= MAX_ENTRIES);
    }

    #[test]
    fn concurrent_use_does_not_deadlock() {
        let c = std::sync::Arc::new(OverLimitCache::new());
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let c = c.clone();
                std::thread::spawn(move || {
                    for i in 0..10_000 {
                        let k = format!("k{}", (i * 7 + t) % 500);
                        c.mark(&k, Instant::now() + Duration::from_millis(5), 1);
                        let _ = c.check(&k, Instant::now());
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
    }
}
