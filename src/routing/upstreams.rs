//! The upstream set: the winner's upstream first, then the configured fallbacks, each with
//! its own key, timeouts, circuit breaker and cold-chute mark; retries under a budget.
//!
//! One request, in order:
//! 1. The request deposits its share into the retry budget.
//! 2. The upstreams are ordered: the winner's, then the fallbacks, as configured; a cold one
//!    (Chutes' "No instances available") moves to the end, so it is only called when nothing
//!    else can serve, while a background probe watches it warm up.
//! 3. For each: an open breaker skips it at once. Otherwise it is called; a transient failure
//!    (connect, 429, 502, 503, 504) is retried on the same upstream after a jittered backoff
//!    or the provider's `Retry-After` (if it is within `max_wait_ms`), at most `max_retries`
//!    times and only while the budget has a retry to spend. Then the next upstream.
//! 4. A failure caused by the request (400, 413, 422) ends it at once: no other upstream
//!    would answer differently.
//!
//! Everything here happens before the first byte reaches the caller: for a stream, the
//! attempt ends when the provider's response headers arrived; after that nothing is retried.
//! Each failed attempt is counted in `agw_upstream_requests_total{upstream, outcome}` and
//! logged with the upstream's name, never its URL or key.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::api::{ModelInfo, ModelSource};
use crate::clock::now_ms;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::routing::Winner;
use crate::routing::breaker::{Breaker, Settings, State};
use crate::routing::budget::RetryBudget;
use crate::upstream::client::Timeouts;
use crate::upstream::{UpstreamClient, UpstreamError};

/// The longest a cold-chute probe waits for its one-token answer.
const PROBE_TIMEOUT: Duration = Duration::from_secs(30);

/// The metrics label and log name of the winner's own upstream.
pub const WINNER_UPSTREAM: &str = "winner";

/// Which upstream served a request.
#[derive(Debug, Clone)]
pub struct Served {
    /// Its name (`winner` or a fallback's).
    pub upstream: Arc<str>,
    /// Whether a fallback served, not the winner's upstream.
    pub fallback: bool,
    /// The model the provider was asked for.
    pub model: Arc<str>,
    /// That upstream's deadlines (a stream keeps using them).
    pub timeouts: Timeouts,
    /// When the successful attempt started (a stream's first-token deadline counts from it).
    pub started: Instant,
}

impl Served {
    /// The model as reported to the caller: the winner's, or with `source: fallback` (and
    /// without the winner's revision and miner when the fallback serves another model).
    pub fn model_info(&self, winner: &Winner) -> ModelInfo {
        if !self.fallback {
            return winner.model.clone();
        }
        if *self.model == *winner.model.id {
            return ModelInfo {
                source: ModelSource::Fallback,
                ..winner.model.clone()
            };
        }
        ModelInfo {
            id: self.model.to_string(),
            revision: None,
            miner_hotkey: None,
            uid: None,
            since_block: None,
            source: ModelSource::Fallback,
        }
    }
}

/// A stream whose response headers arrived.
#[derive(Debug)]
pub struct Opened {
    /// The provider's response; its body is the SSE stream.
    pub response: reqwest::Response,
    /// Who serves it.
    pub served: Served,
}

/// One upstream.
#[derive(Debug)]
struct Upstream {
    name: Arc<str>,
    client: UpstreamClient,
    /// A fallback's model override.
    model: Option<Arc<str>>,
    breaker: Breaker,
    /// Unix milliseconds until which the chute is considered cold (0: warm).
    cold_until_ms: AtomicU64,
    /// A background probe is watching the cold chute.
    probing: AtomicBool,
}

/// How retries are paced.
#[derive(Debug, Clone, Copy)]
struct RetryPolicy {
    max_retries: u32,
    backoff: Duration,
    max_wait: Duration,
}

/// The winner's upstream and the fallbacks, with their breakers and the retry budget.
#[derive(Debug)]
pub struct UpstreamSet {
    upstreams: Vec<Arc<Upstream>>,
    budget: RetryBudget,
    policy: RetryPolicy,
    cold_probe: Duration,
    metrics: Metrics,
}

impl UpstreamSet {
    /// The winner's upstream (`primary`, bound to the configured or simulated URL) and the
    /// fallbacks of `config`.
    pub fn new(primary: UpstreamClient, config: &Config, metrics: Metrics) -> Result<Self, String> {
        let u = &config.upstream;
        let settings = Settings {
            failure_percent: u.breaker.failure_percent,
            min_requests: u.breaker.min_requests,
            window: Duration::from_secs(u.breaker.window_secs),
            open_for: Duration::from_secs(u.breaker.open_secs),
        };
        let mut upstreams = vec![Arc::new(Upstream {
            name: WINNER_UPSTREAM.into(),
            client: primary.with_max_answer_bytes(u.max_answer_bytes),
            model: None,
            breaker: Breaker::new(settings),
            cold_until_ms: AtomicU64::new(0),
            probing: AtomicBool::new(false),
        })];
        for f in &u.fallbacks {
            let timeouts = Timeouts {
                connect: Duration::from_millis(
                    f.connect_timeout_ms.unwrap_or(u.connect_timeout_ms),
                ),
                first_token: Duration::from_secs(
                    f.first_token_timeout_secs
                        .unwrap_or(u.first_token_timeout_secs),
                ),
                idle: Duration::from_secs(f.idle_timeout_secs.unwrap_or(u.idle_timeout_secs)),
                total: Duration::from_secs(f.total_timeout_secs.unwrap_or(u.total_timeout_secs)),
            };
            let client =
                UpstreamClient::new(&f.url, f.api_key.as_ref().map(|k| k.expose()), timeouts)
                    .map_err(|e| format!("upstream.fallbacks `{}`: {e}", f.name))?
                    .with_max_answer_bytes(u.max_answer_bytes);
            upstreams.push(Arc::new(Upstream {
                name: f.name.as_str().into(),
                client,
                model: f.model.as_deref().map(Arc::from),
                breaker: Breaker::new(settings),
                cold_until_ms: AtomicU64::new(0),
                probing: AtomicBool::new(false),
            }));
        }
        // Every upstream's series exist from the start (rates over them are never empty).
        for up in &upstreams {
            metrics
                .breaker_state
                .with_label_values(&[&up.name])
                .set(State::Closed.gauge());
            metrics.upstream_retries.with_label_values(&[&up.name]);
            if !Arc::ptr_eq(up, &upstreams[0]) {
                metrics.upstream_fallbacks.with_label_values(&[&up.name]);
            }
        }
        Ok(UpstreamSet {
            upstreams,
            budget: RetryBudget::new(u.retry.budget_percent, u.retry.budget_burst),
            policy: RetryPolicy {
                max_retries: u.retry.max_retries,
                backoff: Duration::from_millis(u.retry.backoff_ms),
                max_wait: Duration::from_millis(u.retry.max_wait_ms),
            },
            cold_probe: Duration::from_secs(u.cold_probe_secs),
            metrics,
        })
    }

    /// The configured base URL of the winner's upstream (without credentials: keys travel in
    /// headers).
    pub fn base_url(&self) -> &str {
        self.upstreams[0].client.base_url()
    }

    /// The winner moved to another model or chute: the winner's upstream starts afresh
    /// (closed breaker, not cold), since its old state described another deployment.
    pub fn winner_changed(&self) {
        let up = &self.upstreams[0];
        up.breaker.reset();
        up.cold_until_ms.store(0, Ordering::Relaxed);
        self.set_gauge(up);
    }

    /// A whole (non-streamed) answer: its bytes, when its headers arrived, who served it.
    pub async fn complete(
        &self,
        winner: &Winner,
        body: Vec<u8>,
    ) -> Result<(Bytes, Instant, Served), UpstreamError> {
        self.run(winner, body, |client, url, body, timeouts| async move {
            client.complete_at(&url, body, timeouts).await
        })
        .await
        .map(|((bytes, at), served)| (bytes, at, served))
    }

    /// Opens a stream: returns when an upstream's response headers arrived (each attempt
    /// bounded by that upstream's first-token deadline). Nothing is retried after this.
    pub async fn open(&self, winner: &Winner, body: Vec<u8>) -> Result<Opened, UpstreamError> {
        self.run(winner, body, |client, url, body, timeouts| async move {
            client.open_at(&url, body, timeouts.first_token).await
        })
        .await
        .map(|(response, served)| Opened { response, served })
    }

    fn order(&self) -> Vec<Arc<Upstream>> {
        let now = now_ms();
        let (warm, cold): (Vec<_>, Vec<_>) = self
            .upstreams
            .iter()
            .cloned()
            .partition(|u| u.cold_until_ms.load(Ordering::Relaxed) <= now);
        warm.into_iter().chain(cold).collect()
    }

    async fn run<T, F, Fut>(
        &self,
        winner: &Winner,
        body: Vec<u8>,
        attempt: F,
    ) -> Result<(T, Served), UpstreamError>
    where
        F: Fn(UpstreamClient, String, Bytes, Timeouts) -> Fut,
        Fut: Future<Output = Result<T, UpstreamError>>,
    {
        // The request's wait for providers (every attempt, success or not) is what the
        // gateway-overhead histogram subtracts; it is measured here, where it happens.
        let started = Instant::now();
        let result = self.attempts(winner, body, attempt).await;
        crate::metrics::upstream_wait::record(started);
        result
    }

    async fn attempts<T, F, Fut>(
        &self,
        winner: &Winner,
        body: Vec<u8>,
        attempt: F,
    ) -> Result<(T, Served), UpstreamError>
    where
        F: Fn(UpstreamClient, String, Bytes, Timeouts) -> Fut,
        Fut: Future<Output = Result<T, UpstreamError>>,
    {
        self.budget.deposit();
        // Shared, not copied, between attempts.
        let body = Bytes::from(body);
        let mut last = UpstreamError::BreakerOpen;
        for up in self.order() {
            if !up.breaker.try_acquire() {
                self.set_gauge(&up);
                tracing::debug!(upstream = %up.name, "circuit open: skipped");
                continue;
            }
            self.set_gauge(&up);
            let fallback = *up.name != *WINNER_UPSTREAM;
            let model: Arc<str> = up
                .model
                .clone()
                .unwrap_or_else(|| winner.model.id.as_str().into());
            let body = if *model == *winner.model.id {
                body.clone()
            } else {
                Bytes::from(with_model(&body, &model)?)
            };
            // The winner's upstream serves the winner's own chute when Affine names one.
            let url = match (fallback, &winner.route) {
                (false, Some(route)) => UpstreamClient::completions_url_for(route),
                _ => UpstreamClient::completions_url_for(up.client.base_url()),
            };
            let timeouts = up.client.timeouts();
            let mut retries = 0;
            loop {
                let started = Instant::now();
                match attempt(up.client.clone(), url.clone(), body.clone(), timeouts).await {
                    Ok(t) => {
                        up.breaker.record(true);
                        self.set_gauge(&up);
                        if fallback {
                            self.metrics
                                .upstream_fallbacks
                                .with_label_values(&[&up.name])
                                .inc();
                        }
                        return Ok((
                            t,
                            Served {
                                upstream: up.name.clone(),
                                fallback,
                                model,
                                timeouts,
                                started,
                            },
                        ));
                    }
                    Err(e) => {
                        self.metrics
                            .upstream_requests
                            .with_label_values(&[&up.name, e.kind()])
                            .inc();
                        self.metrics
                            .upstream_duration
                            .with_label_values(&[e.kind()])
                            .observe(started.elapsed().as_secs_f64());
                        up.breaker.record(!e.counts_against_breaker());
                        self.set_gauge(&up);
                        tracing::warn!(upstream = %up.name, kind = e.kind(), error = %e, "upstream attempt failed");
                        if e.is_request_error() {
                            return Err(e);
                        }
                        if let UpstreamError::Cold { .. } = e {
                            self.mark_cold(&up, &model, &url);
                            last = e;
                            break;
                        }
                        let wait = self.backoff(retries, e.retry_after());
                        let again = e.is_retryable()
                            && retries < self.policy.max_retries
                            && wait.is_some()
                            && up.breaker.state() == State::Closed
                            && self.budget.withdraw();
                        last = e;
                        if !again {
                            break;
                        }
                        retries += 1;
                        self.metrics
                            .upstream_retries
                            .with_label_values(&[&up.name])
                            .inc();
                        tokio::time::sleep(wait.unwrap_or_default()).await;
                    }
                }
            }
        }
        Err(last)
    }

    /// How long to wait before retry number `retries + 1`: the provider's `Retry-After` when
    /// it sent one, else an exponential backoff with full jitter; `None` when that is longer
    /// than `max_wait` (then the request fails over instead of waiting).
    fn backoff(&self, retries: u32, retry_after: Option<u64>) -> Option<Duration> {
        let p = self.policy;
        let wait = match retry_after {
            Some(secs) => {
                let asked = Duration::from_secs(secs);
                // A little jitter on top, so replicas told the same second do not return in
                // lockstep.
                asked + Duration::from_millis(rand::random_range(0..=50))
            }
            None => {
                let ceiling = p.backoff.saturating_mul(1u32 << retries.min(10));
                let ms = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX);
                Duration::from_millis(rand::random_range(0..=ms))
            }
        };
        (wait <= p.max_wait + Duration::from_millis(50)).then_some(wait)
    }

    fn set_gauge(&self, up: &Upstream) {
        self.metrics
            .breaker_state
            .with_label_values(&[&up.name])
            .set(up.breaker.state().gauge());
    }

    /// Marks a chute cold and starts one background probe (unless one runs): a tiny request
    /// every `cold_probe` until the chute answers anything but "cold", instead of sending it
    /// live traffic meanwhile.
    fn mark_cold(&self, up: &Arc<Upstream>, model: &str, url: &str) {
        let until = now_ms().saturating_add(
            u64::try_from(self.cold_probe.as_millis())
                .unwrap_or(u64::MAX)
                .saturating_mul(2),
        );
        up.cold_until_ms.store(until, Ordering::Relaxed);
        if up.probing.swap(true, Ordering::AcqRel) {
            return;
        }
        tracing::warn!(upstream = %up.name, "chute is cold: failing over and probing it in the background");
        let up = up.clone();
        let every = self.cold_probe;
        let url = url.to_string();
        let probe = Bytes::from(
            serde_json::to_vec(&serde_json::json!({
                "model": model,
                "messages": [{"role": "user", "content": "ping"}],
                "max_tokens": 1,
                "stream": false,
            }))
            .unwrap_or_default(),
        );
        // Bounded: a chute that stays cold this long is left to live traffic (last resort).
        let give_up = Instant::now() + Duration::from_secs(3600);
        // A one-token answer: a probe never waits as long as a real request may.
        let mut probe_timeouts = up.client.timeouts();
        probe_timeouts.total = probe_timeouts.total.min(PROBE_TIMEOUT);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let r = up
                    .client
                    .complete_at(&url, probe.clone(), probe_timeouts)
                    .await;
                let still_cold = matches!(r, Err(UpstreamError::Cold { .. }));
                if !still_cold || Instant::now() >= give_up {
                    up.cold_until_ms.store(0, Ordering::Relaxed);
                    up.probing.store(false, Ordering::Release);
                    tracing::info!(upstream = %up.name, outcome = r.as_ref().err().map_or("ok", |e| e.kind()), "cold chute probe: taking traffic again");
                    return;
                }
                // Keep it marked while it is cold.
                up.cold_until_ms.store(
                    now_ms().saturating_add(
                        u64::try_from(every.as_millis())
                            .unwrap_or(u64::MAX)
                            .saturating_mul(2),
                    ),
                    Ordering::Relaxed,
                );
            }
        });
    }
}

/// `body` (a JSON object) with its `model` replaced.
fn with_model(body: &[u8], model: &str) -> Result<Vec<u8>, UpstreamError> {
    let mut v: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(body)
        .map_err(|_| UpstreamError::Malformed("request body is not a JSON object".into()))?;
    v.insert("model".into(), model.into());
    serde_json::to_vec(&v)
        .map_err(|_| UpstreamError::Malformed("request body cannot be encoded".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_model_is_replaced_and_nothing_else() {
        let b = with_model(br#"{"model":"a/b","max_tokens":5,"stream":true}"#, "c/d").unwrap();
        let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(v["model"], "c/d");
        assert_eq!(v["max_tokens"], 5);
        assert_eq!(v["stream"], true);
    }

    #[test]
    fn a_fallback_of_another_model_reports_that_model() {
        let w = Winner::from_spec("a/b@r1", ModelSource::Affine).unwrap();
        let served = |fallback, model: &str| Served {
            upstream: "x".into(),
            fallback,
            model: model.into(),
            timeouts: Timeouts {
                connect: Duration::from_secs(1),
                first_token: Duration::from_secs(1),
                idle: Duration::from_secs(1),
                total: Duration::from_secs(1),
            },
            started: Instant::now(),
        };
        assert_eq!(served(false, "a/b").model_info(&w), w.model);
        let same = served(true, "a/b").model_info(&w);
        assert_eq!(same.source, ModelSource::Fallback);
        assert_eq!(same.revision.as_deref(), Some("r1"));
        let other = served(true, "c/d").model_info(&w);
        assert_eq!(other.id, "c/d");
        assert_eq!(other.revision, None);
        assert_eq!(other.source, ModelSource::Fallback);
    }
}
