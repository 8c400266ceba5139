//! The model that serves a request, as callers see it.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Where the serving model came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ModelSource {
    /// Discovered from Affine's public API.
    Affine,
    /// Pinned at runtime by an operator (`PUT /admin/v1/winner`).
    Pinned,
    /// Fixed by configuration (`GATEWAY_WINNER`, or the embedded simulator's model).
    Static,
    /// A fallback upstream served this request.
    Fallback,
}

/// The model that answered (docs/API.md §4.2, `model`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ModelInfo {
    /// Hugging Face style id, `org/model`.
    #[schema(example = "affine-champ/Affine-Reasoner-32B")]
    pub id: String,
    /// The model revision (commit sha), when known.
    pub revision: Option<String>,
    /// SS58 hotkey of the miner that owns the model, when known.
    pub miner_hotkey: Option<String>,
    /// The miner's uid on the Affine subnet, when known.
    pub uid: Option<u16>,
    /// The chain block since which Affine names this model its champion (`/rank/current`);
    /// null when that is not known: a static or pinned winner, a fallback serving another
    /// model, or an Affine API without `/rank/current`. Added within v1 (an additive change:
    /// older answers simply lacked the field).
    #[serde(default)]
    #[schema(example = 6880112)]
    pub since_block: Option<u64>,
    /// Where this model choice came from.
    pub source: ModelSource,
}

/// `GET /v1/winner`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct WinnerResponse {
    /// The current winner.
    pub model: ModelInfo,
    /// When this model became the winner (RFC 3339).
    #[schema(example = "2026-11-25T09:00:00Z")]
    pub since: String,
    /// The base URL actually serving the winner (its serving rule's, expanded), without
    /// credentials.
    #[schema(example = "https://llm.chutes.ai/v1")]
    pub upstream: String,
    /// The serving rule that serves the winner; null when no rule can (the expanded URL is
    /// not valid for this model). Added within v1 (an additive change).
    #[serde(default)]
    pub serving: Option<ServingView>,
    /// A new champion Affine named that does not serve yet: traffic stays on `model` until it
    /// is ready. Null when there is none. Added within v1 (additive).
    #[serde(default)]
    pub pending: Option<PendingChampion>,
    /// Affine's past champions, in order: the failover after `model`'s own upstream, each
    /// where its serving rule puts it. Empty unless the winner comes from Affine's
    /// `/rank/current`. Added within v1 (additive).
    #[serde(default)]
    pub past_champions: Vec<PastChampionView>,
}

/// One of `GET /v1/winner`'s `past_champions`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PastChampionView {
    /// Hugging Face style id, `org/model`.
    pub model: String,
    /// The model revision (commit sha), when Affine gives it (without one it is never routed
    /// to).
    pub revision: Option<String>,
    /// The miner's uid on the Affine subnet.
    pub uid: u16,
    /// Whether its upstream lists it (watched by the readiness gate); one that does not is
    /// skipped when the champion fails.
    pub ready: bool,
    /// The `[[serving]]` rule that serves it.
    pub serving: Option<ServingView>,
}

/// Which `[[serving]]` rule serves a model, as `GET /v1/winner` shows it (never a key, never
/// userinfo).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ServingView {
    /// The rule's index in the configured `[[serving]]` list (0-based); the built-in default
    /// rule (Chutes' router, `GATEWAY_UPSTREAM_URL`) is last, at the number of configured
    /// rules (0 when none are configured).
    #[schema(example = 0)]
    pub rule: usize,
    /// The rule's `match`: a model id or glob (`*` for every model).
    #[serde(rename = "match")]
    #[schema(example = "*")]
    pub pattern: String,
    /// The rule's base URL expanded for this model, without credentials.
    #[schema(example = "https://llm.chutes.ai/v1")]
    pub url: String,
    /// What the gateway sends as `model` to that upstream.
    #[schema(example = "affine-champ/Affine-Reasoner-32B")]
    pub model_name: String,
}

/// Where a pending champion stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum PendingState {
    /// Its upstream does not list the model yet (`GET /v1/models`): it is being deployed.
    Deploying,
    /// Listed; one-token completions are being tried until enough succeed in a row.
    Probing,
    /// Not ready within `winner.ready_timeout_secs`; still probed, and switched to if it
    /// comes up later.
    Failed,
}

/// `GET /v1/winner`'s `pending`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PendingChampion {
    /// Hugging Face style id, `org/model`.
    #[schema(example = "affine-champ/Affine-Reasoner-32B-v2")]
    pub model: String,
    /// The model revision (commit sha).
    pub revision: Option<String>,
    /// When Affine's new champion was first seen by this gateway (RFC 3339).
    #[schema(example = "2026-11-25T09:00:00Z")]
    pub since: String,
    /// Where it stands.
    pub state: PendingState,
    /// Why the last probe failed, if it did (no credentials, no provider body).
    pub last_error: Option<String>,
    /// The `[[serving]]` rule it is probed at (and will be served by).
    #[serde(default)]
    pub serving: Option<ServingView>,
}
