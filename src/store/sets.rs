//! Durable claims and small sets: the primitives behind coldkey links.
//!
//! A claim is a key written only if absent and never expiring ([`Store::set_nx`]); it is
//! released only by its holder ([`Store::del_if_eq`]), so a stale release cannot delete a
//! claim someone else made since. Sets ([`Store::sadd`], [`Store::srem`],
//! [`Store::smembers`]) hold short lists of text members (an account's linked coldkeys, a
//! coldkey's used nonces). On Redis they are `SET NX`, a compare-and-delete script and the
//! `S*` set commands; the memory backend keeps a set as one entry under the shard lock, so
//! each operation is atomic there too. Both behave the same, which `tests/store_sets.rs`
//! checks on each backend.

use super::{Store, StoreError};

impl Store {
    /// Sets `key` to `value` only if it is absent, without expiry (Redis `SET NX`). Returns
    /// `true` when this call set it. Of many concurrent calls exactly one wins.
    pub async fn set_nx(&self, key: &str, value: &[u8]) -> Result<bool, StoreError> {
        match self {
            Store::Memory(s) => Ok(s.set_nx(key, value)),
            Store::Redis(s) => s.set_nx(key, value).await,
        }
    }

    /// Deletes `key` only if its value is exactly `value`, atomically; `true` when deleted.
    pub async fn del_if_eq(&self, key: &str, value: &[u8]) -> Result<bool, StoreError> {
        match self {
            Store::Memory(s) => Ok(s.del_if_eq(key, value)),
            Store::Redis(s) => s.del_if_eq(key, value).await,
        }
    }

    /// Adds `member` to the set at `key` (created without expiry); `true` when it was not
    /// there yet. A key holding a plain value fails with [`StoreError::Protocol`].
    pub async fn sadd(&self, key: &str, member: &str) -> Result<bool, StoreError> {
        match self {
            Store::Memory(s) => s.sadd(key, member),
            Store::Redis(s) => s.sadd(key, member).await,
        }
    }

    /// Removes `member` from the set at `key`; `true` when it was there. The set's key goes
    /// when its last member does.
    pub async fn srem(&self, key: &str, member: &str) -> Result<bool, StoreError> {
        match self {
            Store::Memory(s) => s.srem(key, member),
            Store::Redis(s) => s.srem(key, member).await,
        }
    }

    /// The members of the set at `key`, sorted; empty when there is no such set.
    pub async fn smembers(&self, key: &str) -> Result<Vec<String>, StoreError> {
        match self {
            Store::Memory(s) => s.smembers(key),
            Store::Redis(s) => s.smembers(key).await,
        }
    }
}
