//! Admission against the plan limits, and settlement after the answer.
//!
//! A request from a hotkey of a mapped subnet is held to two scopes — the subnet's aggregate
//! (`{s:<netuid>}`, its subnet plan) and the hotkey's own (`{a:<id>}`, its own plan) — checked
//! and consumed together, all or nothing, in one round trip. Everything else has one scope.
//! Tokens are consumed as an estimate up front (input estimate + `max_tokens`) and reconciled
//! with actual usage when the request ends. Each admitted request holds a concurrency lease per
//! scope, renewed while it runs and always released: the [`Lease`] guard settles on every path
//! (success, error, client disconnect, panic), and a lease whose replica died expires.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::headers::{self, PolicyState};
use super::local::OverLimitCache;
use super::plans::{Plan, Plans};
use crate::auth::Caller;
use crate::config::StoreFailure;
use crate::error::{ApiError, ErrorCode};
use crate::metering::{Meter, Outcome, Ticket};
use crate::metrics::Metrics;
use crate::store::{BillMode, Hold, Limit, ScopeSpec, ScopeView, Store};

/// The limiter shared by all requests of a replica.
pub struct Limiter {
    store: Store,
    plans: Plans,
    on_failure: StoreFailure,
    lease: Duration,
    over: OverLimitCache,
    metrics: Metrics,
    meter: Arc<Meter>,
    /// The aggregate every caller without an account is held to as well.
    public_tier: Option<ScopeSpec>,
    /// Unix seconds of the last "quota store failing" log line (rate-limits the log).
    last_failure_log: AtomicU64,
}

impl std::fmt::Debug for Limiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limiter")
            .field("on_failure", &self.on_failure)
            .finish_non_exhaustive()
    }
}

/// Code stored in the over-limit cache for a requests-per-minute refusal.
const OVER_RPM: u8 = 1;

/// The hash tag of the scope all callers without an account share.
pub const PUBLIC_TIER_TAG: &str = crate::store::keys::PUBLIC_TIER_TAG;

/// The scopes a caller is held to, with the plans behind them (subnet first).
#[derive(Debug, Clone)]
pub struct Scopes {
    /// The caller's own plan.
    pub plan: Arc<Plan>,
    /// The subnet aggregate's plan, when the caller's subnet is mapped.
    pub subnet_plan: Option<Arc<Plan>>,
    /// The scopes, the shared one (subnet, or the public tier) first if any, account last.
    pub specs: Vec<ScopeSpec>,
    /// The first scope is the public tier (the caller has no account).
    pub public_tier: bool,
}

fn spec(tag: String, p: &Plan) -> ScopeSpec {
    ScopeSpec {
        tag,
        rpm: p.requests_per_minute,
        tpm: p.tokens_per_minute,
        tpd: p.tokens_per_day,
        max_concurrent: p.max_concurrent,
    }
}

impl Limiter {
    /// A limiter over `store` with the resolved plans.
    pub fn new(
        store: Store,
        plans: Plans,
        on_failure: StoreFailure,
        lease: Duration,
        metrics: Metrics,
        meter: Arc<Meter>,
    ) -> Self {
        // Every plan's money series exist from the start, so a rate over them is never empty.
        for p in plans.names() {
            metrics.metered_rao.with_label_values(&[p]);
            for d in ["input", "output"] {
                metrics.metered_tokens.with_label_values(&[p, d]);
            }
        }
        Limiter {
            store,
            plans,
            on_failure,
            lease,
            over: OverLimitCache::new(),
            metrics,
            meter,
            public_tier: None,
            last_failure_log: AtomicU64::new(0),
        }
    }

    /// Holds every caller without an account to `tier` as well, all of them together.
    pub fn with_public_tier(mut self, tier: &crate::config::PublicTierConfig) -> Self {
        self.public_tier = Some(ScopeSpec {
            tag: PUBLIC_TIER_TAG.to_string(),
            rpm: tier.requests_per_minute,
            tpm: tier.tokens_per_minute,
            tpd: tier.tokens_per_minute.saturating_mul(1_440),
            max_concurrent: tier.max_concurrent,
        });
        self
    }

    /// The meter settlements go through.
    pub fn meter(&self) -> &Arc<Meter> {
        &self.meter
    }

    /// The resolved plans.
    pub fn plans(&self) -> &Plans {
        &self.plans
    }

    /// The scopes of `caller`. An account whose plan vanished from the configuration falls
    /// back to `public` (and says so in the log) rather than going unlimited.
    pub fn scopes(&self, caller: &Caller) -> Scopes {
        let plan = match self.plans.get(&caller.plan) {
            Some(p) => Arc::clone(p),
            None => {
                tracing::warn!(plan = %caller.plan, "account on an unknown plan; limiting it as `public`");
                Arc::clone(
                    self.plans
                        .get(crate::accounts::PUBLIC_PLAN)
                        .expect("built-in plan"),
                )
            }
        };
        let subnet_plan = caller.netuid.and_then(|n| self.plans.subnet(n)).cloned();
        let mut specs = Vec::with_capacity(2);
        let mut public_tier = false;
        if let (Some(n), Some(sp)) = (caller.netuid, &subnet_plan) {
            specs.push(spec(crate::store::keys::subnet_tag(n), sp));
        } else if let (false, Some(t)) = (caller.registered, &self.public_tier) {
            specs.push(t.clone());
            public_tier = true;
        }
        specs.push(spec(
            crate::store::keys::account_tag(&caller.account_id),
            &plan,
        ));
        Scopes {
            plan,
            subnet_plan,
            specs,
            public_tier,
        }
    }

    fn log_failure(&self, e: &crate::store::StoreError) {
        self.metrics.quota_store_errors.inc();
        let now = crate::auth::jwt::now_secs();
        let last = self.last_failure_log.load(Ordering::Relaxed);
        if now >= last + 60
            && self
                .last_failure_log
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::error!(error = %e, policy = ?self.on_failure, "quota store failing (logged at most once a minute)");
        }
    }

    /// Admits one request of `tokens` estimated tokens and, with `ticket`, reserves its
    /// worst-case cost (prepaid) or checks the credit limit (postpaid) in the same round trip;
    /// or refuses it with 429 (and the headers that say when to come back) or 402.
    pub async fn admit(
        self: &Arc<Self>,
        caller: &Caller,
        request_id: &str,
        tokens: u64,
        ticket: Option<Ticket>,
    ) -> Result<Lease, Box<Refused>> {
        let scopes = self.scopes(caller);
        let now = Instant::now();
        // A caller that keeps hammering after a requests-per-minute refusal is refused here,
        // without a round trip, until the instant the limiter said capacity returns.
        for (i, s) in scopes.specs.iter().enumerate() {
            if let Some((until, OVER_RPM)) = self.over.check(&s.tag, now) {
                self.metrics
                    .quota_rejections
                    .with_label_values(&["rate_limited"])
                    .inc();
                // Only the refusing policy is known without a round trip; the draft lets a
                // server send a subset of its policies.
                let wait = until - now;
                let shared = i + 1 < scopes.specs.len();
                // The public tier is not one of the caller's policies: no header for it.
                let policies = if shared && scopes.public_tier {
                    Vec::new()
                } else {
                    vec![PolicyState {
                        name: if shared { "subnet-rpm" } else { "rpm" },
                        quota: s.rpm,
                        window_secs: 60,
                        unit: None,
                        remaining: 0,
                        reset_secs: headers::retry_after_secs(wait),
                    }]
                };
                return Err(Box::new(Refused {
                    error: refusal(Limit::RequestsPerMinute, i, &scopes, wait),
                    policies,
                }));
            }
        }
        // Only a hold needs the event to record if it expires.
        let expiry_event = ticket
            .as_ref()
            .filter(|t| t.mode == BillMode::Prepaid)
            .map(|t| t.event.expiry_template());
        let hold = ticket.as_ref().filter(|t| !t.anonymous).map(|t| Hold {
            account: &caller.account_id,
            mode: t.mode,
            amount_rao: t.hold_rao,
            credit_limit_rao: caller.credit_limit_rao,
            input_tokens: t.event.input_tokens,
            output_tokens: t.event.output_tokens,
            netuid: caller.netuid,
            expiry_event: expiry_event.as_deref().unwrap_or(""),
        });
        match self
            .store
            .admit(
                &scopes.specs,
                request_id,
                tokens,
                self.lease,
                hold.as_ref(),
                &self.meter.policy,
            )
            .await
        {
            Ok(a) => {
                let d = a.decision;
                let policies = policies(&scopes, &d.scopes);
                if let Some((_, Limit::Balance, _)) = d.refused {
                    self.metrics
                        .quota_rejections
                        .with_label_values(&["insufficient_balance"])
                        .inc();
                    let need = ticket.as_ref().map_or(0, |t| t.hold_rao);
                    let detail = if caller.billing == crate::accounts::Billing::Prepaid {
                        format!(
                            "this request may cost up to {need} rao; the balance is {} rao with {} rao held by requests in flight. {}",
                            a.balance_rao,
                            a.held_rao,
                            if a.balance_rao < 0 {
                                "A request used more than it reserved: add credit to bring the balance back to zero or above"
                            } else {
                                "Lower max_tokens or add credit"
                            }
                        )
                    } else {
                        format!(
                            "this request may cost up to {need} rao and the balance is {} rao, at the credit limit of {} rao",
                            a.balance_rao, caller.credit_limit_rao
                        )
                    };
                    return Err(Box::new(Refused {
                        error: ApiError::new(ErrorCode::InsufficientBalance, detail),
                        policies,
                    }));
                }
                if let Some((i, limit, wait)) = d.refused {
                    if limit == Limit::RequestsPerMinute {
                        self.over.mark(&scopes.specs[i].tag, now + wait, OVER_RPM);
                    }
                    let err = refusal(limit, i, &scopes, wait);
                    self.metrics
                        .quota_rejections
                        .with_label_values(&[err.code.as_str()])
                        .inc();
                    return Err(Box::new(Refused {
                        error: err,
                        policies,
                    }));
                }
                Ok(Lease::new(
                    self, scopes, request_id, tokens, policies, true, ticket,
                ))
            }
            Err(e) => {
                self.log_failure(&e);
                // A prepaid request that costs anything is never served without a hold: no
                // free usage. (A zero-priced one has nothing to hold.)
                let prepaid = ticket
                    .as_ref()
                    .is_some_and(|t| t.mode == BillMode::Prepaid && t.hold_rao > 0);
                match self.on_failure {
                    StoreFailure::FailOpen if !prepaid => Ok(Lease::new(
                        self,
                        scopes,
                        request_id,
                        tokens,
                        Vec::new(),
                        false,
                        ticket,
                    )),
                    _ => Err(Box::new(Refused {
                        error: ApiError::new(
                            ErrorCode::StoreUnavailable,
                            "the quota and balance store is unavailable; try again shortly",
                        )
                        .with_retry_after(1),
                        policies: Vec::new(),
                    })),
                }
            }
        }
    }

    /// The caller's current state (nothing consumed), for `GET /v1/account`: the scopes, their
    /// views, the balance and the rao held.
    pub async fn peek(
        &self,
        caller: &Caller,
    ) -> Result<(Scopes, Vec<ScopeView>, i64, i64), ApiError> {
        let scopes = self.scopes(caller);
        let crate::store::Peek {
            scopes: views,
            balance_rao: balance,
            held_rao: held,
        } = self
            .store
            .peek(&scopes.specs, Some(&caller.account_id), &self.meter.policy)
            .await
            .map_err(|e| {
                self.log_failure(&e);
                ApiError::new(
                    ErrorCode::StoreUnavailable,
                    "the quota and balance store is unavailable; try again shortly",
                )
                .with_retry_after(1)
            })?;
        Ok((scopes, views, balance, held))
    }
}

/// A refusal: the 429 and the rate-limit headers to send with it.
#[derive(Debug)]
pub struct Refused {
    /// The problem (with `Retry-After`).
    pub error: ApiError,
    /// The policies' state, for `RateLimit-Policy` / `RateLimit`.
    pub policies: Vec<PolicyState>,
}

impl axum::response::IntoResponse for Refused {
    fn into_response(self) -> axum::response::Response {
        let mut res = self.error.into_response();
        headers::insert(res.headers_mut(), &self.policies);
        res
    }
}

fn refusal(limit: Limit, scope: usize, scopes: &Scopes, wait: Duration) -> ApiError {
    let whose = match (scope + 1 < scopes.specs.len(), scopes.public_tier) {
        (true, true) => {
            "the free tier's (shared by all callers without an account; an account has its own)"
        }
        (true, false) => "your subnet's",
        (false, _) => "your",
    };
    let (code, what) = match limit {
        Limit::RequestsPerMinute => (ErrorCode::RateLimited, "requests-per-minute limit"),
        Limit::TokensPerMinute => (ErrorCode::QuotaExceeded, "tokens-per-minute quota"),
        Limit::TokensPerDay => (ErrorCode::QuotaExceeded, "tokens-per-day quota"),
        Limit::Concurrency => (ErrorCode::ConcurrencyLimited, "limit of requests in flight"),
        Limit::Balance => (ErrorCode::InsufficientBalance, "balance"),
    };
    ApiError::new(
        code,
        format!("{whose} plan's {what} is reached; retry after the Retry-After delay"),
    )
    .with_retry_after(headers::retry_after_secs(wait))
}

/// The `RateLimit` policies of a decision: the caller's own limits, then the subnet's.
pub fn policies(scopes: &Scopes, views: &[ScopeView]) -> Vec<PolicyState> {
    let mut out = Vec::with_capacity(6);
    let n = scopes.specs.len();
    let own = &views[n - 1];
    let secs = |ms: u64| ms.div_ceil(1000);
    let push = |out: &mut Vec<PolicyState>, names: [&'static str; 3], p: &Plan, v: &ScopeView| {
        out.push(PolicyState {
            name: names[0],
            quota: p.requests_per_minute,
            window_secs: 60,
            unit: None,
            remaining: v.rpm.remaining,
            reset_secs: secs(v.rpm.reset_ms),
        });
        out.push(PolicyState {
            name: names[1],
            quota: p.tokens_per_minute,
            window_secs: 60,
            unit: None,
            remaining: v.tpm.remaining,
            reset_secs: secs(v.tpm.reset_ms),
        });
        out.push(PolicyState {
            name: names[2],
            quota: p.tokens_per_day,
            window_secs: 86_400,
            unit: None,
            remaining: v.tpd.remaining,
            reset_secs: secs(v.tpd.reset_ms),
        });
    };
    push(&mut out, ["rpm", "tpm", "tpd"], &scopes.plan, own);
    if let (Some(sp), true) = (&scopes.subnet_plan, n == 2) {
        push(
            &mut out,
            ["subnet-rpm", "subnet-tpm", "subnet-tpd"],
            sp,
            &views[0],
        );
    }
    out
}

/// An admitted request's hold on its scopes and its money. Settle it with the outcome; if it
/// is dropped unsettled (error, panic) it settles itself on a detached task as a request that
/// used nothing: the whole token estimate and the whole hold go back, and a zero-cost `failed`
/// usage event is recorded.
#[derive(Debug)]
pub struct Lease {
    limiter: Arc<Limiter>,
    scopes: Scopes,
    request_id: String,
    estimate: u64,
    /// The rate-limit headers of the admission.
    pub policies: Vec<PolicyState>,
    held: bool,
    ticket: Option<Ticket>,
    renewer: Option<tokio::task::JoinHandle<()>>,
}

impl Lease {
    fn new(
        limiter: &Arc<Limiter>,
        scopes: Scopes,
        request_id: &str,
        estimate: u64,
        policies: Vec<PolicyState>,
        held: bool,
        ticket: Option<Ticket>,
    ) -> Lease {
        // A prepaid request's hold is renewed with its lease.
        let account = ticket
            .as_ref()
            .filter(|t| t.mode == BillMode::Prepaid)
            .map(|t| t.event.account.clone());
        let renewer = held.then(|| {
            let (l, specs, id) = (
                Arc::clone(limiter),
                scopes.specs.clone(),
                request_id.to_owned(),
            );
            tokio::spawn(async move {
                let every = l.lease / 3;
                loop {
                    tokio::time::sleep(every).await;
                    if let Err(e) = l
                        .store
                        .renew(&specs, &id, l.lease, account.as_deref(), &l.meter.policy)
                        .await
                    {
                        l.log_failure(&e);
                    }
                }
            })
        });
        Lease {
            limiter: Arc::clone(limiter),
            scopes,
            request_id: request_id.to_owned(),
            estimate,
            policies,
            held,
            ticket,
            renewer,
        }
    }

    /// Records that `model` (a fallback's) served, so the usage event names it.
    pub fn served_by(&mut self, model: &crate::api::ModelInfo) {
        if let Some(t) = self.ticket.as_mut() {
            t.event.model.clone_from(&model.id);
            t.event.revision.clone_from(&model.revision);
        }
    }

    /// What `usage` costs this request (the reported price, even above the hold); 0 unmetered.
    pub fn cost_of(&self, usage: &crate::api::Usage) -> u64 {
        self.ticket.as_ref().map_or(0, |t| t.cost_of(usage))
    }

    /// The caller's own plan.
    pub fn plan(&self) -> &Arc<Plan> {
        &self.scopes.plan
    }

    /// Ends the request with `outcome`: releases the lease, reconciles the token buckets,
    /// and settles the money — on a detached task, so it happens whatever the client does.
    /// Returns the cost charged.
    pub fn settle(mut self, outcome: Outcome) -> u64 {
        self.finish(&outcome)
    }

    fn finish(&mut self, outcome: &Outcome) -> u64 {
        if let Some(r) = self.renewer.take() {
            r.abort();
        }
        let ticket = self.ticket.take();
        let held = std::mem::take(&mut self.held);
        if !held && ticket.is_none() {
            return 0;
        }
        let charge = ticket
            .as_ref()
            .map(|t| (t.charge(outcome), self.scopes.plan.name.clone()));
        let cost = charge.as_ref().map_or(0, |(c, _)| c.cost_rao);
        let back = i64::try_from(self.estimate).unwrap_or(i64::MAX)
            - i64::try_from(outcome.usage.total_tokens).unwrap_or(i64::MAX);
        self.limiter.meter.settle_detached(
            std::mem::take(&mut self.scopes.specs),
            std::mem::take(&mut self.request_id),
            back,
            charge,
        );
        cost
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.finish(&Outcome::failed());
    }
}

/// A rough, deliberately generous input-token estimate: one token per 3 bytes of text plus a
/// few per message. Reconciled with the provider's count after the answer.
pub fn estimate_input_tokens(texts: impl Iterator<Item = usize>) -> u64 {
    texts.map(|len| len.div_ceil(3) as u64 + 4).sum()
}
