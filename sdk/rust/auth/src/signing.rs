//! Producing signed requests: the client side of btauth/1 and Epistula v2.
//!
//! The gateway itself only verifies; these helpers exist so tests can mint requests with dev
//! keys, and so the Rust SDK signs with exactly the payload builders the verifiers use (one
//! definition of the signed bytes, no drift between client and server).

use sp_core::{Pair, sr25519};

pub use crate::keys::{Crypto, KeyPair};
use crate::{btauth, epistula};

/// btauth/1 headers (name, value) for a request; nonce_ns = unix ns.
///
/// `path_and_query` must be the request target exactly as it will be sent. The crypto header
/// is sent only for ed25519, as the bittensor SDK does (absent means sr25519).
pub fn btauth_headers(
    key: &KeyPair,
    method: &str,
    path_and_query: &str,
    body: &[u8],
    receiver: &str,
    nonce_ns: u128,
) -> Vec<(&'static str, String)> {
    let sender = key.ss58();
    let payload = btauth::payload(
        key.crypto(),
        method,
        path_and_query,
        body,
        nonce_ns,
        &sender,
        receiver,
    );
    let signature = key.sign(&payload);
    let mut headers = vec![
        (btauth::HEADER_VERSION, btauth::VERSION.to_string()),
        (btauth::HEADER_HOTKEY, sender),
        (btauth::HEADER_NONCE, nonce_ns.to_string()),
        (btauth::HEADER_RECEIVER, receiver.to_string()),
        (
            btauth::HEADER_SIGNATURE,
            format!("0x{}", hex::encode(signature)),
        ),
    ];
    if key.crypto() == Crypto::Ed25519 {
        headers.push((btauth::HEADER_CRYPTO, "ed25519".to_string()));
    }
    headers
}

/// Epistula v2 headers (sr25519 only, as the protocol defines).
pub fn epistula_headers(
    key: &sr25519::Pair,
    body: &[u8],
    signed_for: &str,
    uuid: &str,
    timestamp_ms: u128,
) -> Vec<(&'static str, String)> {
    let message = epistula::message(body, uuid, timestamp_ms, signed_for);
    let signature = key.sign(&message).0;
    vec![
        (epistula::HEADER_VERSION, epistula::VERSION.to_string()),
        (epistula::HEADER_TIMESTAMP, timestamp_ms.to_string()),
        (epistula::HEADER_UUID, uuid.to_string()),
        (
            epistula::HEADER_SIGNED_BY,
            crate::ss58::encode42(&key.public().0),
        ),
        (epistula::HEADER_SIGNED_FOR, signed_for.to_string()),
        (
            epistula::HEADER_SIGNATURE,
            format!("0x{}", hex::encode(signature)),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sr25519_btauth_headers_omit_the_crypto_header() {
        let alice = KeyPair::from_uri("//Alice", Crypto::Sr25519).expect("dev key");
        let headers = btauth_headers(&alice, "POST", "/v1/reason", b"{}", "x", 1);
        assert!(
            headers
                .iter()
                .all(|(name, _)| *name != btauth::HEADER_CRYPTO)
        );
        let alice_ed = KeyPair::from_uri("//Alice", Crypto::Ed25519).expect("dev key");
        let headers = btauth_headers(&alice_ed, "POST", "/v1/reason", b"{}", "x", 1);
        assert!(
            headers
                .iter()
                .any(|(name, value)| *name == btauth::HEADER_CRYPTO && value == "ed25519")
        );
    }
}
