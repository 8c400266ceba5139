//! The readiness gate: a new champion serves only once its upstream answers for it.
//!
//! Since May 2026 nobody serves Affine's champion publicly, so a champion Affine has just
//! named is usually not deployed anywhere yet. It becomes *pending* and traffic stays on the
//! current champion until it is ready. Every `winner.probe_secs` the pending champion is
//! probed at the upstream the routing would use for it:
//! 1. `GET {base}/models` must list the model (as Chutes' router does once a chute serves it):
//!    until then the state is `deploying`;
//! 2. a one-token completion must succeed: the state is `probing` until
//!    `winner.ready_probes` probes in a row did.
//!
//! Past `winner.ready_timeout_secs` the state is `failed`, but probing goes on: a champion
//! that comes up late is still switched to.
//!
//! Replicas switch together: the replica whose probes succeed writes the decision to the
//! store (key `winner:ready`, like the runtime pin) and every replica reads it at most 500 ms
//! later (`winner.pin_poll_ms`, capped), so they switch within a second of each other.
//!
//! This module holds the parts without side effects — the probe, the pending champion's
//! bookkeeping, the stored decision; [`crate::routing::affine::Discovery`] drives them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::api::{PendingChampion, PendingState};
use crate::routing::Winner;
use crate::upstream::UpstreamClient;
use crate::upstream::catalogue::Catalogue;
use crate::upstream::client::Timeouts;

/// The longest one probe request may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(60);

/// The largest model list read (Chutes' lists a few hundred models in far less).
const MODELS_MAX_BYTES: usize = 4 << 20;

/// Where and under which name a model would be served: what a probe calls.
#[derive(Debug, Clone)]
pub struct ProbeTarget {
    /// The client of the upstream (its key, its timeouts).
    pub client: UpstreamClient,
    /// `…/chat/completions` of the model's upstream.
    pub completions_url: String,
    /// `…/models` of the model's upstream.
    pub models_url: String,
    /// What the upstream calls the model (`model` in requests, `id` in its list).
    pub model_name: String,
}

/// Finds the probe target of a model (the serving map's answer).
pub type Resolver = Arc<dyn Fn(&Winner) -> Result<ProbeTarget, String> + Send + Sync>;

/// What one probe found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// Listed, and a one-token completion succeeded.
    Ready,
    /// The upstream's model list does not have it: not deployed (yet).
    NotListed,
    /// Listed but not answering, or the upstream could not be asked; why, without secrets.
    Failed(String),
}

impl Probe {
    /// The `agw_winner_probes_total` outcome.
    pub fn outcome(&self) -> &'static str {
        match self {
            Probe::Ready => "ok",
            Probe::NotListed => "not_listed",
            Probe::Failed(_) => "failed",
        }
    }
}

/// How much a probe asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Depth {
    /// Listed, then a one-token completion: what makes a champion ready.
    Complete,
    /// Listed only: the watch on a pinned or static winner, which serves whatever its
    /// probes say and already carries real traffic (no synthetic completions beside it).
    Listing,
}

/// Probes `t` once: listed, then (at [`Depth::Complete`]) a one-token completion.
pub async fn probe(t: &ProbeTarget, depth: Depth) -> Probe {
    let timeouts = t.client.timeouts();
    let deadline = timeouts.total.min(PROBE_TIMEOUT);
    let listed = match t
        .client
        .get_at(&t.models_url, MODELS_MAX_BYTES, deadline)
        .await
    {
        Ok(body) => match Catalogue::parse(&body) {
            Ok(list) => list.lists(&t.model_name),
            Err(_) => return Probe::Failed("the model list is not an OpenAI model list".into()),
        },
        Err(e) => return Probe::Failed(format!("model list: {}", describe(&e))),
    };
    if !listed {
        return Probe::NotListed;
    }
    if depth == Depth::Listing {
        return Probe::Ready;
    }
    let body = serde_json::json!({
        "model": t.model_name,
        "messages": [{"role": "user", "content": "Reply with OK."}],
        "max_tokens": 1,
        "stream": false,
    });
    let body = Bytes::from(serde_json::to_vec(&body).unwrap_or_default());
    let timeouts = Timeouts {
        total: deadline,
        ..timeouts
    };
    match t
        .client
        .complete_at(&t.completions_url, body, timeouts)
        .await
    {
        Ok((bytes, _)) => match serde_json::from_slice::<serde_json::Value>(&bytes) {
            Ok(v) if v.get("choices").is_some_and(serde_json::Value::is_array) => Probe::Ready,
            _ => Probe::Failed("the completion is not an OpenAI chat completion".into()),
        },
        Err(e) => Probe::Failed(format!("completion: {}", describe(&e))),
    }
}

fn describe(e: &crate::upstream::UpstreamError) -> String {
    match e {
        crate::upstream::UpstreamError::Status { status, .. } => format!("status {status}"),
        other => other.kind().to_string(),
    }
}

/// A champion Affine named that does not serve yet.
#[derive(Debug, Clone)]
pub struct Pending {
    /// The champion.
    pub winner: Winner,
    /// When it was first seen, as `GET /v1/winner` shows it.
    pub seen: OffsetDateTime,
    /// The same, for durations.
    pub started: Instant,
    /// Where it stands.
    pub state: PendingState,
    /// Why the last probe failed.
    pub last_error: Option<String>,
    /// Successful probes in a row.
    pub streak: u32,
    /// Its deploy webhook was delivered (or is being delivered) by this replica.
    pub announced: bool,
}

impl Pending {
    /// A champion seen just now.
    pub fn new(winner: Winner) -> Pending {
        Pending {
            winner,
            seen: OffsetDateTime::now_utc(),
            started: Instant::now(),
            state: PendingState::Deploying,
            last_error: None,
            streak: 0,
            announced: false,
        }
    }

    /// Takes one probe's result; `true` when the champion is now ready (`needed` probes in a
    /// row succeeded). Past `timeout` a champion that is not ready is `failed`.
    pub fn record(&mut self, probe: &Probe, needed: u32, timeout: Duration) -> bool {
        match probe {
            Probe::Ready => {
                self.streak += 1;
                self.last_error = None;
                self.state = PendingState::Probing;
            }
            Probe::NotListed => {
                self.streak = 0;
                self.last_error = Some("the upstream does not list the model yet".into());
                self.state = PendingState::Deploying;
            }
            Probe::Failed(why) => {
                self.streak = 0;
                self.last_error = Some(why.clone());
                self.state = PendingState::Probing;
            }
        }
        if self.streak >= needed {
            return true;
        }
        if self.started.elapsed() >= timeout {
            self.state = PendingState::Failed;
        }
        false
    }

    /// What `GET /v1/winner` shows of it.
    pub fn view(&self) -> PendingChampion {
        PendingChampion {
            model: self.winner.model.id.clone(),
            revision: self.winner.model.revision.clone(),
            since: self
                .seen
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default(),
            state: self.state,
            last_error: self.last_error.clone(),
            serving: None,
        }
    }
}

/// The stored decision: this champion is ready, every replica switches to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    /// Hugging Face repo.
    pub model: String,
    /// Its commit.
    pub revision: Option<String>,
    /// When it was decided, unix milliseconds.
    pub at_ms: u64,
}

impl Decision {
    /// The decision that `w` is ready.
    pub fn of(w: &Winner) -> Decision {
        Decision {
            model: w.model.id.clone(),
            revision: w.model.revision.clone(),
            at_ms: crate::clock::now_ms(),
        }
    }

    /// Whether it names `w` (id and revision).
    pub fn names(&self, w: &Winner) -> bool {
        self.model == w.model.id && self.revision == w.model.revision
    }
}

/// How often replicas read the stored decision: with the pin, but at least twice a second.
pub fn decision_poll(pin_poll: Duration) -> Duration {
    pin_poll.min(Duration::from_millis(500))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::ModelSource;

    fn pending() -> Pending {
        Pending::new(Winner::from_spec("org/new@abc", ModelSource::Affine).unwrap())
    }

    #[test]
    fn ready_takes_the_configured_successes_in_a_row() {
        let mut p = pending();
        let long = Duration::from_secs(3600);
        assert!(!p.record(&Probe::NotListed, 2, long));
        assert_eq!(p.state, PendingState::Deploying);
        assert!(!p.record(&Probe::Ready, 2, long));
        assert_eq!(p.state, PendingState::Probing);
        assert!(!p.record(&Probe::Failed("status 502".into()), 2, long));
        assert_eq!(p.last_error.as_deref(), Some("status 502"));
        assert!(!p.record(&Probe::Ready, 2, long));
        assert!(p.record(&Probe::Ready, 2, long));
        assert_eq!(p.last_error, None);
    }

    #[test]
    fn past_the_timeout_a_champion_that_is_not_ready_has_failed_but_can_recover() {
        let mut p = pending();
        assert!(!p.record(&Probe::NotListed, 1, Duration::ZERO));
        assert_eq!(p.state, PendingState::Failed);
        assert_eq!(p.view().state, PendingState::Failed);
        assert!(p.record(&Probe::Ready, 1, Duration::ZERO));
    }

    #[test]
    fn a_decision_names_model_and_revision() {
        let w = Winner::from_spec("org/new@abc", ModelSource::Affine).unwrap();
        let other = Winner::from_spec("org/new@def", ModelSource::Affine).unwrap();
        let d = Decision::of(&w);
        assert!(d.names(&w));
        assert!(!d.names(&other));
        let back: Decision = serde_json::from_slice(&serde_json::to_vec(&d).unwrap()).unwrap();
        assert_eq!(back, d);
    }
}
