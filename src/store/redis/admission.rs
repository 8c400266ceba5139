//! Admission and settlement on Redis: `admit_v3.lua` (admit and peek) and `settle_v3.lua`
//! (settle and renew), each with `ledger_lib_v2.lua` prepended, one round trip per call.
//!
//! The scripts take the scopes' keys as `KEYS` (four per scope, [`ScopeSpec::keys`]) and the
//! rest as `ARGV`, in the order their headers list; they answer named fields
//! (see [`reply`](super::reply)), decoded here into the store's types.

use std::sync::LazyLock;
use std::time::Duration;

use super::RedisStore;
use super::reply::Fields;
use crate::store::StoreError;
use crate::store::ledger::{Admission, Charge, Ending, Hold, LedgerPolicy, Recorded, Settled};
use crate::store::quota::{BucketView, Limit, QuotaDecision, ScopeSpec, ScopeView};

static ADMIT: LazyLock<::redis::Script> = LazyLock::new(|| {
    ::redis::Script::new(concat!(
        include_str!("ledger_lib_v2.lua"),
        include_str!("admit_v3.lua")
    ))
});

static SETTLE: LazyLock<::redis::Script> = LazyLock::new(|| {
    ::redis::Script::new(concat!(
        include_str!("ledger_lib_v2.lua"),
        include_str!("settle_v3.lua")
    ))
});

/// Whether `admit_v3` consumes (`Admit`) or only reports (`Peek`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::store) enum AdmitMode {
    /// Check and, if everything fits, consume and hold.
    Admit,
    /// Report the scopes and the money; consume nothing.
    Peek,
}

/// Whether `settle_v3` ends a request or extends it.
#[derive(Clone, Copy)]
enum SettleMode {
    Settle,
    Renew,
}

/// What `settle_v3` is asked besides the scopes and the request id.
struct SettleCall<'a> {
    mode: SettleMode,
    lease_ms: u64,
    tokens_back: i64,
    request_back: bool,
    account: &'a str,
    charge: Option<&'a Charge>,
}

impl RedisStore {
    #[allow(clippy::too_many_arguments)]
    pub(in crate::store) async fn admit(
        &self,
        scopes: &[ScopeSpec],
        request_id: &str,
        tokens: u64,
        lease_ms: u64,
        mode: AdmitMode,
        hold: Option<&Hold<'_>>,
        policy: &LedgerPolicy,
    ) -> Result<Admission, StoreError> {
        let mut inv = ADMIT.prepare_invoke();
        for sc in scopes {
            for k in sc.keys() {
                inv.key(self.full_key(&k));
            }
        }
        let record = hold.map(Hold::record).unwrap_or_default();
        inv.arg(request_id)
            .arg(tokens)
            .arg(lease_ms)
            .arg(match mode {
                AdmitMode::Admit => "admit",
                AdmitMode::Peek => "peek",
            })
            .arg(&*self.prefix)
            .arg(hold.map_or("", |h| h.account))
            .arg(hold.map_or("none", |h| h.mode.as_str()))
            .arg(hold.map_or(0, |h| h.amount_rao))
            .arg(hold.map_or(0, |h| h.credit_limit_rao))
            .arg(policy.hold_ttl_ms)
            .arg(policy.expired_policy())
            .arg(policy.done_ttl_secs)
            .arg(policy.retention_secs)
            .arg(record);
        for sc in scopes {
            for c in sc.caps() {
                inv.arg(c);
            }
        }
        let reply = self.invoke("quota_admit", &inv).await?;
        decode_admission(Fields::new("admit", reply)?, scopes.len())
    }

    /// Runs `settle_v3` for `call`.
    async fn settle_script(
        &self,
        scopes: &[ScopeSpec],
        request_id: &str,
        call: SettleCall<'_>,
        policy: &LedgerPolicy,
    ) -> Result<Fields, StoreError> {
        let SettleCall {
            mode,
            lease_ms,
            tokens_back,
            request_back,
            account,
            charge,
        } = call;
        let mut inv = SETTLE.prepare_invoke();
        for sc in scopes {
            for k in sc.keys() {
                inv.key(self.full_key(&k));
            }
        }
        inv.arg(request_id)
            .arg(match mode {
                SettleMode::Settle => "settle",
                SettleMode::Renew => "renew",
            })
            .arg(lease_ms)
            .arg(tokens_back)
            .arg(u8::from(request_back))
            .arg(&*self.prefix)
            .arg(account)
            .arg(policy.hold_ttl_ms)
            .arg(charge.map_or(0, |c| c.cost_rao))
            .arg(charge.map_or(0, |c| c.input_tokens))
            .arg(charge.map_or(0, |c| c.output_tokens))
            .arg(
                charge
                    .and_then(|c| c.netuid)
                    .map(|n| n.to_string())
                    .unwrap_or_default(),
            )
            .arg(charge.map_or("", |c| c.day.as_str()))
            .arg(charge.map_or("", |c| c.event.as_str()))
            .arg(policy.done_ttl_secs)
            .arg(policy.retention_secs)
            .arg(policy.expired_policy())
            .arg(u8::from(charge.is_some_and(|c| c.anonymous)));
        for sc in scopes {
            for c in sc.caps() {
                inv.arg(c);
            }
        }
        let reply = self.invoke("quota_settle", &inv).await?;
        Fields::new("settle", reply)
    }

    pub(in crate::store) async fn settle(
        &self,
        end: Ending<'_>,
        policy: &LedgerPolicy,
    ) -> Result<Settled, StoreError> {
        let call = SettleCall {
            mode: SettleMode::Settle,
            lease_ms: 0,
            tokens_back: end.tokens_back,
            request_back: end.request_back,
            account: end.charge.map_or("", |c| c.account.as_str()),
            charge: end.charge,
        };
        let mut f = self
            .settle_script(end.scopes, end.request_id, call, policy)
            .await?;
        let leases_removed = f.count("leases_removed")? > 0;
        let recorded: String = f.get("recorded")?;
        let recorded = match recorded.as_str() {
            "now" => Recorded::Now,
            "before" => Recorded::Before,
            "not_asked" => Recorded::NotAsked,
            other => return Err(f.unexpected("recorded", other)),
        };
        f.finish()?;
        Ok(Settled {
            leases_removed,
            recorded,
        })
    }

    pub(in crate::store) async fn renew(
        &self,
        scopes: &[ScopeSpec],
        request_id: &str,
        lease_ms: u64,
        account: Option<&str>,
        policy: &LedgerPolicy,
    ) -> Result<(), StoreError> {
        let call = SettleCall {
            mode: SettleMode::Renew,
            lease_ms,
            tokens_back: 0,
            request_back: false,
            account: account.unwrap_or(""),
            charge: None,
        };
        let mut f = self.settle_script(scopes, request_id, call, policy).await?;
        // How many leases were still there is not needed: a lease that expired is the
        // settlement's concern, not the renewer's.
        f.count("leases_renewed")?;
        f.finish()
    }
}

/// Decodes `admit_v3`'s reply for `n` scopes.
fn decode_admission(mut f: Fields, n: usize) -> Result<Admission, StoreError> {
    let refused_scope = f.count("refused_scope")?;
    let limit: String = f.get("refused_limit")?;
    let retry_ms = f.count("retry_after_ms")?;
    let refused = match refused_scope {
        0 => None,
        s => {
            let limit = match limit.as_str() {
                "rpm" => Limit::RequestsPerMinute,
                "tpm" => Limit::TokensPerMinute,
                "tpd" => Limit::TokensPerDay,
                "conc" => Limit::Concurrency,
                "balance" => Limit::Balance,
                other => return Err(f.unexpected("refused_limit", other)),
            };
            let index = usize::try_from(s - 1).unwrap_or(usize::MAX);
            if index >= n {
                return Err(f.unexpected("refused_scope", &s.to_string()));
            }
            Some((index, limit, Duration::from_millis(retry_ms)))
        }
    };
    let views = f.nested("scopes")?;
    if views.len() != n {
        return Err(StoreError::Protocol(format!(
            "admit script reply: {} scope views for {n} scopes",
            views.len()
        )));
    }
    let scopes = views
        .into_iter()
        .map(decode_view)
        .collect::<Result<_, _>>()?;
    let out = Admission {
        decision: QuotaDecision { refused, scopes },
        balance_rao: f.money("balance_rao")?,
        held_rao: f.money("held_rao")?,
    };
    f.finish()?;
    Ok(out)
}

/// Decodes one scope's view.
fn decode_view(mut f: Fields) -> Result<ScopeView, StoreError> {
    let mut bucket = |remaining: &str, reset: &str| -> Result<BucketView, StoreError> {
        Ok(BucketView {
            remaining: f.count(remaining)?,
            reset_ms: f.count(reset)?,
        })
    };
    let rpm = bucket("rpm_remaining", "rpm_reset_ms")?;
    let tpm = bucket("tpm_remaining", "tpm_reset_ms")?;
    let tpd = bucket("tpd_remaining", "tpd_reset_ms")?;
    let view = ScopeView {
        rpm,
        tpm,
        tpd,
        in_flight: f.count("in_flight")?,
    };
    f.finish()?;
    Ok(view)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ::redis::Value;

    fn s(x: &str) -> Value {
        Value::BulkString(x.as_bytes().to_vec())
    }

    fn view(in_flight: i64) -> Value {
        let mut v = Vec::new();
        for b in ["rpm", "tpm", "tpd"] {
            v.extend([s(&format!("{b}_remaining")), Value::Int(5)]);
            v.extend([s(&format!("{b}_reset_ms")), Value::Int(100)]);
        }
        v.extend([s("in_flight"), Value::Int(in_flight)]);
        Value::Array(v)
    }

    fn admission(refused: i64, limit: &str, views: Vec<Value>) -> Value {
        Value::Array(vec![
            s("refused_scope"),
            Value::Int(refused),
            s("refused_limit"),
            s(limit),
            s("retry_after_ms"),
            Value::Int(250),
            s("scopes"),
            Value::Array(views),
            s("balance_rao"),
            s("18446744073709551"),
            s("held_rao"),
            s("0"),
        ])
    }

    fn decode(v: Value, n: usize) -> Result<Admission, StoreError> {
        decode_admission(Fields::new("admit", v)?, n)
    }

    #[test]
    fn a_refusal_names_its_scope_and_limit() {
        let a = decode(admission(2, "conc", vec![view(0), view(3)]), 2).unwrap();
        assert_eq!(
            a.decision.refused,
            Some((1, Limit::Concurrency, Duration::from_millis(250)))
        );
        assert_eq!(a.decision.scopes[1].in_flight, 3);
        assert_eq!(a.decision.scopes[0].tpd.reset_ms, 100);
        assert_eq!(a.balance_rao, 18_446_744_073_709_551);
    }

    #[test]
    fn an_admission_has_no_refusal() {
        let a = decode(admission(0, "", vec![view(1)]), 1).unwrap();
        assert_eq!(a.decision.refused, None);
    }

    #[test]
    fn replies_out_of_step_with_the_decoder_are_protocol_errors() {
        // A view per scope, no more, no less.
        assert!(matches!(
            decode(admission(0, "", vec![view(1)]), 2),
            Err(StoreError::Protocol(_))
        ));
        // An unknown limit, a scope index out of range.
        assert!(matches!(
            decode(admission(1, "rph", vec![view(1)]), 1),
            Err(StoreError::Protocol(_))
        ));
        assert!(matches!(
            decode(admission(2, "rpm", vec![view(1)]), 1),
            Err(StoreError::Protocol(_))
        ));
        // A view missing a field.
        let Value::Array(mut short) = view(1) else {
            unreachable!()
        };
        short.truncate(short.len() - 2);
        let e = decode(admission(0, "", vec![Value::Array(short)]), 1)
            .unwrap_err()
            .to_string();
        assert!(e.contains("`in_flight` missing"), "{e}");
    }
}
