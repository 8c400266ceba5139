//! The bodies of the fuzz targets, one function per target.
//!
//! Public (and hidden from the docs) only so that two harnesses outside the crate can share
//! them: the cargo-fuzz targets in `fuzz/` (nightly, libFuzzer) and the stable replay of the
//! committed corpus and crashes plus the bounded property tests in
//! `tests/fuzz_regressions.rs`, which run in every test run. The parsers under test stay
//! `pub(crate)`; only these entry points are exposed. Each body takes arbitrary bytes, must
//! never panic on them, and panics when an invariant of its target does not hold (a decode
//! that does not round-trip, a mutated signature that verifies, events that depend on how
//! the bytes were chunked). docs/SECURITY.md ("Fuzzing") lists the targets and what was run.

mod auth;
mod chain;
mod config;
mod input;
mod requests;
mod stream;

pub use auth::{btauth, epistula, jwt, ss58};
pub use chain::{ChainEvents, chain_metadata, chain_subnet_state};
pub use config::config;
pub use requests::{chat_request, reason_request, responses_request};
pub use stream::{sse, sse_chunked, think, think_chunked};
