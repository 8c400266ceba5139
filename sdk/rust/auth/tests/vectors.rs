//! The crate against the reference vectors signed by the real bittensor SDK
//! (`tests/vectors/*.json` at the repository root): every case gets its verdict, the crate's
//! signed bytes are the SDK's, and the crate's own signatures of the same requests verify.

use affine_reason_auth::signing::{btauth_headers, epistula_headers};
use affine_reason_auth::{Crypto, KeyPair, btauth, epistula};
use base64::Engine as _;
use http::{HeaderMap, HeaderName, HeaderValue};
use serde_json::Value;

fn load(name: &str) -> Value {
    let path = format!(
        "{}/../../../tests/vectors/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn body(case: &Value) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(case["body_b64"].as_str().expect("body_b64"))
        .expect("base64 body")
}

fn map<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (name, value) in pairs {
        headers.append(
            HeaderName::from_bytes(name.as_bytes()).expect("name"),
            HeaderValue::from_str(value).expect("value"),
        );
    }
    headers
}

fn case_headers(case: &Value) -> HeaderMap {
    map(case["headers"]
        .as_object()
        .expect("headers")
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str().expect("string header"))))
}

fn num(case: &Value, field: &str) -> u128 {
    case[field]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{field} of {}", case["name"]))
}

/// A header of a case, by case-insensitive name (some cases spell names in lowercase).
fn header<'a>(case: &'a Value, name: &str) -> Option<&'a str> {
    case["headers"]
        .as_object()?
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .and_then(|(_, v)| v.as_str())
}

fn verdict<T>(r: &Result<T, affine_reason_auth::Refusal>) -> &'static str {
    match r {
        Ok(_) => "ok",
        Err(refusal) => refusal.verdict(),
    }
}

#[test]
fn every_btauth_vector_gets_its_verdict() {
    let file = load("btauth_v1.json");
    let receiver = file["self_hotkey_ss58"].as_str().expect("receiver");
    let cases = file["cases"].as_array().expect("cases");
    assert!(cases.len() >= 20);
    for case in cases {
        let got = btauth::verify(
            case["method"].as_str().expect("method"),
            case["path"].as_str().expect("path"),
            &case_headers(case),
            &body(case),
            receiver,
            num(case, "now_ns"),
        );
        assert_eq!(verdict(&got), case["expect"], "{}", case["name"]);
    }
}

#[test]
fn every_epistula_vector_gets_its_verdict_and_message() {
    let file = load("epistula_v2.json");
    let receiver = file["self_hotkey_ss58"].as_str().expect("receiver");
    for case in file["cases"].as_array().expect("cases") {
        let got = epistula::verify(
            &case_headers(case),
            &body(case),
            receiver,
            num(case, "now_ms"),
        );
        assert_eq!(verdict(&got), case["expect"], "{}", case["name"]);
        if case["expect"] == "ok" {
            let message = epistula::message(
                &body(case),
                header(case, "Epistula-Uuid").expect("uuid"),
                header(case, "Epistula-Timestamp")
                    .and_then(|t| t.parse().ok())
                    .expect("timestamp"),
                header(case, "Epistula-Signed-For").expect("signed for"),
            );
            assert_eq!(
                String::from_utf8(message).expect("utf-8"),
                case["signed_message"].as_str().expect("signed_message"),
                "{}",
                case["name"]
            );
        }
    }
}

/// The vectors' keys are the Substrate dev accounts; this maps an address to its key.
fn dev_key(ss58: &str) -> KeyPair {
    for uri in ["//Alice", "//Bob", "//Charlie"] {
        for crypto in [Crypto::Sr25519, Crypto::Ed25519] {
            let key = KeyPair::from_uri(uri, crypto).expect("dev key");
            if key.ss58() == ss58 {
                return key;
            }
        }
    }
    panic!("no dev key for {ss58}")
}

#[test]
fn the_crate_signs_what_the_sdk_signs() {
    let file = load("btauth_v1.json");
    let receiver = file["self_hotkey_ss58"].as_str().expect("receiver");
    let mut checked = 0;
    for case in file["cases"].as_array().expect("cases") {
        if case["expect"] != "ok" {
            continue;
        }
        let key = dev_key(header(case, "X-Bittensor-Hotkey").expect("hotkey"));
        let method = case["method"].as_str().expect("method");
        let path = case["path"].as_str().expect("path");
        let nonce: u128 = header(case, "X-Bittensor-Nonce")
            .and_then(|n| n.parse().ok())
            .expect("nonce");
        let signed = btauth_headers(&key, method, path, &body(case), receiver, nonce);
        let ours = |name: &str| {
            signed
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.as_str())
        };
        // The same headers as the SDK, signature apart.
        for name in [
            btauth::HEADER_VERSION,
            btauth::HEADER_HOTKEY,
            btauth::HEADER_NONCE,
            btauth::HEADER_RECEIVER,
        ] {
            assert_eq!(ours(name), header(case, name), "{} {name}", case["name"]);
        }
        // ed25519 signatures are deterministic: byte for byte the SDK's.
        if key.crypto() == Crypto::Ed25519 {
            assert_eq!(
                ours(btauth::HEADER_SIGNATURE),
                header(case, btauth::HEADER_SIGNATURE),
                "{}",
                case["name"]
            );
        }
        // sr25519 ones are randomised: ours must verify where the SDK's did.
        let got = btauth::verify(
            method,
            path,
            &map(signed.iter().map(|(n, v)| (*n, v.as_str()))),
            &body(case),
            receiver,
            num(case, "now_ns"),
        )
        .unwrap_or_else(|e| panic!("{}: {e}", case["name"]));
        assert_eq!(got.hotkey, key.ss58());
        checked += 1;
    }
    assert!(checked >= 5, "{checked} ok cases");
}

#[test]
fn the_crate_signs_epistula_as_the_vectors_do() {
    let file = load("epistula_v2.json");
    let receiver = file["self_hotkey_ss58"].as_str().expect("receiver");
    for case in file["cases"].as_array().expect("cases") {
        if case["expect"] != "ok" {
            continue;
        }
        let KeyPair::Sr25519(pair) = dev_key(header(case, "Epistula-Signed-By").expect("by"))
        else {
            panic!("Epistula is sr25519")
        };
        let uuid = header(case, "Epistula-Uuid").expect("uuid");
        let ts: u128 = header(case, "Epistula-Timestamp")
            .and_then(|t| t.parse().ok())
            .expect("timestamp");
        let signed = epistula_headers(&pair, &body(case), receiver, uuid, ts);
        let got = epistula::verify(
            &map(signed.iter().map(|(n, v)| (*n, v.as_str()))),
            &body(case),
            receiver,
            num(case, "now_ms"),
        )
        .unwrap_or_else(|e| panic!("{}: {e}", case["name"]));
        assert_eq!(got.replay_id, uuid);
    }
}
