//! Claims and sets on Redis (see [`crate::store::sets`]).

use std::sync::LazyLock;

use super::RedisStore;
use crate::store::StoreError;

/// Deletes `KEYS[1]` only if it holds `ARGV[1]`: a compare-and-delete in one step, so a
/// release never removes a claim another writer made in between.
static DEL_IF_EQ: LazyLock<::redis::Script> = LazyLock::new(|| {
    ::redis::Script::new(
        "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0",
    )
});

impl RedisStore {
    pub(in crate::store) async fn set_nx(
        &self,
        key: &str,
        value: &[u8],
    ) -> Result<bool, StoreError> {
        let mut cmd = ::redis::cmd("SET");
        cmd.arg(self.full_key(key)).arg(value).arg("NX");
        // OK when set, nil when the key was already there.
        self.query("set_nx", &cmd).await
    }

    pub(in crate::store) async fn del_if_eq(
        &self,
        key: &str,
        value: &[u8],
    ) -> Result<bool, StoreError> {
        let mut inv = DEL_IF_EQ.prepare_invoke();
        inv.key(self.full_key(key)).arg(value);
        let reply = self.invoke("del_if_eq", &inv).await?;
        let n: u64 = ::redis::from_redis_value(reply)
            .map_err(|e| StoreError::Protocol(format!("del_if_eq reply: {e}")))?;
        Ok(n > 0)
    }

    pub(in crate::store) async fn sadd(&self, key: &str, member: &str) -> Result<bool, StoreError> {
        let n: u64 = self
            .query(
                "sadd",
                ::redis::cmd("SADD").arg(self.full_key(key)).arg(member),
            )
            .await?;
        Ok(n > 0)
    }

    pub(in crate::store) async fn srem(&self, key: &str, member: &str) -> Result<bool, StoreError> {
        let n: u64 = self
            .query(
                "srem",
                ::redis::cmd("SREM").arg(self.full_key(key)).arg(member),
            )
            .await?;
        Ok(n > 0)
    }

    pub(in crate::store) async fn smembers(&self, key: &str) -> Result<Vec<String>, StoreError> {
        let mut members: Vec<String> = self
            .query("smembers", ::redis::cmd("SMEMBERS").arg(self.full_key(key)))
            .await?;
        members.sort_unstable();
        Ok(members)
    }
}
