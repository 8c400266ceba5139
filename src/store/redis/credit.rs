//! Credits on Redis: `credit_v3.lua`, once per reference, never past the largest balance.

use std::sync::LazyLock;

use super::RedisStore;
use super::reply::Fields;
use crate::store::{CreditOutcome, StoreError};

static CREDIT: LazyLock<::redis::Script> =
    LazyLock::new(|| ::redis::Script::new(include_str!("credit_v3.lua")));

impl RedisStore {
    /// Runs the credit script on the account's balance, the credit's record and the credit log.
    pub(in crate::store) async fn credit(
        &self,
        [balance, record, log]: &[String; 3],
        amount_rao: u64,
        log_line: &str,
        now_ms: u64,
    ) -> Result<CreditOutcome, StoreError> {
        let mut inv = CREDIT.prepare_invoke();
        inv.key(self.full_key(balance))
            .key(self.full_key(record))
            .key(self.full_key(log))
            .arg(amount_rao)
            .arg(now_ms)
            .arg(log_line);
        let mut f = Fields::new("credit", self.invoke("credit", &inv).await?)?;
        let outcome: String = f.get("outcome")?;
        let balance_rao = f.money("balance_rao")?;
        let first_amount = f.money("amount_rao")?;
        let out = match outcome.as_str() {
            "credited" => CreditOutcome::Credited { balance_rao },
            "repeated" => CreditOutcome::Repeated { balance_rao },
            "overflow" => CreditOutcome::Overflow { balance_rao },
            "conflict" => CreditOutcome::Conflict {
                amount_rao: u64::try_from(first_amount)
                    .map_err(|_| StoreError::Protocol("corrupt credit record".into()))?,
            },
            other => return Err(f.unexpected("outcome", other)),
        };
        f.finish()?;
        Ok(out)
    }

    /// The last `n` lines of a credit log, oldest first.
    pub(in crate::store) async fn credit_log_tail(
        &self,
        log: &str,
        n: usize,
    ) -> Result<Vec<String>, StoreError> {
        let start = -i64::try_from(n.max(1)).unwrap_or(i64::MAX);
        self.query(
            "credit_log",
            ::redis::cmd("LRANGE")
                .arg(self.full_key(log))
                .arg(start)
                .arg(-1),
        )
        .await
    }
}
