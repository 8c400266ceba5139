//! The current winner: a lock-free snapshot that requests read and a poller may replace.

use std::sync::Arc;

use arc_swap::ArcSwapOption;
use time::OffsetDateTime;

use crate::api::{ModelInfo, ModelSource, PastChampionView, PendingChampion, WinnerResponse};

/// One winner: the model and when it became the winner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Winner {
    /// The model as callers see it.
    pub model: ModelInfo,
    /// When it became the winner.
    pub since: OffsetDateTime,
    /// The winner's own base URL (its chute, `https://{slug}.chutes.ai/v1`), when Affine
    /// names one; otherwise it is served by the configured upstream URL under its model id.
    pub route: Option<String>,
    /// The architecture Affine reports for the champion (`model_type`, e.g. `qwen3`), when
    /// `/rank/current` names it.
    pub model_type: Option<String>,
    /// The champions that share the weight with it, in Affine's order (`/rank/current`'s
    /// `past_champions`; the champion itself may be among them): tried after the winner's
    /// upstream fails, before the configured fallbacks (`UpstreamSet`). Empty for every other
    /// source.
    pub past_champions: Vec<PastChampion>,
}

/// One of `/rank/current`'s `past_champions`, as far as routing to it would need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PastChampion {
    /// Miner uid.
    pub uid: u16,
    /// The miner's hotkey, when given.
    pub hotkey: Option<String>,
    /// Hugging Face repo, `org/model`.
    pub model: String,
    /// Commit of the model, when given.
    pub revision: Option<String>,
}

impl PastChampion {
    /// It as a winner served as a fallback (`source: fallback`, with its uid and hotkey), or
    /// `None` when it cannot be routed to exactly: no revision, or an id of the wrong shape.
    pub fn as_fallback(&self) -> Option<Winner> {
        let rev = self.revision.as_ref()?;
        let mut w =
            Winner::from_spec(&format!("{}@{rev}", self.model), ModelSource::Fallback).ok()?;
        w.model.uid = Some(self.uid);
        w.model.miner_hotkey = self.hotkey.clone();
        Some(w)
    }
}

impl Winner {
    /// Parses `org/model[@revision]` (the `GATEWAY_WINNER` syntax) into a winner of `source`.
    pub fn from_spec(spec: &str, source: ModelSource) -> Result<Winner, String> {
        let (id, revision) = match spec.split_once('@') {
            Some((id, rev)) if !rev.is_empty() => (id, Some(rev.to_string())),
            Some(_) => return Err(format!("winner `{spec}` has an empty revision after '@'")),
            None => (spec, None),
        };
        let valid_part = |p: &str| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        };
        match id.split_once('/') {
            Some((org, name)) if valid_part(org) && valid_part(name) => {}
            _ => {
                return Err(format!(
                    "winner `{spec}` is not of the form org/model[@revision]"
                ));
            }
        }
        Ok(Winner {
            model: ModelInfo {
                id: id.to_string(),
                revision,
                miner_hotkey: None,
                uid: None,
                since_block: None,
                source,
            },
            since: OffsetDateTime::now_utc(),
            route: None,
            model_type: None,
            past_champions: Vec::new(),
        })
    }

    /// The same model (id and revision), whatever the source or route.
    pub fn same_model(&self, other: &Winner) -> bool {
        self.model.id == other.model.id && self.model.revision == other.model.revision
    }

    /// What callers see of it differs: the model as answers report it, or where it is served.
    fn shows_differently(&self, other: &Winner) -> bool {
        self.model != other.model || self.route != other.route
    }
}

/// Shared, lock-free access to the current winner.
///
/// Requests take a snapshot (`Arc` clone, no lock) and keep using it even if the winner
/// changes mid-request, so an in-flight answer finishes on the model it started with.
#[derive(Debug, Clone, Default)]
pub struct WinnerHandle(Arc<Published>);

/// What the handle shares: the winner in effect and the champion waiting to replace it.
#[derive(Debug, Default)]
struct Published {
    winner: ArcSwapOption<Winner>,
    pending: ArcSwapOption<PendingChampion>,
}

impl WinnerHandle {
    /// A handle with no winner yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The current winner, if any.
    pub fn current(&self) -> Option<Arc<Winner>> {
        self.0.winner.load_full()
    }

    /// The champion Affine named that is not ready yet, as `GET /v1/winner` shows it.
    pub fn pending(&self) -> Option<Arc<PendingChampion>> {
        self.0.pending.load_full()
    }

    /// Replaces what [`WinnerHandle::pending`] shows (the readiness gate's view).
    pub(crate) fn set_pending(&self, pending: Option<PendingChampion>) {
        self.0.pending.store(pending.map(Arc::new));
    }

    /// Installs `next` as the winner (or none) and tells the world when it differs: a log
    /// line, `agw_winner_changes_total` (a different model; the first winner is not a
    /// change), `agw_winner_info` (one series, value 1) and `agw_winner_known`.
    ///
    /// `since` is kept while the model (id and revision) stays the same, even if its source
    /// or route changes. Requests already running keep the snapshot they took.
    pub fn publish(&self, next: Option<Winner>, metrics: &crate::metrics::Metrics) -> bool {
        let cur = self.current();
        let next = next.map(|mut w| {
            if let Some(c) = &cur
                && c.same_model(&w)
            {
                w.since = c.since;
            }
            w
        });
        let changed = match (&cur, &next) {
            (None, None) => false,
            (Some(c), Some(n)) => **c != *n,
            _ => true,
        };
        if !changed {
            return false;
        }
        // A new list of past champions alone replaces the snapshot quietly: callers see
        // nothing of it, and Affine reshuffles that list more often than it crowns.
        let visible = match (&cur, &next) {
            (Some(c), Some(n)) => c.shows_differently(n),
            _ => true,
        };
        if !visible {
            self.0.winner.store(next.map(Arc::new));
            return true;
        }
        match &next {
            Some(n) => {
                if let Some(c) = &cur
                    && !c.same_model(n)
                {
                    metrics.winner_changes.inc();
                }
                tracing::info!(
                    model = %n.model.id,
                    revision = n.model.revision.as_deref().unwrap_or("-"),
                    source = ?n.model.source,
                    previous = cur.as_ref().map_or("-", |c| c.model.id.as_str()),
                    "winner changed"
                );
                metrics.winner_info.reset();
                metrics
                    .winner_info
                    .with_label_values(&[
                        n.model.id.as_str(),
                        n.model.revision.as_deref().unwrap_or(""),
                        source_label(n.model.source),
                    ])
                    .set(1);
                metrics.winner_known.set(1);
            }
            None => {
                tracing::warn!(
                    previous = cur.as_ref().map_or("-", |c| c.model.id.as_str()),
                    "no winner any more"
                );
                metrics.winner_info.reset();
                metrics.winner_known.set(0);
            }
        }
        self.0.winner.store(next.map(Arc::new));
        true
    }

    /// The `GET /v1/winner` body, if there is a winner: `upstream` and `serving` say where
    /// `upstreams` serves it (the expanded serving rule, or the winner's own chute), without
    /// credentials.
    pub fn describe(&self, upstreams: &crate::routing::UpstreamSet) -> Option<WinnerResponse> {
        let w = self.current()?;
        let serving = upstreams.serving_view(&w);
        let upstream = match &serving {
            Some(v) => v.url.clone(),
            None => strip_credentials(w.route.as_deref().unwrap_or("")),
        };
        Some(WinnerResponse {
            model: w.model.clone(),
            since: w
                .since
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default(),
            upstream,
            serving,
            pending: self.pending().map(|p| (*p).clone()),
            past_champions: w
                .past_champions
                .iter()
                .map(|p| PastChampionView {
                    model: p.model.clone(),
                    revision: p.revision.clone(),
                    uid: p.uid,
                    ready: p.revision.is_some()
                        && upstreams.is_ready(&p.model, p.revision.as_deref()),
                    serving: upstreams.serving().view(&p.model, p.revision.as_deref()),
                })
                .collect(),
        })
    }
}

/// The `source` label value of a model source, as docs/API.md §4.2 spells it.
pub fn source_label(s: ModelSource) -> &'static str {
    match s {
        ModelSource::Affine => "affine",
        ModelSource::Pinned => "pinned",
        ModelSource::Static => "static",
        ModelSource::Fallback => "fallback",
    }
}

/// Removes `user:password@` from a URL so it can be shown.
pub fn strip_credentials(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_string();
    };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{}{}", &url[..scheme_end + 3], &rest[at + 1..]),
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_parsing() {
        let w = Winner::from_spec("org/model@abc123", ModelSource::Static).unwrap();
        assert_eq!(w.model.id, "org/model");
        assert_eq!(w.model.revision.as_deref(), Some("abc123"));
        assert!(
            Winner::from_spec("org/model", ModelSource::Static)
                .unwrap()
                .model
                .revision
                .is_none()
        );
        for bad in ["model", "org/", "/m", "a/b/c", "org/model@", "o g/m"] {
            assert!(
                Winner::from_spec(bad, ModelSource::Static).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn publish_keeps_since_for_the_same_model() {
        let h = WinnerHandle::new();
        let metrics = crate::metrics::Metrics::new();
        assert!(h.current().is_none());
        let w = Winner::from_spec("a/b", ModelSource::Static).unwrap();
        let since = w.since;
        h.publish(Some(w.clone()), &metrics);
        let mut later = w;
        later.since = since + time::Duration::hours(1);
        h.publish(Some(later), &metrics);
        assert_eq!(h.current().unwrap().since, since);
    }

    #[test]
    fn new_past_champions_alone_replace_the_snapshot_without_a_change() {
        let h = WinnerHandle::new();
        let metrics = crate::metrics::Metrics::new();
        let w = Winner::from_spec("a/b@r1", ModelSource::Affine).unwrap();
        assert!(h.publish(Some(w.clone()), &metrics));
        let mut more = w.clone();
        more.past_champions.push(PastChampion {
            uid: 7,
            hotkey: None,
            model: "c/d".into(),
            revision: Some("r2".into()),
        });
        assert!(h.publish(Some(more), &metrics));
        assert_eq!(h.current().unwrap().past_champions.len(), 1);
        assert_eq!(metrics.winner_changes.get(), 0);
        let other = Winner::from_spec("c/d@r2", ModelSource::Affine).unwrap();
        assert!(h.publish(Some(other), &metrics));
        assert_eq!(metrics.winner_changes.get(), 1);
    }

    #[test]
    fn credentials_are_stripped() {
        assert_eq!(strip_credentials("https://u:p@host/v1"), "https://host/v1");
        assert_eq!(strip_credentials("https://host/v1"), "https://host/v1");
        assert_eq!(
            strip_credentials("http://127.0.0.1:9/v1"),
            "http://127.0.0.1:9/v1"
        );
    }
}
