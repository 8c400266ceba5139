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
use crate::metrics::Metrics;
use crate::store::{Limit, ScopeSpec, ScopeView, Store};

/// The limiter shared by all requests of a replica.
pub struct Limiter {
    store: Store,
    plans: Plans,
    on_failure: StoreFailure,
    lease: Duration,
    over: OverLimitCache,
    metrics: Metrics,
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

/// The scopes a caller is held to, with the plans behind them (subnet first).
#[derive(Debug, Clone)]
pub struct Scopes {
    /// The caller's own plan.
    pub plan: Arc<Plan>,
    /// The subnet aggregate's plan, when the caller's subnet is mapped.
    pub subnet_plan: Option<Arc<Plan>>,
    /// The scopes, subnet (if any) first, account last.
    pub specs: Vec<ScopeSpec>,
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
            last_failure_log: AtomicU64::new(0),
        }
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
        if let (Some(n), Some(sp)) = (caller.netuid, &subnet_plan) {
            specs.push(spec(format!("{{s:{n}}}"), sp));
        }
        specs.push(spec(format!("{{a:{}}}", caller.account_id), &plan));
        Scopes {
            plan,
            subnet_plan,
            specs,
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

    /// Admits one request of `tokens` estimated tokens, or refuses it with 429 (and the
    /// headers that say when to come back).
    pub async fn admit(
        self: &Arc<Self>,
        caller: &Caller,
        request_id: &str,
        tokens: u64,
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
                let is_subnet = i + 1 < scopes.specs.len();
                let policies = vec![PolicyState {
                    name: if is_subnet { "subnet-rpm" } else { "rpm" },
                    quota: s.rpm,
                    window_secs: 60,
                    unit: None,
                    remaining: 0,
                    reset_secs: headers::retry_after_secs(wait),
                }];
                return Err(Box::new(Refused {
                    error: refusal(Limit::RequestsPerMinute, i, &scopes, wait),
                    policies,
                }));
            }
        }
        match self
            .store
            .quota_admit(&scopes.specs, request_id, tokens, self.lease)
            .await
        {
            Ok(d) => {
                let policies = policies(&scopes, &d.scopes);
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
                Ok(Lease::new(self, scopes, request_id, tokens, policies, true))
            }
            Err(e) => {
                self.log_failure(&e);
                match self.on_failure {
                    StoreFailure::FailOpen => Ok(Lease::new(
                        self,
                        scopes,
                        request_id,
                        tokens,
                        Vec::new(),
                        false,
                    )),
                    StoreFailure::FailClosed => Err(Box::new(Refused {
                        error: ApiError::new(
                            ErrorCode::Internal,
                            "the quota store is unavailable; try again shortly",
                        )
                        .with_retry_after(1),
                        policies: Vec::new(),
                    })),
                }
            }
        }
    }

    /// The caller's current state (nothing consumed), for `GET /v1/account`.
    pub async fn peek(&self, caller: &Caller) -> Result<(Scopes, Vec<ScopeView>), ApiError> {
        let scopes = self.scopes(caller);
        let views = self.store.quota_peek(&scopes.specs).await.map_err(|e| {
            self.log_failure(&e);
            ApiError::new(
                ErrorCode::Internal,
                "the quota store is unavailable; try again shortly",
            )
            .with_retry_after(1)
        })?;
        Ok((scopes, views))
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
    let whose = if scope + 1 < scopes.specs.len() {
        "your subnet's"
    } else {
        "your"
    };
    let (code, what) = match limit {
        Limit::RequestsPerMinute => (ErrorCode::RateLimited, "requests-per-minute limit"),
        Limit::TokensPerMinute => (ErrorCode::QuotaExceeded, "tokens-per-minute quota"),
        Limit::TokensPerDay => (ErrorCode::QuotaExceeded, "tokens-per-day quota"),
        Limit::Concurrency => (ErrorCode::ConcurrencyLimited, "limit of requests in flight"),
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

/// An admitted request's hold on its scopes. Settle it with the actual usage; if it is dropped
/// unsettled (error, disconnect, panic) it settles itself on a detached task, giving the whole
/// token estimate back when nothing was used.
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

impl Lease {
    fn new(
        limiter: &Arc<Limiter>,
        scopes: Scopes,
        request_id: &str,
        estimate: u64,
        policies: Vec<PolicyState>,
        held: bool,
    ) -> Lease {
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
                    if let Err(e) = l.store.quota_renew(&specs, &id, l.lease).await {
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

    /// The caller's own plan.
    pub fn plan(&self) -> &Arc<Plan> {
        &self.scopes.plan
    }

    /// Releases the lease and reconciles the token buckets with `used_tokens`, on a detached
    /// task so it happens whatever the client does.
    pub fn settle(mut self, used_tokens: u64) {
        self.finish(used_tokens);
    }

    fn finish(&mut self, used_tokens: u64) {
        if let Some(r) = self.renewer.take() {
            r.abort();
        }
        if !std::mem::take(&mut self.held) {
            return;
        }
        let back = i64::try_from(self.estimate).unwrap_or(i64::MAX)
            - i64::try_from(used_tokens).unwrap_or(i64::MAX);
        let (l, specs, id) = (
            Arc::clone(&self.limiter),
            std::mem::take(&mut self.scopes.specs),
            std::mem::take(&mut self.request_id),
        );
        tokio::spawn(async move {
            if let Err(e) = l.store.quota_settle(&specs, &id, back, false).await {
                // The lease expires on its own; the tokens stay consumed (the safe side).
                l.log_failure(&e);
            }
        });
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.finish(0);
    }
}

/// A rough, deliberately generous input-token estimate: one token per 3 bytes of text plus a
/// few per message. Reconciled with the provider's count after the answer.
pub fn estimate_input_tokens(texts: impl Iterator<Item = usize>) -> u64 {
    texts.map(|len| len.div_ceil(3) as u64 + 4).sum()
}
