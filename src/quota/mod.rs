//! Per-plan limits: requests and tokens per minute and day, concurrency (the README's "Plans,
//! quotas and rate limits"; the headers callers see are docs/API.md §7).
//!
//! - [`plans`]: built-in and configured plans, and the subnet → plan mapping.
//! - [`limiter`]: admission and settlement against the distributed buckets (one atomic script
//!   per admission and per settlement in Redis, the same semantics in memory).
//! - [`local`]: the in-process pre-filter (per-IP flood guard) and the over-limit cache.
//! - [`headers`]: the IETF `RateLimit-Policy` / `RateLimit` headers and `Retry-After`.

pub(crate) mod headers;
pub(crate) mod limiter;
pub(crate) mod local;
pub(crate) mod plans;

pub use limiter::{Lease, Limiter, Money, Refusal, Refused};
