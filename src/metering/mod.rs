//! Money: what a request costs, and how its charge reaches the ledger.
//!
//! This module owns a request's money from price to ledger: prices (integer rao per million
//! tokens; the cost of a request is rounded up per direction, docs/API.md §9.1), the
//! [`Ticket`] (the hold to take and the usage event to record), the 402 that explains a
//! refused hold, the settlement and the money metrics. The quota's admission carries the
//! ticket's [`Ticket::hold`] into its round trip, so buckets and balance are checked together
//! ([`crate::store::Store::admit`]); [`Meter::settle_detached`] — on a detached task, whatever
//! the client does — applies the lease's release, releases the hold, debits the actual cost
//! (the provider's count, even when it exceeds what was reserved) and records the
//! [`event::UsageEvent`], once per request id, in one store call. If Redis cannot take the
//! settlement it goes to the fsynced [`journal`] and is replayed when Redis is back.
//!
//! Layout: `event` (the usage record and its CSV form), `journal` (settlements waiting for
//! Redis), `provider` (prices that follow the provider's catalogue, for `pricing =
//! "provider"` plans), `reconcile` (`affine-gateway ledger reconcile`).

pub(crate) mod event;
pub mod journal;
pub mod provider;
pub mod reconcile;

use std::sync::Arc;

use crate::api::Usage;
use crate::error::{ApiError, ErrorCode};
use crate::metrics::Metrics;
use crate::store::{BillMode, Charge, Ending, Hold, LedgerPolicy, ScopeSpec, Store};

pub use event::UsageEvent;
pub use journal::Journal;

/// Rao per TAO.
pub const RAO_PER_TAO: u64 = 1_000_000_000;

/// Prices of one plan, in rao per 1M tokens.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Prices {
    /// Rao per 1M input tokens.
    pub input_rao_per_mtok: u64,
    /// Rao per 1M output tokens.
    pub output_rao_per_mtok: u64,
}

/// Where a plan's prices come from, resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pricing {
    /// The plan's own rao prices.
    Fixed(Prices),
    /// The serving upstream's catalogue price for the model, marked up by this many percent.
    Provider {
        /// Whole percent over the provider's price.
        markup_percent: u32,
    },
}

/// A provider price marked up by `markup_percent`: `ceil(rao × (100 + markup) / 100)` per
/// direction, exactly (u128), saturating at `u64::MAX` (which no balance can cover).
pub fn marked_up(p: provider::ProviderPrice, markup_percent: u32) -> Prices {
    let up = |rao: u64| {
        let v = (u128::from(rao) * (100 + u128::from(markup_percent))).div_ceil(100);
        u64::try_from(v).unwrap_or(u64::MAX)
    };
    Prices {
        input_rao_per_mtok: up(p.input_rao_per_mtok),
        output_rao_per_mtok: up(p.output_rao_per_mtok),
    }
}

/// How a settled request ended, for its usage event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Answered.
    Ok,
    /// Nothing was delivered (the provider refused or failed before the first byte).
    Failed,
    /// The caller left mid-stream: charged for what the provider produced until then.
    ClientClosed,
    /// The provider failed mid-stream: charged for what was delivered.
    Interrupted,
}

impl Status {
    /// The event's `status`.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Failed => "failed",
            Status::ClientClosed => "client_closed",
            Status::Interrupted => "interrupted",
        }
    }
}

/// What a request used, as settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// Tokens used (for an estimated outcome, the gateway's counts).
    pub usage: Usage,
    /// How it ended.
    pub status: Status,
    /// True when the counts are the gateway's, not the provider's.
    pub estimated: bool,
}

impl Outcome {
    /// The outcome of a request that used `usage`. When the counts are the gateway's own
    /// (`estimated`: the provider reported none), the input is the gateway's estimate — the
    /// provider read the whole prompt — and the total follows.
    pub fn measured(
        mut usage: Usage,
        estimated: bool,
        input_estimate: u64,
        status: Status,
    ) -> Outcome {
        if estimated {
            usage.input_tokens = input_estimate;
            usage.total_tokens = input_estimate.saturating_add(usage.output_tokens);
        }
        Outcome {
            usage,
            status,
            estimated,
        }
    }

    /// This outcome, or [`Outcome::failed`] when `nothing` (no token reached anyone).
    pub fn nothing_if(self, nothing: bool) -> Outcome {
        if nothing { Outcome::failed() } else { self }
    }

    /// A request that used nothing.
    pub fn failed() -> Outcome {
        Outcome {
            usage: Usage::default(),
            status: Status::Failed,
            estimated: false,
        }
    }
}

/// The money side of one admitted request: what it may cost and the event to record.
#[derive(Debug, Clone)]
pub struct Ticket {
    /// Prepaid (held), postpaid or nothing.
    pub mode: BillMode,
    /// The worst case reserved, rao. The charge may exceed it (see [`Ticket::cost_of`]).
    pub hold_rao: u64,
    /// The plan's prices.
    pub prices: Prices,
    /// A zero-priced request of a caller without an account: no money to check or hold, and
    /// its settlement writes no account key (see [`Charge::anonymous`]).
    pub anonymous: bool,
    /// How far a postpaid account may go below zero, rao.
    pub credit_limit_rao: u64,
    /// The event, filled in at settlement (tokens, cost, status, finish time).
    pub event: UsageEvent,
    /// The event to record if a prepaid hold expires unsettled (see [`Hold::expiry_event`]);
    /// empty otherwise.
    expiry_event: String,
}

impl Ticket {
    /// The ticket of a request by `caller` on the plan named `plan` with its `prices`,
    /// reserving `input_estimate` input tokens and `max_tokens` output tokens.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        caller: &crate::auth::Caller,
        plan: &str,
        prices: Prices,
        request_id: &str,
        model: &crate::api::ModelInfo,
        input_estimate: u64,
        max_tokens: u64,
        metadata: Option<std::collections::BTreeMap<String, String>>,
        started_ms: u64,
    ) -> Ticket {
        let worst = Usage {
            input_tokens: input_estimate,
            output_tokens: max_tokens,
            reasoning_tokens: 0,
            total_tokens: input_estimate.saturating_add(max_tokens),
        };
        let mode = match caller.billing {
            crate::accounts::Billing::Prepaid => BillMode::Prepaid,
            crate::accounts::Billing::Postpaid => BillMode::Postpaid,
        };
        let hold_rao = cost_rao(&worst, prices);
        // Nothing can cost anything on a free plan: a caller without an account then has no
        // ledger at all. On a priced plan it keeps its (empty) balance and is refused 402.
        let anonymous = !caller.registered && prices == Prices::default();
        let mode = if anonymous { BillMode::None } else { mode };
        let mut t = Ticket {
            mode,
            hold_rao,
            prices,
            anonymous,
            credit_limit_rao: caller.credit_limit_rao,
            expiry_event: String::new(),
            event: UsageEvent {
                request_id: request_id.to_string(),
                account: caller
                    .bill_to
                    .clone()
                    .unwrap_or_else(|| caller.account_id.clone()),
                netuid: caller.netuid,
                plan: plan.to_string(),
                model: model.id.clone(),
                revision: model.revision.clone(),
                input_tokens: input_estimate,
                output_tokens: max_tokens,
                input_rao_per_mtok: prices.input_rao_per_mtok,
                output_rao_per_mtok: prices.output_rao_per_mtok,
                cost_rao: 0,
                status: String::new(),
                estimated: true,
                started_at: rfc3339(started_ms),
                finished_at: String::new(),
                metadata: match &caller.bill_to {
                    // A sponsor pays: the event still names the member that called.
                    Some(_) => {
                        let mut m = metadata.unwrap_or_default();
                        m.insert("member".to_string(), caller.account_id.clone());
                        Some(m)
                    }
                    None => metadata,
                },
            },
        };
        // Only a hold needs the event to record if it expires.
        if mode == BillMode::Prepaid {
            t.expiry_event = t.event.expiry_template();
        }
        t
    }

    /// What the admission must hold (prepaid) or check (postpaid) in its round trip; `None`
    /// for a caller without an account on a free plan, which has no ledger at all.
    pub fn hold(&self) -> Option<Hold<'_>> {
        (!self.anonymous).then(|| Hold {
            account: &self.event.account,
            mode: self.mode,
            amount_rao: self.hold_rao,
            credit_limit_rao: self.credit_limit_rao,
            input_tokens: self.event.input_tokens,
            output_tokens: self.event.output_tokens,
            netuid: self.event.netuid,
            expiry_event: &self.expiry_event,
        })
    }

    /// Records that `model` (a fallback's) served, so the usage event names it.
    pub fn served_by(&mut self, model: &crate::api::ModelInfo) {
        self.event.model.clone_from(&model.id);
        self.event.revision.clone_from(&model.revision);
    }

    /// Charges `prices` instead of the admission's (a provider-priced request served by a
    /// model with a price of its own). The hold stays as taken: the charge may exceed it, as
    /// any charge may (see [`Ticket::cost_of`]).
    pub fn reprice(&mut self, prices: Prices) {
        self.prices = prices;
        self.event.input_rao_per_mtok = prices.input_rao_per_mtok;
        self.event.output_rao_per_mtok = prices.output_rao_per_mtok;
    }

    /// The 402 of an admission whose hold did not fit: what the request may cost against
    /// the `balance_rao` and `held_rao` the store reported.
    pub fn unfunded(&self, balance_rao: i64, held_rao: i64) -> ApiError {
        let need = self.hold_rao;
        let detail = if self.mode == BillMode::Prepaid {
            format!(
                "this request may cost up to {need} rao; the balance is {balance_rao} rao with {held_rao} rao held by requests in flight. {}",
                if balance_rao < 0 {
                    "A request used more than it reserved: add credit to bring the balance back to zero or above"
                } else {
                    "Lower max_tokens or add credit"
                }
            )
        } else {
            format!(
                "this request may cost up to {need} rao and the balance is {balance_rao} rao, at the credit limit of {} rao",
                self.credit_limit_rao
            )
        };
        ApiError::new(ErrorCode::InsufficientBalance, detail)
    }

    /// What `usage` costs this request: the price of what the provider reports, even above
    /// the reservation. A prepaid balance can so go below zero by one request's excess at
    /// most; the next admission then refuses (402) until it is paid. Capping the charge at the
    /// hold instead would let any request whose estimate undershoots be served below price.
    pub fn cost_of(&self, usage: &Usage) -> u64 {
        cost_rao(usage, self.prices)
    }

    /// The charge to record for `outcome`, finished now.
    pub fn charge(&self, outcome: &Outcome) -> Charge {
        let now = now_ms();
        let (finished, day) = crate::store::rfc3339_and_day(now);
        let mut e = self.event.clone();
        e.input_tokens = outcome.usage.input_tokens;
        e.output_tokens = outcome.usage.output_tokens;
        e.cost_rao = self.cost_of(&outcome.usage);
        e.status = outcome.status.as_str().to_string();
        e.estimated = outcome.estimated;
        e.finished_at = finished;
        Charge {
            account: e.account.clone(),
            cost_rao: e.cost_rao,
            input_tokens: e.input_tokens,
            output_tokens: e.output_tokens,
            netuid: e.netuid,
            day,
            event: serde_json::to_string(&e).unwrap_or_default(),
            anonymous: self.anonymous,
            held: self.mode == BillMode::Prepaid,
        }
    }
}

/// Unix milliseconds now.
pub fn now_ms() -> u64 {
    crate::clock::now_ms()
}

/// RFC 3339 (UTC, milliseconds) of a unix-ms instant.
pub fn rfc3339(ms: u64) -> String {
    crate::store::rfc3339_and_day(ms).0
}

/// One settlement waiting for the batcher.
#[derive(Debug)]
struct Pending {
    scopes: Vec<ScopeSpec>,
    request_id: String,
    tokens_back: i64,
    /// The charge and its plan's name (for the metrics).
    charge: Option<(Charge, String)>,
}

/// The most settlements one batch takes: bounds one batch's script arguments (a few KB each).
const MAX_BATCH: usize = 256;

/// Settles requests off the latency path, in batches: a request's settlement is queued and
/// one flusher task per meter takes everything queued at once to the store
/// ([`Store::settle_many`]: one call per hash tag), so a busy replica pays one round trip per
/// batch rather than one task and one call per request, and an idle one adds no delay (a
/// settlement alone is sent at once). What the store cannot take goes to the journal.
#[derive(Debug)]
pub struct Meter {
    store: Store,
    /// Ledger settings shared by admission and settlement.
    pub policy: LedgerPolicy,
    journal: Option<Journal>,
    metrics: Metrics,
    /// The provider's prices, when a plan is priced by the provider.
    provider: Option<Arc<provider::ProviderPrices>>,
    /// Settlements queued or being sent, and a wake-up when a batch ends (for
    /// [`Meter::flush`]).
    running: std::sync::atomic::AtomicU64,
    ended: tokio::sync::Notify,
    /// The batcher's queue, the wake-up of its flusher, and whether the flusher is started.
    queue: std::sync::Mutex<Vec<Pending>>,
    queued: Arc<tokio::sync::Notify>,
    flusher: std::sync::Once,
}

impl Meter {
    /// A meter over `store`; `journal` is required with Redis, unused in memory. The money
    /// series of every plan in `plans` exist from the start, so a rate over them is never
    /// empty. `provider` prices the plans with `pricing = "provider"` (none: no such plan).
    pub fn new<'a>(
        store: Store,
        policy: LedgerPolicy,
        journal: Option<Journal>,
        metrics: Metrics,
        plans: impl IntoIterator<Item = &'a str>,
        provider: Option<Arc<provider::ProviderPrices>>,
    ) -> Arc<Meter> {
        for p in plans {
            metrics.metered_rao.with_label_values(&[p]);
            for d in ["input", "output"] {
                metrics.metered_tokens.with_label_values(&[p, d]);
            }
        }
        Arc::new(Meter {
            store,
            policy,
            journal,
            metrics,
            provider,
            running: std::sync::atomic::AtomicU64::new(0),
            ended: tokio::sync::Notify::new(),
            queue: std::sync::Mutex::new(Vec::new()),
            queued: Arc::new(tokio::sync::Notify::new()),
            flusher: std::sync::Once::new(),
        })
    }

    /// The journal, if any.
    pub fn journal(&self) -> Option<&Journal> {
        self.journal.as_ref()
    }

    /// The provider's prices, when a plan is priced by the provider (tests poll through it).
    pub fn provider_prices(&self) -> Option<&Arc<provider::ProviderPrices>> {
        self.provider.as_ref()
    }

    /// The prices in effect for a request on a plan priced by `pricing`, served by `model`.
    /// A provider-priced plan without a good provider price for the model is refused (503
    /// `price_unavailable`, and the poller is asked to read the catalogue at once): it is never
    /// served free.
    pub fn prices(&self, pricing: Pricing, model: &str) -> Result<Prices, ApiError> {
        let markup_percent = match pricing {
            Pricing::Fixed(p) => return Ok(p),
            Pricing::Provider { markup_percent } => markup_percent,
        };
        let known = self.provider.as_ref().and_then(|pp| {
            let p = pp.get(model);
            if p.is_none() {
                pp.want();
            }
            p
        });
        known.map(|p| marked_up(p, markup_percent)).ok_or_else(|| {
            ApiError::new(
                ErrorCode::PriceUnavailable,
                "this plan is priced by the model provider and its price for the model is not known yet; try again shortly",
            )
            .with_retry_after(5)
        })
    }

    /// Settles one request off the latency path (it outlives the client connection): queued
    /// for the batcher.
    pub fn settle_detached(
        self: &Arc<Self>,
        scopes: Vec<ScopeSpec>,
        request_id: String,
        tokens_back: i64,
        charge: Option<(Charge, String)>,
    ) {
        self.flusher.call_once(|| {
            let (m, queued) = (Arc::downgrade(self), Arc::clone(&self.queued));
            tokio::spawn(async move { Meter::flush_loop(m, queued).await });
        });
        self.running
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.queue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(Pending {
                scopes,
                request_id,
                tokens_back,
                charge,
            });
        self.queued.notify_one();
    }

    /// The flusher: takes what is queued (at most [`MAX_BATCH`]), settles it as one batch,
    /// repeats; sleeps while nothing is queued. Holds the meter weakly, so a dropped gateway
    /// ends it.
    async fn flush_loop(meter: std::sync::Weak<Meter>, queued: Arc<tokio::sync::Notify>) {
        loop {
            let Some(m) = meter.upgrade() else { return };
            if m.queue_len() == 0 {
                drop(m);
                // `notify_one` stores a permit when nobody waits, so a push between the check
                // and this wait is not lost. Idle for a second: write the gathered rollups.
                if tokio::time::timeout(crate::store::ROLLUP_EVERY, queued.notified())
                    .await
                    .is_err()
                    && let Some(m) = meter.upgrade()
                {
                    m.store.flush_rollups(&m.policy).await;
                }
                continue;
            }
            // No lingering for a bigger batch: a settlement frees a concurrency slot and shows
            // the balance to the caller's next request, which may come at once. Batches grow by
            // themselves while a batch is in flight.
            let batch: Vec<Pending> = {
                let mut q = m
                    .queue
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                let n = q.len().min(MAX_BATCH);
                q.drain(..n).collect()
            };
            let n = batch.len() as u64;
            m.settle_batch(batch).await;
            m.running.fetch_sub(n, std::sync::atomic::Ordering::SeqCst);
            m.ended.notify_waiters();
        }
    }

    fn queue_len(&self) -> usize {
        self.queue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len()
    }

    /// Settlements still running.
    pub fn running(&self) -> u64 {
        self.running.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Waits (at most `limit`) until no settlement is running, then writes the rollups the
    /// store gathers in memory (so a drain, or a test, sees every count).
    pub async fn flush(&self, limit: std::time::Duration) {
        let _ = tokio::time::timeout(limit, async {
            loop {
                let ended = self.ended.notified();
                if self.running() == 0 {
                    return;
                }
                ended.await;
            }
        })
        .await;
        self.store.flush_rollups(&self.policy).await;
    }

    /// Settles one request now; `charge` carries the plan name for the metrics.
    pub async fn settle(
        &self,
        scopes: Vec<ScopeSpec>,
        request_id: String,
        tokens_back: i64,
        charge: Option<(Charge, String)>,
    ) {
        self.settle_batch(vec![Pending {
            scopes,
            request_id,
            tokens_back,
            charge,
        }])
        .await;
    }

    /// Settles `batch` in one store call per hash tag, then counts each outcome and journals
    /// what the store could not take.
    async fn settle_batch(&self, batch: Vec<Pending>) {
        let results = {
            let ends: Vec<Ending<'_>> = batch
                .iter()
                .map(|p| Ending {
                    scopes: &p.scopes,
                    request_id: &p.request_id,
                    tokens_back: p.tokens_back,
                    request_back: false,
                    charge: p.charge.as_ref().map(|(c, _)| c),
                })
                .collect();
            self.store.settle_many(&ends, &self.policy).await
        };
        for (p, result) in batch.into_iter().zip(results) {
            self.account(p, result.map(|s| s.recorded)).await;
        }
    }

    /// Counts one settlement's outcome, and journals it when the store failed.
    async fn account(
        &self,
        p: Pending,
        result: Result<crate::store::Recorded, crate::store::StoreError>,
    ) {
        let Pending {
            scopes,
            request_id,
            tokens_back,
            charge,
        } = p;
        let (charge, plan) = match charge {
            Some((c, p)) => (Some(c), p),
            None => (None, String::new()),
        };
        let outcome = match result {
            Ok(crate::store::Recorded::Now) => {
                if let Some(c) = &charge {
                    self.metrics
                        .metered_rao
                        .with_label_values(&[&plan])
                        .inc_by(c.cost_rao);
                    self.metrics
                        .metered_tokens
                        .with_label_values(&[&plan, "input"])
                        .inc_by(c.input_tokens);
                    self.metrics
                        .metered_tokens
                        .with_label_values(&[&plan, "output"])
                        .inc_by(c.output_tokens);
                }
                "settled"
            }
            Ok(crate::store::Recorded::Before) => "repeated",
            Ok(crate::store::Recorded::NotAsked) => "quota_only",
            Err(e) => match &self.journal {
                Some(j) => {
                    let entry = journal::Entry {
                        scopes,
                        request_id,
                        tokens_back,
                        request_back: false,
                        charge,
                    };
                    match j.append(&entry).await {
                        Ok(()) => {
                            tracing::warn!(error = %e, request_id = %entry.request_id, "settlement journaled until Redis is back");
                            "journaled"
                        }
                        Err(io) => {
                            tracing::error!(error = %e, journal_error = %io, request_id = %entry.request_id, "settlement LOST: Redis and the journal both failed");
                            "failed"
                        }
                    }
                }
                None => {
                    tracing::error!(error = %e, %request_id, "settlement failed and no journal is configured");
                    "failed"
                }
            },
        };
        self.metrics.settlements.with_label_values(&[outcome]).inc();
    }
}

/// `ceil(tokens × price / 10^6)` without overflow (u128 intermediate); saturates at
/// `u64::MAX`, which no balance can cover.
fn part(tokens: u64, price: u64) -> u64 {
    let v = (tokens as u128 * price as u128).div_ceil(1_000_000);
    u64::try_from(v).unwrap_or(u64::MAX)
}

/// Cost of `usage` at `prices`: each direction rounded up separately (docs/API.md §9.1).
pub fn cost_rao(usage: &Usage, prices: Prices) -> u64 {
    part(usage.input_tokens, prices.input_rao_per_mtok)
        .saturating_add(part(usage.output_tokens, prices.output_rao_per_mtok))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(i: u64, o: u64) -> Usage {
        Usage {
            input_tokens: i,
            output_tokens: o,
            reasoning_tokens: 0,
            total_tokens: i.saturating_add(o),
        }
    }

    #[test]
    fn cost_rounds_up_per_direction() {
        let p = Prices {
            input_rao_per_mtok: 500_000,
            output_rao_per_mtok: 2_000_000,
        };
        assert_eq!(cost_rao(&usage(0, 0), p), 0);
        // 1 × 0.5 rao → 1; 1 × 2 rao → 2
        assert_eq!(cost_rao(&usage(1, 1), p), 3);
        assert_eq!(cost_rao(&usage(1_000_000, 1_000_000), p), 2_500_000);
        assert_eq!(cost_rao(&usage(3, 0), p), 2); // 1.5 → 2
        assert_eq!(cost_rao(&usage(5, 7), Prices::default()), 0);
    }

    proptest::proptest! {
        /// Rounding is always up, by less than one rao per direction, and never overflows.
        #[test]
        fn cost_is_the_exact_price_rounded_up(
            i in proptest::num::u64::ANY,
            o in proptest::num::u64::ANY,
            pi in proptest::num::u64::ANY,
            po in proptest::num::u64::ANY,
        ) {
            let p = Prices { input_rao_per_mtok: pi, output_rao_per_mtok: po };
            let c = cost_rao(&usage(i, o), p) as u128;
            let exact_i = i as u128 * pi as u128;
            let exact_o = o as u128 * po as u128;
            // Two u128 products can overflow their sum; the cost has saturated long before.
            let Some(exact) = exact_i.checked_add(exact_o) else {
                proptest::prop_assert_eq!(c, u64::MAX as u128);
                return Ok(());
            };
            if c < u64::MAX as u128 {
                // c × 10^6 ≥ exact, and below exact + 2 × 10^6 (one rounding per direction).
                proptest::prop_assert!(c * 1_000_000 >= exact);
                proptest::prop_assert!(c * 1_000_000 < exact + 2_000_000);
            } else {
                // Saturated: the true cost is at least u64::MAX rao.
                proptest::prop_assert!(exact.div_ceil(1_000_000) >= u64::MAX as u128);
            }
        }

        /// More tokens never cost less.
        #[test]
        fn cost_is_monotonic(
            i in 0u64..1 << 40, o in 0u64..1 << 40, extra in 0u64..1 << 20,
            pi in 0u64..1 << 32, po in 0u64..1 << 32,
        ) {
            let p = Prices { input_rao_per_mtok: pi, output_rao_per_mtok: po };
            proptest::prop_assert!(cost_rao(&usage(i + extra, o), p) >= cost_rao(&usage(i, o), p));
            proptest::prop_assert!(cost_rao(&usage(i, o + extra), p) >= cost_rao(&usage(i, o), p));
        }
    }

    /// Issue #11 item 1: a prepaid charge is the provider-reported price, not capped at the
    /// hold (before, 64 tokens against a 10 rao hold cost 10).
    #[test]
    fn a_prepaid_charge_is_the_reported_price_even_above_its_reservation() {
        let t = Ticket {
            mode: BillMode::Prepaid,
            hold_rao: 10,
            prices: Prices {
                input_rao_per_mtok: 0,
                output_rao_per_mtok: 1_000_000,
            },
            anonymous: false,
            credit_limit_rao: 0,
            expiry_event: String::new(),
            event: UsageEvent {
                request_id: "r".into(),
                account: "a".into(),
                netuid: None,
                plan: "p".into(),
                model: "m".into(),
                revision: None,
                input_tokens: 0,
                output_tokens: 0,
                input_rao_per_mtok: 0,
                output_rao_per_mtok: 1_000_000,
                cost_rao: 0,
                status: String::new(),
                estimated: false,
                started_at: String::new(),
                finished_at: String::new(),
                metadata: None,
            },
        };
        assert_eq!(t.cost_of(&usage(0, 7)), 7);
        assert_eq!(t.cost_of(&usage(0, 64)), 64);
        let post = Ticket {
            mode: BillMode::Postpaid,
            ..t
        };
        assert_eq!(post.cost_of(&usage(0, 64)), 64);
    }

    #[test]
    fn a_markup_rounds_up_once_per_direction() {
        let p = |i, o| provider::ProviderPrice {
            input_rao_per_mtok: i,
            output_rao_per_mtok: o,
        };
        let up = marked_up(p(450_000, 4_375_000), 20);
        assert_eq!(up.input_rao_per_mtok, 540_000);
        assert_eq!(up.output_rao_per_mtok, 5_250_000);
        // 1 rao × 1.2 = 1.2 → 2; 0 % changes nothing.
        assert_eq!(marked_up(p(1, 3), 20).input_rao_per_mtok, 2);
        assert_eq!(marked_up(p(1, 3), 20).output_rao_per_mtok, 4);
        assert_eq!(
            marked_up(p(7, 9), 0),
            Prices {
                input_rao_per_mtok: 7,
                output_rao_per_mtok: 9
            }
        );
        assert_eq!(marked_up(p(u64::MAX, 1), 1000).input_rao_per_mtok, u64::MAX);
    }

    #[test]
    fn cost_never_overflows() {
        let p = Prices {
            input_rao_per_mtok: u64::MAX,
            output_rao_per_mtok: u64::MAX,
        };
        assert_eq!(cost_rao(&usage(u64::MAX, u64::MAX), p), u64::MAX);
    }
}
