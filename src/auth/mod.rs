//! Who is calling (docs/API.md §3).
//!
//! A caller presents exactly one credential:
//! - [`btauth`]: a request signed with the bittensor SDK's `http_auth` (btauth/1);
//! - [`epistula`]: an Epistula v2 signed request;
//! - [`jwt`]: an HS256 bearer token (enterprises, operators, and session tokens that
//!   `POST /v1/auth/session` trades for one signed request).
//!
//! [`ss58`] decodes addresses, [`verdict`] holds the shared verification types, [`signing`]
//! produces signed-request headers (tests, SDKs). [`middleware`] is the tower layer that runs
//! the checks and puts a [`Caller`] (or an [`Operator`]) into the request; [`revocation`]
//! mirrors revoked token ids in memory on every replica.

pub mod btauth;
pub(crate) mod caller;
pub mod epistula;
pub mod jwt;
pub(crate) mod middleware;
pub(crate) mod revocation;
pub mod signing;
pub mod ss58;
pub mod verdict;

pub use caller::{AccessSubject, Caller, Operator};
pub use middleware::Authenticator;
