//! Producing signed requests: the client side of btauth/1 and Epistula v2.
//!
//! The gateway itself only verifies; these helpers exist so tests can mint requests with dev
//! keys, and so the Rust SDK signs with exactly the payload builders the verifiers use (one
//! definition of the signed bytes, no drift between client and server).

use sp_core::{Pair, ed25519, sr25519};

use super::{btauth, epistula};

/// Signature scheme of a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Crypto {
    /// Schnorrkel over Ristretto, signing context `substrate` (Bittensor's default).
    Sr25519,
    /// Ed25519.
    Ed25519,
}

/// A hotkey able to sign btauth/1 requests.
// Keys are few and long-lived (one per client), so boxing the larger variant would buy
// nothing but an indirection and a less direct API.
#[expect(
    clippy::large_enum_variant,
    reason = "a handful of long-lived keys, never stored in bulk"
)]
pub enum KeyPair {
    /// An sr25519 key.
    Sr25519(sr25519::Pair),
    /// An ed25519 key.
    Ed25519(ed25519::Pair),
}

impl KeyPair {
    /// Builds a key from a secret URI (`//Alice`, a mnemonic with derivations, a `0x` seed).
    ///
    /// The error is a fixed message: a URI is a secret and must not end up in logs.
    pub fn from_uri(uri: &str, crypto: Crypto) -> Result<KeyPair, String> {
        let refused = |_| "invalid secret URI".to_string();
        match crypto {
            Crypto::Sr25519 => sr25519::Pair::from_string(uri, None)
                .map(KeyPair::Sr25519)
                .map_err(refused),
            Crypto::Ed25519 => ed25519::Pair::from_string(uri, None)
                .map(KeyPair::Ed25519)
                .map_err(refused),
        }
    }

    /// The key's SS58 address (prefix 42).
    pub fn ss58(&self) -> String {
        super::ss58::encode42(&self.public())
    }

    /// The raw 32-byte public key.
    pub fn public(&self) -> [u8; 32] {
        match self {
            KeyPair::Sr25519(pair) => pair.public().0,
            KeyPair::Ed25519(pair) => pair.public().0,
        }
    }

    /// The key's scheme.
    pub fn crypto(&self) -> Crypto {
        match self {
            KeyPair::Sr25519(_) => Crypto::Sr25519,
            KeyPair::Ed25519(_) => Crypto::Ed25519,
        }
    }

    /// Signs raw bytes (sr25519 under the `substrate` context).
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        match self {
            KeyPair::Sr25519(pair) => pair.sign(message).0,
            KeyPair::Ed25519(pair) => pair.sign(message).0,
        }
    }
}

impl std::fmt::Debug for KeyPair {
    // Only the public half: a derived Debug could print secret material.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyPair")
            .field("crypto", &self.crypto())
            .field("ss58", &self.ss58())
            .finish()
    }
}

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
            super::ss58::encode42(&key.public().0),
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
    fn dev_keys_have_their_well_known_addresses() {
        let alice = KeyPair::from_uri("//Alice", Crypto::Sr25519).expect("dev key");
        assert_eq!(
            alice.ss58(),
            "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY"
        );
        let alice_ed = KeyPair::from_uri("//Alice", Crypto::Ed25519).expect("dev key");
        assert_eq!(
            alice_ed.ss58(),
            "5FA9nQDVg267DEd8m1ZypXLBnvN7SFxYwV7ndqSYGiN9TTpu"
        );
        assert_eq!(alice_ed.crypto(), Crypto::Ed25519);
    }

    #[test]
    fn bad_uris_are_refused_without_echoing_them() {
        let err = KeyPair::from_uri("not a secret uri ///", Crypto::Sr25519).expect_err("refused");
        assert!(!err.contains("secret uri ///"));
    }

    #[test]
    fn debug_shows_only_the_public_half() {
        let alice = KeyPair::from_uri("//Alice", Crypto::Sr25519).expect("dev key");
        let shown = format!("{alice:?}");
        assert!(shown.contains("5GrwvaEF"), "{shown}");
        assert!(!shown.contains("secret"), "{shown}");
    }

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
