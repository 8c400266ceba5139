//! The in-memory backend: a sharded map with lazy expiry, for a single gateway process.
//!
//! There is no global lock: keys are spread over [`SHARDS`] independent
//! `std::sync::Mutex<HashMap>`s by a hash of the key, and no lock is ever held across an
//! `await` (every operation here is synchronous; [`super::Store`] only wraps it in `async`).
//!
//! ## Expiry
//! An entry past its deadline is invisible at once: every read checks the deadline and
//! removes the entry it finds expired. Expired entries nobody reads again are swept lazily:
//! a write that grows a shard to twice the number of entries it held after its last sweep
//! sweeps that shard. That keeps a shard within twice the entries it held live at its last
//! sweep (and at least a small constant) at an amortised O(1) cost per write. A background sweeper task was
//! the alternative; it was not taken because [`MemoryStore::new`] is synchronous and may run
//! outside a tokio runtime, and a task would need its own shutdown when the last clone of the
//! store goes away, while the lazy sweep needs neither.
//!
//! ## Layout
//! This file is the key-value part; [`quota`] is the limiter (the rules of `admit_v4.lua` /
//! `settle_v4.lua` for limits), [`ledger`] the money (their rules for holds, settlements and
//! usage), and [`clock`] the one clock all three read.

mod clock;
mod ledger;
mod quota;
mod sets;

pub(crate) use ledger::rfc3339_and_day;

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use crate::store::{CreditOutcome, StoreError, keys};

/// How many independent shards the keys are spread over. A power of two well above the
/// number of cores, so two writers rarely wait for the same lock.
pub const SHARDS: usize = 32;

/// A shard is never swept before it holds this many entries: tiny shards are not worth it.
const MIN_SWEEP_LEN: usize = 64;

/// The in-memory store. Cheap to clone: clones share the data.
#[derive(Clone)]
pub struct MemoryStore {
    data: Arc<Shards>,
    prefix: Arc<str>,
}

impl std::fmt::Debug for MemoryStore {
    // By hand: the contents are other people's data and can be large.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore")
            .field("key_prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// The shared data: every prefix of one store family lives in the same shards, like every
/// prefix of one Redis database.
struct Shards {
    /// The one clock of the whole backend.
    clock: clock::Clock,
    hasher: RandomState,
    shards: Box<[Mutex<Shard>]>,
    /// Revoked token ids with their expiry (unix seconds), and the set's version. Admin-rate
    /// writes and a poll every few hundred milliseconds: one mutex is plenty.
    revoked: Mutex<(u64, HashMap<String, u64>)>,
    /// The limiter's scopes.
    quota: quota::QuotaTable,
    /// Serialises credits (admin-rate), so check-then-add is atomic like the Redis script.
    credits: Mutex<()>,
    /// Holds, debits, usage events and rollups.
    ledger: ledger::LedgerTable,
}

#[derive(Default)]
struct Shard {
    map: HashMap<String, Entry>,
    /// The shard is swept when a write finds `map.len()` at or above this.
    sweep_at: usize,
}

struct Entry {
    value: Vec<u8>,
    expires_at: Option<Instant>,
}

impl Entry {
    fn is_live(&self, now: Instant) -> bool {
        self.expires_at.is_none_or(|t| t > now)
    }
}

impl Shard {
    /// The live entry for `key`, removing it if it has expired.
    fn live(&mut self, key: &str, now: Instant) -> Option<&mut Entry> {
        if self.map.get(key).is_some_and(|e| !e.is_live(now)) {
            self.map.remove(key);
        }
        self.map.get_mut(key)
    }

    fn insert(&mut self, key: String, entry: Entry, now: Instant) {
        self.map.insert(key, entry);
        if self.map.len() >= self.sweep_at {
            self.map.retain(|_, e| e.is_live(now));
            self.sweep_at = (self.map.len() * 2).max(MIN_SWEEP_LEN);
        }
    }
}

fn deadline(now: Instant, ttl_ms: Option<u64>) -> Option<Instant> {
    // `Store` bounds the TTL by MAX_TTL, so this cannot overflow in practice; if a platform's
    // Instant could not represent it, treating the key as never expiring is the safe side.
    ttl_ms.and_then(|ms| now.checked_add(Duration::from_millis(ms)))
}

impl MemoryStore {
    /// A new, empty store whose keys all start with `key_prefix`.
    pub fn new(key_prefix: &str) -> MemoryStore {
        let shards = (0..SHARDS)
            .map(|_| {
                Mutex::new(Shard {
                    map: HashMap::new(),
                    sweep_at: MIN_SWEEP_LEN,
                })
            })
            .collect();
        MemoryStore {
            data: Arc::new(Shards {
                clock: clock::Clock::new(),
                hasher: RandomState::new(),
                shards,
                revoked: Mutex::new((0, HashMap::new())),
                quota: quota::QuotaTable::new(),
                credits: Mutex::new(()),
                ledger: ledger::LedgerTable::new(),
            }),
            prefix: key_prefix.into(),
        }
    }

    /// The same data seen through another key prefix.
    pub fn with_key_prefix(&self, key_prefix: &str) -> MemoryStore {
        MemoryStore {
            data: Arc::clone(&self.data),
            prefix: key_prefix.into(),
        }
    }

    /// The prefix prepended to every key.
    pub fn key_prefix(&self) -> &str {
        &self.prefix
    }

    fn full_key(&self, key: &str) -> String {
        keys::prefixed(&self.prefix, key)
    }

    fn shard(&self, full_key: &str) -> MutexGuard<'_, Shard> {
        // usize from u64 by truncation is fine: only the low bits choose the shard.
        let i = (self.data.hasher.hash_one(full_key) as usize) % SHARDS;
        // A panic while holding a shard lock cannot leave a half-updated entry behind (each
        // operation is a single map call), so a poisoned lock is still consistent.
        self.data.shards[i]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn set_nx_px(&self, key: &str, value: &[u8], ttl_ms: u64) -> bool {
        self.set_if_absent(key, value, Some(ttl_ms))
    }

    /// `SET NX`, with an expiry or without.
    fn set_if_absent(&self, key: &str, value: &[u8], ttl_ms: Option<u64>) -> bool {
        let key = self.full_key(key);
        let now = self.data.clock.now();
        let mut shard = self.shard(&key);
        if shard.live(&key, now).is_some() {
            return false;
        }
        let entry = Entry {
            value: value.to_vec(),
            expires_at: deadline(now, ttl_ms),
        };
        shard.insert(key, entry, now);
        true
    }

    pub(super) fn get(&self, key: &str) -> Option<Vec<u8>> {
        let key = self.full_key(key);
        let now = self.data.clock.now();
        let mut shard = self.shard(&key);
        shard.live(&key, now).map(|e| e.value.clone())
    }

    pub(super) fn set(&self, key: &str, value: &[u8], ttl_ms: Option<u64>) {
        let key = self.full_key(key);
        let now = self.data.clock.now();
        let entry = Entry {
            value: value.to_vec(),
            expires_at: deadline(now, ttl_ms),
        };
        self.shard(&key).insert(key, entry, now);
    }

    pub(super) fn del(&self, key: &str) -> bool {
        let key = self.full_key(key);
        let now = self.data.clock.now();
        let mut shard = self.shard(&key);
        shard.map.remove(&key).is_some_and(|e| e.is_live(now))
    }

    pub(super) fn incr_by(
        &self,
        key: &str,
        delta: i64,
        ttl_ms: Option<u64>,
    ) -> Result<i64, StoreError> {
        let key = self.full_key(key);
        let now = self.data.clock.now();
        let mut shard = self.shard(&key);
        if let Some(entry) = shard.live(&key, now) {
            let current = parse_counter(&entry.value).ok_or_else(|| {
                StoreError::Protocol("value is not an integer or out of range".to_owned())
            })?;
            let next = current.checked_add(delta).ok_or_else(|| {
                StoreError::Protocol("increment or decrement would overflow".to_owned())
            })?;
            // The expiry stays as it is: only creation sets it.
            entry.value = next.to_string().into_bytes();
            return Ok(next);
        }
        let entry = Entry {
            value: delta.to_string().into_bytes(),
            expires_at: deadline(now, ttl_ms),
        };
        shard.insert(key, entry, now);
        Ok(delta)
    }

    fn quota_admit(
        &self,
        scopes: &[crate::store::quota::ScopeSpec],
        request_id: &str,
        tokens: u64,
        lease_ms: u64,
        consume: bool,
    ) -> crate::store::quota::QuotaDecision {
        self.data.quota.admit(
            self.data.clock.ms(),
            &self.prefix,
            scopes,
            request_id,
            tokens,
            lease_ms,
            consume,
        )
    }

    fn quota_settle(
        &self,
        scopes: &[crate::store::quota::ScopeSpec],
        request_id: &str,
        tokens_back: i64,
        request_back: bool,
    ) -> usize {
        self.data.quota.settle(
            self.data.clock.ms(),
            &self.prefix,
            scopes,
            request_id,
            tokens_back,
            request_back,
        )
    }

    fn quota_renew(
        &self,
        scopes: &[crate::store::quota::ScopeSpec],
        request_id: &str,
        lease_ms: u64,
    ) {
        self.data.quota.renew(
            self.data.clock.ms(),
            &self.prefix,
            scopes,
            request_id,
            lease_ms,
        )
    }

    pub(super) fn credit(
        &self,
        [balance, record, log]: &[String; 3],
        amount_rao: u64,
        log_line: &str,
        now_ms: u64,
    ) -> Result<CreditOutcome, StoreError> {
        let _one_at_a_time = self
            .data
            .credits
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let parse = |s: &str| {
            s.parse::<i64>()
                .map_err(|_| StoreError::Protocol(format!("balance `{s}` is not an integer")))
        };
        if let Some(prev) = self.get(record) {
            let text = String::from_utf8_lossy(&prev).into_owned();
            // "<amount> <balance after> <at ms>", written below.
            let mut parts = text.split(' ');
            let (amount, bal) = (parts.next().unwrap_or(""), parts.next().unwrap_or("0"));
            return if amount == amount_rao.to_string() {
                Ok(CreditOutcome::Repeated {
                    balance_rao: parse(bal)?,
                })
            } else {
                Ok(CreditOutcome::Conflict {
                    amount_rao: amount
                        .parse()
                        .map_err(|_| StoreError::Protocol("corrupt credit record".into()))?,
                })
            };
        }
        let delta = i64::try_from(amount_rao)
            .map_err(|_| StoreError::Protocol("amount out of range".into()))?;
        // As the script: a credit that would take the balance past i64::MAX is refused.
        // Credits are serialised by the lock above and other writers only debit, so the
        // check holds until the increment.
        let current = match self.get(balance) {
            Some(b) => std::str::from_utf8(&b)
                .ok()
                .and_then(|s| s.parse::<i64>().ok())
                .ok_or_else(|| StoreError::Protocol("balance is not an integer".into()))?,
            None => 0,
        };
        if current.checked_add(delta).is_none() {
            return Ok(CreditOutcome::Overflow {
                balance_rao: current,
            });
        }
        let bal = self.incr_by(balance, delta, None)?;
        self.set(
            record,
            format!("{amount_rao} {bal} {now_ms}").as_bytes(),
            None,
        );
        let mut lines = self.get(log).unwrap_or_default();
        lines.extend_from_slice(log_line.as_bytes());
        lines.push(b'\n');
        self.set(log, &lines, None);
        Ok(CreditOutcome::Credited { balance_rao: bal })
    }

    pub(super) fn revoke(&self, jti: &str, until_unix: u64, now_unix: u64) {
        let mut r = self
            .data
            .revoked
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        r.1.insert(jti.to_owned(), until_unix);
        r.1.retain(|_, until| *until >= now_unix);
        r.0 += 1;
    }

    pub(super) fn revocations_version(&self) -> u64 {
        self.data
            .revoked
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .0
    }

    pub(super) fn revocations(&self, now_unix: u64) -> Vec<String> {
        let r = self
            .data
            .revoked
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        r.1.iter()
            .filter(|(_, until)| **until >= now_unix)
            .map(|(j, _)| j.clone())
            .collect()
    }

    pub(super) fn pttl(&self, key: &str) -> Option<Duration> {
        let key = self.full_key(key);
        let now = self.data.clock.now();
        let mut shard = self.shard(&key);
        let expires_at = shard.live(&key, now)?.expires_at?;
        // Whole milliseconds, rounded up, to match the resolution Redis reports.
        let left = expires_at.saturating_duration_since(now);
        let ms = u64::try_from(left.as_nanos().div_ceil(1_000_000)).unwrap_or(u64::MAX);
        Some(Duration::from_millis(ms))
    }

    fn data(&self) -> &Shards {
        &self.data
    }

    /// The backend's clock.
    fn clock(&self) -> &clock::Clock {
        &self.data.clock
    }

    /// Ids of the accounts that have a balance key under this prefix.
    fn credited_accounts(&self) -> Vec<String> {
        let now = self.data.clock.now();
        let mut out = Vec::new();
        for shard in self.data.shards.iter() {
            let shard = shard.lock().unwrap_or_else(PoisonError::into_inner);
            for (k, e) in &shard.map {
                if let Some(id) = k
                    .strip_prefix(&*self.prefix)
                    .and_then(|r| keys::account_of(r, "bal"))
                    .filter(|_| e.is_live(now))
                {
                    out.push(id.to_string());
                }
            }
        }
        out
    }

    pub(super) fn delete_all_prefixed(&self) -> u64 {
        let now = self.data.clock.now();
        let mut deleted = 0u64;
        for shard in self.data.shards.iter() {
            let mut shard = shard.lock().unwrap_or_else(PoisonError::into_inner);
            shard.map.retain(|k, e| {
                if !k.starts_with(&*self.prefix) {
                    return true;
                }
                // Like UNLINK, count only keys that still existed.
                if e.is_live(now) {
                    deleted += 1;
                }
                false
            });
        }
        deleted
    }
}

/// Parses a counter the way Redis does: canonical ASCII decimal `i64` only (no sign `+`, no
/// leading zeros, no spaces), so the same value is an integer on both backends.
fn parse_counter(bytes: &[u8]) -> Option<i64> {
    let s = std::str::from_utf8(bytes).ok()?;
    let n: i64 = s.parse().ok()?;
    (n.to_string() == s).then_some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_parse_like_redis() {
        assert_eq!(parse_counter(b"0"), Some(0));
        assert_eq!(parse_counter(b"-42"), Some(-42));
        assert_eq!(parse_counter(b"9223372036854775807"), Some(i64::MAX));
        for bad in [
            &b""[..],
            b"+1",
            b"01",
            b" 1",
            b"1 ",
            b"-0",
            b"1.5",
            b"abc",
            b"9223372036854775808",
        ] {
            assert_eq!(
                parse_counter(bad),
                None,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn keys_are_spread_over_shards() {
        let s = MemoryStore::new("p:");
        for i in 0..1000 {
            s.set(&format!("k{i}"), b"v", None);
        }
        let used = s
            .data
            .shards
            .iter()
            .filter(|sh| {
                !sh.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .map
                    .is_empty()
            })
            .count();
        assert!(used > SHARDS / 2, "only {used} of {SHARDS} shards used");
    }

    #[tokio::test(start_paused = true)]
    async fn expired_entries_are_swept_by_later_writes() {
        let s = MemoryStore::new("p:");
        for i in 0..10_000 {
            s.set(&format!("old{i}"), b"v", Some(1));
        }
        // Every entry above had a 1 ms TTL: 2 ms later (on the store's clock, paused here)
        // they are all expired.
        tokio::time::advance(Duration::from_millis(2)).await;
        // Each shard held about 10_000 / SHARDS entries after its last sweep, so twice that
        // many new entries per shard is sure to reach its sweep threshold.
        for i in 0..20_000 {
            s.set(&format!("new{i}"), b"v", None);
        }
        let old_left: usize = s
            .data
            .shards
            .iter()
            .map(|sh| {
                let sh = sh.lock().unwrap_or_else(PoisonError::into_inner);
                sh.map.keys().filter(|k| k.starts_with("p:old")).count()
            })
            .sum();
        assert_eq!(old_left, 0, "expired entries were kept");
    }
}
