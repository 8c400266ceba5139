//! Who is calling (docs/API.md §3).
//!
//! A caller presents exactly one credential:
//! - [`btauth`]: a request signed with the bittensor SDK's `http_auth` (btauth/1);
//! - [`epistula`]: an Epistula v2 signed request;
//! - [`jwt`]: an HS256 bearer token (enterprises, operators, and session tokens that
//!   `POST /v1/auth/session` trades for one signed request).
//!
//! The signed bytes, header parsing, signature checks, SS58 and the verdict types live in the
//! `affine-reason-auth` crate (`sdk/rust/auth`), shared with the Rust SDK so client and
//! gateway cannot drift; they are re-exported here under their old paths. What stays here is
//! the gateway's policy: [`middleware`] is the tower layer that runs
//! the checks and puts a [`Caller`] (or an [`Operator`]) into the request; [`revocation`]
//! mirrors revoked token ids in memory on every replica.

pub(crate) mod caller;
pub mod jwt;
pub(crate) mod middleware;
pub(crate) mod revocation;

pub use affine_reason_auth::{btauth, epistula, signing, ss58, verdict};

pub use caller::{AccessSubject, Caller, Operator};
pub use middleware::Authenticator;
