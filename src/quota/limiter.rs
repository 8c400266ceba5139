//! Admission against the plan limits, and the concurrency lease of each admitted request.
//!
//! A request from a hotkey of a mapped subnet is held to two scopes — the subnet's aggregate
//! (`{s:<netuid>}`, its subnet plan) and the hotkey's own (`{a:<id>}`, its own plan) — checked
//! and consumed together, all or nothing, in one round trip. Everything else has one scope.
//! Tokens are consumed as an estimate up front (input estimate + `max_tokens`) and reconciled
//! with actual usage when the request ends. Each admitted request holds a concurrency lease per
//! scope, renewed while it runs and always released, and a lease whose replica died expires.
//!
//! Money is not this module's: the admission carries a [`Hold`] built by
//! [`crate::metering`] into the same round trip (one script checks buckets and balance
//! together), and the lease's [`Release`] goes back through [`crate::metering::Meter`], which
//! settles tokens, leases and money in one store call. Where a request's money is settled:
//! `Meter::settle`, always.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::headers::{self, PolicyState};
use super::local::OverLimitCache;
use super::plans::{Plan, Plans};
use crate::auth::Caller;
use crate::config::StoreFailure;
use crate::error::{ApiError, ErrorCode};
use crate::metrics::Metrics;
use crate::store::{BillMode, Ending, Hold, LedgerPolicy, Limit, ScopeSpec, ScopeView, Store};

/// The limiter shared by all requests of a replica.
pub struct Limiter {
    store: Store,
    plans: Plans,
    on_failure: StoreFailure,
    lease: Duration,
    over: OverLimitCache,
    metrics: Metrics,
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
    ) -> Self {
        Limiter {
            store,
            plans,
            on_failure,
            lease,
            over: OverLimitCache::new(),
            metrics,
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

    /// Admits one request of `tokens` estimated tokens against `scopes` and, with `money`,
    /// takes its hold (prepaid) or checks its credit (postpaid) in the same round trip; or
    /// refuses it with 429 (and the headers that say when to come back), or as
    /// [`Refusal::Unfunded`] for the caller of [`crate::metering`] to explain.
    pub async fn admit(
        self: &Arc<Self>,
        scopes: Scopes,
        request_id: &str,
        tokens: u64,
        money: Option<Money<'_>>,
    ) -> Result<Lease, Refusal> {
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
                return Err(Refusal::Limited(Box::new(Refused {
                    error: refusal(Limit::RequestsPerMinute, i, &scopes, wait),
                    policies,
                })));
            }
        }
        let policy = money
            .as_ref()
            .map_or_else(LedgerPolicy::default, |m| m.policy);
        let hold = money.as_ref().map(|m| &m.hold);
        match self
            .store
            .admit(&scopes.specs, request_id, tokens, self.lease, hold, &policy)
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
                    return Err(Refusal::Unfunded {
                        balance_rao: a.balance_rao,
                        held_rao: a.held_rao,
                        policies,
                    });
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
                    return Err(Refusal::Limited(Box::new(Refused {
                        error: err,
                        policies,
                    })));
                }
                // A prepaid request's hold is renewed with its lease.
                let renew_hold = hold
                    .filter(|h| h.mode == BillMode::Prepaid)
                    .map(|h| (h.account.to_owned(), policy));
                Ok(Lease::new(
                    self, scopes, request_id, tokens, policies, true, renew_hold,
                ))
            }
            Err(e) => {
                self.log_failure(&e);
                // A request that costs anything on a prepaid account is never served without
                // its hold: no free usage. (A zero-priced one has nothing to hold.)
                let must_hold =
                    hold.is_some_and(|h| h.mode == BillMode::Prepaid && h.amount_rao > 0);
                match self.on_failure {
                    StoreFailure::FailOpen if !must_hold => Ok(Lease::new(
                        self,
                        scopes,
                        request_id,
                        tokens,
                        Vec::new(),
                        false,
                        None,
                    )),
                    _ => Err(Refusal::Limited(Box::new(Refused {
                        error: ApiError::new(
                            ErrorCode::StoreUnavailable,
                            "the quota and balance store is unavailable; try again shortly",
                        )
                        .with_retry_after(1),
                        policies: Vec::new(),
                    }))),
                }
            }
        }
    }

    /// The caller's current state (nothing consumed), for `GET /v1/account`: the scopes, their
    /// views and, read in the same round trip with the ledger's `policy`, the account's
    /// balance and the rao held.
    pub async fn peek(
        &self,
        caller: &Caller,
        policy: &LedgerPolicy,
    ) -> Result<(Scopes, Vec<ScopeView>, i64, i64), ApiError> {
        let scopes = self.scopes(caller);
        let crate::store::Peek {
            scopes: views,
            balance_rao: balance,
            held_rao: held,
        } = self
            .store
            .peek(&scopes.specs, Some(&caller.account_id), policy)
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

/// Why an admission was refused.
#[derive(Debug)]
pub enum Refusal {
    /// A limit (or the store) refused: the problem and headers are ready to send.
    Limited(Box<Refused>),
    /// The account's money does not cover the request's worst case: the caller of the
    /// admission (which knows the price) explains it, with these numbers and headers.
    Unfunded {
        /// The balance, rao.
        balance_rao: i64,
        /// Held by requests in flight, rao.
        held_rao: i64,
        /// The rate-limit policies of the decision.
        policies: Vec<PolicyState>,
    },
}

/// The money an admission carries into its round trip: what to hold or check, and the
/// ledger's settings.
#[derive(Debug, Clone)]
pub struct Money<'a> {
    /// The hold (or credit check).
    pub hold: Hold<'a>,
    /// The ledger's settings (hold expiry, …).
    pub policy: LedgerPolicy,
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

/// An admitted request's hold on its scopes: the concurrency leases (renewed while it runs)
/// and the token estimate. Turn it into its [`Release`] when the request ends; the
/// settlement that applies the release also settles the money ([`crate::metering::Meter`]).
/// A lease dropped without being released gives everything back on a detached task, so a
/// slot is never kept by a request that is gone.
#[derive(Debug)]
pub struct Lease {
    limiter: Arc<Limiter>,
    scopes: Scopes,
    request_id: String,
    estimate: u64,
    /// The rate-limit headers of the admission.
    pub policies: Vec<PolicyState>,
    held: bool,
    renewer: Option<tokio::task::JoinHandle<()>>,
}

/// What ending a request gives back to its scopes.
#[derive(Debug)]
pub struct Release {
    /// The scopes held.
    pub scopes: Vec<ScopeSpec>,
    /// The request id the leases are held under.
    pub request_id: String,
    /// Tokens back: the estimate minus what was used (negative takes the excess).
    pub tokens_back: i64,
    /// Whether the admission reached the store (a fail-open admission holds nothing).
    pub held: bool,
}

impl Lease {
    fn new(
        limiter: &Arc<Limiter>,
        scopes: Scopes,
        request_id: &str,
        estimate: u64,
        policies: Vec<PolicyState>,
        held: bool,
        renew_hold: Option<(String, LedgerPolicy)>,
    ) -> Lease {
        let renewer = held.then(|| {
            let (l, specs, id) = (
                Arc::clone(limiter),
                scopes.specs.clone(),
                request_id.to_owned(),
            );
            tokio::spawn(async move {
                let every = l.lease / 3;
                let (account, policy) = match renew_hold {
                    Some((a, p)) => (Some(a), p),
                    None => (None, LedgerPolicy::default()),
                };
                loop {
                    tokio::time::sleep(every).await;
                    if let Err(e) = l
                        .store
                        .renew(&specs, &id, l.lease, account.as_deref(), &policy)
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
            renewer,
        }
    }

    /// Ends the lease of a request that used `tokens_used` tokens: stops renewing it and
    /// returns what goes back, for the settlement to apply.
    pub fn release(mut self, tokens_used: u64) -> Release {
        self.take(tokens_used)
    }

    fn take(&mut self, tokens_used: u64) -> Release {
        if let Some(r) = self.renewer.take() {
            r.abort();
        }
        Release {
            scopes: std::mem::take(&mut self.scopes.specs),
            request_id: std::mem::take(&mut self.request_id),
            tokens_back: i64::try_from(self.estimate).unwrap_or(i64::MAX)
                - i64::try_from(tokens_used).unwrap_or(i64::MAX),
            held: std::mem::take(&mut self.held),
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let r = self.take(0);
        if r.held {
            let store = self.limiter.store.clone();
            let l = Arc::clone(&self.limiter);
            tokio::spawn(async move {
                let policy = LedgerPolicy::default();
                if let Err(e) = store
                    .settle(
                        Ending {
                            scopes: &r.scopes,
                            request_id: &r.request_id,
                            tokens_back: r.tokens_back,
                            request_back: false,
                            charge: None,
                        },
                        &policy,
                    )
                    .await
                {
                    l.log_failure(&e);
                }
            });
        }
    }
}
