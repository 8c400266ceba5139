//! The storage boundary: Redis when configured, in-memory for a single process.
//!
//! Everything that must survive a request or be shared between gateway replicas (replay marks,
//! revocations, quota buckets, prepaid balances) goes through [`Store`]. Today it offers the
//! primitive operations those features are built from; both backends implement them with the
//! same observable behaviour, which `tests/store.rs` checks by running one behaviour suite
//! against each.
//!
//! ## Keys
//! Callers pass keys *without* the deployment prefix; the store prepends its `key_prefix`
//! (`GATEWAY_KEY_PREFIX`) to every key it touches, so several deployments or test runs can
//! share one Redis. Every key and hash tag is spelled in [`keys`] and nowhere else; the hash
//! tag is inside the key (`{a:ACCOUNT}:…`), never in the prefix, so the prefix does not decide
//! the slot.
//!
//! ## Layout
//! [`Store`] is the boundary every caller uses, one file per domain: this file the primitives,
//! [`quota`] the limiter's types, [`ledger`] admission, settlement and the ledger's reads,
//! [`credit`] credits, [`auth`] the authentication step and revocations, [`sets`] durable
//! claims and small sets (coldkey links). Each dispatches to
//! [`memory`] or [`redis`], which are split by the same domains. Results are named types.
//!
//! ## Time to live
//! Expiry has millisecond resolution on both backends. A TTL is rounded *up* to whole
//! milliseconds (so a tiny positive TTL never turns into "no expiry" or a Redis error); a zero
//! TTL or one above [`MAX_TTL`] is refused with [`StoreError::Protocol`] before any I/O.
//!
//! ## Values
//! Values are bytes. Counters written by [`Store::incr_by`] are ASCII decimal, exactly as Redis
//! stores them, so a counter read back with [`Store::get`] looks the same on both backends.

pub(crate) mod auth;
pub(crate) mod credit;
pub(crate) mod keys;
pub(crate) mod ledger;
pub(crate) mod memory;
pub(crate) mod quota;
pub(crate) mod redis;
pub(crate) mod sets;

pub use auth::AuthAdmission;
pub use credit::CreditOutcome;
pub use ledger::{
    Admission, BillMode, Charge, DayRollup, Ending, Hold, LedgerPolicy, LedgerSnapshot, Peek,
    ROLLUP_EVERY, Recorded, Renewal, Rollup, Settled, UsageEntry,
};
pub(crate) use memory::rfc3339_and_day;
pub use quota::{BucketView, Limit, QuotaDecision, ScopeSpec, ScopeView};

use std::fmt;
use std::time::Duration;

/// The longest accepted time to live (100 years).
///
/// Anything meant to live longer is a durable record and should be written without expiry;
/// the bound keeps `Instant` arithmetic in the memory backend far from overflow.
pub const MAX_TTL: Duration = Duration::from_secs(100 * 365 * 24 * 60 * 60);

/// Why a store operation failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The backend cannot be reached (connection refused, broken pipe, authentication refused,
    /// server loading…). Messages never contain the connection URL or its password.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The backend did not answer within the command timeout.
    #[error("store command timed out")]
    Timeout,
    /// The backend answered, but refused the operation (wrong value type, not an integer,
    /// overflow, invalid TTL, script error…). Retrying the same call will fail the same way.
    #[error("store protocol error: {0}")]
    Protocol(String),
}

/// The storage backend the gateway runs on. Cheap to clone (an `Arc` inside).
#[derive(Clone)]
pub enum Store {
    /// Process-local state: for a single gateway process and for tests.
    Memory(memory::MemoryStore),
    /// Redis, shared by every gateway replica.
    Redis(redis::RedisStore),
}

impl fmt::Debug for Store {
    // Written by hand so that nothing connection-related (the URL may carry a password) can
    // ever be printed through `{:?}`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.backend())
            .field("key_prefix", &self.key_prefix())
            .finish()
    }
}

impl Store {
    /// A new, empty in-memory store whose keys all start with `key_prefix`.
    pub fn memory(key_prefix: &str) -> Store {
        Store::Memory(memory::MemoryStore::new(key_prefix))
    }

    /// Connects to Redis at `url`: one server (`redis://`, `rediss://`), or a Redis Cluster
    /// through the seed nodes of a `redis+cluster://` / `rediss+cluster://` URL.
    ///
    /// Connecting is bounded by `connect_timeout`; every later command is bounded by
    /// `command_timeout` (then it fails with [`StoreError::Timeout`]), so no call ever hangs.
    /// A dropped connection is re-established automatically by the next command.
    /// The URL may carry a password: it never appears in an error message or log line.
    pub async fn redis(
        url: &str,
        key_prefix: &str,
        connect_timeout: Duration,
        command_timeout: Duration,
    ) -> Result<Store, StoreError> {
        redis::RedisStore::connect(url, false, key_prefix, connect_timeout, command_timeout)
            .await
            .map(Store::Redis)
    }

    /// Connects to the Redis `config` names, as [`Store::redis`] does, with `command_timeout`;
    /// in cluster mode ([`crate::config::RedisConfig::cluster_mode`]) even a `redis://` URL is
    /// a Cluster's seed node. `None` when `config` names no Redis.
    pub async fn from_config(
        config: &crate::config::RedisConfig,
        command_timeout: Duration,
    ) -> Result<Option<Store>, StoreError> {
        let Some(url) = &config.url else {
            return Ok(None);
        };
        redis::RedisStore::connect(
            url.expose(),
            config.cluster_mode(),
            &config.key_prefix,
            Duration::from_millis(config.connect_timeout_ms),
            command_timeout,
        )
        .await
        .map(|s| Some(Store::Redis(s)))
    }

    /// Records Redis command latency and failures in `metrics` (`agw_redis_*`); the in-memory
    /// backend has no round trips to record.
    pub fn instrument(&mut self, metrics: &crate::metrics::Metrics) {
        if let Store::Redis(s) = self {
            s.instrument(metrics.redis());
        }
    }

    /// The same backend (same data, same Redis connection) seen through another key prefix.
    ///
    /// Lets tests and tooling address two prefixes without opening a second connection, and
    /// lets the in-memory backend show the same prefix isolation as a shared Redis.
    pub fn with_key_prefix(&self, key_prefix: &str) -> Store {
        match self {
            Store::Memory(s) => Store::Memory(s.with_key_prefix(key_prefix)),
            Store::Redis(s) => Store::Redis(s.with_key_prefix(key_prefix)),
        }
    }

    /// `"memory"` or `"redis"`: for logs, metrics and the health endpoint.
    pub fn backend(&self) -> &'static str {
        match self {
            Store::Memory(_) => "memory",
            Store::Redis(_) => "redis",
        }
    }

    /// The prefix prepended to every key.
    pub fn key_prefix(&self) -> &str {
        match self {
            Store::Memory(s) => s.key_prefix(),
            Store::Redis(s) => s.key_prefix(),
        }
    }

    /// Checks that the backend answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        match self {
            Store::Memory(_) => Ok(()),
            Store::Redis(s) => s.ping().await,
        }
    }

    /// Sets `key` only if it is absent, with an expiry (Redis `SET NX PX`): the primitive
    /// behind replay marks. Returns `true` when this call set it, `false` when it was present.
    pub async fn set_nx_px(
        &self,
        key: &str,
        value: &[u8],
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let ttl_ms = ttl_millis(ttl)?;
        match self {
            Store::Memory(s) => Ok(s.set_nx_px(key, value, ttl_ms)),
            Store::Redis(s) => s.set_nx_px(key, value, ttl_ms).await,
        }
    }

    /// The value of `key`, `None` when absent or expired.
    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        match self {
            Store::Memory(s) => Ok(s.get(key)),
            Store::Redis(s) => s.get(key).await,
        }
    }

    /// Sets `key` unconditionally. Like Redis `SET`, it replaces any previous expiry: with
    /// `ttl: None` the key no longer expires.
    pub async fn set(
        &self,
        key: &str,
        value: &[u8],
        ttl: Option<Duration>,
    ) -> Result<(), StoreError> {
        let ttl_ms = ttl.map(ttl_millis).transpose()?;
        match self {
            Store::Memory(s) => {
                s.set(key, value, ttl_ms);
                Ok(())
            }
            Store::Redis(s) => s.set(key, value, ttl_ms).await,
        }
    }

    /// Deletes `key`; `true` when it existed.
    pub async fn del(&self, key: &str) -> Result<bool, StoreError> {
        match self {
            Store::Memory(s) => Ok(s.del(key)),
            Store::Redis(s) => s.del(key).await,
        }
    }

    /// Adds `delta` atomically and returns the new value; an absent key starts at 0.
    ///
    /// `ttl` applies only when this call creates the key: an existing counter keeps its expiry
    /// (or its lack of one), so a fixed window is never extended by later increments.
    /// A value that is not a decimal `i64`, or a result that would overflow, fails with
    /// [`StoreError::Protocol`] and leaves the value unchanged.
    pub async fn incr_by(
        &self,
        key: &str,
        delta: i64,
        ttl: Option<Duration>,
    ) -> Result<i64, StoreError> {
        let ttl_ms = ttl.map(ttl_millis).transpose()?;
        match self {
            Store::Memory(s) => s.incr_by(key, delta, ttl_ms),
            Store::Redis(s) => s.incr_by(key, delta, ttl_ms).await,
        }
    }

    /// Remaining time to live (millisecond resolution); `None` when the key is absent or has
    /// no expiry.
    pub async fn pttl(&self, key: &str) -> Result<Option<Duration>, StoreError> {
        match self {
            Store::Memory(s) => Ok(s.pttl(key)),
            Store::Redis(s) => s.pttl(key).await,
        }
    }

    /// Deletes every key under this store's prefix and returns how many went.
    ///
    /// Redis: `SCAN MATCH prefix*` + `UNLINK` in batches, never `FLUSHDB`. For tests and
    /// `dev` tooling. An empty prefix is refused ([`StoreError::Protocol`]): it would mean
    /// "every key in the database", which is never what a caller of this method wants.
    pub async fn delete_all_prefixed(&self) -> Result<u64, StoreError> {
        if self.key_prefix().is_empty() {
            return Err(StoreError::Protocol(
                "refusing to delete every key: this store has an empty key prefix".to_owned(),
            ));
        }
        match self {
            Store::Memory(s) => Ok(s.delete_all_prefixed()),
            Store::Redis(s) => s.delete_all_prefixed().await,
        }
    }
}

/// Validates a TTL and converts it to whole milliseconds, rounding up.
fn ttl_millis(ttl: Duration) -> Result<u64, StoreError> {
    if ttl.is_zero() {
        return Err(StoreError::Protocol("ttl must be positive".to_owned()));
    }
    if ttl > MAX_TTL {
        return Err(StoreError::Protocol(format!(
            "ttl above the maximum of {} s",
            MAX_TTL.as_secs()
        )));
    }
    // Fits in u64: MAX_TTL is about 3.2e12 ms.
    let ms = ttl.as_nanos().div_ceil(1_000_000);
    u64::try_from(ms).map_err(|_| StoreError::Protocol("ttl out of range".to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_rounds_up_to_whole_milliseconds() {
        assert_eq!(ttl_millis(Duration::from_nanos(1)).ok(), Some(1));
        assert_eq!(ttl_millis(Duration::from_micros(1500)).ok(), Some(2));
        assert_eq!(ttl_millis(Duration::from_millis(150)).ok(), Some(150));
        assert_eq!(ttl_millis(MAX_TTL).ok(), Some(MAX_TTL.as_secs() * 1000));
    }

    #[test]
    fn zero_and_huge_ttls_are_refused() {
        assert!(matches!(
            ttl_millis(Duration::ZERO),
            Err(StoreError::Protocol(_))
        ));
        assert!(matches!(
            ttl_millis(MAX_TTL + Duration::from_millis(1)),
            Err(StoreError::Protocol(_))
        ));
    }
}
