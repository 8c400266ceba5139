//! The in-process layer in front of the distributed limiter: a per-IP flood guard and a cache
//! of limiter keys known to be over their limit. Both answer without a Redis round trip, so a
//! flood or a caller hammering after a 429 costs no Redis work; neither holds a global lock on
//! the request path (the guard's state is a sharded map, the cache is sharded by key hash).

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::net::{IpAddr, Ipv6Addr};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use governor::clock::Clock;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

/// The guard forgets idle addresses once every this many checks, so its map holds the
/// addresses active within one refill period plus at most this many more.
const GUARD_SWEEP_EVERY: u64 = 4096;

/// Per client IP flood guard (a GCRA per address): generous, so only floods hit it.
pub struct IpGuard {
    limiter: Option<DefaultKeyedRateLimiter<IpAddr>>,
    checks: AtomicU64,
}

impl std::fmt::Debug for IpGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IpGuard")
            .field("enabled", &self.limiter.is_some())
            .finish_non_exhaustive()
    }
}

/// The key an address is limited under. An IPv6 host usually owns a whole /64 and can rotate
/// through it freely, so per-address keys would let one host mint unlimited budgets; IPv4
/// addresses mapped into IPv6 (dual-stack sockets) count as the IPv4 address they are.
pub(crate) fn guard_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from_bits(v6.to_bits() & !u128::from(u64::MAX))),
        },
    }
}

impl IpGuard {
    /// `per_second` sustained with bursts of up to `burst` (a `burst` of 0 means `per_second`);
    /// `per_second == 0` disables the guard.
    pub fn new(per_second: u32, burst: u32) -> Self {
        let limiter = NonZeroU32::new(per_second).map(|rate| {
            let burst = NonZeroU32::new(burst).unwrap_or(rate);
            RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst))
        });
        IpGuard {
            limiter,
            checks: AtomicU64::new(0),
        }
    }

    /// Ok, or Err(wait) with how long until the address may send again (always positive).
    pub fn check(&self, ip: IpAddr) -> Result<(), Duration> {
        let Some(l) = &self.limiter else {
            return Ok(());
        };
        let r = l
            .check_key(&guard_key(ip))
            .map_err(|not_until| not_until.wait_time_from(l.clock().now()));
        // Amortised housekeeping: one caller in GUARD_SWEEP_EVERY drops the addresses whose
        // state has fully refilled (indistinguishable from a fresh key), so the map does not
        // grow with every address ever seen.
        if self.checks.fetch_add(1, Ordering::Relaxed) % GUARD_SWEEP_EVERY == GUARD_SWEEP_EVERY - 1
        {
            l.retain_recent();
        }
        // governor can report a zero wait when the refill instant has just passed; a refusal
        // promising "retry in 0" would contradict itself, so it always carries a positive wait.
        r.map_err(|wait| wait.max(Duration::from_nanos(1)))
    }
}

/// Number of shards of the over-limit cache: enough that concurrent requests rarely share a
/// lock, few enough that `len` stays cheap.
const SHARDS: usize = 32;

/// Default bound on the over-limit cache's entries.
pub const MAX_ENTRIES: usize = 100_000;

/// One shard of the over-limit cache.
#[derive(Default)]
struct Shard {
    /// Key → (refused until, code).
    map: HashMap<String, (Instant, u8)>,
    /// No entry expires before this instant (a lower bound, `None` when empty or unknown):
    /// a full shard is swept only once something in it can have expired, so a shard full of
    /// live entries does not rescan itself on every mark.
    earliest: Option<Instant>,
}

/// A shard on its own cache lines, so threads locking neighbouring shards do not contend on
/// the same line.
#[repr(align(128))]
#[derive(Default)]
struct Padded(Mutex<Shard>);

/// Remembers limiter keys known to be over their limit until a given instant, so a caller that
/// keeps hammering after a 429 is refused locally, without a Redis round trip, until capacity
/// returns. Entries are exact: the distributed limiter told us the instant.
pub struct OverLimitCache {
    hasher: RandomState,
    shards: Box<[Padded]>,
    per_shard: usize,
}

impl std::fmt::Debug for OverLimitCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OverLimitCache")
            .field("capacity", &(self.per_shard * SHARDS))
            .finish_non_exhaustive()
    }
}

impl Default for OverLimitCache {
    fn default() -> Self {
        Self::new()
    }
}

impl OverLimitCache {
    /// An empty cache holding at most [`MAX_ENTRIES`] keys.
    pub fn new() -> Self {
        Self::with_capacity(MAX_ENTRIES)
    }

    /// An empty cache holding at most `max_entries` keys, rounded down to a multiple of the
    /// shard count (but at least one key per shard), each shard having an equal share.
    pub fn with_capacity(max_entries: usize) -> Self {
        OverLimitCache {
            hasher: RandomState::new(),
            shards: (0..SHARDS).map(|_| Padded::default()).collect(),
            per_shard: (max_entries / SHARDS).max(1),
        }
    }

    fn shard(&self, key: &str) -> MutexGuard<'_, Shard> {
        // The shard holds plain data that every operation leaves consistent, so a panic
        // elsewhere while it was locked is no reason to stop using it.
        self.shards[(self.hasher.hash_one(key) as usize) % SHARDS]
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Records that `key` is refused until `until` with `code` (an opaque value the caller
    /// maps back), replacing any earlier mark of the key: the latest answer of the distributed
    /// limiter is the best one.
    ///
    /// When the key's shard is full of live entries the mark is dropped rather than evicting
    /// one. The cache is only a shortcut: a key without a mark costs one Redis round trip and
    /// gets the same answer, so evicting a live entry would buy nothing, and refusing keeps a
    /// flood of distinct keys from churning the cache.
    pub fn mark(&self, key: &str, until: Instant, code: u8) {
        self.mark_at(key, until, code, Instant::now());
    }

    /// [`Self::mark`] with the current instant given, so tests can age entries without
    /// waiting.
    fn mark_at(&self, key: &str, until: Instant, code: u8, now: Instant) {
        let mut s = self.shard(key);
        let s = &mut *s;
        if let Some(e) = s.map.get_mut(key) {
            *e = (until, code);
        } else {
            if s.map.len() >= self.per_shard {
                if s.earliest.is_none_or(|e| e <= now) {
                    let mut earliest: Option<Instant> = None;
                    s.map.retain(|_, &mut (u, _)| {
                        let live = u > now;
                        if live {
                            earliest = Some(earliest.map_or(u, |e| e.min(u)));
                        }
                        live
                    });
                    s.earliest = earliest;
                }
                if s.map.len() >= self.per_shard {
                    return;
                }
            }
            s.map.insert(key.to_owned(), (until, code));
        }
        s.earliest = Some(s.earliest.map_or(until, |e| e.min(until)));
    }

    /// `Some((until, code))` while `now < until`; an expired entry is dropped here.
    pub fn check(&self, key: &str, now: Instant) -> Option<(Instant, u8)> {
        let mut s = self.shard(key);
        match s.map.get(key) {
            Some(&(until, code)) if now < until => Some((until, code)),
            Some(_) => {
                s.map.remove(key);
                None
            }
            None => None,
        }
    }

    /// Forgets a key (e.g. after a refund made capacity available again).
    #[cfg(test)]
    pub fn clear(&self, key: &str) {
        self.shard(key).map.remove(key);
    }

    /// Entries held, including expired ones not yet dropped. Locks each shard in turn, so it
    /// is meant for metrics and tests, not the request path.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|p| p.0.lock().unwrap_or_else(PoisonError::into_inner).map.len())
            .sum()
    }

    /// Whether no entry is held.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::mpsc;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ip_guard_allows_the_burst_then_refuses() {
        let g = IpGuard::new(1, 3);
        for _ in 0..3 {
            assert_eq!(g.check(ip("10.0.0.1")), Ok(()));
        }
        let wait = g.check(ip("10.0.0.1")).unwrap_err();
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_secs(1),
            "{wait:?}"
        );
        // Still refused: a refused check consumes nothing, and time has barely moved.
        assert!(g.check(ip("10.0.0.1")).is_err());
    }

    #[test]
    fn ip_guard_keeps_addresses_apart() {
        let g = IpGuard::new(1, 2);
        for _ in 0..2 {
            assert!(g.check(ip("10.0.0.1")).is_ok());
        }
        assert!(g.check(ip("10.0.0.1")).is_err());
        for _ in 0..2 {
            assert!(g.check(ip("10.0.0.2")).is_ok(), "other IPs are independent");
        }
        assert!(g.check(ip("2001:db8:0:2::1")).is_ok());
    }

    #[test]
    fn ip_guard_limits_an_ipv6_slash_64_as_one_host() {
        let g = IpGuard::new(1, 2);
        assert!(g.check(ip("2001:db8:0:1::1")).is_ok());
        assert!(g.check(ip("2001:db8:0:1:ffff::9")).is_ok());
        assert!(g.check(ip("2001:db8:0:1::2")).is_err(), "same /64");
        assert!(g.check(ip("2001:db8:0:2::1")).is_ok(), "another /64");
        // A v4-mapped address is the IPv4 address.
        assert!(g.check(ip("192.0.2.7")).is_ok());
        assert!(g.check(ip("::ffff:192.0.2.7")).is_ok());
        assert!(g.check(ip("192.0.2.7")).is_err());
    }

    #[test]
    fn ip_guard_burst_zero_means_the_rate() {
        let g = IpGuard::new(2, 0);
        assert!(g.check(ip("10.0.0.1")).is_ok());
        assert!(g.check(ip("10.0.0.1")).is_ok());
        assert!(g.check(ip("10.0.0.1")).is_err());
    }

    #[test]
    fn ip_guard_zero_disables() {
        let off = IpGuard::new(0, 0);
        for _ in 0..10_000 {
            assert_eq!(off.check(ip("10.0.0.1")), Ok(()));
        }
    }

    #[test]
    fn ip_guard_housekeeping_keeps_limited_addresses() {
        // The sweep drops only addresses whose budget has fully refilled; one that is being
        // limited keeps its state through it.
        let g = IpGuard::new(1, 1);
        assert!(g.check(ip("10.9.9.9")).is_ok());
        // A full period of checks, so exactly one of them sweeps.
        for _ in 0..GUARD_SWEEP_EVERY {
            let _ = g.check(ip("10.0.0.1"));
        }
        assert!(g.check(ip("10.9.9.9")).is_err());
    }

    #[test]
    fn marks_expire_and_clear() {
        let c = OverLimitCache::new();
        let now = Instant::now();
        let until = now + Duration::from_secs(1);
        assert_eq!(c.check("k", now), None);
        c.mark("k", until, 1);
        assert_eq!(c.check("k", now), Some((until, 1)));
        assert_eq!(
            c.check("k", until - Duration::from_nanos(1)),
            Some((until, 1))
        );
        assert_eq!(c.check("k", until), None, "refused only while now < until");
        assert_eq!(c.len(), 0, "expired entries are dropped on check");
        c.mark("k", until, 2);
        c.clear("k");
        assert_eq!(c.check("k", now), None);
        assert!(c.is_empty());
    }

    #[test]
    fn a_new_mark_replaces_the_old_one() {
        let c = OverLimitCache::new();
        let now = Instant::now();
        c.mark("k", now + Duration::from_secs(9), 1);
        c.mark("k", now + Duration::from_secs(3), 2);
        assert_eq!(c.check("k", now), Some((now + Duration::from_secs(3), 2)));
        assert_eq!(c.len(), 1);
    }

    #[test]
    fn the_cache_is_bounded_and_never_evicts_live_entries() {
        let cap = 4 * SHARDS;
        let c = OverLimitCache::with_capacity(cap);
        let later = Instant::now() + Duration::from_secs(60);
        for i in 0..(cap * 20) {
            c.mark(&format!("k{i}"), later, 1);
        }
        // 20× the capacity over 32 shards fills every shard (a shard receiving fewer than 4
        // of 2560 uniformly hashed keys is beyond unlikely).
        assert_eq!(c.len(), cap);
        let kept: Vec<String> = (0..(cap * 20))
            .map(|i| format!("k{i}"))
            .filter(|k| c.check(k, Instant::now()).is_some())
            .collect();
        assert_eq!(kept.len(), cap);
        for i in 0..(cap * 20) {
            c.mark(&format!("again{i}"), later, 1);
        }
        assert_eq!(c.len(), cap);
        for k in &kept {
            assert!(c.check(k, Instant::now()).is_some(), "{k} was evicted");
        }
        // A key already held is still updated when its shard is full.
        c.mark(&kept[0], later, 7);
        assert_eq!(c.check(&kept[0], Instant::now()), Some((later, 7)));
    }

    #[test]
    fn a_full_cache_makes_room_by_dropping_expired_entries() {
        let cap = 2 * SHARDS;
        let c = OverLimitCache::with_capacity(cap);
        let t0 = Instant::now();
        let soon = t0 + Duration::from_secs(1);
        for i in 0..(cap * 20) {
            c.mark_at(&format!("old{i}"), soon, 1, t0);
        }
        assert_eq!(c.len(), cap);
        // Before `soon` nothing can be dropped, so nothing new gets in.
        c.mark_at("early", soon + Duration::from_secs(9), 2, t0);
        assert_eq!(c.check("early", t0), None);
        // From `soon` on, every expired entry can make way for a live one.
        let later = soon + Duration::from_secs(60);
        for i in 0..(cap * 20) {
            c.mark_at(&format!("new{i}"), later, 2, soon);
        }
        assert_eq!(c.len(), cap);
        let live = (0..(cap * 20))
            .filter(|i| c.check(&format!("new{i}"), soon).is_some())
            .count();
        assert_eq!(live, cap);
    }

    #[test]
    fn concurrent_use_does_not_deadlock() {
        let c = Arc::new(OverLimitCache::with_capacity(1024));
        let (done, finished) = mpsc::channel();
        let workers = 4;
        for t in 0..workers {
            let c = Arc::clone(&c);
            let done = done.clone();
            std::thread::spawn(move || {
                let later = Instant::now() + Duration::from_secs(600);
                let mut failures = 0;
                for i in 0..20_000u32 {
                    // Each worker has its own keys; all workers share every shard.
                    let k = format!("w{t}-{}", i % 500);
                    match i % 3 {
                        0 => c.mark(&k, later, t),
                        1 => c.clear(&k),
                        _ => {
                            if let Some((u, code)) = c.check(&k, Instant::now())
                                && (u != later || code != t)
                            {
                                failures += 1;
                            }
                        }
                    }
                }
                let _ = done.send(failures);
            });
        }
        drop(done);
        for _ in 0..workers {
            let failures = finished
                .recv_timeout(Duration::from_secs(60))
                .expect("a worker is stuck: deadlock");
            assert_eq!(failures, 0, "a worker saw another worker's mark");
        }
        assert!(c.len() <= 1024);
    }
}
