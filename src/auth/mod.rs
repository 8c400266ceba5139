//! Who is calling.
//!
//! Authentication (btauth/1 and Epistula v2 signed requests, JWT bearer tokens, replay
//! protection, accounts) is the next capability to land here (issue #3). Until then
//! `/v1/reason` answers without credentials, as the issue plan allows. The layer will sit
//! in [`crate::http::stack`] after the body limit and before anything that costs money.

pub mod btauth;
pub mod epistula;
pub mod jwt;
pub mod signing;
pub mod ss58;
pub mod verdict;
