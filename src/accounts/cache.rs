//! A short-lived per-replica cache of account records.
//!
//! Token callers are authenticated without a store round trip while their record is fresh
//! ([`FRESH_FOR`]); an admin change reaches the replica that made it at once and every other
//! replica within that time. If the store cannot be read, a stale record is still used (the
//! caller was known a moment ago), so a Redis outage does not turn into an outage of every
//! token caller.

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::AccountRecord;

/// How long a cached record is used without asking the store.
pub const FRESH_FOR: Duration = Duration::from_secs(2);

const SHARDS: usize = 16;
/// Most records kept per shard; beyond it, stale entries are dropped first.
const PER_SHARD: usize = 8_192;

/// A record (or the knowledge that there is none) and when it was read.
type Entry = (Option<Arc<AccountRecord>>, Instant);

/// The cache.
pub struct AccountCache {
    hasher: RandomState,
    shards: Box<[Mutex<HashMap<String, Entry>>]>,
}

impl std::fmt::Debug for AccountCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AccountCache")
    }
}

impl Default for AccountCache {
    fn default() -> Self {
        Self::new()
    }
}

/// What the cache knows about an account.
#[derive(Debug, Clone)]
pub enum Cached {
    /// Read within [`FRESH_FOR`].
    Fresh(Option<Arc<AccountRecord>>),
    /// Read earlier: usable only when the store cannot be reached.
    Stale(Option<Arc<AccountRecord>>),
    /// Never read.
    Unknown,
}

impl AccountCache {
    /// An empty cache.
    pub fn new() -> Self {
        AccountCache {
            hasher: RandomState::new(),
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }

    fn shard(&self, id: &str) -> MutexGuard<'_, HashMap<String, Entry>> {
        self.shards[(self.hasher.hash_one(id) as usize) % SHARDS]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// What is known about `id`.
    pub fn get(&self, id: &str) -> Cached {
        match self.shard(id).get(id) {
            Some((rec, at)) if at.elapsed() < FRESH_FOR => Cached::Fresh(rec.clone()),
            Some((rec, _)) => Cached::Stale(rec.clone()),
            None => Cached::Unknown,
        }
    }

    /// Records what the store said about `id` just now.
    pub fn put(&self, id: &str, rec: Option<AccountRecord>) {
        let mut s = self.shard(id);
        if s.len() >= PER_SHARD && !s.contains_key(id) {
            s.retain(|_, (_, at)| at.elapsed() < FRESH_FOR);
            if s.len() >= PER_SHARD {
                return;
            }
        }
        s.insert(id.to_owned(), (rec.map(Arc::new), Instant::now()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accounts::{AccountKind, Billing};

    fn rec(id: &str) -> AccountRecord {
        AccountRecord {
            id: id.into(),
            kind: AccountKind::Enterprise,
            netuid: None,
            plan: "enterprise".into(),
            billing: Billing::Postpaid,
            credit_limit_rao: 0,
            disabled: false,
        }
    }

    #[test]
    fn fresh_then_unknown_for_others() {
        let c = AccountCache::new();
        assert!(matches!(c.get("acme"), Cached::Unknown));
        c.put("acme", Some(rec("acme")));
        assert!(matches!(c.get("acme"), Cached::Fresh(Some(r)) if r.id == "acme"));
        c.put("ghost", None);
        assert!(matches!(c.get("ghost"), Cached::Fresh(None)));
    }
}
