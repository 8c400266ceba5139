//! Store operations of the ledger: prepaid holds taken with the admission, settlements that
//! debit once per request id, usage events, daily rollups, and the reads behind `/v1/usage`,
//! `/v1/stats`, the export and `ledger reconcile`. The keys they use are laid out in
//! [`keys`](super::keys).
//!
//! Redis runs everything that changes money in `admit_v4.lua` / `settle_v4.lua`, each call on
//! the keys of one hash tag (one Redis Cluster slot; [`redis`](super::redis) has them beside
//! their decoders): an admission is one call per tag it touches, a batch of settlements one
//! call per tag. The memory backend implements the same rules in its `ledger` module. Why the
//! split never over-admits nor double-counts: docs/ARCHITECTURE.md §5.

use std::collections::BTreeMap;

use super::redis::AdmitMode;
use super::{QuotaDecision, ScopeSpec, ScopeView, Store, StoreError};

/// How often a Redis store writes the subnet and `{stats}` rollups it gathers in memory: they
/// are statistics (`/v1/stats`, `/v1/usage`), and writing them once a second per tag instead of
/// once per settlement takes the hot shared slots off every request.
pub const ROLLUP_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// How an admission treats the account's money.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BillMode {
    /// Nothing: a zero-priced request of no account, or a peek.
    None,
    /// Reserve the worst-case cost against `balance − holds`.
    Prepaid,
    /// Check `balance − worst case ≥ −credit limit`; no hold.
    Postpaid,
}

impl BillMode {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            BillMode::None => "none",
            BillMode::Prepaid => "prepaid",
            BillMode::Postpaid => "postpaid",
        }
    }
}

/// The money side of an admission.
#[derive(Debug, Clone)]
pub struct Hold<'a> {
    /// The account charged.
    pub account: &'a str,
    /// Prepaid, postpaid or nothing.
    pub mode: BillMode,
    /// The worst-case cost, rao.
    pub amount_rao: u64,
    /// How far a postpaid account may go below zero.
    pub credit_limit_rao: u64,
    /// Worst-case input tokens (what the hold is based on; used if the hold expires).
    pub input_tokens: u64,
    /// Worst-case output tokens (`max_tokens`).
    pub output_tokens: u64,
    /// The caller's subnet, for rollups.
    pub netuid: Option<u16>,
    /// The usage event to record if the hold expires unsettled: JSON with the placeholders
    /// `"__COST__"` (the quoted string, replaced by a number) and `__FINISHED__`.
    pub expiry_event: &'a str,
}

impl Hold<'_> {
    /// `"<amount> <in> <out> <netuid|-> <json>"`: what the scripts store per hold.
    pub(super) fn record(&self) -> String {
        let netuid = self
            .netuid
            .map_or_else(|| "-".to_string(), |n| n.to_string());
        format!(
            "{} {} {} {netuid} {}",
            self.amount_rao, self.input_tokens, self.output_tokens, self.expiry_event
        )
    }
}

/// Deployment-wide ledger settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LedgerPolicy {
    /// A hold not renewed for this long expires (its replica died or lost Redis).
    pub hold_ttl_ms: u64,
    /// Whether an expired hold is charged in full (else released at no cost).
    pub charge_expired: bool,
    /// How long a settlement's idempotency mark lives: a journal replay later than this could
    /// charge twice, so it is far above any outage the journal rides out.
    pub done_ttl_secs: u64,
    /// How long usage events and rollups are kept after their last write (0 = forever).
    pub retention_secs: u64,
}

impl Default for LedgerPolicy {
    fn default() -> Self {
        LedgerPolicy {
            hold_ttl_ms: 600_000,
            charge_expired: true,
            done_ttl_secs: 35 * 86_400,
            retention_secs: 400 * 86_400,
        }
    }
}

impl LedgerPolicy {
    pub(super) fn expired_policy(&self) -> &'static str {
        if self.charge_expired {
            "charge"
        } else {
            "release"
        }
    }
}

/// One request's charge, recorded at settlement.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Charge {
    /// The account charged.
    pub account: String,
    /// Rao debited.
    pub cost_rao: u64,
    /// Input tokens.
    pub input_tokens: u64,
    /// Output tokens.
    pub output_tokens: u64,
    /// The caller's subnet.
    pub netuid: Option<u16>,
    /// `YYYY-MM-DD` of `finished_at` (UTC): the day and month the event belongs to.
    pub day: String,
    /// The usage event, as exported.
    pub event: String,
    /// A zero-priced request of a caller without an account: the usage event and the public
    /// stats count it, but no account key is written (a flood of fresh hotkeys must not grow
    /// the store with balances, debits and rollups nobody will read).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub anonymous: bool,
    /// The admission held money for it (prepaid), so settling releases a hold. `false` saves
    /// the settlement a hold lookup; an entry journaled before this field existed reads as
    /// `true`, which only costs that lookup.
    #[serde(default = "held_unless_said", skip_serializing_if = "Clone::clone")]
    pub held: bool,
}

/// A journaled charge that does not say whether it held money: look for a hold.
fn held_unless_said() -> bool {
    true
}

/// One request's end, as [`Store::settle`] takes it.
#[derive(Debug, Clone, Copy)]
pub struct Ending<'a> {
    /// The scopes it was admitted under.
    pub scopes: &'a [ScopeSpec],
    /// Its id: the charge is applied once per id.
    pub request_id: &'a str,
    /// Tokens given back to the token buckets (estimate − actual; negative takes more).
    pub tokens_back: i64,
    /// Whether the request itself is given back to the request-rate buckets (it was never
    /// served).
    pub request_back: bool,
    /// The money part; `None` for a quota-only end.
    pub charge: Option<&'a Charge>,
}

/// One live request whose leases [`Store::renew_many`] extends.
#[derive(Debug, Clone, Copy)]
pub struct Renewal<'a> {
    /// The scopes it was admitted under.
    pub scopes: &'a [ScopeSpec],
    /// Its id.
    pub request_id: &'a str,
    /// The account whose hold is extended too, if any.
    pub account: Option<&'a str>,
}

/// What a settlement did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settled {
    /// Whether it removed the request's leases (false: settled before, or the leases expired).
    pub leases_removed: bool,
    /// What happened to the ledger.
    pub recorded: Recorded,
}

/// What a settlement did to the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// Debited and recorded now.
    Now,
    /// The request was settled (or its hold expired) before: nothing changed.
    Before,
    /// No ledger work was asked for.
    NotAsked,
}

/// A day's totals.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct Rollup {
    /// Requests settled that day.
    pub requests: u64,
    /// Input tokens.
    pub input_tokens: u64,
    /// Output tokens.
    pub output_tokens: u64,
    /// Rao charged.
    pub rao: u64,
}

impl Rollup {
    pub(super) fn from_pairs(pairs: &[(String, String)]) -> Rollup {
        let mut r = Rollup::default();
        for (k, v) in pairs {
            let v = v.parse().unwrap_or(0);
            match k.as_str() {
                "requests" => r.requests = v,
                "input_tokens" => r.input_tokens = v,
                "output_tokens" => r.output_tokens = v,
                "rao" => r.rao = v,
                _ => {}
            }
        }
        r
    }
}

/// One day's rollup of a tag.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DayRollup {
    /// The day's totals.
    pub rollup: Rollup,
    /// The day's distinct callers (`{stats}` only, when asked; else 0).
    pub callers: u64,
}

/// One usage event as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageEntry {
    /// Where the next page starts when this is the last entry read.
    pub cursor: String,
    /// The event, as exported.
    pub json: String,
}

/// One account's money, as the reconciliation reads it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccountBooks {
    /// The balance key.
    pub balance_rao: i64,
    /// The held counter.
    pub held_rao: i64,
    /// The sum of the live hold records.
    pub holds_sum_rao: i64,
    /// Σ of the credit log's amounts.
    pub credits_rao: i64,
    /// Credit log lines that could not be read.
    pub bad_credit_lines: u64,
    /// The debits counter's `total`.
    pub debits_total_rao: i64,
    /// The debits counter per month.
    pub debits_by_month: BTreeMap<String, i64>,
}

/// Everything `ledger reconcile` compares.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LedgerSnapshot {
    /// Per account.
    pub accounts: BTreeMap<String, AccountBooks>,
    /// Per retained month, per account: (events, Σ cost_rao).
    pub events: BTreeMap<String, BTreeMap<String, (u64, i64)>>,
    /// Events whose JSON could not be read (each is a discrepancy).
    pub bad_events: u64,
}

impl LedgerSnapshot {
    /// Counts one event line of `month` (an unreadable one as a discrepancy).
    pub(super) fn tally(&mut self, month: &str, json: &str) {
        #[derive(serde::Deserialize)]
        struct E {
            account: String,
            cost_rao: i64,
        }
        match serde_json::from_str::<E>(json) {
            Ok(e) => {
                let t = self
                    .events
                    .entry(month.to_string())
                    .or_default()
                    .entry(e.account)
                    .or_default();
                t.0 += 1;
                t.1 += e.cost_rao;
            }
            Err(_) => self.bad_events += 1,
        }
    }
}

/// The amount of a credit log line.
pub(super) fn credit_amount(line: &str) -> Option<i64> {
    #[derive(serde::Deserialize)]
    struct C {
        amount_rao: i64,
    }
    serde_json::from_str::<C>(line).ok().map(|c| c.amount_rao)
}

/// The scopes' and the account's state, nothing consumed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peek {
    /// Every scope's state, in the order given.
    pub scopes: Vec<ScopeView>,
    /// Balance, rao (0 without an account).
    pub balance_rao: i64,
    /// Held by requests in flight, rao (0 without an account).
    pub held_rao: i64,
}

/// An admission's answer: the limiter's decision with the balance and holds after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admission {
    /// The limiter's decision ([`super::Limit::Balance`] when the money did not fit).
    pub decision: QuotaDecision,
    /// Balance, rao.
    pub balance_rao: i64,
    /// Held by requests in flight, rao.
    pub held_rao: i64,
}

impl Store {
    /// Admits one request against its scopes and, through `hold`, the account's money: all or
    /// nothing, in one round trip.
    pub async fn admit(
        &self,
        scopes: &[ScopeSpec],
        request_id: &str,
        tokens: u64,
        lease: std::time::Duration,
        hold: Option<&Hold<'_>>,
        policy: &LedgerPolicy,
    ) -> Result<Admission, StoreError> {
        let lease_ms = super::ttl_millis(lease)?;
        match self {
            Store::Memory(s) => Ok(s.admit(scopes, request_id, tokens, lease_ms, hold, policy)),
            Store::Redis(s) => {
                s.admit(
                    scopes,
                    request_id,
                    tokens,
                    lease_ms,
                    AdmitMode::Admit,
                    hold,
                    policy,
                )
                .await
            }
        }
    }

    /// The scopes' state and, with `account`, its balance and holds; nothing consumed (expired
    /// holds are swept, as any admission would).
    pub async fn peek(
        &self,
        scopes: &[ScopeSpec],
        account: Option<&str>,
        policy: &LedgerPolicy,
    ) -> Result<Peek, StoreError> {
        match self {
            Store::Memory(s) => Ok(s.peek(scopes, account, policy)),
            Store::Redis(s) => {
                // The admission script in peek mode: the same reads, nothing consumed.
                let peek_hold = account.map(|a| Hold {
                    account: a,
                    mode: BillMode::None,
                    amount_rao: 0,
                    credit_limit_rao: 0,
                    input_tokens: 0,
                    output_tokens: 0,
                    netuid: None,
                    expiry_event: "",
                });
                let a = s
                    .admit(
                        scopes,
                        "",
                        0,
                        1,
                        AdmitMode::Peek,
                        peek_hold.as_ref(),
                        policy,
                    )
                    .await?;
                Ok(Peek {
                    scopes: a.decision.scopes,
                    balance_rao: a.balance_rao,
                    held_rao: a.held_rao,
                })
            }
        }
    }

    /// Ends a request: releases its leases, gives back its unused tokens (and the request
    /// itself when asked), and — with a charge, once per request id — releases its hold, debits
    /// the cost and records the usage event.
    pub async fn settle(
        &self,
        end: Ending<'_>,
        policy: &LedgerPolicy,
    ) -> Result<Settled, StoreError> {
        match self {
            Store::Memory(s) => Ok(s.settle(end, policy)),
            Store::Redis(s) => s
                .settle_many(std::slice::from_ref(&end), policy)
                .await
                .pop()
                .unwrap_or_else(|| Err(StoreError::Protocol("no settlement answer".into()))),
        }
    }

    /// Extends a live request's leases and, with `account`, its hold.
    pub async fn renew(
        &self,
        scopes: &[ScopeSpec],
        request_id: &str,
        lease: std::time::Duration,
        account: Option<&str>,
        policy: &LedgerPolicy,
    ) -> Result<(), StoreError> {
        let lease_ms = super::ttl_millis(lease)?;
        match self {
            Store::Memory(s) => {
                s.renew(scopes, request_id, lease_ms, account, policy);
                Ok(())
            }
            Store::Redis(s) => {
                let r = Renewal {
                    scopes,
                    request_id,
                    account,
                };
                s.renew_many(std::slice::from_ref(&r), lease_ms, policy)
                    .await
            }
        }
    }

    /// Extends many live requests' leases (and holds) at once: what the limiter's one renewer
    /// calls every renewal period for every request it holds, instead of a timer per request.
    /// On Redis, one call per hash tag.
    pub async fn renew_many(
        &self,
        leases: &[Renewal<'_>],
        lease: std::time::Duration,
        policy: &LedgerPolicy,
    ) -> Result<(), StoreError> {
        let lease_ms = super::ttl_millis(lease)?;
        match self {
            Store::Memory(s) => {
                for r in leases {
                    s.renew(r.scopes, r.request_id, lease_ms, r.account, policy);
                }
                Ok(())
            }
            Store::Redis(s) => s.renew_many(leases, lease_ms, policy).await,
        }
    }

    /// Ends many requests at once (the settlement batcher's call): one answer per ending, in
    /// order. An error is per ending, so a batch that partly failed journals only what failed.
    /// On Redis, one call per hash tag of the batch.
    pub async fn settle_many(
        &self,
        ends: &[Ending<'_>],
        policy: &LedgerPolicy,
    ) -> Vec<Result<Settled, StoreError>> {
        match self {
            Store::Memory(s) => ends.iter().map(|e| Ok(s.settle(*e, policy))).collect(),
            Store::Redis(s) => s.settle_many(ends, policy).await,
        }
    }

    /// Daily rollups of one scope tag (`{a:<id>}`, `{s:<netuid>}` or `{stats}`) for `days`
    /// (`YYYY-MM-DD`), in order; with `callers`, also each day's number of distinct callers.
    pub async fn rollups(
        &self,
        tag: &str,
        days: &[String],
        callers: bool,
    ) -> Result<Vec<DayRollup>, StoreError> {
        match self {
            Store::Memory(s) => Ok(s.rollups(tag, days, callers)),
            Store::Redis(s) => s.rollups(tag, days, callers).await,
        }
    }

    /// Writes the subnet and public rollups a Redis store gathers in memory between settlement
    /// batches (it writes them at most once a second); the meter calls it when idle and at
    /// shutdown. The memory store writes them at once: nothing to do.
    pub async fn flush_rollups(&self, policy: &LedgerPolicy) {
        if let Store::Redis(s) = self {
            s.flush_rollups(policy).await;
        }
    }

    /// The accounts with usage events in `month` (`YYYY-MM`), sorted: what an export walks.
    pub async fn usage_accounts(&self, month: &str) -> Result<Vec<String>, StoreError> {
        match self {
            Store::Memory(s) => Ok(s.usage_accounts(month)),
            Store::Redis(s) => s.usage_accounts(month).await,
        }
    }

    /// Usage events of `account` in `month` after `cursor` (`None` = from the start), in
    /// recording order, with the cursor of each: at least `count` when that many remain (a
    /// page ends on a whole settlement batch, so it may hold a few more).
    pub async fn usage_events(
        &self,
        month: &str,
        account: &str,
        cursor: Option<&str>,
        count: usize,
    ) -> Result<Vec<UsageEntry>, StoreError> {
        match self {
            Store::Memory(s) => Ok(s.usage_events(month, account, cursor, count)),
            Store::Redis(s) => s.usage_events(month, account, cursor, count).await,
        }
    }

    /// Everything the reconciliation compares, read in one pass.
    pub async fn ledger_snapshot(&self) -> Result<LedgerSnapshot, StoreError> {
        match self {
            Store::Memory(s) => Ok(s.ledger_snapshot()),
            Store::Redis(s) => s.ledger_snapshot().await,
        }
    }
}
