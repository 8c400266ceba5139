//! The store lease that makes one replica the chain's reader: taken when free (`SET NX PX`),
//! renewed by its holder each round, and lost to another replica only when the holder has
//! not renewed it for its whole lifetime (it stopped, or it lost the store).

use std::time::Duration;

use crate::store::{Store, StoreError};

/// Takes or renews the lease at `key` for `replica`; `true` while this replica holds it.
///
/// The renewal is a read then a write: two replicas can overlap for a moment after the lease
/// expires between them, which both chain tasks tolerate (their reads are idempotent), so no
/// compare-and-set script is needed.
pub(crate) async fn hold(
    store: &Store,
    key: &str,
    replica: &str,
    ttl: Duration,
) -> Result<bool, StoreError> {
    let me = replica.as_bytes();
    if store.set_nx_px(key, me, ttl).await? {
        return Ok(true);
    }
    match store.get(key).await? {
        Some(holder) if holder == me => {
            store.set(key, me, Some(ttl)).await?;
            Ok(true)
        }
        _ => Ok(false),
    }
}
