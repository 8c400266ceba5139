//! `chutes-sim`: a simulated Chutes upstream (OpenAI-compatible chat completions) on 127.0.0.1,
//! so the gateway's tests, its embedded default mode and its load tests never call the real
//! host. It answers in the shapes of the fixtures under `fixtures/chutes/`, streams or not, with
//! deterministic text, configurable pacing and injectable faults, and counts what it serves.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use chutes_sim::{Fault, FaultKind, Sim, SimConfig, Trigger};
//! let sim = Sim::start(SimConfig::default()).await?;
//! let base_url = sim.base_url(); // "http://127.0.0.1:PORT/v1"
//! // Make the second chat completion fail as a cold chute would.
//! sim.set_config(SimConfig {
//!     fault: Fault { kind: Some(FaultKind::Status(503)), trigger: Trigger::NthRequest(2) },
//!     ..SimConfig::default()
//! });
//! # let _ = base_url;
//! sim.shutdown().await;
//! # Ok(())
//! # }
//! ```
//!
//! # Layout
//! - [`config`]: [`SimConfig`] and the fault model ([`Fault`], [`FaultKind`], [`Trigger`]).
//! - [`server`]: the routes, the handlers, and [`Sim`] / [`SimHandle`] to start and stop it.
//! - [`request`]: the few request fields that matter, parsed without allocating, and the
//!   prompt-token formula.
//! - [`render`]: the answer (words, `max_tokens` cut) written as JSON or as a whole SSE stream.
//! - `body`: sends a prepared body paced, fragmented, cut short or stalled.
//! - [`catalogue`]: the served models, deploys in their delay and prices ([`ServedModel`]).
//! - [`webhook`]: the deploy/retire webhooks' signature check and [`WebhookCall`] records.
//! - [`text`]: deterministic words and ids from (seed, request number).
//! - [`fixtures`]: the Chutes fixtures, compiled in.
//! - [`affine`]: the simulated Affine public API (rank, scores and miners, from its fixtures).
//! - `stats` / `record`: atomic counters and the ring of recorded requests.
//!
//! # Endpoints
//! - `GET /v1/models`: the models served now, in the shape of `models.json` (`id`, `object`,
//!   `created`, `owned_by`, `root`, `max_model_len`, `price` in USD and TAO per 1M tokens,
//!   `pricing`). By default [`SimConfig::model`] (in the place of the fixture's first entry)
//!   and the fixture's other models, at the fixture's prices; a deployed model gets the first
//!   entry's fields and prices. Change them with [`SimState::set_model_price`] and
//!   [`SimState::set_model_price_json`]; count the requests with
//!   [`SimState::models_requests`].
//! - `POST /v1/chat/completions`: see [`server`]. With [`Catalogue::Strict`] (the default) a
//!   model that is not served now gets 404 `{"detail": "model not found: <id>"}`;
//!   [`Catalogue::Open`] answers any. `usage.prompt_tokens` is
//!   `ceil(chars of all message contents / 4) + 3 per message` and `completion_tokens` the
//!   number of words sent (reasoning plus answer).
//! - `POST /c/{slug}/v1/chat/completions`, `GET /c/{slug}/v1/models`: the same, as a chute's own
//!   base URL would.
//! - `GET /api/v1/rank/current`, `GET /api/v1/scores/latest`, `GET /api/v1/miners/uid/{uid}`:
//!   the Affine API, see [`affine`].
//! - `POST /_sim/deploy`, `POST /_sim/retire`: the deploy/retire webhooks a gateway calls on
//!   a champion change (`{"model", "revision", …}`, signed with `X-Affine-Signature` when
//!   [`SimConfig::webhook_secret`] is set); deploy serves the model after
//!   [`SimConfig::deploy_delay`], idempotently; retire takes it out. See [`webhook`].
//!   In Rust: [`SimState::deploy_model`], [`SimState::undeploy_model`],
//!   [`SimState::served_models`], [`SimState::pending_deploys`], [`SimState::fail_webhooks`].
//! - `GET /_sim/stats`, `GET /_sim/requests`, `GET /_sim/webhooks`: [`SimStats`],
//!   [`RecordedRequest`]s and [`WebhookCall`]s as JSON, for out-of-process load tests.

pub mod affine;
mod body;
pub mod catalogue;
pub mod config;
pub mod fixtures;
mod record;
pub mod render;
pub mod request;
pub mod server;
mod stats;
pub mod text;
pub mod webhook;

pub use affine::{AffineMode, AffineSim};
pub use catalogue::ServedModel;
pub use config::{
    Catalogue, DEFAULT_DEPLOY_DELAY, DEFAULT_MODEL, Fault, FaultKind, ReasoningStyle, SimConfig,
    Trigger,
};
pub use record::RecordedRequest;
pub use server::{Sim, SimHandle, SimState, router};
pub use stats::SimStats;
pub use webhook::{WebhookCall, WebhookKind};
