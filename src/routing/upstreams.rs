//! The upstream set: the winner's upstream first, then the past champions, then the
//! configured fallbacks, each with its own key, timeouts, circuit breaker and cold-chute
//! mark; retries under a budget.
//!
//! Where a model is served is the serving map's answer ([`ServingMap`]): the winner's
//! upstream is the target its rule resolves for the winner, built once per winner change
//! (a fresh breaker and cold mark, since the old state described another deployment) with a
//! pooled client per (rule, expanded base URL) — one key and one set of timeouts each. A
//! winner whose Affine record names its chute (`Winner::route`, older Affine deployments) is
//! served at that chute with `[upstream]`'s key, as before.
//!
//! One request, in order:
//! 1. The request deposits its share into the retry budget.
//! 2. The upstreams are ordered: the winner's; then Affine's past champions (`/rank/current`'s
//!    `past_champions`, in Affine's order, each resolved through the serving map; the winner
//!    itself, champions without a revision and champions marked not ready are skipped; at
//!    most [`MAX_PAST_CHAMPIONS`]; labelled `past:1`, `past:2`, … by their place in that
//!    list); then the fallbacks, as configured. A cold one (Chutes' "No instances
//!    available") moves to the end, so it is only called when nothing else can serve, while
//!    a background probe watches it warm up.
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

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use bytes::Bytes;

use crate::api::{ModelInfo, ModelSource, ServingView};
use crate::clock::now_ms;
use crate::config::{Config, Secret};
use crate::metrics::Metrics;
use crate::routing::Winner;
use crate::routing::breaker::{Breaker, Settings, State};
use crate::routing::budget::RetryBudget;
use crate::routing::readiness::ProbeTarget;
use crate::routing::serving::{ServingMap, Target};
use crate::upstream::client::Timeouts;
use crate::upstream::{UpstreamClient, UpstreamError};

/// The longest a cold-chute probe waits for its one-token answer.
const PROBE_TIMEOUT: Duration = Duration::from_secs(30);

/// The metrics label and log name of the winner's own upstream.
pub const WINNER_UPSTREAM: &str = "winner";

/// The most past champions tried after the winner (and so the most `past:<n>` labels).
pub const MAX_PAST_CHAMPIONS: usize = 8;

/// The most pooled clients kept; past it the cache starts afresh (clients in use live on).
const MAX_CLIENTS: usize = 64;

/// The metrics label of the past champion at place `n` (1-based) of the list tried.
pub fn past_label(n: usize) -> String {
    format!("past:{n}")
}

/// Which upstream served a request.
#[derive(Debug, Clone)]
pub struct Served {
    /// Its name (`winner`, `past:<n>` or a fallback's).
    pub upstream: Arc<str>,
    /// Whether a fallback (a past champion or a configured fallback) served, not the
    /// winner's upstream.
    pub fallback: bool,
    /// The model the provider was asked for.
    pub model: Arc<str>,
    /// That upstream's deadlines (a stream keeps using them).
    pub timeouts: Timeouts,
    /// When the successful attempt started (a stream's first-token deadline counts from it).
    pub started: Instant,
    /// The model as callers see it when a past champion served (its id, revision, uid,
    /// hotkey; `source: fallback`); `None` otherwise.
    pub champion: Option<ModelInfo>,
}

impl Served {
    /// The model as reported to the caller: the winner's, a past champion's, or with
    /// `source: fallback` (and without the winner's revision and miner when the fallback
    /// serves another model).
    pub fn model_info(&self, winner: &Winner) -> ModelInfo {
        if let Some(c) = &self.champion {
            return c.clone();
        }
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

/// What a winner lane was built for: the model and, for older Affine deployments, its chute.
#[derive(Debug, Clone, PartialEq, Eq)]
struct LaneKey {
    model: String,
    revision: Option<String>,
    route: Option<String>,
}

impl LaneKey {
    fn of(w: &Winner) -> LaneKey {
        LaneKey {
            model: w.model.id.clone(),
            revision: w.model.revision.clone(),
            route: w.route.clone(),
        }
    }
}

/// One upstream: where it sends, and its live state.
#[derive(Debug)]
struct Upstream {
    name: Arc<str>,
    client: UpstreamClient,
    /// Parsed once: every attempt is sent to it.
    completions_url: reqwest::Url,
    /// The model to ask for; `None`: the winner's model id (a fallback without `model`).
    model: Option<Arc<str>>,
    /// What it was built for (winner and past-champion lanes).
    key: Option<LaneKey>,
    /// A past champion's identity, as answers report it.
    champion: Option<ModelInfo>,
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

/// The winner lanes: the current one and the one before (a request that took its winner
/// snapshot just before a change keeps using the old lane instead of rebuilding it).
#[derive(Debug, Default)]
struct WinnerLanes {
    current: Option<Arc<Upstream>>,
    previous: Option<Arc<Upstream>>,
}

/// The past-champion lanes built for one list of champions.
#[derive(Debug, Default)]
struct PastLanes {
    /// `(model, revision)` of each champion considered, in order (resolvable or not).
    key: Vec<(String, String)>,
    lanes: Vec<Arc<Upstream>>,
}

/// The winner's upstream, the past champions and the fallbacks, with their breakers and the
/// retry budget.
#[derive(Debug)]
pub struct UpstreamSet {
    serving: ServingMap,
    settings: Settings,
    max_answer_bytes: usize,
    clients: Mutex<HashMap<(usize, String), UpstreamClient>>,
    winner: ArcSwap<WinnerLanes>,
    past: ArcSwap<PastLanes>,
    /// Serializes lane rebuilds, so two requests never build the same lane twice.
    rebuild: Mutex<()>,
    fallbacks: Vec<Arc<Upstream>>,
    /// `model@revision` of models the readiness gate marked not ready.
    not_ready: ArcSwap<HashSet<String>>,
    budget: RetryBudget,
    policy: RetryPolicy,
    cold_probe: Duration,
    metrics: Metrics,
}

fn ready_key(model: &str, revision: Option<&str>) -> String {
    format!("{model}@{}", revision.unwrap_or(""))
}

impl UpstreamSet {
    /// The serving map of `config` (its `[[serving]]` rules, then the built-in default at
    /// `default_url` with `default_key`: the configured upstream, or the embedded simulator)
    /// and the fallbacks of `config`.
    pub fn new(
        default_url: &str,
        default_key: Option<&Secret>,
        config: &Config,
        metrics: Metrics,
    ) -> Result<Self, String> {
        let u = &config.upstream;
        let settings = Settings {
            failure_percent: u.breaker.failure_percent,
            min_requests: u.breaker.min_requests,
            window: Duration::from_secs(u.breaker.window_secs),
            open_for: Duration::from_secs(u.breaker.open_secs),
        };
        let serving = ServingMap::new(config, default_url, default_key)?;
        let mut fallbacks = Vec::new();
        for f in &u.fallbacks {
            let timeouts = crate::routing::serving::deadlines(
                u,
                [
                    f.connect_timeout_ms,
                    f.first_token_timeout_secs,
                    f.idle_timeout_secs,
                    f.total_timeout_secs,
                ],
            );
            let client =
                UpstreamClient::new(&f.url, f.api_key.as_ref().map(|k| k.expose()), timeouts)
                    .map_err(|e| format!("upstream.fallbacks `{}`: {e}", f.name))?
                    .with_max_answer_bytes(u.max_answer_bytes);
            fallbacks.push(Arc::new(Upstream {
                name: f.name.as_str().into(),
                completions_url: UpstreamClient::completions_endpoint(client.base_url())
                    .map_err(|e| format!("upstream.fallbacks `{}`: {e}", f.name))?,
                client,
                model: f.model.as_deref().map(Arc::from),
                key: None,
                champion: None,
                breaker: Breaker::new(settings),
                cold_until_ms: AtomicU64::new(0),
                probing: AtomicBool::new(false),
            }));
        }
        // Every upstream's series exist from the start (rates over them are never empty).
        metrics
            .breaker_state
            .with_label_values(&[WINNER_UPSTREAM])
            .set(State::Closed.gauge());
        metrics
            .upstream_retries
            .with_label_values(&[WINNER_UPSTREAM]);
        for up in &fallbacks {
            metrics
                .breaker_state
                .with_label_values(&[&up.name])
                .set(State::Closed.gauge());
            metrics.upstream_retries.with_label_values(&[&up.name]);
            metrics.upstream_fallbacks.with_label_values(&[&up.name]);
        }
        Ok(UpstreamSet {
            serving,
            settings,
            max_answer_bytes: u.max_answer_bytes,
            clients: Mutex::new(HashMap::new()),
            winner: ArcSwap::from_pointee(WinnerLanes::default()),
            past: ArcSwap::from_pointee(PastLanes::default()),
            rebuild: Mutex::new(()),
            fallbacks,
            not_ready: ArcSwap::from_pointee(HashSet::new()),
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

    /// The built-in default rule's base URL (`upstream.url`, or the embedded simulator's),
    /// without credentials: keys travel in headers.
    pub fn base_url(&self) -> String {
        crate::routing::winner::strip_credentials(&self.serving.default_url())
    }

    /// The serving map (where the provider prices of the winner and the pending champion are
    /// read).
    pub fn serving(&self) -> &ServingMap {
        &self.serving
    }

    /// Where `w` is served, as `GET /v1/winner` shows it: its own chute when Affine names one,
    /// else its serving rule. `None` when no rule can serve it.
    pub fn serving_view(&self, w: &Winner) -> Option<ServingView> {
        match &w.route {
            Some(route) => Some(self.serving.default_at(&w.model.id, route).view()),
            None => self.serving.view(&w.model.id, w.model.revision.as_deref()),
        }
    }

    /// Where the readiness gate probes `w` (`GET {models_url}`, a one-token completion):
    /// its serving rule's target with the rule's pooled client, or its own chute when Affine
    /// names one. An error says why no rule can serve it.
    pub fn probe_target(&self, w: &Winner) -> Result<ProbeTarget, String> {
        self.probe_target_of(&LaneKey::of(w))
    }

    fn probe_target_of(&self, key: &LaneKey) -> Result<ProbeTarget, String> {
        let target = self.target_of(key)?;
        let client = self.client_for(&target)?;
        Ok(ProbeTarget {
            completions_url: UpstreamClient::completions_url_for(client.base_url()),
            models_url: format!("{}/models", client.base_url()),
            model_name: target.model_name,
            client,
        })
    }

    /// Marks `model` at `revision` ready or not (the readiness gate): a past champion marked
    /// not ready is skipped when the upstreams are ordered. Everything is ready until marked.
    pub fn set_ready(&self, model: &str, revision: Option<&str>, ready: bool) {
        let key = ready_key(model, revision);
        self.not_ready.rcu(|set| {
            let mut set = HashSet::clone(set);
            if ready {
                set.remove(&key);
            } else {
                set.insert(key.clone());
            }
            set
        });
    }

    /// Whether `model` at `revision` may serve as a past champion (not marked not ready).
    pub fn is_ready(&self, model: &str, revision: Option<&str>) -> bool {
        !self.not_ready.load().contains(&ready_key(model, revision))
    }

    /// The winner moved to another model or chute: the winner's upstream starts afresh
    /// (closed breaker, not cold), since its old state described another deployment. (The
    /// first request for a new model or chute builds it a new lane anyway; this also resets
    /// the lane in use when only its source changed.)
    pub fn winner_changed(&self) {
        if let Some(up) = &self.winner.load().current {
            up.breaker.reset();
            up.cold_until_ms.store(0, Ordering::Relaxed);
            self.set_gauge(up);
        }
    }

    fn target_of(&self, key: &LaneKey) -> Result<Target, String> {
        match &key.route {
            Some(route) => Ok(self.serving.default_at(&key.model, route)),
            None => self.serving.resolve(&key.model, key.revision.as_deref()),
        }
    }

    /// The pooled client of `target`'s rule and base URL (built on first use).
    fn client_for(&self, target: &Target) -> Result<UpstreamClient, String> {
        let cache_key = (target.rule, target.base_url.clone());
        let mut clients = self
            .clients
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(c) = clients.get(&cache_key) {
            return Ok(c.clone());
        }
        let client = UpstreamClient::new(
            &target.base_url,
            target.key().map(Secret::expose),
            target.timeouts,
        )
        .map_err(|e| format!("serving rule {}: {e}", target.rule))?
        .with_max_answer_bytes(self.max_answer_bytes);
        if clients.len() >= MAX_CLIENTS {
            clients.clear();
        }
        clients.insert(cache_key, client.clone());
        Ok(client)
    }

    /// A fresh lane (closed breaker, warm) for `key`.
    fn lane(
        &self,
        name: Arc<str>,
        key: LaneKey,
        champion: Option<ModelInfo>,
    ) -> Result<Upstream, String> {
        let target = self.target_of(&key)?;
        let client = self.client_for(&target)?;
        Ok(Upstream {
            name,
            completions_url: UpstreamClient::completions_endpoint(client.base_url())
                .map_err(|e| format!("serving rule {}: {e}", target.rule))?,
            client,
            model: Some(target.model_name.as_str().into()),
            key: Some(key),
            champion,
            breaker: Breaker::new(self.settings),
            cold_until_ms: AtomicU64::new(0),
            probing: AtomicBool::new(false),
        })
    }

    /// The winner's lane for `w`, built when the winner changed. `None` when no rule can
    /// serve it (logged; the past champions and fallbacks may still serve).
    fn winner_lane(&self, w: &Winner) -> Option<Arc<Upstream>> {
        let key = LaneKey::of(w);
        let found = |lanes: &WinnerLanes| {
            [&lanes.current, &lanes.previous]
                .into_iter()
                .flatten()
                .find(|l| l.key.as_ref() == Some(&key))
                .cloned()
        };
        if let Some(l) = found(&self.winner.load()) {
            return Some(l);
        }
        let _guard = self
            .rebuild
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let lanes = self.winner.load_full();
        if let Some(l) = found(&lanes) {
            return Some(l);
        }
        match self.lane(WINNER_UPSTREAM.into(), key, None) {
            Ok(lane) => {
                let lane = Arc::new(lane);
                self.winner.store(Arc::new(WinnerLanes {
                    current: Some(lane.clone()),
                    previous: lanes.current.clone(),
                }));
                self.set_gauge(&lane);
                Some(lane)
            }
            Err(e) => {
                tracing::warn!(model = %w.model.id, error = %e, "the winner is not routable");
                None
            }
        }
    }

    /// The past champions' lanes for `w`, in Affine's order, rebuilt when the list changed
    /// (a lane whose place and champion are unchanged keeps its state).
    fn past_lanes(&self, w: &Winner) -> Arc<PastLanes> {
        let considered = || {
            w.past_champions
                .iter()
                .filter_map(|p| Some((p.model.as_str(), p.revision.as_deref()?)))
                .filter(|&(m, r)| !(m == w.model.id && w.model.revision.as_deref() == Some(r)))
                .take(MAX_PAST_CHAMPIONS)
        };
        // Compared in place first: the list changes rarely and every request asks.
        let unchanged = |lanes: &PastLanes| {
            let mut now = considered();
            lanes
                .key
                .iter()
                .all(|(m, r)| now.next() == Some((m.as_str(), r.as_str())))
                && now.next().is_none()
        };
        let current = self.past.load_full();
        if unchanged(&current) {
            return current;
        }
        let key: Vec<(String, String)> = considered()
            .map(|(m, r)| (m.to_owned(), r.to_owned()))
            .collect();
        let _guard = self
            .rebuild
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let current = self.past.load_full();
        if current.key == key {
            return current;
        }
        let mut lanes = Vec::with_capacity(key.len());
        for (i, (model, revision)) in key.iter().enumerate() {
            let label = past_label(i + 1);
            let lane_key = LaneKey {
                model: model.clone(),
                revision: Some(revision.clone()),
                route: None,
            };
            if let Some(same) = current
                .lanes
                .iter()
                .find(|l| *l.name == *label && l.key.as_ref() == Some(&lane_key))
            {
                lanes.push(same.clone());
                continue;
            }
            let Some(p) = w
                .past_champions
                .iter()
                .find(|p| p.model == *model && p.revision.as_deref() == Some(revision.as_str()))
            else {
                continue;
            };
            let champion = ModelInfo {
                id: model.clone(),
                revision: Some(revision.clone()),
                miner_hotkey: p.hotkey.clone(),
                uid: Some(p.uid),
                since_block: None,
                source: ModelSource::Fallback,
            };
            match self.lane(label.as_str().into(), lane_key, Some(champion)) {
                Ok(lane) => {
                    let lane = Arc::new(lane);
                    self.set_gauge(&lane);
                    self.metrics.upstream_retries.with_label_values(&[&label]);
                    self.metrics.upstream_fallbacks.with_label_values(&[&label]);
                    lanes.push(lane);
                }
                Err(e) => {
                    tracing::warn!(upstream = %label, model = %model, error = %e, "past champion is not routable: skipped");
                }
            }
        }
        let built = Arc::new(PastLanes { key, lanes });
        self.past.store(built.clone());
        built
    }

    /// A whole (non-streamed) answer: its bytes, when its headers arrived, who served it.
    pub async fn complete(
        &self,
        winner: &Winner,
        body: Vec<u8>,
    ) -> Result<(Bytes, Instant, Served), UpstreamError> {
        self.run(winner, body, |client, url, body, timeouts| async move {
            client.complete_at(url, body, timeouts).await
        })
        .await
        .map(|((bytes, at), served)| (bytes, at, served))
    }

    /// Opens a stream: returns when an upstream's response headers arrived (each attempt
    /// bounded by that upstream's first-token deadline). Nothing is retried after this.
    pub async fn open(&self, winner: &Winner, body: Vec<u8>) -> Result<Opened, UpstreamError> {
        self.run(winner, body, |client, url, body, timeouts| async move {
            client.open_at(url, body, timeouts.first_token).await
        })
        .await
        .map(|(response, served)| Opened { response, served })
    }

    fn order(&self, winner: &Winner) -> Vec<Arc<Upstream>> {
        let now = now_ms();
        let past = self.past_lanes(winner);
        let ready = self.not_ready.load();
        let (warm, cold): (Vec<_>, Vec<_>) = self
            .winner_lane(winner)
            .into_iter()
            .chain(
                past.lanes
                    .iter()
                    .filter(|l| {
                        l.key.as_ref().is_none_or(|k| {
                            !ready.contains(&ready_key(&k.model, k.revision.as_deref()))
                        })
                    })
                    .cloned(),
            )
            .chain(self.fallbacks.iter().cloned())
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
        F: Fn(UpstreamClient, reqwest::Url, Bytes, Timeouts) -> Fut,
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
        F: Fn(UpstreamClient, reqwest::Url, Bytes, Timeouts) -> Fut,
        Fut: Future<Output = Result<T, UpstreamError>>,
    {
        self.budget.deposit();
        // Shared, not copied, between attempts.
        let body = Bytes::from(body);
        let mut last = UpstreamError::BreakerOpen;
        for up in self.order(winner) {
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
            let url = &up.completions_url;
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
                                champion: up.champion.clone(),
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
                            self.mark_cold(&up, &model, url);
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
    fn mark_cold(&self, up: &Arc<Upstream>, model: &str, url: &reqwest::Url) {
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
        let url = url.clone();
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
                    .complete_at(url.clone(), probe.clone(), probe_timeouts)
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

    fn past(uid: u16, model: &str, revision: Option<&str>) -> crate::routing::winner::PastChampion {
        crate::routing::winner::PastChampion {
            uid,
            hotkey: Some(format!("hk{uid}")),
            model: model.into(),
            revision: revision.map(str::to_string),
        }
    }

    #[test]
    fn past_champions_follow_the_winner_in_order_unless_not_ready() {
        let mut config = Config::default();
        config.upstream.fallbacks = vec![crate::config::FallbackConfig::new(
            "fb",
            "http://127.0.0.1:9/v1",
        )];
        config.serving = vec![crate::config::ServingRuleConfig::new(
            "c/*",
            "http://127.0.0.1:9/{revision}/v1",
        )];
        let set = UpstreamSet::new("http://127.0.0.1:9/v1", None, &config, Metrics::new()).unwrap();
        let mut w = Winner::from_spec("a/b@r1", ModelSource::Affine).unwrap();
        w.past_champions = vec![
            past(1, "a/b", Some("r1")), // the winner itself
            past(2, "c/d", Some("r2")),
            past(3, "e/f", None), // no revision
            past(4, "g/h", Some("r4")),
        ];
        let names = |set: &UpstreamSet| {
            set.order(&w)
                .iter()
                .map(|u| (u.name.to_string(), u.completions_url.to_string()))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            names(&set),
            [
                (
                    "winner".into(),
                    "http://127.0.0.1:9/v1/chat/completions".into()
                ),
                (
                    "past:1".into(),
                    "http://127.0.0.1:9/r2/v1/chat/completions".into()
                ),
                (
                    "past:2".into(),
                    "http://127.0.0.1:9/v1/chat/completions".into()
                ),
                ("fb".into(), "http://127.0.0.1:9/v1/chat/completions".into()),
            ]
        );
        let first = set.order(&w)[1].clone();
        assert_eq!(first.champion.as_ref().unwrap().uid, Some(2));
        assert_eq!(
            first.champion.as_ref().unwrap().source,
            ModelSource::Fallback
        );
        // The lanes are kept while the list stays the same.
        assert!(Arc::ptr_eq(&first, &set.order(&w)[1]));

        set.set_ready("c/d", Some("r2"), false);
        assert!(!set.is_ready("c/d", Some("r2")));
        let order: Vec<String> = set.order(&w).iter().map(|u| u.name.to_string()).collect();
        assert_eq!(order, ["winner", "past:2", "fb"]);
        set.set_ready("c/d", Some("r2"), true);
        assert_eq!(set.order(&w).len(), 4);

        // The readiness gate's probe target for any model.
        let t = set
            .probe_target(&Winner::from_spec("c/x@r9", ModelSource::Affine).unwrap())
            .unwrap();
        assert_eq!(
            t.completions_url,
            "http://127.0.0.1:9/r9/v1/chat/completions"
        );
        assert_eq!(t.models_url, "http://127.0.0.1:9/r9/v1/models");
        assert_eq!(t.model_name, "c/x");
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
            champion: None,
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
