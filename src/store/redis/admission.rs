//! Admission on Redis: `admit_v4.lua` (with `ledger_lib_v3.lua` prepended), one call per hash
//! tag the request touches, so every call stays on one Redis Cluster slot.
//!
//! A request's scopes are the shared one (the subnet's `{s:<netuid>}` or the public tier's
//! `{t:public}`), if any, then the caller's own `{a:<id>}`; its money is the billed account's,
//! which is the caller's own tag unless a sponsor pays. The account's money rides in the step
//! of the scope with the same tag, else in a step of its own after the scopes. Steps run in
//! that order, each all or nothing; when one refuses (or fails), the steps already taken are
//! refunded and the ones not reached are only peeked, for the rate-limit headers. The common
//! caller — an account paying for itself outside a subnet — costs one call. Why this never
//! admits more than one atomic script would: docs/ARCHITECTURE.md §5.

use std::sync::LazyLock;
use std::time::Duration;

use super::RedisStore;
use super::reply::Fields;
use crate::store::ledger::{Admission, Hold, LedgerPolicy};
use crate::store::quota::{BucketView, Limit, QuotaDecision, ScopeSpec, ScopeView};
use crate::store::{StoreError, keys};

pub(super) static ADMIT: LazyLock<::redis::Script> = LazyLock::new(|| {
    ::redis::Script::new(concat!(
        include_str!("ledger_lib_v3.lua"),
        include_str!("admit_v4.lua")
    ))
});

/// What one `admit_v4` call does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::store) enum AdmitMode {
    /// Check and, if everything fits, consume and hold.
    Admit,
    /// Report the scope and the money; consume nothing.
    Peek,
    /// Give back what an `Admit` of the same request took from the scope.
    Refund,
}

impl AdmitMode {
    fn as_str(self) -> &'static str {
        match self {
            AdmitMode::Admit => "admit",
            AdmitMode::Peek => "peek",
            AdmitMode::Refund => "refund",
        }
    }
}

/// One call of an admission: a scope (by its index among the request's scopes), the money, or
/// both when they share a tag.
#[derive(Debug, Clone, Copy)]
struct Step<'a> {
    scope: Option<(usize, &'a ScopeSpec)>,
    money: Option<&'a Hold<'a>>,
}

/// The steps of an admission, in order: every scope (the shared one first), the account's money
/// in the step of its own tag or, when no scope has it (a sponsor pays), last on its own.
fn steps<'a>(scopes: &'a [ScopeSpec], hold: Option<&'a Hold<'a>>) -> Vec<Step<'a>> {
    let money_tag = hold.map(|h| keys::account_tag(h.account));
    let mut placed = false;
    let mut out: Vec<Step<'a>> = scopes
        .iter()
        .enumerate()
        .map(|(i, sc)| {
            let here = !placed && money_tag.as_deref() == Some(sc.tag.as_str());
            placed |= here;
            Step {
                scope: Some((i, sc)),
                money: if here { hold } else { None },
            }
        })
        .collect();
    if let (Some(h), false) = (hold, placed) {
        out.push(Step {
            scope: None,
            money: Some(h),
        });
    }
    out
}

/// One step's answer.
#[derive(Debug)]
struct StepReply {
    refused: Option<(Limit, Duration)>,
    view: Option<ScopeView>,
    /// Balance and held, when the step had the money.
    money: Option<(i64, i64)>,
}

impl RedisStore {
    /// Runs one `admit_v4` call.
    async fn step(
        &self,
        step: Step<'_>,
        mode: AdmitMode,
        request_id: &str,
        tokens: u64,
        lease_ms: u64,
        policy: &LedgerPolicy,
    ) -> Result<StepReply, StoreError> {
        let mut inv = ADMIT.prepare_invoke();
        let hold = step.money;
        match step.scope {
            Some((_, sc)) => {
                for k in sc.keys() {
                    inv.key(self.full_key(&k));
                }
            }
            // Any key of the account's tag routes the call to its slot.
            None => {
                inv.key(self.full_key(&keys::balance(hold.map_or("", |h| h.account))));
            }
        }
        let record = match mode {
            AdmitMode::Admit => hold.map(Hold::record).unwrap_or_default(),
            _ => String::new(),
        };
        inv.arg(request_id)
            .arg(tokens)
            .arg(lease_ms)
            .arg(mode.as_str())
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
        if let Some((_, sc)) = step.scope {
            for c in sc.caps() {
                inv.arg(c);
            }
        }
        let op = match mode {
            AdmitMode::Refund => "quota_refund",
            _ => "quota_admit",
        };
        let reply = self.invoke(op, &inv).await?;
        let mut f = Fields::new("admit", reply)?;
        let why: String = f.get("refused")?;
        let retry = Duration::from_millis(f.count("retry_after_ms")?);
        let refused = match why.as_str() {
            "" => None,
            "rpm" => Some((Limit::RequestsPerMinute, retry)),
            "tpm" => Some((Limit::TokensPerMinute, retry)),
            "tpd" => Some((Limit::TokensPerDay, retry)),
            "conc" => Some((Limit::Concurrency, retry)),
            "balance" => Some((Limit::Balance, retry)),
            other => return Err(f.unexpected("refused", other)),
        };
        if mode == AdmitMode::Refund {
            f.finish()?;
            return Ok(StepReply {
                refused: None,
                view: None,
                money: None,
            });
        }
        let view = match step.scope {
            Some(_) => Some(decode_view(
                f.nested_one("view")?
                    .ok_or_else(|| f.unexpected("view", "empty"))?,
            )?),
            None => None,
        };
        let money = match hold {
            Some(_) => {
                let m = (f.money("balance_rao")?, f.money("held_rao")?);
                self.defer_swept(hold.map_or("", |h| h.account), f.take("swept")?)?;
                Some(m)
            }
            None => None,
        };
        f.finish()?;
        Ok(StepReply {
            refused,
            view,
            money,
        })
    }

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
        let steps = steps(scopes, hold);
        let mut views: Vec<Option<ScopeView>> = vec![None; scopes.len()];
        let mut money = (0, 0);
        if mode == AdmitMode::Peek {
            // Nothing is consumed: every step at once.
            let replies = futures_util::future::try_join_all(
                steps
                    .iter()
                    .map(|s| self.step(*s, mode, request_id, tokens, lease_ms, policy)),
            )
            .await?;
            for (s, r) in steps.iter().zip(replies) {
                take_reply(s, r, &mut views, &mut money);
            }
            return assemble(views, money, None);
        }
        for (k, s) in steps.iter().enumerate() {
            let reply = match self
                .step(*s, mode, request_id, tokens, lease_ms, policy)
                .await
            {
                Ok(r) => r,
                Err(e) => {
                    // The step's own outcome is unknown: refund it too (a refund of what was not
                    // taken changes nothing, the lease's removal decides).
                    self.unwind(&steps[..=k], &[], request_id, tokens, lease_ms, policy)
                        .await;
                    return Err(e);
                }
            };
            let refused = reply.refused.map(|(limit, retry)| {
                let index = s.scope.map_or(scopes.len().saturating_sub(1), |(i, _)| i);
                (index, limit, retry)
            });
            take_reply(s, reply, &mut views, &mut money);
            if refused.is_some() {
                let peeked = self
                    .unwind(
                        &steps[..k],
                        &steps[k + 1..],
                        request_id,
                        tokens,
                        lease_ms,
                        policy,
                    )
                    .await;
                for (s, r) in peeked {
                    take_reply(&s, r, &mut views, &mut money);
                }
                return assemble(views, money, refused);
            }
        }
        assemble(views, money, None)
    }

    /// Refunds the scopes of `taken` and peeks the scopes of `ahead` (for their views), all at
    /// once. A refund that fails leaves its consumption in place until the buckets refill and
    /// the lease expires: over-refusal for a while, never over-admission.
    async fn unwind<'s>(
        &self,
        taken: &[Step<'s>],
        ahead: &[Step<'s>],
        request_id: &str,
        tokens: u64,
        lease_ms: u64,
        policy: &LedgerPolicy,
    ) -> Vec<(Step<'s>, StepReply)> {
        let refunds = taken.iter().filter(|s| s.scope.is_some()).map(|s| {
            let only_scope = Step {
                scope: s.scope,
                money: None,
            };
            self.step(
                only_scope,
                AdmitMode::Refund,
                request_id,
                tokens,
                lease_ms,
                policy,
            )
        });
        let peeks = ahead.iter().filter(|s| s.scope.is_some()).map(|s| {
            let only_scope = Step {
                scope: s.scope,
                money: None,
            };
            async move {
                let r = self
                    .step(only_scope, AdmitMode::Peek, request_id, 0, lease_ms, policy)
                    .await;
                r.map(|r| (only_scope, r))
            }
        });
        let (refunded, peeked) = futures_util::future::join(
            futures_util::future::join_all(refunds),
            futures_util::future::join_all(peeks),
        )
        .await;
        for r in refunded {
            if let Err(e) = r {
                tracing::warn!(error = %e, request_id, "refund of a refused admission's earlier step failed; it expires on its own");
            }
        }
        peeked.into_iter().filter_map(Result::ok).collect()
    }
}

fn take_reply(s: &Step<'_>, r: StepReply, views: &mut [Option<ScopeView>], money: &mut (i64, i64)) {
    if let (Some((i, _)), Some(v)) = (s.scope, r.view) {
        views[i] = Some(v);
    }
    if let Some(m) = r.money {
        *money = m;
    }
}

/// The admission from the steps' answers; a scope whose step was not reached (a peek failed)
/// shows as full, which only the rate-limit headers of a refusal read.
fn assemble(
    views: Vec<Option<ScopeView>>,
    money: (i64, i64),
    refused: Option<(usize, Limit, Duration)>,
) -> Result<Admission, StoreError> {
    Ok(Admission {
        decision: QuotaDecision {
            refused,
            scopes: views.into_iter().map(Option::unwrap_or_default).collect(),
        },
        balance_rao: money.0,
        held_rao: money.1,
    })
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
    use crate::store::BillMode;

    fn scope(tag: &str) -> ScopeSpec {
        ScopeSpec {
            tag: tag.into(),
            rpm: 1,
            tpm: 1,
            tpd: 1,
            max_concurrent: 1,
        }
    }

    fn hold(account: &str) -> Hold<'_> {
        Hold {
            account,
            mode: BillMode::Prepaid,
            amount_rao: 1,
            credit_limit_rao: 0,
            input_tokens: 0,
            output_tokens: 0,
            netuid: None,
            expiry_event: "{}",
        }
    }

    fn shape(steps: &[Step<'_>]) -> Vec<(Option<usize>, bool)> {
        steps
            .iter()
            .map(|s| (s.scope.map(|(i, _)| i), s.money.is_some()))
            .collect()
    }

    #[test]
    fn an_account_paying_for_itself_is_one_step() {
        let scopes = [scope("{a:acme}")];
        let h = hold("acme");
        assert_eq!(shape(&steps(&scopes, Some(&h))), [(Some(0), true)]);
    }

    #[test]
    fn the_shared_scope_goes_first_and_the_money_rides_with_its_own_tag() {
        let scopes = [scope("{s:7}"), scope("{a:acme}")];
        let h = hold("acme");
        assert_eq!(
            shape(&steps(&scopes, Some(&h))),
            [(Some(0), false), (Some(1), true)]
        );
    }

    #[test]
    fn a_sponsor_pays_in_a_step_of_its_own_after_the_scopes() {
        let scopes = [scope("{s:7}"), scope("{a:member}")];
        let h = hold("sponsor");
        assert_eq!(
            shape(&steps(&scopes, Some(&h))),
            [(Some(0), false), (Some(1), false), (None, true)]
        );
        assert_eq!(
            shape(&steps(&scopes, None)),
            [(Some(0), false), (Some(1), false)]
        );
    }
}
