//! The HTTP surface: router, layer stack, extractors and handlers.
//!
//! - [`stack`]: builds the router and writes down the layer order, once.
//! - [`state`]: what every handler shares ([`AppState`]).
//! - [`request_id`]: `X-Request-Id` validation and generation.
//! - [`client_ip`]: the client's address behind trusted proxies (`X-Forwarded-For`).
//! - [`extract`]: the JSON body extractor (content type, size limit, one read into `Bytes`).
//! - [`chat_schema`]: the documented shape of a chat completions request.
//! - [`pipeline`]: the one request pipeline of every caller route (admit, call, answer or
//!   pump, settle); [`reason`], [`chat`] and [`responses`] are its adapters.
//! - [`health`], [`winner`], [`docs`]: the public informational routes.
//! - [`admin_winner`]: the runtime winner pin (`PUT`/`DELETE /admin/v1/winner`).
//! - [`coldkeys`]: coldkey links (`POST /v1/account/coldkeys`, the admin list and unlink).

pub(crate) mod account;
pub(crate) mod admin;
pub(crate) mod admin_winner;
pub(crate) mod chain;
pub(crate) mod chat;
pub(crate) mod chat_request;
pub(crate) mod chat_schema;
pub(crate) mod client_ip;
pub(crate) mod coldkeys;
pub mod docs;
pub(crate) mod extract;
pub(crate) mod health;
pub(crate) mod pipeline;
pub(crate) mod reason;
pub(crate) mod request_id;
pub(crate) mod responses;
pub(crate) mod session;
pub(crate) mod stack;
pub mod state;
pub(crate) mod usage;
pub(crate) mod winner;

pub use stack::{metrics_router, router};
pub use state::AppState;
