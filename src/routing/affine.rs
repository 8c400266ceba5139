//! Winner discovery: Affine's public API, the static `GATEWAY_WINNER` and the runtime pin.
//!
//! The winner in effect is, in order: the runtime pin (`PUT /admin/v1/winner`, kept in the
//! store so every replica sees it), else `GATEWAY_WINNER` (`source: static`; Affine is then
//! not polled), else Affine's current champion (`source: affine`).
//!
//! Affine is polled every `winner.poll_secs`, and each poll starts with `GET /rank/current`,
//! whose `window.champion` is the canonical champion (it names no chute, so the champion is
//! served at the configured upstream URL under its repo id); its `past_champions` are kept
//! on the winner, in order. Only a 404 there — a deployment without the endpoint — makes that
//! poll read the older way: `GET /scores/latest`, the champion is the row with the highest
//! `overall_score` among rows whose `is_valid` is not false (ties go to the earliest
//! `first_block`), then `GET /miners/uid/{uid}` gives its revision and, when present, its
//! `chute_slug` (served at `winner.chute_url_template`). Anything else unexpected — an error
//! status (`/rank/current` answers 503 while its cache is cold), a timeout, a body that does
//! not parse, a champion without a revision or an invalid one — keeps the last good winner:
//! discovery never makes the gateway route to something it could not verify.
//!
//! The pin is read from the store every `winner.pin_poll_ms` on every replica.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use serde::{Deserialize, Serialize};

use crate::api::{ModelInfo, ModelSource, PendingChampion};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::routing::readiness::{self, Decision, Depth, Pending, Probe, Resolver};
use crate::routing::webhook::{Announcement, Hook, Webhooks};
use crate::routing::winner::PastChampion;
use crate::routing::{UpstreamSet, Winner, WinnerHandle};
use crate::store::Store;

/// The store key of the runtime pin (under the key prefix).
pub const PIN_KEY: &str = crate::store::keys::WINNER_PIN;

/// The store key of the readiness decision (under the key prefix).
const WINNER_READY_KEY: &str = crate::store::keys::WINNER_READY;

/// Deadline of one call to Affine's API.
const AFFINE_TIMEOUT: Duration = Duration::from_secs(10);

/// Largest Affine answer read; the scores of a few hundred miners are far below it.
const AFFINE_MAX_BYTES: usize = 8 << 20;

/// `/rank/current` (only its `window` matters here; other fields are ignored).
#[derive(Debug, Clone, Deserialize)]
pub struct RankCurrent {
    /// The champion and the champions sharing the weight.
    pub window: RankWindow,
}

/// `/rank/current`'s `window`.
#[derive(Debug, Clone, Deserialize)]
pub struct RankWindow {
    /// The canonical champion; an answer without one is not Affine's.
    pub champion: RankChampion,
    /// The champions sharing the weight while the split is on, in Affine's order.
    #[serde(default)]
    pub past_champions: Vec<MinerCommit>,
}

/// `window.champion`.
#[derive(Debug, Clone, Deserialize)]
pub struct RankChampion {
    /// Who committed which model.
    #[serde(flatten)]
    pub commit: MinerCommit,
    /// The model's architecture (e.g. `qwen3`).
    #[serde(default)]
    pub model_type: Option<String>,
    /// The block since which it is the champion.
    #[serde(default)]
    pub since_block: Option<u64>,
}

/// What a miner committed on chain, as Affine's records carry it: one of
/// `window.past_champions` as it stands (its `share` is 1/N and not needed), and the common
/// part of `window.champion` and `/miners/uid/{uid}`.
#[derive(Debug, Clone, Deserialize)]
pub struct MinerCommit {
    /// Miner uid.
    pub uid: u16,
    /// The miner's hotkey.
    #[serde(default)]
    pub hotkey: Option<String>,
    /// Hugging Face repo.
    pub model: String,
    /// Commit of the model; without one a champion is not routable.
    #[serde(default)]
    pub revision: Option<String>,
}

/// One row of `/scores/latest` (only what the choice needs; other fields are ignored).
#[derive(Debug, Clone, Deserialize)]
pub struct ScoreRow {
    /// Miner uid.
    pub uid: u16,
    /// The miner's hotkey.
    #[serde(default)]
    pub miner_hotkey: Option<String>,
    /// Hugging Face repo.
    pub model: String,
    /// Commit of the model.
    #[serde(default)]
    pub model_revision: Option<String>,
    /// Block the miner's model first appeared at (ties go to the earliest).
    #[serde(default)]
    pub first_block: Option<u64>,
    /// The champion has the highest (1.0).
    pub overall_score: f64,
    /// `false` rows are never routed to; absent counts as valid.
    #[serde(default)]
    pub is_valid: Option<bool>,
}

/// `/scores/latest`.
#[derive(Debug, Clone, Deserialize)]
pub struct Scores {
    /// One row per miner.
    pub scores: Vec<ScoreRow>,
}

/// `/miners/uid/{uid}`.
#[derive(Debug, Clone, Deserialize)]
pub struct MinerInfo {
    /// Who committed which model.
    #[serde(flatten)]
    pub commit: MinerCommit,
    /// Absent counts as valid.
    #[serde(default)]
    pub is_valid: Option<bool>,
    /// The chute serving it, on deployments that say so.
    #[serde(default)]
    pub chute_slug: Option<String>,
}

/// The champion of a scores table: highest `overall_score` among valid rows, ties to the
/// earliest `first_block`. `None` when no valid row has a finite score.
pub fn champion(scores: &Scores) -> Option<&ScoreRow> {
    scores
        .scores
        .iter()
        .filter(|r| r.is_valid != Some(false) && r.overall_score.is_finite())
        .min_by(|a, b| {
            b.overall_score.total_cmp(&a.overall_score).then(
                a.first_block
                    .unwrap_or(u64::MAX)
                    .cmp(&b.first_block.unwrap_or(u64::MAX)),
            )
        })
}

fn id_part(p: &str) -> bool {
    !p.is_empty()
        && p.len() <= 128
        && p.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// A chute slug becomes a host name label: lowercase letters, digits and `-` only.
fn valid_slug(s: &str) -> bool {
    (1..=63).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// Builds the winner from the champion's row and its miner record, refusing anything that
/// does not add up (an invalid miner, another model, ids or slugs of the wrong shape).
pub fn winner_from(
    row: &ScoreRow,
    miner: &MinerInfo,
    chute_url_template: &str,
) -> Result<Winner, String> {
    if miner.is_valid == Some(false) {
        return Err(format!("miner uid {} is not valid", miner.commit.uid));
    }
    if miner.commit.uid != row.uid || miner.commit.model != row.model {
        return Err(format!(
            "miner record of uid {} does not match the scores (uid {}, another model)",
            row.uid, miner.commit.uid
        ));
    }
    let mut w = Winner::from_spec(&row.model, ModelSource::Affine)?;
    let revision = miner
        .commit
        .revision
        .clone()
        .or_else(|| row.model_revision.clone());
    if let Some(r) = &revision
        && !id_part(r)
    {
        return Err(format!(
            "revision of uid {} is not of the expected shape",
            row.uid
        ));
    }
    w.model = ModelInfo {
        revision,
        miner_hotkey: miner
            .commit
            .hotkey
            .clone()
            .or_else(|| row.miner_hotkey.clone()),
        uid: Some(row.uid),
        ..w.model
    };
    w.route = match miner.chute_slug.as_deref() {
        Some(slug) if valid_slug(slug) => Some(chute_url_template.replace("{slug}", slug)),
        Some(_) => return Err(format!("chute slug of uid {} is not a host name", row.uid)),
        None => None,
    };
    Ok(w)
}

/// Builds the winner from `/rank/current`, refusing a champion that cannot be served
/// exactly (no revision, ids of the wrong shape). Past champions of the wrong shape are
/// left out, since nothing could ever route to them.
pub fn winner_from_rank(rank: &RankCurrent) -> Result<Winner, String> {
    let champion = &rank.window.champion;
    let c = &champion.commit;
    let revision = match c.revision.as_deref() {
        None | Some("") => {
            return Err(format!(
                "champion uid {} ({}) has no revision, so it is not routable",
                c.uid, c.model
            ));
        }
        Some(r) if !id_part(r) => {
            return Err(format!(
                "revision of champion uid {} is not of the expected shape",
                c.uid
            ));
        }
        Some(r) => r.to_string(),
    };
    let mut w = Winner::from_spec(&c.model, ModelSource::Affine)?;
    w.model = ModelInfo {
        revision: Some(revision),
        miner_hotkey: c.hotkey.clone(),
        uid: Some(c.uid),
        since_block: champion.since_block,
        ..w.model
    };
    w.model_type = champion.model_type.clone();
    w.past_champions = rank
        .window
        .past_champions
        .iter()
        .filter(|p| {
            let ok = Winner::from_spec(&p.model, ModelSource::Affine).is_ok()
                && p.revision.as_deref().is_none_or(id_part);
            if !ok {
                tracing::debug!(
                    uid = p.uid,
                    "leaving out a past champion of the wrong shape"
                );
            }
            ok
        })
        .map(|p| PastChampion {
            uid: p.uid,
            hotkey: p.hotkey.clone(),
            model: p.model.clone(),
            revision: p.revision.clone(),
        })
        .collect();
    Ok(w)
}

/// Why a poll of Affine kept the last good winner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PollError {
    /// 404: the route does not exist on this deployment.
    NotFound(String),
    /// No usable answer: another error status, a timeout, a broken connection.
    Unavailable(String),
    /// An answer that is not what Affine sends (bad JSON, missing fields, wrong types).
    Garbage(String),
    /// A champion that cannot be served (no revision, ids of the wrong shape, an invalid
    /// or mismatching miner record).
    NotRoutable(String),
}

impl PollError {
    /// A short name for the kind of failure, for logs.
    pub fn reason(&self) -> &'static str {
        match self {
            PollError::NotFound(_) => "not_found",
            PollError::Unavailable(_) => "unavailable",
            PollError::Garbage(_) => "garbage",
            PollError::NotRoutable(_) => "not_routable",
        }
    }
}

impl std::fmt::Display for PollError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PollError::NotFound(e)
            | PollError::Unavailable(e)
            | PollError::Garbage(e)
            | PollError::NotRoutable(e) => f.write_str(e),
        }
    }
}

/// Reads Affine's public API.
#[derive(Debug, Clone)]
pub struct AffineClient {
    http: reqwest::Client,
    base: String,
    chute_url_template: String,
    /// The last poll found no `/rank/current` (so the fallback is announced once, not at
    /// every poll).
    rank_absent: Arc<AtomicBool>,
}

impl AffineClient {
    /// A client for `base` (e.g. `https://api.affine.io/api/v1`).
    pub fn new(base: &str, chute_url_template: &str) -> Result<Self, String> {
        crate::upstream::client::install_crypto_provider();
        let http = reqwest::Client::builder()
            .timeout(AFFINE_TIMEOUT)
            .user_agent(concat!("affine-gateway/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot build the Affine HTTP client: {e}"))?;
        Ok(AffineClient {
            http,
            base: base.trim_end_matches('/').to_string(),
            chute_url_template: chute_url_template.to_string(),
            rank_absent: Arc::new(AtomicBool::new(false)),
        })
    }

    async fn get_json<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T, PollError> {
        // reqwest's errors name the URL; the API is public, but say only what failed.
        let res = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .map_err(|e| {
                PollError::Unavailable(format!(
                    "GET {path}: {}",
                    if e.is_timeout() {
                        "timed out"
                    } else {
                        "unreachable"
                    }
                ))
            })?;
        let status = res.status();
        if status == reqwest::StatusCode::NOT_FOUND {
            return Err(PollError::NotFound(format!("GET {path}: status 404")));
        }
        if !status.is_success() {
            return Err(PollError::Unavailable(format!(
                "GET {path}: status {}",
                status.as_u16()
            )));
        }
        let too_large = || PollError::Garbage(format!("GET {path}: answer too large"));
        if res
            .content_length()
            .is_some_and(|l| l > AFFINE_MAX_BYTES as u64)
        {
            return Err(too_large());
        }
        let body = res
            .bytes()
            .await
            .map_err(|_| PollError::Unavailable(format!("GET {path}: answer broke off")))?;
        if body.len() > AFFINE_MAX_BYTES {
            return Err(too_large());
        }
        serde_json::from_slice(&body)
            .map_err(|e| PollError::Garbage(format!("GET {path}: unexpected answer: {e}")))
    }

    /// The current champion as a winner: from `/rank/current`, or, only when that route
    /// does not exist (404), from the scores and the champion's miner record. Decided at
    /// every poll, so a deployment that gains the endpoint is followed through it.
    pub async fn fetch_winner(&self) -> Result<Winner, PollError> {
        let rank = match self.get_json::<RankCurrent>("/rank/current").await {
            Err(PollError::NotFound(_)) => {
                if !self.rank_absent.swap(true, Ordering::Relaxed) {
                    tracing::info!(
                        "Affine API has no /rank/current; reading /scores/latest and \
                         /miners/uid instead"
                    );
                }
                return self.fetch_from_scores().await;
            }
            answer => answer?,
        };
        // Only an answer proves the endpoint exists; a timeout says nothing about it.
        if self.rank_absent.swap(false, Ordering::Relaxed) {
            tracing::info!("Affine API serves /rank/current again; reading it");
        }
        winner_from_rank(&rank).map_err(PollError::NotRoutable)
    }

    /// The champion of `/scores/latest`, with its miner record.
    async fn fetch_from_scores(&self) -> Result<Winner, PollError> {
        let scores: Scores = self.get_json("/scores/latest").await?;
        let row = champion(&scores)
            .ok_or_else(|| PollError::NotRoutable("no valid row in the latest scores".into()))?;
        let miner: MinerInfo = self.get_json(&format!("/miners/uid/{}", row.uid)).await?;
        winner_from(row, &miner, &self.chute_url_template).map_err(PollError::NotRoutable)
    }
}

/// The runtime pin as stored.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Pin {
    /// `org/model[@revision]`.
    pub model: String,
    /// Who pinned it (the operator token's `sub`).
    #[serde(default)]
    pub by: String,
    /// Unix seconds.
    #[serde(default)]
    pub at: u64,
}

/// How the readiness gate runs (from `[winner]`).
#[derive(Clone)]
pub struct Gate {
    /// Finds where a champion would be served.
    pub resolver: Resolver,
    /// The deploy and retire webhooks.
    pub webhooks: Webhooks,
    /// Successful probes in a row that make a champion ready.
    pub probes: u32,
    /// After this a pending champion is `failed` (and still probed).
    pub timeout: Duration,
    /// Between two probes.
    pub probe_every: Duration,
    /// After a switch, how long the replaced champion's requests may still run (the total
    /// request timeout): its retire webhook waits for that.
    pub drain: Duration,
}

impl std::fmt::Debug for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gate")
            .field("probes", &self.probes)
            .field("timeout", &self.timeout)
            .field("probe_every", &self.probe_every)
            .finish_non_exhaustive()
    }
}

impl Gate {
    /// The gate of `config.winner`, probing where `resolver` says.
    pub fn new(
        config: &Config,
        resolver: Resolver,
        store: Store,
        metrics: &Metrics,
    ) -> Result<Gate, String> {
        let w = &config.winner;
        Ok(Gate {
            resolver,
            webhooks: Webhooks::new(config, store, metrics.gate.clone())?,
            probes: w.ready_probes,
            timeout: Duration::from_secs(w.ready_timeout_secs),
            probe_every: Duration::from_secs(w.probe_secs),
            drain: Duration::from_secs(config.upstream.total_timeout_secs),
        })
    }
}

/// The winner sources and the handle requests read; [`Discovery::resolve`] publishes the
/// one in effect.
#[derive(Debug)]
pub struct Discovery {
    handle: WinnerHandle,
    metrics: Metrics,
    store: Store,
    fixed: Option<Winner>,
    state: Mutex<Sources>,
    upstreams: Option<Arc<UpstreamSet>>,
    gate: Gate,
    /// Wakes the prober at once (a new pending champion).
    probe_now: Notify,
    /// Wakes the Affine poller at once (another replica decided for a champion this one has
    /// not seen yet).
    poll_now: Notify,
}

#[derive(Debug, Default)]
struct Sources {
    pin: Option<Winner>,
    /// Affine's champion that is ready: the one that serves.
    affine: Option<Winner>,
    /// Affine's newer champion, waiting for its upstream.
    pending: Option<Pending>,
    /// Until the first champion is ready: the first past champion that answers.
    interim: Option<Winner>,
    /// Since when the winner in effect, when pinned or static (not gated), fails its probes.
    ungated_failing: Option<(Instant, String)>,
    /// Champions switched away from, with when: retired once drained and not needed.
    replaced: Vec<(Winner, Instant)>,
    /// The last stored decision seen that named no champion known here.
    unknown_decision: Option<Decision>,
}

impl Discovery {
    /// `fixed` is the static winner (`GATEWAY_WINNER` or the simulator's model), if any;
    /// `upstreams`, when given, is told when the winner moves to another model or chute.
    pub fn new(
        handle: WinnerHandle,
        metrics: Metrics,
        store: Store,
        fixed: Option<Winner>,
        upstreams: Option<Arc<UpstreamSet>>,
        gate: Gate,
    ) -> Arc<Self> {
        let d = Arc::new(Discovery {
            handle,
            metrics,
            store,
            fixed,
            state: Mutex::new(Sources::default()),
            upstreams,
            gate,
            probe_now: Notify::new(),
            poll_now: Notify::new(),
        });
        d.resolve();
        d
    }

    fn sources(&self) -> std::sync::MutexGuard<'_, Sources> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Publishes the winner in effect: pin, else static, else Affine's ready champion, else
    /// (until the first champion is ready) the first past champion that answers.
    pub fn resolve(&self) {
        let s = self.sources();
        let next = s
            .pin
            .clone()
            .or_else(|| self.fixed.clone())
            .or_else(|| s.affine.clone())
            .or_else(|| s.interim.clone());
        let before = self.handle.current();
        // Under the lock, so two resolutions cannot publish out of order.
        if self.handle.publish(next, &self.metrics)
            && let (Some(up), Some(b), Some(a)) = (&self.upstreams, before, self.handle.current())
            && (!b.same_model(&a) || b.route != a.route)
        {
            up.winner_changed();
        }
        self.handle.set_pending(s.pending.as_ref().map(|p| {
            PendingChampion {
                serving: self
                    .upstreams
                    .as_ref()
                    .and_then(|u| u.serving_view(&p.winner)),
                ..p.view()
            }
        }));
        self.set_pending_metrics(&s);
    }

    fn set_pending_metrics(&self, s: &Sources) {
        let waiting = [
            s.pending.as_ref().map(|p| p.started),
            s.ungated_failing.as_ref().map(|(at, _)| *at),
        ]
        .into_iter()
        .flatten()
        .min();
        let g = &self.metrics.gate;
        g.pending.set(i64::from(waiting.is_some()));
        g.pending_seconds.set(waiting.map_or(0, |at| {
            i64::try_from(at.elapsed().as_secs()).unwrap_or(i64::MAX)
        }));
    }

    /// Applies a pin read from the store (or written by this replica).
    pub fn set_pin(&self, pin: Option<&Pin>) {
        let winner = pin.and_then(|p| match Winner::from_spec(&p.model, ModelSource::Pinned) {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::warn!(error = %e, "ignoring a stored winner pin");
                None
            }
        });
        {
            let mut s = self.sources();
            let same = match (&s.pin, &winner) {
                (Some(a), Some(b)) => a.same_model(b),
                (None, None) => true,
                _ => false,
            };
            if same {
                return;
            }
            s.pin = winner;
            s.ungated_failing = None;
        }
        self.resolve();
    }

    /// Records a champion found on Affine: the same as the one serving refreshes it; another
    /// one becomes (or stays) pending, and its deploy webhook is called.
    pub fn set_affine(self: &Arc<Self>, winner: Winner) {
        let announce = {
            let mut s = self.sources();
            if s.affine.as_ref().is_some_and(|c| c.same_model(&winner)) {
                if s.pending.take().is_some() {
                    tracing::info!(model = %winner.model.id, "Affine names the serving champion again; the pending one is dropped");
                }
                s.affine = Some(winner);
                None
            } else if let Some(p) = s.pending.as_mut().filter(|p| p.winner.same_model(&winner)) {
                p.winner = winner;
                (!p.announced).then(|| {
                    p.announced = true;
                    Announcement::of(&p.winner)
                })
            } else {
                tracing::info!(
                    model = %winner.model.id,
                    revision = winner.model.revision.as_deref().unwrap_or("-"),
                    replaces = s.pending.as_ref().map_or("-", |p| p.winner.model.id.as_str()),
                    "Affine names a new champion; it serves once its upstream answers"
                );
                let mut p = Pending::new(winner);
                p.announced = true;
                let a = Announcement::of(&p.winner);
                s.pending = Some(p);
                self.probe_now.notify_one();
                Some(a)
            }
        };
        self.resolve();
        if let Some(a) = announce {
            self.spawn_announce(Hook::Deploy, a);
        }
    }

    fn spawn_announce(self: &Arc<Self>, hook: Hook, a: Announcement) {
        if !self.gate.webhooks.configured(hook) {
            return;
        }
        let me = self.clone();
        tokio::spawn(async move {
            if me.gate.webhooks.announce(hook, &a).await || hook != Hook::Deploy {
                return;
            }
            // Failed for good: the next poll announces it again.
            let mut s = me.sources();
            if let Some(p) = s.pending.as_mut()
                && p.winner.model.id == a.model
                && p.winner.model.revision == a.revision
            {
                p.announced = false;
            }
        });
    }

    /// Probes what waits: the pending champion (switching to it when ready), the past
    /// champions while nothing serves, the winner in effect when it is not gated; retires
    /// drained champions.
    async fn probe_round(self: &Arc<Self>) {
        let pending = self.sources().pending.as_ref().map(|p| p.winner.clone());
        if let Some(w) = pending {
            let result = self.probe(&w, Depth::Complete).await;
            let ready = {
                let mut s = self.sources();
                match s.pending.as_mut().filter(|p| p.winner.same_model(&w)) {
                    Some(p) => p.record(&result, self.gate.probes, self.gate.timeout),
                    None => false,
                }
            };
            if ready {
                self.decide(&w).await;
            }
        }
        self.probe_interim().await;
        self.probe_past().await;
        self.probe_ungated().await;
        self.retire_drained();
        self.resolve();
    }

    async fn probe(&self, w: &Winner, depth: Depth) -> Probe {
        let result = match (self.gate.resolver)(w) {
            Ok(t) => readiness::probe(&t, depth).await,
            Err(e) => Probe::Failed(e),
        };
        self.metrics
            .gate
            .probes
            .with_label_values(&[result.outcome()])
            .inc();
        if let Probe::Failed(why) = &result {
            tracing::debug!(model = %w.model.id, reason = %why, "readiness probe failed");
        }
        result
    }

    /// Until the first champion is ready, the first past champion that answers serves, as a
    /// fallback.
    async fn probe_interim(&self) {
        let pending = {
            let s = self.sources();
            match (&s.affine, &s.interim, &s.pending) {
                (None, None, Some(p)) => p.winner.clone(),
                _ => return,
            }
        };
        for w in pending
            .past_champions
            .iter()
            .filter_map(PastChampion::as_fallback)
        {
            if pending.same_model(&w) {
                continue;
            }
            if self.probe(&w, Depth::Complete).await == Probe::Ready {
                tracing::info!(model = %w.model.id, "no champion serves yet; a past champion serves meanwhile");
                let mut s = self.sources();
                if s.affine.is_none() {
                    s.interim = Some(w);
                }
                return;
            }
        }
    }

    /// The serving champion's past champions are its failover: each is watched by its
    /// listing, and one its upstream does not list is skipped when the champion fails
    /// (rather than costing every failing request an attempt that cannot succeed).
    async fn probe_past(&self) {
        let Some(up) = &self.upstreams else { return };
        let Some(current) = self.sources().affine.clone() else {
            return;
        };
        for w in current
            .past_champions
            .iter()
            .filter_map(PastChampion::as_fallback)
        {
            if current.same_model(&w) {
                continue;
            }
            let (model, rev) = (w.model.id.as_str(), w.model.revision.as_deref());
            let ready = self.probe(&w, Depth::Listing).await == Probe::Ready;
            if ready != up.is_ready(model, rev) {
                tracing::info!(
                    model,
                    ready,
                    "a past champion's upstream lists it again, or no longer does"
                );
            }
            up.set_ready(model, rev, ready);
        }
    }

    /// A pinned or static winner is the operator's choice and serves at once; its listing is
    /// watched all the same, so that the pending alert fires when its upstream does not have
    /// it.
    async fn probe_ungated(&self) {
        let Some(w) = self
            .handle
            .current()
            .filter(|w| matches!(w.model.source, ModelSource::Pinned | ModelSource::Static))
        else {
            self.sources().ungated_failing = None;
            return;
        };
        let result = self.probe(&w, Depth::Listing).await;
        let mut s = self.sources();
        match result {
            Probe::Ready => s.ungated_failing = None,
            other => {
                let why = match other {
                    Probe::Failed(why) => why,
                    _ => "the upstream does not list the model".to_string(),
                };
                if s.ungated_failing.is_none() {
                    tracing::warn!(model = %w.model.id, reason = %why, "the pinned or static winner does not answer its probes");
                }
                let since = s
                    .ungated_failing
                    .as_ref()
                    .map_or_else(Instant::now, |f| f.0);
                s.ungated_failing = Some((since, why));
            }
        }
    }

    /// `w` is ready: tell every replica (through the store) and switch here.
    async fn decide(self: &Arc<Self>, w: &Winner) {
        let d = Decision::of(w);
        let bytes = serde_json::to_vec(&d).unwrap_or_default();
        if let Err(e) = self.store.set(WINNER_READY_KEY, &bytes, None).await {
            tracing::warn!(error = %e, "cannot store the readiness decision; switching this replica only");
        }
        self.promote(&d);
    }

    /// Switches to the pending champion if `d` names it.
    fn promote(self: &Arc<Self>, d: &Decision) -> bool {
        {
            let mut s = self.sources();
            let Some(p) = s.pending.take_if(|p| d.names(&p.winner)) else {
                return false;
            };
            tracing::info!(
                model = %p.winner.model.id,
                revision = p.winner.model.revision.as_deref().unwrap_or("-"),
                waited_secs = p.started.elapsed().as_secs(),
                "the new champion answers; switching to it"
            );
            if let Some(old) = s.affine.replace(p.winner) {
                s.replaced.push((old, Instant::now()));
            }
            s.interim = None;
        }
        self.resolve();
        true
    }

    /// Reads the stored decision: a replica switched, this one follows.
    async fn refresh_decision(self: &Arc<Self>) {
        let d = match self.store.get(WINNER_READY_KEY).await {
            Ok(Some(bytes)) => match serde_json::from_slice::<Decision>(&bytes) {
                Ok(d) => d,
                Err(_) => {
                    tracing::debug!("the stored readiness decision is not readable; ignoring it");
                    return;
                }
            },
            Ok(None) => return,
            Err(e) => {
                tracing::debug!(error = %e, "cannot read the readiness decision");
                return;
            }
        };
        if self.promote(&d) {
            return;
        }
        let mut s = self.sources();
        let known = s.affine.as_ref().is_some_and(|w| d.names(w))
            || s.pending.as_ref().is_some_and(|p| d.names(&p.winner));
        // A champion this replica has not seen yet: ask Affine now rather than at the next
        // poll, once per decision.
        if !known && s.unknown_decision.as_ref() != Some(&d) {
            s.unknown_decision = Some(d);
            self.poll_now.notify_one();
        }
    }

    /// Calls the retire webhook for replaced champions once their requests drained and
    /// nothing routes to them (not the champion, not pending, not a past champion).
    fn retire_drained(self: &Arc<Self>) {
        let due: Vec<Winner> = {
            let mut s = self.sources();
            let Sources {
                replaced,
                affine,
                pending,
                ..
            } = &mut *s;
            let needed = |w: &Winner| {
                affine.as_ref().is_some_and(|a| {
                    a.same_model(w)
                        || a.past_champions
                            .iter()
                            .any(|p| p.model == w.model.id && p.revision == w.model.revision)
                }) || pending.as_ref().is_some_and(|p| p.winner.same_model(w))
            };
            let drain = self.gate.drain;
            let mut due = Vec::new();
            replaced.retain(|(w, at)| {
                if needed(w) {
                    return true;
                }
                if at.elapsed() < drain {
                    return true;
                }
                due.push(w.clone());
                false
            });
            due
        };
        for w in due {
            self.spawn_announce(Hook::Retire, Announcement::of(&w));
        }
    }

    /// Reads the pin from the store; a store failure keeps the pin as it was.
    pub async fn refresh_pin(&self) {
        match self.store.get(PIN_KEY).await {
            Ok(Some(bytes)) => match serde_json::from_slice::<Pin>(&bytes) {
                Ok(p) => self.set_pin(Some(&p)),
                Err(_) => tracing::warn!("the stored winner pin is not readable; ignoring it"),
            },
            Ok(None) => self.set_pin(None),
            Err(e) => {
                tracing::debug!(error = %e, "cannot read the winner pin; keeping it as it was")
            }
        }
    }

    /// Stores a pin for every replica and applies it here at once.
    pub async fn pin(&self, pin: &Pin) -> Result<(), crate::store::StoreError> {
        let bytes = serde_json::to_vec(pin).unwrap_or_default();
        self.store.set(PIN_KEY, &bytes, None).await?;
        self.set_pin(Some(pin));
        Ok(())
    }

    /// Removes the pin everywhere and applies that here at once.
    pub async fn unpin(&self) -> Result<(), crate::store::StoreError> {
        self.store.del(PIN_KEY).await?;
        self.set_pin(None);
        Ok(())
    }

    /// The background tasks: the pin and decision poller and the prober always, the Affine
    /// poller unless a static winner is configured.
    pub fn spawn(
        self: &Arc<Self>,
        config: &Config,
    ) -> Result<Vec<tokio::task::JoinHandle<()>>, String> {
        let mut tasks = Vec::new();
        let pin_every = Duration::from_millis(config.winner.pin_poll_ms);
        let me = self.clone();
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(pin_every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                me.refresh_pin().await;
            }
        }));
        let decision_every = readiness::decision_poll(pin_every);
        let me = self.clone();
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(decision_every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                me.refresh_decision().await;
            }
        }));
        let me = self.clone();
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(me.gate.probe_every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    () = me.probe_now.notified() => {}
                }
                me.probe_round().await;
            }
        }));
        if self.fixed.is_none() {
            let client = AffineClient::new(
                &config.winner.affine_api_url,
                &config.winner.chute_url_template,
            )?;
            let every = config.winner.poll_interval();
            let me = self.clone();
            tasks.push(tokio::spawn(async move {
                let mut tick = tokio::time::interval(every);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                // The kind of the failure in progress, if any.
                let mut failing: Option<&'static str> = None;
                loop {
                    tokio::select! {
                        _ = tick.tick() => {}
                        () = me.poll_now.notified() => {}
                    }
                    match client.fetch_winner().await {
                        Ok(w) => {
                            if failing.is_some() {
                                tracing::info!("Affine API answers again");
                            }
                            failing = None;
                            let g = &me.metrics.gate;
                            g.polls.with_label_values(&["ok"]).inc();
                            g.last_poll_ok.set(
                                i64::try_from(crate::clock::now_secs()).unwrap_or(i64::MAX),
                            );
                            me.set_affine(w);
                        }
                        Err(e) => {
                            // Once per outage (or change of reason) at warn level, then
                            // quietly: a poll every few seconds must not flood the log.
                            let reason = e.reason();
                            me.metrics.gate.polls.with_label_values(&[reason]).inc();
                            if failing == Some(reason) {
                                tracing::debug!(reason, error = %e, "Affine poll failed; keeping the last good winner");
                            } else {
                                tracing::warn!(reason, error = %e, "Affine poll failed; keeping the last good winner");
                            }
                            failing = Some(reason);
                        }
                    }
                }
            }));
        }
        Ok(tasks)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCORES: &str =
        include_str!("../../loadtests/chutes-sim/fixtures/affine/scores_latest.json");
    const MINER: &str = include_str!("../../loadtests/chutes-sim/fixtures/affine/miner_uid.json");

    #[test]
    fn the_fixture_champion_is_uid_41_on_its_chute() {
        let scores: Scores = serde_json::from_str(SCORES).unwrap();
        let row = champion(&scores).unwrap();
        assert_eq!(row.uid, 41);
        let miner: MinerInfo = serde_json::from_str(MINER).unwrap();
        let w = winner_from(row, &miner, "https://{slug}.chutes.ai/v1").unwrap();
        assert_eq!(w.model.id, "affine-champ/Affine-Reasoner-32B");
        assert_eq!(
            w.model.revision.as_deref(),
            Some("9c1d2e3f4a5b6c7d8e9f0a1b2c3d4e5f6a7b8c9d")
        );
        assert_eq!(w.model.uid, Some(41));
        assert_eq!(w.model.source, ModelSource::Affine);
        assert_eq!(
            w.route.as_deref(),
            Some("https://affinechamp-affine-reasoner-32b.chutes.ai/v1")
        );
    }

    const RANK: &str = include_str!("../../loadtests/chutes-sim/fixtures/affine/rank_current.json");

    #[test]
    fn the_rank_fixture_champion_is_uid_41_with_its_past_champions_in_order() {
        let rank: RankCurrent = serde_json::from_str(RANK).unwrap();
        let w = winner_from_rank(&rank).unwrap();
        assert_eq!(w.model.id, "affine-champ/Affine-Reasoner-32B");
        assert_eq!(
            w.model.revision.as_deref(),
            Some("9c1d2e3f4a5b6c7d8e9f0a1b2c3d4e5f6a7b8c9d")
        );
        assert_eq!(w.model.uid, Some(41));
        assert_eq!(
            w.model.miner_hotkey.as_deref(),
            Some("5DAAnrj7VHTznn2AWBemMuyBwZWs6FNFjdyVXUeYum3PTXFy")
        );
        assert_eq!(w.model.since_block, Some(6_880_112));
        assert_eq!(w.model.source, ModelSource::Affine);
        assert_eq!(w.model_type.as_deref(), Some("qwen3"));
        // No chute is named: served at the configured upstream, as a miner without a slug.
        assert_eq!(w.route, None);
        let past: Vec<(u16, &str)> = w
            .past_champions
            .iter()
            .map(|p| (p.uid, p.model.as_str()))
            .collect();
        assert_eq!(
            past,
            [
                (41, "affine-champ/Affine-Reasoner-32B"),
                (7, "runner/Affine-Reasoner-14B")
            ]
        );
        assert_eq!(
            w.past_champions[1].revision.as_deref(),
            Some("1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b")
        );
    }

    #[test]
    fn rank_champions_that_cannot_be_served_exactly_are_refused() {
        let with = |edit: &dyn Fn(&mut serde_json::Value)| {
            let mut v: serde_json::Value = serde_json::from_str(RANK).unwrap();
            edit(&mut v["window"]);
            serde_json::from_value::<RankCurrent>(v)
        };
        for revision in [serde_json::Value::Null, "".into(), "a b".into()] {
            let rank = with(&|w| w["champion"]["revision"] = revision.clone()).unwrap();
            let e = winner_from_rank(&rank).unwrap_err();
            assert!(e.contains("uid 41"), "{e}");
        }
        let rank = with(&|w| {
            w["champion"].as_object_mut().unwrap().remove("revision");
        })
        .unwrap();
        assert!(winner_from_rank(&rank).unwrap_err().contains("no revision"));
        let rank = with(&|w| w["champion"]["model"] = "not-a-repo".into()).unwrap();
        assert!(winner_from_rank(&rank).is_err());
        // Answers that are not Affine's do not parse at all.
        assert!(with(&|w| w["champion"] = serde_json::Value::Null).is_err());
        assert!(with(&|w| w["champion"]["uid"] = "41".into()).is_err());
        assert!(with(&|w| w["champion"]["since_block"] = (-1).into()).is_err());
        // A past champion of the wrong shape is left out; the champion still serves.
        let rank = with(&|w| w["past_champions"][0]["model"] = "bad model".into()).unwrap();
        let w = winner_from_rank(&rank).unwrap();
        assert_eq!(w.past_champions.len(), 1);
        assert_eq!(w.past_champions[0].uid, 7);
    }

    fn row(uid: u16, score: f64, first_block: u64, valid: Option<bool>) -> ScoreRow {
        ScoreRow {
            uid,
            miner_hotkey: None,
            model: format!("org/m{uid}"),
            model_revision: None,
            first_block: Some(first_block),
            overall_score: score,
            is_valid: valid,
        }
    }

    #[test]
    fn invalid_rows_never_win_and_ties_go_to_the_earliest() {
        let s = Scores {
            scores: vec![
                row(1, 2.0, 1, Some(false)),
                row(2, 1.0, 20, None),
                row(3, 1.0, 10, Some(true)),
                row(4, f64::NAN, 0, Some(true)),
            ],
        };
        assert_eq!(champion(&s).unwrap().uid, 3);
        let none = Scores {
            scores: vec![row(1, 1.0, 1, Some(false))],
        };
        assert!(champion(&none).is_none());
    }

    #[test]
    fn miner_records_that_do_not_add_up_are_refused() {
        let r = row(5, 1.0, 1, None);
        let miner = |model: &str, valid, slug: Option<&str>| MinerInfo {
            commit: MinerCommit {
                uid: 5,
                hotkey: None,
                model: model.into(),
                revision: Some("abc".into()),
            },
            is_valid: valid,
            chute_slug: slug.map(str::to_string),
        };
        let t = "https://{slug}.chutes.ai/v1";
        assert!(winner_from(&r, &miner("org/m5", Some(false), None), t).is_err());
        assert!(winner_from(&r, &miner("org/other", None, None), t).is_err());
        assert!(winner_from(&r, &miner("org/m5", None, Some("evil.com/x")), t).is_err());
        let w = winner_from(&r, &miner("org/m5", None, None), t).unwrap();
        assert_eq!(w.route, None);
        assert_eq!(w.model.revision.as_deref(), Some("abc"));
    }
}
