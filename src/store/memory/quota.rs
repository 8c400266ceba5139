//! The memory backend's limiter: the rules of `admit_v4.lua` / `settle_v4.lua` for limits,
//! in Rust, for a single process. Times are the backend clock's monotonic milliseconds
//! ([`super::clock::Clock::ms`]), passed in by the caller.
//!
//! Scopes live in shards chosen by their tag; a request touching two scopes locks both shards
//! in index order (so two requests never wait on each other in a cycle), which makes the
//! decision all-or-nothing like the Redis script.

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::store::quota::{BucketView, Limit, QuotaDecision, ScopeSpec, ScopeView};

const SHARDS: usize = 16;
const PERIODS: [f64; 3] = [60_000.0, 60_000.0, 86_400_000.0];

#[derive(Default)]
struct ScopeState {
    /// (level, at ms) per bucket; `None` = full.
    buckets: [Option<(f64, u64)>; 3],
    /// Lease expiry (ms) by request id.
    leases: HashMap<String, u64>,
}

impl ScopeState {
    fn level(&self, b: usize, cap: u64, now: u64) -> f64 {
        let cap = cap as f64;
        match self.buckets[b] {
            None => cap,
            Some((l, t)) => (l + now.saturating_sub(t) as f64 * cap / PERIODS[b]).min(cap),
        }
    }

    fn prune(&mut self, now: u64) {
        self.leases.retain(|_, exp| *exp > now);
    }
}

/// A locked shard with its index.
type Locked<'a> = (usize, MutexGuard<'a, HashMap<String, ScopeState>>);

/// All scopes of one memory store family.
pub(super) struct QuotaTable {
    hasher: RandomState,
    shards: Box<[Mutex<HashMap<String, ScopeState>>]>,
}

fn view(st: Option<&ScopeState>, spec: &ScopeSpec, now: u64) -> ScopeView {
    let caps = spec.caps();
    let b = |i: usize| {
        let lvl = st.map_or(caps[i] as f64, |s| s.level(i, caps[i], now));
        BucketView {
            remaining: lvl.floor().max(0.0) as u64,
            reset_ms: ((caps[i] as f64 - lvl) * PERIODS[i] / caps[i] as f64)
                .ceil()
                .max(0.0) as u64,
        }
    };
    ScopeView {
        rpm: b(0),
        tpm: b(1),
        tpd: b(2),
        in_flight: st.map_or(0, |s| s.leases.len() as u64),
    }
}

impl QuotaTable {
    pub(super) fn new() -> Self {
        QuotaTable {
            hasher: RandomState::new(),
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }

    /// Locks the shards of `tags` in index order; returns the guards and each tag's shard slot.
    fn lock(&self, tags: &[String]) -> (Vec<Locked<'_>>, Vec<usize>) {
        let idx: Vec<usize> = tags
            .iter()
            .map(|t| (self.hasher.hash_one(t) as usize) % SHARDS)
            .collect();
        let mut order = idx.clone();
        order.sort_unstable();
        order.dedup();
        let guards: Vec<_> = order
            .iter()
            .map(|&i| {
                (
                    i,
                    self.shards[i]
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner),
                )
            })
            .collect();
        let slots = idx
            .iter()
            .map(|i| guards.iter().position(|(g, _)| g == i).unwrap_or(0))
            .collect();
        (guards, slots)
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn admit(
        &self,
        now: u64,
        prefix: &str,
        scopes: &[ScopeSpec],
        request_id: &str,
        tokens: u64,
        lease_ms: u64,
        consume: bool,
    ) -> QuotaDecision {
        let tags: Vec<String> = scopes
            .iter()
            .map(|s| format!("{prefix}{}", s.tag))
            .collect();
        let (mut guards, slots) = self.lock(&tags);
        let mut refused = None;
        for (i, spec) in scopes.iter().enumerate() {
            let map = &mut guards[slots[i]].1;
            if let Some(st) = map.get_mut(&tags[i]) {
                st.prune(now);
            }
            if !consume || refused.is_some() {
                continue;
            }
            let st = map.get(&tags[i]);
            let caps = spec.caps();
            let costs = [1.0, tokens as f64, tokens as f64];
            for b in 0..3 {
                let lvl = st.map_or(caps[b] as f64, |s| s.level(b, caps[b], now));
                if lvl < costs[b] {
                    let wait = if costs[b] > caps[b] as f64 {
                        PERIODS[b]
                    } else {
                        ((costs[b] - lvl) * PERIODS[b] / caps[b] as f64).ceil()
                    };
                    let limit = [
                        Limit::RequestsPerMinute,
                        Limit::TokensPerMinute,
                        Limit::TokensPerDay,
                    ][b];
                    refused = Some((i, limit, std::time::Duration::from_millis(wait as u64)));
                    break;
                }
            }
            if refused.is_none() {
                let held = st.map_or(0, |s| s.leases.len() as u64);
                if held >= spec.max_concurrent {
                    let first = st
                        .and_then(|s| s.leases.values().min().copied())
                        .unwrap_or(now + 1000);
                    let wait = first.saturating_sub(now).clamp(1, 1000);
                    refused = Some((
                        i,
                        Limit::Concurrency,
                        std::time::Duration::from_millis(wait),
                    ));
                }
            }
        }
        if consume && refused.is_none() {
            for (i, spec) in scopes.iter().enumerate() {
                let map = &mut guards[slots[i]].1;
                let st = map.entry(tags[i].clone()).or_default();
                let caps = spec.caps();
                let costs = [1.0, tokens as f64, tokens as f64];
                for b in 0..3 {
                    let lvl = st.level(b, caps[b], now) - costs[b];
                    st.buckets[b] = Some((lvl, now));
                }
                st.leases.insert(request_id.to_owned(), now + lease_ms);
            }
        }
        let views = scopes
            .iter()
            .enumerate()
            .map(|(i, spec)| view(guards[slots[i]].1.get(&tags[i]), spec, now))
            .collect();
        QuotaDecision {
            refused,
            scopes: views,
        }
    }

    pub(super) fn settle(
        &self,
        now: u64,
        prefix: &str,
        scopes: &[ScopeSpec],
        request_id: &str,
        tokens_back: i64,
        request_back: bool,
    ) -> usize {
        let tags: Vec<String> = scopes
            .iter()
            .map(|s| format!("{prefix}{}", s.tag))
            .collect();
        let (mut guards, slots) = self.lock(&tags);
        let mut removed = 0;
        for i in 0..scopes.len() {
            if let Some(st) = guards[slots[i]].1.get_mut(&tags[i])
                && st.leases.remove(request_id).is_some()
            {
                removed += 1;
            }
        }
        if removed == 0 {
            return 0;
        }
        for (i, spec) in scopes.iter().enumerate() {
            let map = &mut guards[slots[i]].1;
            let Some(st) = map.get_mut(&tags[i]) else {
                continue;
            };
            let caps = spec.caps();
            let back = [
                f64::from(u8::from(request_back)),
                tokens_back as f64,
                tokens_back as f64,
            ];
            for b in 0..3 {
                if back[b] != 0.0 {
                    let lvl = (st.level(b, caps[b], now) + back[b]).min(caps[b] as f64);
                    st.buckets[b] = Some((lvl, now));
                }
            }
            st.prune(now);
            let full = (0..3).all(|b| st.level(b, caps[b], now) >= caps[b] as f64);
            if full && st.leases.is_empty() {
                map.remove(&tags[i]);
            }
        }
        removed
    }

    pub(super) fn renew(
        &self,
        now: u64,
        prefix: &str,
        scopes: &[ScopeSpec],
        request_id: &str,
        lease_ms: u64,
    ) {
        let tags: Vec<String> = scopes
            .iter()
            .map(|s| format!("{prefix}{}", s.tag))
            .collect();
        let (mut guards, slots) = self.lock(&tags);
        for i in 0..scopes.len() {
            if let Some(st) = guards[slots[i]].1.get_mut(&tags[i])
                && let Some(exp) = st.leases.get_mut(request_id)
            {
                *exp = now + lease_ms;
            }
        }
    }
}
