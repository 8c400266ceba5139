//! Authentication on Redis: the one-round-trip admission script and the revocation set.

use std::sync::LazyLock;

use super::RedisStore;
use super::reply::Fields;
use crate::store::{AuthAdmission, StoreError, keys};

/// `auth_admit_v2.lua`: the replay mark and the account record read, atomically.
static AUTH_ADMIT: LazyLock<::redis::Script> =
    LazyLock::new(|| ::redis::Script::new(include_str!("auth_admit_v2.lua")));

impl RedisStore {
    pub(in crate::store) async fn admit_auth(
        &self,
        account_key: &str,
        mark: Option<(&str, u64)>,
    ) -> Result<AuthAdmission, StoreError> {
        let mut inv = AUTH_ADMIT.prepare_invoke();
        inv.key(self.full_key(account_key));
        if let Some((k, ms)) = mark {
            inv.key(self.full_key(k)).arg(ms);
        }
        let mut f = Fields::new("auth_admit", self.invoke("auth_admit", &inv).await?)?;
        let fresh = match f.count("fresh")? {
            0 => false,
            1 => true,
            n => return Err(f.unexpected("fresh", &n.to_string())),
        };
        let adm = AuthAdmission {
            fresh,
            account: f.get("account")?,
        };
        f.finish()?;
        Ok(adm)
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
