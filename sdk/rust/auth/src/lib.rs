//! Signing and verification of the Affine Reasoning API's signed requests, shared by the
//! gateway (which verifies) and the `affine-reason` SDK (which signs), so the two cannot
//! drift: one definition of the signed bytes, one header parser, one SS58 codec.
//!
//! - [`btauth`]: btauth/1, what `bittensor.http_auth` produces (X-Bittensor-* headers);
//! - [`epistula`]: Epistula v2 (Epistula-* headers, sr25519 only);
//! - [`signing`]: the client side, headers for a request signed with a [`KeyPair`];
//! - [`keys`]: loading a key from a seed, a URI, a mnemonic or a bittensor wallet;
//! - [`ss58`]: prefix-42 addresses in their one canonical spelling;
//! - [`verdict`]: what a verification answers ([`Signed`] or a [`Refusal`]);
//! - [`coldkey`]: the message a coldkey signs to link itself to an account.
//!
//! Replay protection (remembering accepted nonces and UUIDs) is the verifier's policy, not
//! part of this crate: [`Signed`] says which mark to record and for how long.
//!
//! ```
//! use affine_reason_auth::{Crypto, KeyPair, btauth, signing};
//!
//! let alice = KeyPair::from_uri("//Alice", Crypto::Sr25519).unwrap();
//! let gateway = "5FHneW46xGXgs5mUiveU4sbTyGBzmstUspZC92UhjJM694ty";
//! let now_ns = 1_795_600_000_000_000_000u128;
//! let headers = signing::btauth_headers(&alice, "POST", "/v1/reason", b"{}", gateway, now_ns);
//! let mut map = http::HeaderMap::new();
//! for (name, value) in headers {
//!     map.insert(name, value.parse().unwrap());
//! }
//! let signed = btauth::verify("POST", "/v1/reason", &map, b"{}", gateway, now_ns).unwrap();
//! assert_eq!(signed.hotkey, alice.ss58());
//! ```

pub mod btauth;
pub mod coldkey;
pub mod epistula;
pub mod keys;
pub mod signing;
pub mod ss58;
pub mod verdict;

pub use keys::{Crypto, KeyError, KeyPair};
pub use verdict::{Refusal, Scheme, Signed};
