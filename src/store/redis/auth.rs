//! Authentication on Redis: the replay mark and the account read in one round trip, and the
//! revocation set.

use super::RedisStore;
use crate::store::{AuthAdmission, StoreError, keys};

impl RedisStore {
    /// Sets the replay mark (when given) and reads the account record, pipelined: one round
    /// trip of two plain commands, on one slot (both keys carry the account's hash tag). They
    /// need no atomicity between them, so no script: a script run costs Redis several times a
    /// plain command.
    pub(in crate::store) async fn admit_auth(
        &self,
        account_key: &str,
        mark: Option<(&str, u64)>,
    ) -> Result<AuthAdmission, StoreError> {
        let account = self.full_key(account_key);
        let Some((k, ms)) = mark else {
            let account = self
                .query("auth_admit", ::redis::cmd("GET").arg(&account))
                .await?;
            return Ok(AuthAdmission {
                fresh: true,
                account,
            });
        };
        let mut pipe = ::redis::pipe();
        pipe.cmd("SET")
            .arg(self.full_key(k))
            .arg("1")
            .arg("NX")
            .arg("PX")
            .arg(ms)
            .cmd("GET")
            .arg(&account);
        let (set, account): (::redis::Value, Option<Vec<u8>>) =
            self.pipeline("auth_admit", &pipe).await?;
        Ok(AuthAdmission {
            // `SET … NX` answers nil when the mark was there already: a replay.
            fresh: !matches!(set, ::redis::Value::Nil),
            account,
        })
    }

    pub(in crate::store) async fn revoke(
        &self,
        jti: &str,
        until_unix: u64,
        now_unix: u64,
    ) -> Result<(), StoreError> {
        let set = self.full_key(keys::REVOKED);
        let mut pipe = ::redis::pipe();
        pipe.atomic()
            .cmd("ZADD")
            .arg(&set)
            .arg(until_unix)
            .arg(jti)
            .ignore()
            // Tokens past their expiry are refused anyway: forget their revocations.
            .cmd("ZREMRANGEBYSCORE")
            .arg(&set)
            .arg("-inf")
            .arg(format!("({now_unix}"))
            .ignore()
            .cmd("INCR")
            .arg(self.full_key(keys::REVOKED_VERSION))
            .ignore();
        self.pipeline::<()>("revoke", &pipe).await
    }

    pub(in crate::store) async fn revocations_version(&self) -> Result<u64, StoreError> {
        let v: Option<u64> = self
            .query(
                "revocations_version",
                ::redis::cmd("GET").arg(self.full_key(keys::REVOKED_VERSION)),
            )
            .await?;
        Ok(v.unwrap_or(0))
    }

    pub(in crate::store) async fn revocations(
        &self,
        now_unix: u64,
    ) -> Result<Vec<String>, StoreError> {
        self.query(
            "revocations",
            ::redis::cmd("ZRANGEBYSCORE")
                .arg(self.full_key(keys::REVOKED))
                .arg(now_unix)
                .arg("+inf"),
        )
        .await
    }
}
