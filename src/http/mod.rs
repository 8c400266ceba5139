//! The HTTP surface: router, layer stack, extractors and handlers.
//!
//! - [`stack`]: builds the router and writes down the layer order, once.
//! - [`state`]: what every handler shares ([`AppState`]).
//! - [`request_id`]: `X-Request-Id` validation and generation.
//! - [`client_ip`]: the client's address behind trusted proxies (`X-Forwarded-For`).
//! - [`extract`]: the JSON body extractor (content type, size limit, one read into `Bytes`).
//! - [`pipeline`]: the one request pipeline of every caller route (admit, call, answer or
//!   pump, settle); [`reason`] and [`chat`] are its adapters.
//! - [`health`], [`winner`], [`docs`]: the public informational routes.
//! - [`admin_winner`]: the runtime winner pin (`PUT`/`DELETE /admin/v1/winner`).

pub mod account;
pub mod admin;
pub mod admin_winner;
pub mod chat;
pub(crate) mod chat_request;
pub mod client_ip;
pub mod docs;
pub mod extract;
pub mod health;
pub mod pipeline;
pub mod reason;
pub mod request_id;
pub mod session;
pub mod stack;
pub mod state;
pub mod usage;
pub mod winner;

pub use stack::router;
pub use state::AppState;
