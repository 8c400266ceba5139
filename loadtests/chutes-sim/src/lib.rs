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
//! - [`text`]: deterministic words and ids from (seed, request number).
//! - [`fixtures`]: the Chutes fixtures, compiled in.
//! - [`affine`]: the simulated Affine public API (rank, scores and miners, from its fixtures).
//! - `stats` / `record`: atomic counters and the ring of recorded requests.
//!
//! # Endpoints
//! - `GET /v1/models`: `models.json` with the first entry renamed to the served model.
//! - `POST /v1/chat/completions`: see [`server`]; `usage.prompt_tokens` is
//!   `ceil(chars of all message contents / 4) + 3 per message` and `completion_tokens` the
//!   number of words sent (reasoning plus answer).
//! - `POST /c/{slug}/v1/chat/completions`: the same, as a chute's own base URL would.
//! - `GET /api/v1/rank/current`, `GET /api/v1/scores/latest`, `GET /api/v1/miners/uid/{uid}`:
//!   the Affine API, see [`affine`].
//! - `GET /_sim/stats`, `GET /_sim/requests`: [`SimStats`] and [`RecordedRequest`]s as JSON,
//!   for out-of-process load tests.

pub mod affine;
mod body;
pub mod config;
pub mod fixtures;
mod record;
pub mod render;
pub mod request;
pub mod server;
mod stats;
pub mod text;

pub use affine::{AffineMode, AffineSim};
pub use config::{DEFAULT_MODEL, Fault, FaultKind, ReasoningStyle, SimConfig, Trigger};
pub use record::RecordedRequest;
pub use server::{Sim, SimHandle, SimState, router};
pub use stats::SimStats;
