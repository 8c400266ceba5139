//! btauth/1: requests signed with `bittensor.http_auth` (X-Bittensor-* headers).
//!
//! The signed payload is the newline-joined `btauth/1`, the crypto scheme name (`sr25519` or
//! `ed25519`, the scheme the signature is made with, not the URL scheme), the uppercase
//! method, the request target with its query exactly as sent, the lowercase hex SHA-256 of
//! the raw body, the decimal nonce, the sender SS58 and the receiver SS58. The vectors in
//! `tests/vectors/btauth_v1.json` (made with bittensor 11.3.0) pin it byte for byte.
//!
//! Checks run in the reference verifier's order, so a request with several faults gets the
//! same verdict: header shape ([`Refusal::Malformed`]), receiver binding
//! ([`Refusal::WrongReceiver`]), freshness ([`Refusal::Stale`]), then the hotkey and the
//! signature under the declared scheme only ([`Refusal::Malformed`] for an undecodable hotkey
//! or a signature of the wrong length, else [`Refusal::BadSignature`]). Everything before the
//! signature check is cheap and needs no body ([`check_headers`]), so floods of garbage cost
//! neither a body read nor curve arithmetic.

use std::io::Write as _;
use std::time::Duration;

use http::{HeaderMap, HeaderName};
use sp_core::{Pair, ed25519, sr25519};

use crate::signing::Crypto;
use crate::verdict::{
    BYTES_CLOSE, BYTES_OPEN, Refusal, Scheme, Signed, body_sha256_hex, freshness, mark_window,
    parse_decimal, parse_signature, sender_key, single_header, verify_raw_or_wrapped,
};

/// How old a nonce may be.
pub const MAX_AGE: Duration = Duration::from_secs(10);
/// How far ahead of our clock a nonce may be (the sender's clock may run fast).
pub const MAX_SKEW: Duration = Duration::from_secs(2);

/// First line of every payload.
pub const PROTOCOL: &str = "btauth/1";
/// The only accepted `X-Bittensor-Version`.
pub const VERSION: &str = "1";

/// Protocol version header.
pub const HEADER_VERSION: &str = "X-Bittensor-Version";
/// Sender SS58 header.
pub const HEADER_HOTKEY: &str = "X-Bittensor-Hotkey";
/// Nonce header (unix nanoseconds, decimal).
pub const HEADER_NONCE: &str = "X-Bittensor-Nonce";
/// Receiver SS58 header; required by this gateway.
pub const HEADER_RECEIVER: &str = "X-Bittensor-Receiver";
/// Crypto scheme header; absent means sr25519.
pub const HEADER_CRYPTO: &str = "X-Bittensor-Crypto";
/// Signature header (`0x` + 128 hex digits).
pub const HEADER_SIGNATURE: &str = "X-Bittensor-Signature";

// Pre-parsed lowercase names: lookups skip parsing and case-folding the name each request.
const H_VERSION: HeaderName = HeaderName::from_static("x-bittensor-version");
const H_HOTKEY: HeaderName = HeaderName::from_static("x-bittensor-hotkey");
const H_NONCE: HeaderName = HeaderName::from_static("x-bittensor-nonce");
const H_RECEIVER: HeaderName = HeaderName::from_static("x-bittensor-receiver");
const H_CRYPTO: HeaderName = HeaderName::from_static("x-bittensor-crypto");
const H_SIGNATURE: HeaderName = HeaderName::from_static("x-bittensor-signature");

/// Prefix shared by every btauth header name (as stored by `HeaderMap`, lowercase).
const HEADER_PREFIX: &str = "x-bittensor-";

/// True if any X-Bittensor-* header is present (case-insensitive).
pub fn present(headers: &HeaderMap) -> bool {
    headers
        .keys()
        .any(|name| name.as_str().starts_with(HEADER_PREFIX))
}

/// Parses `X-Bittensor-Crypto` as the bittensor SDK does: a scheme name in any case with
/// surrounding whitespace, or its numeric code (0 = ed25519, 1 = sr25519).
fn parse_crypto(value: &str) -> Option<Crypto> {
    let value = value.trim_matches(|c: char| c.is_ascii_whitespace());
    if value.eq_ignore_ascii_case("sr25519") {
        return Some(Crypto::Sr25519);
    }
    if value.eq_ignore_ascii_case("ed25519") {
        return Some(Crypto::Ed25519);
    }
    match parse_decimal(value)? {
        0 => Some(Crypto::Ed25519),
        1 => Some(Crypto::Sr25519),
        _ => None,
    }
}

/// The request fields a btauth/1 payload is made of (the body enters as its hash).
struct Fields<'a> {
    crypto: Crypto,
    method: &'a str,
    path_and_query: &'a str,
    nonce: u128,
    sender: &'a str,
    receiver: &'a str,
}

impl Fields<'_> {
    /// Upper bound of the payload length, for one exact allocation.
    fn capacity(&self) -> usize {
        // protocol + scheme + hash + a 39-digit nonce + 7 newlines.
        PROTOCOL.len()
            + 7
            + 64
            + 39
            + 7
            + self.method.len()
            + self.path_and_query.len()
            + self.sender.len()
            + self.receiver.len()
    }

    /// Appends the payload to `out`.
    ///
    /// The nonce is written in canonical decimal (the reference signs `str(int(nonce))`), so
    /// a nonce header with leading zeros verifies against the same signature; that is why
    /// the replay id is canonical too.
    fn write(&self, out: &mut Vec<u8>, body_hash_hex: &[u8; 64]) {
        out.extend_from_slice(PROTOCOL.as_bytes());
        out.push(b'\n');
        out.extend_from_slice(self.crypto.name().as_bytes());
        out.push(b'\n');
        out.extend(self.method.bytes().map(|b| b.to_ascii_uppercase()));
        out.push(b'\n');
        out.extend_from_slice(self.path_and_query.as_bytes());
        out.push(b'\n');
        out.extend_from_slice(body_hash_hex);
        out.push(b'\n');
        // Writing into a Vec cannot fail.
        let _ = write!(out, "{}", self.nonce);
        out.push(b'\n');
        out.extend_from_slice(self.sender.as_bytes());
        out.push(b'\n');
        out.extend_from_slice(self.receiver.as_bytes());
    }
}

/// The exact bytes a btauth/1 request signs.
///
/// Public so clients and tests in other crates can pin the payload byte for byte.
pub fn payload(
    crypto: Crypto,
    method: &str,
    path_and_query: &str,
    body: &[u8],
    nonce_ns: u128,
    sender: &str,
    receiver: &str,
) -> Vec<u8> {
    let fields = Fields {
        crypto,
        method,
        path_and_query,
        nonce: nonce_ns,
        sender,
        receiver,
    };
    let mut out = Vec::with_capacity(fields.capacity());
    fields.write(&mut out, &body_sha256_hex(body));
    out
}

/// Verifies; `receiver` is the gateway's own SS58 hotkey; `now_ns` unix ns (injected clock).
///
/// `path_and_query` is the request target as received (path plus `?query`, undecoded) and
/// `body` the raw body bytes. On success the caller must still record the replay mark.
/// The same as [`check_headers`] followed by [`HeadersChecked::verify_body`].
pub fn verify(
    method: &str,
    path_and_query: &str,
    headers: &HeaderMap,
    body: &[u8],
    receiver: &str,
    now_ns: u128,
) -> Result<Signed, Refusal> {
    check_headers(method, path_and_query, headers, receiver, now_ns)?.verify_body(body)
}

/// A request whose headers passed every check; only the signature over the body is left.
pub struct HeadersChecked<'a> {
    fields: Fields<'a>,
    public: [u8; 32],
    signature: [u8; 64],
}

/// Every check that needs no body: header shape, receiver binding, freshness, the hotkey and
/// the signature's length, in the reference order. Run before the body is read, so a
/// refused request costs no body read.
pub fn check_headers<'a>(
    method: &'a str,
    path_and_query: &'a str,
    headers: &'a HeaderMap,
    receiver: &'a str,
    now_ns: u128,
) -> Result<HeadersChecked<'a>, Refusal> {
    if single_header(headers, &H_VERSION)? != Some(VERSION) {
        return Err(Refusal::Malformed);
    }
    let sender = single_header(headers, &H_HOTKEY)?
        .filter(|s| !s.is_empty())
        .ok_or(Refusal::Malformed)?;
    let nonce = single_header(headers, &H_NONCE)?
        .and_then(parse_decimal)
        .ok_or(Refusal::Malformed)?;
    let crypto = match single_header(headers, &H_CRYPTO)? {
        None => Crypto::Sr25519,
        Some(value) => parse_crypto(value).ok_or(Refusal::Malformed)?,
    };
    let signature =
        parse_signature(single_header(headers, &H_SIGNATURE)?.ok_or(Refusal::Malformed)?)?;

    // Binding is required: an unbound request could be replayed against any other service.
    match single_header(headers, &H_RECEIVER)? {
        Some(bound) if bound == receiver => {}
        _ => return Err(Refusal::WrongReceiver),
    }

    freshness(nonce, now_ns, MAX_AGE, MAX_SKEW, 1_000_000_000)?;

    let public = sender_key(sender)?;
    let signature = signature.ok_or(Refusal::Malformed)?;
    Ok(HeadersChecked {
        fields: Fields {
            crypto,
            method,
            path_and_query,
            nonce,
            sender,
            receiver,
        },
        public,
        signature,
    })
}

impl HeadersChecked<'_> {
    /// Verifies the signature over the payload with `body`'s hash.
    pub fn verify_body(self, body: &[u8]) -> Result<Signed, Refusal> {
        let fields = &self.fields;
        let mut signed =
            Vec::with_capacity(BYTES_OPEN.len() + fields.capacity() + BYTES_CLOSE.len());
        signed.extend_from_slice(BYTES_OPEN);
        fields.write(&mut signed, &body_sha256_hex(body));
        signed.extend_from_slice(BYTES_CLOSE);

        // Only the declared scheme: trying the other one would let a caller pick whichever
        // verification happens to succeed for a key.
        match fields.crypto {
            Crypto::Sr25519 => {
                let public = sr25519::Public::from_raw(self.public);
                let signature = sr25519::Signature::from_raw(self.signature);
                verify_raw_or_wrapped(&signed, |m| sr25519::Pair::verify(&signature, m, &public))?;
            }
            Crypto::Ed25519 => {
                let public = ed25519::Public::from_raw(self.public);
                let signature = ed25519::Signature::from_raw(self.signature);
                verify_raw_or_wrapped(&signed, |m| ed25519::Pair::verify(&signature, m, &public))?;
            }
        }

        Ok(Signed {
            hotkey: fields.sender.to_owned(),
            replay_id: fields.nonce.to_string(),
            mark_ttl: mark_window(MAX_AGE, MAX_SKEW),
            scheme: Scheme::BtAuth,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crypto_header_parsing_follows_the_sdk() {
        for (value, expected) in [
            ("sr25519", Some(Crypto::Sr25519)),
            ("SR25519", Some(Crypto::Sr25519)),
            (" ed25519 ", Some(Crypto::Ed25519)),
            ("Ed25519", Some(Crypto::Ed25519)),
            ("0", Some(Crypto::Ed25519)),
            ("1", Some(Crypto::Sr25519)),
            ("2", None),
            ("ecdsa", None),
            ("", None),
            ("sr25519x", None),
        ] {
            assert_eq!(parse_crypto(value), expected, "{value:?}");
        }
    }

    #[test]
    fn payload_is_newline_joined_with_canonical_fields() {
        let bytes = payload(Crypto::Ed25519, "post", "/a?b=1", b"", 7, "S", "R");
        let text = String::from_utf8(bytes).expect("utf-8");
        assert_eq!(
            text,
            "btauth/1\ned25519\nPOST\n/a?b=1\n\
             e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\n7\nS\nR"
        );
        let fields = Fields {
            crypto: Crypto::Ed25519,
            method: "post",
            path_and_query: "/a?b=1",
            nonce: u128::MAX,
            sender: "S",
            receiver: "R",
        };
        let mut longest = Vec::new();
        fields.write(&mut longest, &[b'0'; 64]);
        assert_eq!(longest.len(), fields.capacity());
    }

    #[test]
    fn present_sees_any_bittensor_header_in_any_case() {
        let mut headers = HeaderMap::new();
        assert!(!present(&headers));
        headers.insert("authorization", "Bearer x".parse().expect("value"));
        assert!(!present(&headers));
        headers.insert(
            HeaderName::from_bytes(b"X-Bittensor-Whatever").expect("name"),
            "1".parse().expect("value"),
        );
        assert!(present(&headers));
    }
}
