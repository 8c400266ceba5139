//! Credits: the one way money enters an account, idempotent on the credit's reference.

use super::{Store, StoreError};

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

/// Keys of an account's credits.
fn keys(account: &str, reference: &str) -> [String; 3] {
    [
        format!("{{a:{account}}}:bal"),
        format!("{{a:{account}}}:credit:{reference}"),
        format!("{{a:{account}}}:credits"),
    ]
}

fn parse(s: &str) -> Result<i64, StoreError> {
    s.parse()
        .map_err(|_| StoreError::Protocol(format!("balance `{s}` is not an integer")))
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
        let [bal, rec, log] = keys(account, reference);
        let (code, balance, first_amount): (i64, String, String) = match self {
            Store::Memory(s) => s.credit(&bal, &rec, &log, amount_rao, log_line, now_ms)?,
            Store::Redis(s) => {
                s.credit(&bal, &rec, &log, amount_rao, log_line, now_ms)
                    .await?
            }
        };
        Ok(match code {
            1 => CreditOutcome::Credited {
                balance_rao: parse(&balance)?,
            },
            0 => CreditOutcome::Repeated {
                balance_rao: parse(&balance)?,
            },
            -2 => CreditOutcome::Overflow {
                balance_rao: parse(&balance)?,
            },
            -1 => CreditOutcome::Conflict {
                amount_rao: first_amount
                    .parse()
                    .map_err(|_| StoreError::Protocol("corrupt credit record".into()))?,
            },
            other => {
                return Err(StoreError::Protocol(format!(
                    "credit script answered code {other}"
                )));
            }
        })
    }
}
