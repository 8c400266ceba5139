//! The primitive operations: the key-value calls every feature is built from, and the scan
//! behind `delete_all_prefixed` and the ledger snapshot.

use std::time::Duration;

use super::{RedisStore, SCAN_BATCH, glob_escape};
use crate::store::StoreError;

impl RedisStore {
    pub(in crate::store) async fn ping(&self) -> Result<(), StoreError> {
        let pong: String = self.query("ping", &::redis::cmd("PING")).await?;
        if pong == "PONG" {
            Ok(())
        } else {
            Err(StoreError::Protocol(format!(
                "unexpected PING reply {pong:?}"
            )))
        }
    }

    pub(in crate::store) async fn set_nx_px(
        &self,
        key: &str,
        value: &[u8],
        ttl_ms: u64,
    ) -> Result<bool, StoreError> {
        let mut cmd = ::redis::cmd("SET");
        cmd.arg(self.full_key(key))
            .arg(value)
            .arg("NX")
            .arg("PX")
            .arg(ttl_ms);
        // OK when set, nil when the key was already there.
        self.query("set_nx", &cmd).await
    }

    pub(in crate::store) async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.query("get", ::redis::cmd("GET").arg(self.full_key(key)))
            .await
    }

    pub(in crate::store) async fn set(
        &self,
        key: &str,
        value: &[u8],
        ttl_ms: Option<u64>,
    ) -> Result<(), StoreError> {
        let mut cmd = ::redis::cmd("SET");
        cmd.arg(self.full_key(key)).arg(value);
        if let Some(ms) = ttl_ms {
            cmd.arg("PX").arg(ms);
        }
        self.query("set", &cmd).await
    }

    pub(in crate::store) async fn del(&self, key: &str) -> Result<bool, StoreError> {
        let n: u64 = self
            .query("del", ::redis::cmd("DEL").arg(self.full_key(key)))
            .await?;
        Ok(n > 0)
    }

    pub(in crate::store) async fn incr_by(
        &self,
        key: &str,
        delta: i64,
        ttl_ms: Option<u64>,
    ) -> Result<i64, StoreError> {
        let key = self.full_key(key);
        let Some(ms) = ttl_ms else {
            return self
                .query("incr_by", ::redis::cmd("INCRBY").arg(&key).arg(delta))
                .await;
        };
        // MULTI { SET key 0 NX PX ttl; INCRBY key delta } in one round trip: the SET creates
        // the counter with its expiry only if it is absent, so an existing counter keeps its
        // expiry (or its lack of one), and the INCRBY reply is the exact 64-bit value (a Lua
        // script would pass it through a Lua double). If INCRBY fails (not an integer,
        // overflow) the key existed, so the SET did nothing and the value is unchanged.
        let mut pipe = ::redis::pipe();
        pipe.atomic()
            .cmd("SET")
            .arg(&key)
            .arg(0)
            .arg("NX")
            .arg("PX")
            .arg(ms)
            .ignore()
            .cmd("INCRBY")
            .arg(&key)
            .arg(delta);
        let (value,): (i64,) = self.pipeline("incr_by", &pipe).await?;
        Ok(value)
    }

    pub(in crate::store) async fn pttl(&self, key: &str) -> Result<Option<Duration>, StoreError> {
        let ms: i64 = self
            .query("pttl", ::redis::cmd("PTTL").arg(self.full_key(key)))
            .await?;
        // -2: no such key, -1: no expiry.
        Ok(u64::try_from(ms).ok().map(Duration::from_millis))
    }

    /// Keys under this prefix matching `pattern` (after the prefix), returned without the
    /// prefix, sorted and without duplicates (`SCAN` may return a key twice). On a Cluster,
    /// every primary is walked: each node's `SCAN` sees only its own slots.
    pub(super) async fn scan(&self, pattern: &str) -> Result<Vec<String>, StoreError> {
        let pattern = format!("{}{pattern}", glob_escape(&self.prefix));
        let mut out = Vec::new();
        for node in self.scan_targets().await? {
            let mut cursor: u64 = 0;
            loop {
                let mut scan = ::redis::cmd("SCAN");
                scan.arg(cursor)
                    .arg("MATCH")
                    .arg(&pattern)
                    .arg("COUNT")
                    .arg(SCAN_BATCH);
                let (next, keys): (u64, Vec<String>) =
                    self.query_on("scan", &scan, node.as_ref()).await?;
                out.extend(
                    keys.into_iter()
                        .filter_map(|k| k.strip_prefix(&*self.prefix).map(str::to_string)),
                );
                if next == 0 {
                    break;
                }
                cursor = next;
            }
        }
        out.sort_unstable();
        out.dedup();
        Ok(out)
    }

    pub(in crate::store) async fn delete_all_prefixed(&self) -> Result<u64, StoreError> {
        let mut deleted = 0u64;
        for batch in self.scan("*").await?.chunks(SCAN_BATCH) {
            let keys: Vec<String> = batch.iter().map(|k| self.full_key(k)).collect();
            // UNLINK frees memory in the background and counts only keys that still existed,
            // so concurrent expiry does not inflate the count. On a Cluster the client splits
            // it into one UNLINK per slot, sent to the slot's primary, and adds the counts.
            let n: u64 = self
                .query("unlink", ::redis::cmd("UNLINK").arg(&keys))
                .await?;
            deleted += n;
        }
        Ok(deleted)
    }
}
