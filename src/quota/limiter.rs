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

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use super::headers::{self, PolicyState};
use super::local::OverLimitCache;
use super::plans::{Plan, Plans};
use crate::auth::Caller;
use crate::config::StoreFailure;
use crate::error::{ApiError, ErrorCode};
use crate::metrics::Metrics;
use crate::store::{
    BillMode, Ending, Hold, LedgerPolicy, Limit, Renewal, ScopeSpec, ScopeView, Store,
};

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
    /// The leases in flight, extended by one renewer task for all of them.
    renewals: Renewals,
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
            renewals: Renewals::default(),
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
                    _ => {
                        let refused = Box::new(Refused {
                            error: ApiError::new(
                                ErrorCode::StoreUnavailable,
                                "the quota and balance store is unavailable; try again shortly",
                            )
                            .with_retry_after(1),
                            policies: Vec::new(),
                        });
                        // The script may have run although no reply came: a stalled Redis
                        // runs what was queued once it resumes, and one killed after running it
                        // keeps it in its AOF (tests/chaos.rs, redis_stall and redis_restart).
                        // A hold left so would expire into a charge; a lease only lingers for
                        // its TTL, so an outage (unavailable) costs the settlement only for
                        // prepaid requests.
                        let unsure = match e {
                            crate::store::StoreError::Timeout => true,
                            crate::store::StoreError::Unavailable(_) => must_hold,
                            crate::store::StoreError::Protocol(_) => false,
                        };
                        if unsure {
                            Err(Refusal::Unsure {
                                refused,
                                specs: scopes.specs,
                            })
                        } else {
                            Err(Refusal::Limited(refused))
                        }
                    }
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
    /// The admission failed in the store in a way that may still have run it (a timeout; for
    /// a prepaid request any store failure): 503 `store_unavailable`, as `Limited`, but the
    /// store may have taken, or may still take, the request's lease and hold. The caller must settle the request id as failed over `specs`,
    /// so that whatever a late admission takes is released instead of expiring into an
    /// `unsettled` charge for a request that was never served.
    Unsure {
        /// The refusal to send.
        refused: Box<Refused>,
        /// The scopes the admission was sent for.
        specs: Vec<ScopeSpec>,
    },
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
    /// The scopes and request id; moved into the limiter's renewals while registered there.
    held: Option<Arc<Held>>,
    /// The key of this lease in the limiter's renewals (`None`: not renewed, or released).
    registered: Option<u64>,
    estimate: u64,
    /// The rate-limit headers of the admission.
    pub policies: Vec<PolicyState>,
    /// Whether the admission reached the store (a fail-open admission holds nothing).
    in_store: bool,
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

/// One lease in flight, as its renewal and its release need it.
#[derive(Debug)]
struct Held {
    specs: Vec<ScopeSpec>,
    request_id: String,
    /// A prepaid request's account and ledger settings: its hold is renewed with the lease.
    hold: Option<(String, LedgerPolicy)>,
    /// When it was admitted: a lease younger than one renewal period is not renewed yet (the
    /// admission gave it a whole lease period), so a short request costs no renewal at all.
    since: tokio::time::Instant,
}

/// The leases in flight of one limiter, and the one task that renews them all every
/// lease/3 — instead of a timer task per request, whose wake-ups cost more than the request.
#[derive(Debug, Default)]
struct Renewals {
    live: Mutex<Live>,
    next_key: AtomicU64,
    /// Renewer tasks started (one per runtime the limiter served on; tests check it).
    tasks_started: AtomicU64,
    /// Lease renewals sent to the store.
    renewed: AtomicU64,
}

#[derive(Debug, Default)]
struct Live {
    leases: HashMap<u64, Arc<Held>>,
    renewer: Option<tokio::task::JoinHandle<()>>,
}

impl Renewals {
    fn lock(&self) -> std::sync::MutexGuard<'_, Live> {
        self.live.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for Limiter {
    fn drop(&mut self) {
        if let Some(t) = self.renewals.lock().renewer.take() {
            t.abort();
        }
    }
}

impl Limiter {
    /// Registers a lease for renewal (starting the renewer on first use); returns its key.
    fn register(self: &Arc<Self>, held: Arc<Held>) -> u64 {
        let key = self.renewals.next_key.fetch_add(1, Ordering::Relaxed);
        let mut live = self.renewals.lock();
        live.leases.insert(key, held);
        // A finished renewer belonged to a runtime that is gone (tests run one per test).
        if live.renewer.as_ref().is_none_or(|t| t.is_finished()) {
            self.renewals.tasks_started.fetch_add(1, Ordering::Relaxed);
            let every = (self.lease / 3).max(Duration::from_millis(1));
            live.renewer = Some(tokio::spawn(renew_loop(Arc::downgrade(self), every)));
        }
        key
    }

    fn unregister(&self, key: u64) -> Option<Arc<Held>> {
        self.renewals.lock().leases.remove(&key)
    }

    /// Renews every lease in flight older than `every`, in one store call per ledger policy.
    async fn renew_due(&self, every: Duration) {
        let now = tokio::time::Instant::now();
        let due: Vec<Arc<Held>> = self
            .renewals
            .lock()
            .leases
            .values()
            .filter(|h| now.duration_since(h.since) >= every)
            .cloned()
            .collect();
        if due.is_empty() {
            return;
        }
        // Every prepaid hold of a deployment has the same policy; a lease without a hold has
        // none, and rides along with any of them.
        let mut policies: Vec<LedgerPolicy> = Vec::with_capacity(1);
        for h in &due {
            if let Some((_, p)) = &h.hold
                && !policies.contains(p)
            {
                policies.push(*p);
            }
        }
        if policies.is_empty() {
            policies.push(LedgerPolicy::default());
        }
        for (i, policy) in policies.iter().enumerate() {
            let batch: Vec<Renewal<'_>> = due
                .iter()
                .filter(|h| match &h.hold {
                    Some((_, p)) => p == policy,
                    None => i == 0,
                })
                .map(|h| Renewal {
                    scopes: &h.specs,
                    request_id: &h.request_id,
                    account: h.hold.as_ref().map(|(a, _)| a.as_str()),
                })
                .collect();
            self.renewals
                .renewed
                .fetch_add(batch.len() as u64, Ordering::Relaxed);
            if let Err(e) = self.store.renew_many(&batch, self.lease, policy).await {
                self.log_failure(&e);
            }
        }
    }

    /// Lease renewals sent to the store so far.
    #[cfg(test)]
    fn renewals_sent(&self) -> u64 {
        self.renewals.renewed.load(Ordering::Relaxed)
    }

    /// Renewer tasks started so far.
    #[cfg(test)]
    fn renewer_tasks_started(&self) -> u64 {
        self.renewals.tasks_started.load(Ordering::Relaxed)
    }
}

/// The renewer: every `every`, the leases due; ends when its limiter is gone.
async fn renew_loop(limiter: Weak<Limiter>, every: Duration) {
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(l) = limiter.upgrade() else {
            return;
        };
        l.renew_due(every).await;
    }
}

impl Release {
    /// The release as a quota-only ending (no money): what a lease dropped unreleased settles.
    fn quota_only(&self) -> Ending<'_> {
        Ending {
            scopes: &self.scopes,
            request_id: &self.request_id,
            tokens_back: self.tokens_back,
            request_back: false,
            charge: None,
        }
    }
}

impl Lease {
    fn new(
        limiter: &Arc<Limiter>,
        scopes: Scopes,
        request_id: &str,
        estimate: u64,
        policies: Vec<PolicyState>,
        in_store: bool,
        renew_hold: Option<(String, LedgerPolicy)>,
    ) -> Lease {
        let held = Arc::new(Held {
            specs: scopes.specs,
            request_id: request_id.to_owned(),
            hold: renew_hold,
            since: tokio::time::Instant::now(),
        });
        let registered = in_store.then(|| limiter.register(Arc::clone(&held)));
        Lease {
            limiter: Arc::clone(limiter),
            held: Some(held),
            registered,
            estimate,
            policies,
            in_store,
        }
    }

    /// Ends the lease of a request that used `tokens_used` tokens: stops renewing it and
    /// returns what goes back, for the settlement to apply.
    pub fn release(mut self, tokens_used: u64) -> Release {
        self.take(tokens_used)
    }

    fn take(&mut self, tokens_used: u64) -> Release {
        if let Some(key) = self.registered.take() {
            self.limiter.unregister(key);
        }
        let (scopes, request_id) = match self.held.take().map(Arc::try_unwrap) {
            Some(Ok(h)) => (h.specs, h.request_id),
            // The renewer is renewing it right now: its snapshot goes away by itself.
            Some(Err(shared)) => (shared.specs.clone(), shared.request_id.clone()),
            None => (Vec::new(), String::new()),
        };
        Release {
            scopes,
            request_id,
            tokens_back: i64::try_from(self.estimate).unwrap_or(i64::MAX)
                - i64::try_from(tokens_used).unwrap_or(i64::MAX),
            held: std::mem::take(&mut self.in_store),
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
                if let Err(e) = store.settle(r.quota_only(), &LedgerPolicy::default()).await {
                    l.log_failure(&e);
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEASE: Duration = Duration::from_secs(3);

    fn limiter() -> Arc<Limiter> {
        Arc::new(Limiter::new(
            Store::memory("limiter-test:"),
            Plans::default(),
            StoreFailure::FailClosed,
            LEASE,
            Metrics::new(),
        ))
    }

    /// One request in flight at most on `{a:<who>}`.
    fn one_at_a_time(who: usize) -> Scopes {
        Scopes {
            plan: Arc::new(super::super::plans::builtin()[0].clone()),
            subnet_plan: None,
            specs: vec![ScopeSpec {
                tag: format!("{{a:{who}}}"),
                rpm: 1_000,
                tpm: 1_000_000,
                tpd: 10_000_000,
                max_concurrent: 1,
            }],
            public_tier: false,
        }
    }

    fn concurrency_refused(r: &Result<Lease, Refusal>) -> bool {
        matches!(r, Err(Refusal::Limited(x)) if x.error.code == ErrorCode::ConcurrencyLimited)
    }

    #[tokio::test(start_paused = true)]
    async fn requests_outliving_many_lease_periods_keep_their_slots_with_one_renewer() {
        let l = limiter();
        let tasks = || {
            tokio::runtime::Handle::current()
                .metrics()
                .num_alive_tasks()
        };
        let mut leases = vec![l.admit(one_at_a_time(0), "r0", 10, None).await.unwrap()];
        let with_renewer = tasks();
        for i in 1..20 {
            leases.push(
                l.admit(one_at_a_time(i), &format!("r{i}"), 10, None)
                    .await
                    .unwrap(),
            );
        }
        assert_eq!(tasks(), with_renewer, "no task per admitted request");
        // Ten lease periods: unrenewed, every lease would have expired by now.
        tokio::time::sleep(LEASE * 10).await;
        for i in 0..20 {
            let again = l
                .admit(one_at_a_time(i), &format!("other{i}"), 10, None)
                .await;
            assert!(
                concurrency_refused(&again),
                "scope {i}: the slot is still held"
            );
        }
        assert_eq!(l.renewer_tasks_started(), 1);
        assert!(l.renewals_sent() >= 20 * 25, "{}", l.renewals_sent());
        // Released (and settled), a slot comes back at once.
        let r = leases.pop().unwrap().release(10);
        l.store
            .settle(r.quota_only(), &LedgerPolicy::default())
            .await
            .unwrap();
        assert_eq!(r.request_id, "r19");
        assert!(l.admit(one_at_a_time(19), "r19b", 10, None).await.is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_shorter_than_a_renewal_period_costs_no_renewal() {
        let l = limiter();
        let lease = l.admit(one_at_a_time(0), "short", 10, None).await.unwrap();
        tokio::time::sleep(LEASE / 6).await;
        let r = lease.release(3);
        assert_eq!((r.tokens_back, r.held), (7, true));
        tokio::time::sleep(LEASE * 3).await;
        assert_eq!(l.renewals_sent(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn an_unreleased_lease_is_renewed_only_after_its_first_period() {
        let l = limiter();
        let _lease = l.admit(one_at_a_time(0), "r", 10, None).await.unwrap();
        // The renewer started with this lease: its first tick, a period later, renews it.
        tokio::time::sleep(LEASE / 3 + Duration::from_millis(1)).await;
        assert_eq!(l.renewals_sent(), 1);
        tokio::time::sleep(LEASE / 3).await;
        assert_eq!(l.renewals_sent(), 2);
    }
}
