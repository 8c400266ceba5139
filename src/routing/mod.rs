//! Which model serves a request, and through which upstream.
//!
//! - [`winner`]: the current winner snapshot, read from memory on every request and swapped
//!   atomically when it changes ([`WinnerHandle::publish`] logs and counts the change).
//! - [`affine`]: where the winner comes from — Affine's public API (polled), the static
//!   `GATEWAY_WINNER`, or the runtime pin shared by every replica through the store.
//! - [`serving`]: the serving map, where each model is served (`[[serving]]` rules, then the
//!   built-in default).
//! - [`upstreams`]: the winner's upstream, the past champions and the fallback chain, with
//!   retries under a budget ([`budget`]), a circuit breaker each ([`breaker`]) and cold-chute
//!   probing.

pub(crate) mod affine;
pub(crate) mod breaker;
pub(crate) mod budget;
pub(crate) mod readiness;
pub(crate) mod serving;
pub(crate) mod upstreams;
pub(crate) mod webhook;
pub(crate) mod winner;

pub use upstreams::{Opened, Served, UpstreamSet};
pub use winner::{Winner, WinnerHandle};
