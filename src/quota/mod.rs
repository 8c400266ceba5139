//! Per-plan limits: requests and tokens per minute and day, concurrency.
//!
//! Lands with issue #4: one atomic Redis script per scope through [`crate::store`], a
//! `governor` pre-filter in process, and the IETF `RateLimit` headers.
