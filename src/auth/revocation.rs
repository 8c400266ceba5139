//! The replicated set of revoked token ids.
//!
//! Revocations are rare and tokens are checked on every request, so each replica mirrors the
//! set in memory (lock-free reads) and polls the store's version counter every
//! [`POLL_INTERVAL`]; a revocation therefore takes effect on every replica within a second
//! without costing a Redis round trip per request. If the store is unreachable the last known
//! set stays in force.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;

use crate::store::{Store, StoreError};

/// How often replicas look for new revocations.
pub const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// The in-memory mirror. Cheap to share behind an `Arc`.
#[derive(Debug, Default)]
pub struct Revocations {
    set: ArcSwap<HashSet<String>>,
    /// Version of the store's set that `set` reflects (`u64::MAX`: never loaded).
    version: AtomicU64,
}

impl Revocations {
    /// An empty mirror that will load the store's set on its first refresh.
    pub fn new() -> Self {
        Revocations {
            set: ArcSwap::default(),
            version: AtomicU64::new(u64::MAX),
        }
    }

    /// Whether `jti` is revoked (as far as this replica knows).
    pub fn is_revoked(&self, jti: &str) -> bool {
        self.set.load().contains(jti)
    }

    /// Adds `jti` locally at once (the replica that took the revocation needn't wait for a poll).
    pub fn insert_local(&self, jti: &str) {
        let mut next = HashSet::clone(&self.set.load());
        next.insert(jti.to_owned());
        self.set.store(Arc::new(next));
    }

    /// Reloads the set if the store's version moved.
    pub async fn refresh(&self, store: &Store, now_unix: u64) -> Result<(), StoreError> {
        let v = store.revocations_version().await?;
        if v == self.version.load(Ordering::Acquire) {
            return Ok(());
        }
        let all: HashSet<String> = store.revocations(now_unix).await?.into_iter().collect();
        self.set.store(Arc::new(all));
        self.version.store(v, Ordering::Release);
        Ok(())
    }

    /// Polls the store for as long as the returned task runs.
    pub fn spawn_poller(self: &Arc<Self>, store: Store) -> tokio::task::JoinHandle<()> {
        let me = Arc::clone(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(POLL_INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut failing = false;
            loop {
                tick.tick().await;
                match me.refresh(&store, crate::auth::jwt::now_secs()).await {
                    Ok(()) => failing = false,
                    Err(e) if !failing => {
                        failing = true;
                        tracing::warn!(error = %e, "cannot refresh token revocations; keeping the last known set");
                    }
                    Err(_) => {}
                }
            }
        })
    }
}
