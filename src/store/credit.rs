//! Credits: the one way money enters an account, idempotent on the credit's reference.

use super::{Store, StoreError, keys};

/// What a credit did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CreditOutcome {
    /// Credited now; the balance after it.
    Credited {
        /// Balance after the credit, rao.
        balance_rao: i64,
    },
    /// This reference was credited before with the same amount; nothing changed. The balance
    /// right after that first credit.
    Repeated {
        /// Balance after the first credit, rao.
        balance_rao: i64,
    },
    /// This reference was credited before with a different amount: refused.
    Conflict {
        /// The amount of the first credit.
        amount_rao: u64,
    },
    /// The balance would pass 2^63−1 rao: refused, nothing recorded (the reference stays
    /// unused).
    Overflow {
        /// The balance now, rao.
        balance_rao: i64,
    },
}

impl Store {
    /// Adds `amount_rao` to `account`'s balance unless `reference` was credited before.
    /// `log_line` is appended to the account's credit log when the credit happens.
    pub async fn credit(
        &self,
        account: &str,
        reference: &str,
        amount_rao: u64,
        log_line: &str,
        now_ms: u64,
    ) -> Result<CreditOutcome, StoreError> {
        let keys = [
            keys::balance(account),
            keys::credit(account, reference),
            keys::credit_log(account),
        ];
        match self {
            Store::Memory(s) => s.credit(&keys, amount_rao, log_line, now_ms),
            Store::Redis(s) => s.credit(&keys, amount_rao, log_line, now_ms).await,
        }
    }

    /// The last `n` lines of `account`'s credit log, oldest first (what `GET /v1/account`
    /// shows of recent deposits).
    pub async fn credit_log_tail(
        &self,
        account: &str,
        n: usize,
    ) -> Result<Vec<String>, StoreError> {
        let log = keys::credit_log(account);
        match self {
            Store::Memory(s) => {
                let all = s.get(&log).unwrap_or_default();
                let text = String::from_utf8_lossy(&all);
                let lines: Vec<&str> = text.lines().collect();
                let from = lines.len().saturating_sub(n.max(1));
                Ok(lines[from..].iter().map(|l| (*l).to_owned()).collect())
            }
            Store::Redis(s) => s.credit_log_tail(&log, n).await,
        }
    }
}
