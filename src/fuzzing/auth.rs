//! Caller authentication: btauth/1 and Epistula v2 headers, bearer JWTs, SS58 addresses.
//!
//! Each body feeds the arbitrary input to the verifier as it arrives from the network, then
//! signs a request made of the same input with a dev key and checks that it verifies and that
//! every mutation of it (a flipped signature bit, another body, another target, the other
//! scheme) is refused: a verifier that accepts what it should not is the bug that matters.

use std::sync::OnceLock;
use std::time::Duration;

use axum::http::{HeaderMap, HeaderName, HeaderValue};

use super::input::Input;
use crate::auth::jwt::{self, JwtKeys, Scope};
use crate::auth::signing::{self, Crypto, KeyPair};
use crate::auth::verdict::{Refusal, Scheme};
use crate::auth::{btauth, epistula, ss58};

/// The verifying gateway's hotkey (Bob's dev key).
const RECEIVER: &str = "5FHneW46xGXgs5mUiveU4sbTyGBzmstUspZC92UhjJM694ty";
/// The injected clock: 2025-12-06, in ns.
const NOW_NS: u128 = 1_765_000_000_000_000_000;
const NOW_MS: u128 = NOW_NS / 1_000_000;

/// Alice's dev keys, derived once: derivation costs more than a verification.
fn alice(crypto: Crypto) -> &'static KeyPair {
    static SR: OnceLock<KeyPair> = OnceLock::new();
    static ED: OnceLock<KeyPair> = OnceLock::new();
    let cell = match crypto {
        Crypto::Sr25519 => &SR,
        Crypto::Ed25519 => &ED,
    };
    cell.get_or_init(|| KeyPair::from_uri("//Alice", crypto).expect("dev key"))
}

/// A request as the network delivers it: `METHOD TARGET`, header lines, a blank line, body.
struct Request<'a> {
    method: String,
    target: String,
    headers: HeaderMap,
    body: &'a [u8],
}

impl<'a> Request<'a> {
    fn parse(data: &'a [u8]) -> Request<'a> {
        let (head, body) = match data.windows(2).position(|w| w == b"\n\n") {
            Some(i) => (&data[..i], &data[i + 2..]),
            None => (data, &[][..]),
        };
        let head = String::from_utf8_lossy(head);
        let mut lines = head.split('\n');
        let (method, target) = lines
            .next()
            .unwrap_or_default()
            .split_once(' ')
            .unwrap_or(("POST", "/v1/reason"));
        let mut headers = HeaderMap::new();
        for line in lines {
            let (name, value) = line.split_once(':').unwrap_or((line, ""));
            // What `http` refuses never reaches a verifier.
            if let (Ok(n), Ok(v)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(value.trim_start()),
            ) {
                headers.append(n, v);
            }
        }
        Request {
            method: method.to_owned(),
            target: target.to_owned(),
            headers,
            body,
        }
    }
}

fn header_map(pairs: Vec<(&'static str, String)>) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (name, value) in pairs {
        headers.insert(
            header_name(name),
            HeaderValue::from_str(&value).expect("signed header values are ASCII"),
        );
    }
    headers
}

/// The `HeaderName` of one of the protocols' mixed-case header constants.
fn header_name(name: &str) -> HeaderName {
    HeaderName::from_bytes(name.as_bytes()).expect("protocol header names are valid")
}

/// Fuzz body: btauth/1.
pub fn btauth(data: &[u8]) {
    let mut input = Input::new(data);
    let choice = input.byte();
    let flip = usize::from(input.byte());
    let age_ms = u128::from(input.byte()) * 32;
    let req = Request::parse(input.rest());

    // 1. The request as it came: whatever the verdict, a partial check agrees with the full one.
    let full = btauth::verify(
        &req.method,
        &req.target,
        &req.headers,
        req.body,
        RECEIVER,
        NOW_NS,
    );
    if let Err(e) = btauth::check_headers(&req.method, &req.target, &req.headers, RECEIVER, NOW_NS)
    {
        assert_eq!(full, Err(e), "check_headers and verify disagree");
    }
    if let Ok(signed) = &full {
        let hotkey = req
            .headers
            .get(btauth::HEADER_HOTKEY)
            .and_then(|v| v.to_str().ok());
        assert_eq!(
            hotkey,
            Some(signed.hotkey.as_str()),
            "verified another hotkey"
        );
    }

    // 2. The same method, target and body, signed: it verifies, and no mutation does.
    let crypto = if choice & 1 == 0 {
        Crypto::Sr25519
    } else {
        Crypto::Ed25519
    };
    let key = alice(crypto);
    let nonce = NOW_NS - age_ms * 1_000_000;
    let signed = |method: &str, target: &str, body: &[u8]| {
        header_map(signing::btauth_headers(
            key, method, target, body, RECEIVER, nonce,
        ))
    };
    let mut headers = signed(&req.method, &req.target, req.body);
    let ok = btauth::verify(
        &req.method,
        &req.target,
        &headers,
        req.body,
        RECEIVER,
        NOW_NS,
    );
    let ok = ok.unwrap_or_else(|e| panic!("a fresh signed request is refused: {e:?}"));
    assert_eq!(ok.hotkey, key.ss58());
    assert_eq!(ok.scheme, Scheme::BtAuth);
    // The method is signed uppercased, so its case does not matter.
    assert!(
        btauth::verify(
            &req.method.to_ascii_lowercase(),
            &req.target,
            &headers,
            req.body,
            RECEIVER,
            NOW_NS
        )
        .is_ok()
    );

    let mut body = req.body.to_vec();
    let mut target = req.target.clone();
    match (choice >> 1) % 4 {
        0 => flip_signature_bit(&mut headers, btauth::HEADER_SIGNATURE, flip),
        1 => body.push(b'x'),
        2 => target.push('x'),
        _ => {
            let other = match crypto {
                Crypto::Sr25519 => "ed25519",
                Crypto::Ed25519 => "sr25519",
            };
            headers.insert(
                header_name(btauth::HEADER_CRYPTO),
                HeaderValue::from_static(other),
            );
        }
    }
    let mutated = btauth::verify(&req.method, &target, &headers, &body, RECEIVER, NOW_NS);
    assert_eq!(
        mutated,
        Err(Refusal::BadSignature),
        "mutation {}",
        (choice >> 1) % 4
    );
}

/// Flips bit `flip % 512` of the `0x`-hex signature in header `name`.
fn flip_signature_bit(headers: &mut HeaderMap, name: &str, flip: usize) {
    let name = header_name(name);
    let value = headers
        .get(&name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mut sig = hex::decode(value.trim_start_matches("0x")).expect("hex signature");
    sig[(flip / 8) % 64] ^= 1 << (flip % 8);
    let value = format!("0x{}", hex::encode(sig));
    headers.insert(name, HeaderValue::from_str(&value).expect("hex"));
}

/// Fuzz body: Epistula v2.
pub fn epistula(data: &[u8]) {
    let mut input = Input::new(data);
    let choice = input.byte();
    let flip = usize::from(input.byte());
    // Within Epistula's window (8 s), which is shorter than btauth's.
    let age_ms = u128::from(input.byte()) * 32 % epistula::MAX_AGE.as_millis();
    let mut id = [0u8; 16];
    id.copy_from_slice(&{
        let mut b = input.bytes(16).to_vec();
        b.resize(16, 0);
        b
    });
    let req = Request::parse(input.rest());

    let full = epistula::verify(&req.headers, req.body, RECEIVER, NOW_MS);
    if let Err(e) = epistula::check_headers(&req.headers, RECEIVER, NOW_MS) {
        assert_eq!(full, Err(e), "check_headers and verify disagree");
    }
    if let Ok(signed) = &full {
        let hotkey = req
            .headers
            .get(epistula::HEADER_SIGNED_BY)
            .and_then(|v| v.to_str().ok());
        assert_eq!(
            hotkey,
            Some(signed.hotkey.as_str()),
            "verified another hotkey"
        );
    }

    let KeyPair::Sr25519(pair) = alice(Crypto::Sr25519) else {
        unreachable!("an sr25519 key")
    };
    // Any textual form of a UUID is accepted, and signed as sent.
    let uuid = uuid::Uuid::from_bytes(id);
    let uuid = match choice % 4 {
        0 => uuid.hyphenated().to_string(),
        1 => uuid.simple().to_string(),
        2 => uuid.braced().to_string(),
        _ => uuid.urn().to_string(),
    };
    let timestamp = NOW_MS - age_ms;
    let mut headers = header_map(signing::epistula_headers(
        pair, req.body, RECEIVER, &uuid, timestamp,
    ));
    let ok = epistula::verify(&headers, req.body, RECEIVER, NOW_MS)
        .unwrap_or_else(|e| panic!("a fresh signed request is refused: {e:?}"));
    assert_eq!(ok.replay_id, uuid);
    assert_eq!(ok.scheme, Scheme::Epistula);

    let mut body = req.body.to_vec();
    match (choice >> 2) % 4 {
        0 => flip_signature_bit(&mut headers, epistula::HEADER_SIGNATURE, flip),
        1 => body.push(b'x'),
        2 => {
            let other = uuid::Uuid::from_bytes(id.map(|b| !b))
                .hyphenated()
                .to_string();
            headers.insert(
                header_name(epistula::HEADER_UUID),
                HeaderValue::from_str(&other).expect("uuid"),
            );
        }
        _ => {
            headers.insert(
                header_name(epistula::HEADER_TIMESTAMP),
                HeaderValue::from_str(&(timestamp + 1).to_string()).expect("decimal"),
            );
        }
    }
    let mutated = epistula::verify(&headers, &body, RECEIVER, NOW_MS);
    assert_eq!(
        mutated,
        Err(Refusal::BadSignature),
        "mutation {}",
        (choice >> 2) % 4
    );
}

const JWT_SECRET: &[u8] = b"fuzz-current-secret-0123456789abcdef";
const JWT_PREVIOUS: &[u8] = b"fuzz-previous-secret-0123456789abcdef";

fn jwt_keys() -> &'static JwtKeys {
    static KEYS: OnceLock<JwtKeys> = OnceLock::new();
    KEYS.get_or_init(|| JwtKeys::new(JWT_SECRET, Duration::from_secs(60)).accepting(JWT_PREVIOUS))
}

/// Fuzz body: bearer tokens (and the CLI's duration and scope parsers, which take text too).
pub fn jwt(data: &[u8]) {
    let mut input = Input::new(data);
    let at = usize::from(input.byte());
    let with = input.byte();
    let text = String::from_utf8_lossy(input.rest());
    let keys = jwt_keys();

    // 1. An arbitrary token is accepted only if one of our secrets made its MAC.
    if keys.verify(&text).is_ok() {
        assert!(
            hs256_matches(&text, JWT_SECRET) || hs256_matches(&text, JWT_PREVIOUS),
            "accepted a token no secret of ours signed"
        );
    }
    if let Ok(d) = jwt::parse_duration(&text) {
        assert!(d.as_secs() > 0);
    }
    if let Ok(scopes) = Scope::parse_list(&text) {
        assert!(!scopes.is_empty() && scopes.len() <= 2);
    }

    // 2. Tokens we issue (for any subject) verify, under both secrets of a rotation...
    let sub: String = text.chars().take(64).collect();
    let now = jwt::now_secs();
    let (token, claims) = keys.issue(&sub, &[Scope::Reason], Duration::from_secs(3600), now);
    assert_eq!(keys.verify(&token), Ok(claims.clone()));
    let old = JwtKeys::new(JWT_PREVIOUS, Duration::from_secs(60));
    let (old_token, old_claims) = old.issue(&sub, &[Scope::Admin], Duration::from_secs(60), now);
    assert_eq!(keys.verify(&old_token), Ok(old_claims));
    // ...and changing any one character of one makes it invalid.
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=";
    let mut bytes = token.into_bytes();
    let at = at % bytes.len();
    let replacement = ALPHABET[usize::from(with) % ALPHABET.len()];
    if bytes[at] != replacement {
        bytes[at] = replacement;
        let mutated = String::from_utf8(bytes).expect("ASCII");
        assert_eq!(
            keys.verify(&mutated),
            Err(jwt::TokenError::Invalid),
            "{mutated}"
        );
    }
}

/// Whether `token`'s third part is the HS256 MAC of its first two under `secret`.
fn hs256_matches(token: &str, secret: &[u8]) -> bool {
    use hmac::{KeyInit, Mac};
    let Some((signed, mac)) = token.rsplit_once('.') else {
        return false;
    };
    let Ok(mut h) = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret) else {
        return false;
    };
    h.update(signed.as_bytes());
    base64url(&h.finalize().into_bytes()) == mac
}

/// Unpadded base64url (RFC 4648 §5), as JWTs spell their parts.
fn base64url(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for group in bytes.chunks(3) {
        let n = group
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..=group.len() {
            out.push(char::from(A[(n >> (18 - 6 * i) & 63) as usize]));
        }
    }
    out
}

/// Fuzz body: SS58 (prefix 42) decoding.
pub fn ss58(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    // Only the canonical spelling of a key decodes, so decoding then encoding is the identity.
    if let Ok(key) = ss58::decode42(&text) {
        assert_eq!(
            ss58::encode42(&key),
            text,
            "a non-canonical address decoded"
        );
        assert!(ss58::is_valid42(&text));
    }
    // Every key's address decodes back to it.
    let mut key = [0u8; 32];
    for (k, b) in key.iter_mut().zip(data) {
        *k = *b;
    }
    let addr = ss58::encode42(&key);
    assert_eq!(ss58::decode42(&addr), Ok(key));
    // Dropping or adding a character is refused.
    assert!(ss58::decode42(&addr[1..]).is_err());
    assert!(ss58::decode42(&format!("{addr}1")).is_err());
}
