//! btauth/1 signing (`--sign-btauth`): the headers `bittensor.http_auth` puts on a request.
//!
//! The signed bytes are the eight newline-joined lines of docs/API.md §3.1 (protocol, crypto
//! scheme, uppercase method, path and query, hex SHA-256 of the body, nonce, sender, receiver),
//! signed raw with sr25519, as the SDK's `Keypair.sign` does. Every request gets a fresh nonce
//! (unix nanoseconds, strictly increasing within a run) and its own signature, and the body is
//! hashed each time: that is the per-request work of a real signed caller, and the gateway
//! refuses a repeated nonce anyway.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use hyper::header::{HeaderName, HeaderValue};
use sha2::{Digest, Sha256};
use sp_core::crypto::{AccountId32, Ss58AddressFormat, Ss58Codec};
use sp_core::{Pair, sr25519};

/// The gateway's dev identity (`//Bob`), its receiver hotkey when `GATEWAY_HOTKEY` is unset.
pub const DEV_RECEIVER: &str = "5FHneW46xGXgs5mUiveU4sbTyGBzmstUspZC92UhjJM694ty";

/// The SS58 network prefix the gateway's canonical addresses use.
const SS58_PREFIX: u16 = 42;

const H_VERSION: HeaderName = HeaderName::from_static("x-bittensor-version");
const H_HOTKEY: HeaderName = HeaderName::from_static("x-bittensor-hotkey");
const H_NONCE: HeaderName = HeaderName::from_static("x-bittensor-nonce");
const H_RECEIVER: HeaderName = HeaderName::from_static("x-bittensor-receiver");
const H_SIGNATURE: HeaderName = HeaderName::from_static("x-bittensor-signature");

/// One sr25519 identity signing every request of a run (no `Debug`: it holds the key pair).
pub struct Signer {
    pair: sr25519::Pair,
    sender: String,
    receiver: String,
    /// The last nonce handed out, so two requests signed in the same nanosecond still differ.
    last_nonce: AtomicU64,
}

impl Signer {
    /// A signer for `secret` (a `0x` hex seed or a secret URI such as `//Alice`), bound to
    /// `receiver` (the gateway's SS58 hotkey).
    pub fn new(secret: &str, receiver: &str) -> Result<Self, String> {
        // The error names no part of the secret.
        let pair = sr25519::Pair::from_string(secret, None)
            .map_err(|_| "--sign-btauth is neither a 0x hex seed nor a secret URI".to_owned())?;
        let sender = AccountId32::from(pair.public().0)
            .to_ss58check_with_version(Ss58AddressFormat::custom(SS58_PREFIX));
        Ok(Self {
            pair,
            sender,
            receiver: receiver.to_owned(),
            last_nonce: AtomicU64::new(0),
        })
    }

    /// The sender's SS58 hotkey (the account id the gateway sees).
    pub fn sender(&self) -> &str {
        &self.sender
    }

    /// A fresh nonce: unix time in nanoseconds, above every nonce handed out before.
    fn nonce(&self) -> u64 {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
        let previous = self
            .last_nonce
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |last| {
                Some(now.max(last + 1))
            })
            // The closure always returns Some.
            .unwrap_or(now);
        now.max(previous + 1)
    }

    /// The five X-Bittensor-* headers for one request, with a new nonce and signature.
    pub fn headers(
        &self,
        method: &str,
        path_and_query: &str,
        body: &[u8],
    ) -> [(HeaderName, HeaderValue); 5] {
        let nonce = self.nonce();
        let message = payload(
            method,
            path_and_query,
            body,
            nonce,
            &self.sender,
            &self.receiver,
        );
        let signature = format!("0x{}", hex::encode(self.pair.sign(&message).0));
        let value = |s: &str| {
            // SS58, decimal and hex are all visible ASCII.
            HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static(""))
        };
        [
            (H_VERSION, HeaderValue::from_static("1")),
            (H_HOTKEY, value(&self.sender)),
            (H_NONCE, HeaderValue::from(nonce)),
            (H_RECEIVER, value(&self.receiver)),
            (H_SIGNATURE, value(&signature)),
        ]
    }
}

/// The exact bytes a btauth/1 request signs (sr25519).
pub fn payload(
    method: &str,
    path_and_query: &str,
    body: &[u8],
    nonce: u64,
    sender: &str,
    receiver: &str,
) -> Vec<u8> {
    let body_hash = hex::encode(Sha256::digest(body));
    format!(
        "btauth/1\nsr25519\n{}\n{path_and_query}\n{body_hash}\n{nonce}\n{sender}\n{receiver}",
        method.to_ascii_uppercase()
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use serde_json::Value;

    fn vectors() -> Value {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../tests/vectors/btauth_v1.json"
        );
        let text = std::fs::read_to_string(path).expect("the btauth vectors");
        serde_json::from_str(&text).expect("vector JSON")
    }

    fn public_of(ss58: &str) -> sr25519::Public {
        let account = AccountId32::from_ss58check(ss58).expect("ss58");
        let raw: &[u8; 32] = account.as_ref();
        sr25519::Public::from_raw(*raw)
    }

    #[test]
    fn payload_matches_what_the_sdk_signed() {
        // The SDK's own signatures must verify over this module's payload: the format is then
        // the SDK's byte for byte (sr25519 signatures are randomised, so they cannot be
        // compared directly).
        let vectors = vectors();
        let mut checked = 0;
        for case in vectors["cases"].as_array().expect("cases") {
            // Only what the SDK's `Keypair.sign` makes: sr25519 over the raw payload (the
            // `<Bytes>`-wrapped case is polkadot.js, which loadgen does not imitate).
            if case["expect"] != "ok"
                || case["headers"].get("X-Bittensor-Crypto").is_some()
                || case["name"] == "bytes_wrapped_signature_ok"
            {
                continue;
            }
            let h = case["headers"].as_object().expect("headers");
            // Header names in any case; a case without one of them is not a plain signed call.
            let header = |k: &str| {
                h.iter()
                    .find(|(name, _)| name.eq_ignore_ascii_case(k))
                    .and_then(|(_, v)| v.as_str())
                    .map(str::to_owned)
            };
            let names = [
                "X-Bittensor-Nonce",
                "X-Bittensor-Hotkey",
                "X-Bittensor-Receiver",
                "X-Bittensor-Signature",
            ];
            if names.iter().any(|k| header(k).is_none()) {
                continue;
            }
            let text = |k: &str| header(k).unwrap_or_default();
            let Ok(nonce) = text("X-Bittensor-Nonce").parse::<u64>() else {
                continue;
            };
            if nonce.to_string() != text("X-Bittensor-Nonce") {
                continue; // non-canonical spellings are the verifier's business
            }
            let body = STANDARD
                .decode(case["body_b64"].as_str().expect("body"))
                .expect("base64 body");
            let message = payload(
                case["method"].as_str().expect("method"),
                case["path"].as_str().expect("path"),
                &body,
                nonce,
                &text("X-Bittensor-Hotkey"),
                &text("X-Bittensor-Receiver"),
            );
            let signature = hex::decode(text("X-Bittensor-Signature").trim_start_matches("0x"))
                .expect("hex signature");
            let Ok(raw) = <[u8; 64]>::try_from(signature.as_slice()) else {
                continue;
            };
            let signature = sr25519::Signature::from_raw(raw);
            assert!(
                sr25519::Pair::verify(
                    &signature,
                    &message,
                    &public_of(&text("X-Bittensor-Hotkey"))
                ),
                "case {}",
                case["name"]
            );
            checked += 1;
        }
        assert!(checked >= 6, "only {checked} vector cases checked");
    }

    #[test]
    fn every_request_gets_a_new_nonce_and_a_valid_signature() {
        let signer = Signer::new("//Alice", DEV_RECEIVER).expect("signer");
        assert_eq!(
            signer.sender(),
            "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY"
        );
        let body = br#"{"input":"2+2?"}"#;
        let first = signer.headers("post", "/v1/reason", body);
        let second = signer.headers("post", "/v1/reason", body);
        let get = |headers: &[(HeaderName, HeaderValue); 5], name: &str| {
            headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.to_str().expect("ascii").to_owned())
                .expect(name)
        };
        let n1: u64 = get(&first, "x-bittensor-nonce").parse().expect("nonce");
        let n2: u64 = get(&second, "x-bittensor-nonce").parse().expect("nonce");
        assert!(n2 > n1, "nonces {n1} then {n2}");
        assert_eq!(get(&first, "x-bittensor-receiver"), DEV_RECEIVER);
        assert_eq!(get(&first, "x-bittensor-version"), "1");
        let message = payload(
            "POST",
            "/v1/reason",
            body,
            n2,
            signer.sender(),
            DEV_RECEIVER,
        );
        let signature = hex::decode(&get(&second, "x-bittensor-signature")[2..]).expect("hex");
        let signature = sr25519::Signature::from_raw(signature.try_into().expect("64 bytes"));
        assert!(sr25519::Pair::verify(
            &signature,
            &message,
            &public_of(signer.sender())
        ));
    }

    #[test]
    fn hex_seeds_work_and_bad_secrets_name_nothing() {
        let seed = format!("0x{}", "11".repeat(32));
        assert!(Signer::new(&seed, DEV_RECEIVER).is_ok());
        let Err(err) = Signer::new("not a secret hunter2", DEV_RECEIVER) else {
            panic!("a bad secret was accepted");
        };
        assert!(!err.contains("hunter2"), "{err}");
    }
}
