//! # Affine Reasoning API gateway
//!
//! An HTTP gateway in front of the current winner of Bittensor's Affine subnet, served on
//! Chutes behind an OpenAI-compatible API. The public interface is `docs/API.md` (exact
//! schemas in `openapi/openapi.json`, generated from this crate); how one request moves
//! through the modules below, the Redis layout and the money invariants are in
//! `docs/ARCHITECTURE.md`. This crate is the whole service: the binary in `src/main.rs` only
//! parses the command line and calls into it.
//!
//! ## Layout
//! The modules follow one request through the gateway:
//! - [`config`]: the effective configuration — TOML file overridden by environment variables,
//!   unknown keys refused, secrets redacted when printed.
//! - [`http`]: the axum router, the tower layer stack (its order is written down once, in
//!   `http::stack`), the one request pipeline of every caller route (`http::pipeline`:
//!   admit, call, answer or pump, settle) and the routes' adapters and handlers.
//! - [`api`]: the published request and response types (`/v1/reason`, problem+json), each with
//!   a utoipa schema so the OpenAPI document is generated from the code.
//! - [`auth`]: who is calling (the authenticated [`auth::Caller`] travels with the request).
//! - `quota`: per-plan limits (requests, tokens, concurrency) and the leases of admitted
//!   requests; it knows nothing of money but carries the ticket's hold into its round trip.
//! - [`metering`]: money's one owner — cost in rao, the ticket (hold, 402, usage event), every
//!   settlement and its metrics, the settlement journal and the ledger reconciliation.
//! - [`routing`]: which model serves the request and through which upstream — the winner
//!   snapshot (Affine discovery, static or pinned), the readiness gate a new champion passes
//!   (probes, the stored decision, deploy/retire webhooks), the serving map (where each model
//!   is served), the chain of past champions and fallbacks, retries under a budget, circuit
//!   breakers and cold-chute probing.
//! - [`upstream`]: the OpenAI-compatible client, the incremental SSE decoder and the
//!   `<think>` splitter that turn the provider's answer into ours.
//! - `chain`: Bittensor's Subtensor chain — the JSON-RPC client (failover, rate limits, archive
//!   retry), the SCALE decoders of the metagraph and of `System.Events`, the metagraph sync
//!   whose snapshots place hotkeys in subnets (the auth layer reads them), and the deposit
//!   poller that credits TAO transfers from linked coldkeys exactly once.
//! - [`store`]: the storage boundary — Redis when configured, in-memory for a single process.
//! - [`metrics`]: Prometheus metrics (the SLOs, rules and dashboard built on them are in
//!   `docs/SLO.md` and `deploy/`), and the clock of the time a request waits for the provider.
//! - [`error`]: the one error enum, rendered as problem+json (or the OpenAI error shape).
//! - [`server`]: binding, serving and graceful shutdown.

pub(crate) mod accounts;
pub(crate) mod api;
pub mod auth;
pub(crate) mod chain;
mod clock;
pub mod config;
pub(crate) mod error;
// Public only for the two fuzz harnesses outside the crate (fuzz/ on nightly, and
// tests/fuzz_regressions.rs on stable), which share these bodies; not part of the API.
#[doc(hidden)]
pub mod fuzzing;
pub mod http;
pub mod metering;
pub(crate) mod metrics;
pub(crate) mod quota;
pub(crate) mod routing;
pub mod server;
pub mod store;
pub mod telemetry;
pub mod upstream;
