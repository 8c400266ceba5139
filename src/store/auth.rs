//! Store operations of authentication: the admission step and the revocation set.
//!
//! Admission is one round trip: the replay mark (`SET NX PX`) and the account record read
//! run in one script on the account's hash slot. Revocations are a small replicated set that
//! every replica mirrors in memory (see [`crate::auth::revocation`]), so checking a token costs
//! no round trip at all.

use std::time::Duration;

use super::{Store, StoreError, ttl_millis};

/// What admission found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthAdmission {
    /// False when the replay mark already existed: the signed request was seen before.
    pub fresh: bool,
    /// The account record, if the account exists.
    pub account: Option<Vec<u8>>,
}

impl Store {
    /// Sets the replay mark `mark` (if given, with its TTL) and reads `account_key`, atomically
    /// and in one round trip on Redis.
    pub async fn admit_auth(
        &self,
        account_key: &str,
        mark: Option<(&str, Duration)>,
    ) -> Result<AuthAdmission, StoreError> {
        let mark = match mark {
            Some((k, ttl)) => Some((k, ttl_millis(ttl)?)),
            None => None,
        };
        match self {
            Store::Memory(s) => {
                let fresh = match mark {
                    Some((k, ms)) => s.set_nx_px(k, b"1", ms),
                    None => true,
                };
                Ok(AuthAdmission {
                    fresh,
                    account: s.get(account_key),
                })
            }
            Store::Redis(s) => s.admit_auth(account_key, mark).await,
        }
    }

    /// Adds `jti` to the revocation set until `until_unix` (the token's own expiry: after it
    /// the token is refused anyway) and bumps the version replicas poll.
    pub async fn revoke(
        &self,
        jti: &str,
        until_unix: u64,
        now_unix: u64,
    ) -> Result<(), StoreError> {
        match self {
            Store::Memory(s) => {
                s.revoke(jti, until_unix, now_unix);
                Ok(())
            }
            Store::Redis(s) => s.revoke(jti, until_unix, now_unix).await,
        }
    }

    /// The revocation set's version: it changes whenever a token is revoked.
    pub async fn revocations_version(&self) -> Result<u64, StoreError> {
        match self {
            Store::Memory(s) => Ok(s.revocations_version()),
            Store::Redis(s) => s.revocations_version().await,
        }
    }

    /// Every revoked token id that has not expired yet.
    pub async fn revocations(&self, now_unix: u64) -> Result<Vec<String>, StoreError> {
        match self {
            Store::Memory(s) => Ok(s.revocations(now_unix)),
            Store::Redis(s) => s.revocations(now_unix).await,
        }
    }
}
