//! Epistula v2: requests signed with Epistula-* headers (sr25519 only).
//!
//! The signed message is `"{sha256(body) hex}.{uuid}.{timestamp}.{signed_for}"`, signed raw
//! or wrapped in `<Bytes>…</Bytes>` (polkadot.js `signRaw`). The vectors in
//! `tests/vectors/epistula_v2.json` pin it. Checks run in the same order as btauth/1: header
//! shape, receiver binding, freshness, then hotkey and signature.

use std::io::Write as _;
use std::time::Duration;

use http::{HeaderMap, HeaderName};
use sp_core::{Pair, sr25519};

use crate::verdict::{
    BYTES_CLOSE, BYTES_OPEN, Refusal, Scheme, Signed, body_sha256_hex, freshness, mark_window,
    parse_decimal, parse_signature, sender_key, single_header, verify_raw_or_wrapped,
};

/// How old a timestamp may be.
pub const MAX_AGE: Duration = Duration::from_secs(8);
/// How far ahead of our clock a timestamp may be.
pub const MAX_SKEW: Duration = Duration::from_secs(2);

/// The only accepted `Epistula-Version`.
pub const VERSION: &str = "2";

/// Protocol version header.
pub const HEADER_VERSION: &str = "Epistula-Version";
/// Timestamp header (unix milliseconds, decimal).
pub const HEADER_TIMESTAMP: &str = "Epistula-Timestamp";
/// Request UUID header, the replay identity.
pub const HEADER_UUID: &str = "Epistula-Uuid";
/// Sender SS58 header.
pub const HEADER_SIGNED_BY: &str = "Epistula-Signed-By";
/// Receiver SS58 header; required by this gateway.
pub const HEADER_SIGNED_FOR: &str = "Epistula-Signed-For";
/// Signature header (`0x` + 128 hex digits).
pub const HEADER_SIGNATURE: &str = "Epistula-Request-Signature";

const H_VERSION: HeaderName = HeaderName::from_static("epistula-version");
const H_TIMESTAMP: HeaderName = HeaderName::from_static("epistula-timestamp");
const H_UUID: HeaderName = HeaderName::from_static("epistula-uuid");
const H_SIGNED_BY: HeaderName = HeaderName::from_static("epistula-signed-by");
const H_SIGNED_FOR: HeaderName = HeaderName::from_static("epistula-signed-for");
const H_SIGNATURE: HeaderName = HeaderName::from_static("epistula-request-signature");

/// Prefix shared by every Epistula header name (as stored by `HeaderMap`, lowercase).
const HEADER_PREFIX: &str = "epistula-";

/// True if any Epistula-* header is present (case-insensitive).
pub fn present(headers: &HeaderMap) -> bool {
    headers
        .keys()
        .any(|name| name.as_str().starts_with(HEADER_PREFIX))
}

/// Appends the Epistula message to `out`; the timestamp in canonical decimal, as the usual
/// verifiers rebuild it from `int(timestamp)`.
fn write_message(out: &mut Vec<u8>, body_hash_hex: &[u8; 64], uuid: &str, ts: u128, for_: &str) {
    out.extend_from_slice(body_hash_hex);
    out.push(b'.');
    out.extend_from_slice(uuid.as_bytes());
    out.push(b'.');
    // Writing into a Vec cannot fail.
    let _ = write!(out, "{ts}");
    out.push(b'.');
    out.extend_from_slice(for_.as_bytes());
}

/// Upper bound of the message length: hash, three dots, a 39-digit timestamp.
fn message_capacity(uuid: &str, signed_for: &str) -> usize {
    64 + 3 + 39 + uuid.len() + signed_for.len()
}

/// The exact bytes an Epistula v2 request signs.
pub fn message(body: &[u8], uuid: &str, timestamp_ms: u128, signed_for: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(message_capacity(uuid, signed_for));
    write_message(
        &mut out,
        &body_sha256_hex(body),
        uuid,
        timestamp_ms,
        signed_for,
    );
    out
}

/// Verifies; `receiver` is the gateway's own SS58 hotkey; `now_ms` unix ms (injected clock).
///
/// On success the caller must still record the replay mark `(hotkey, uuid)`. The same as
/// [`check_headers`] followed by [`HeadersChecked::verify_body`].
pub fn verify(
    headers: &HeaderMap,
    body: &[u8],
    receiver: &str,
    now_ms: u128,
) -> Result<Signed, Refusal> {
    check_headers(headers, receiver, now_ms)?.verify_body(body)
}

/// A request whose headers passed every check; only the signature over the body is left.
pub struct HeadersChecked<'a> {
    uuid: &'a str,
    timestamp: u128,
    signed_by: &'a str,
    receiver: &'a str,
    public: [u8; 32],
    signature: [u8; 64],
}

/// Every check that needs no body (header shape, receiver binding, freshness, hotkey,
/// signature length), so a refused request costs no body read.
pub fn check_headers<'a>(
    headers: &'a HeaderMap,
    receiver: &'a str,
    now_ms: u128,
) -> Result<HeadersChecked<'a>, Refusal> {
    if single_header(headers, &H_VERSION)? != Some(VERSION) {
        return Err(Refusal::Malformed);
    }
    let timestamp = single_header(headers, &H_TIMESTAMP)?
        .and_then(parse_decimal)
        .ok_or(Refusal::Malformed)?;
    // A real UUID (any of its textual forms) keeps replay ids short and well-formed; the
    // text itself is signed, so it is kept as sent.
    let uuid = single_header(headers, &H_UUID)?
        .filter(|u| uuid::Uuid::try_parse(u).is_ok())
        .ok_or(Refusal::Malformed)?;
    let signed_by = single_header(headers, &H_SIGNED_BY)?
        .filter(|s| !s.is_empty())
        .ok_or(Refusal::Malformed)?;
    let signature =
        parse_signature(single_header(headers, &H_SIGNATURE)?.ok_or(Refusal::Malformed)?)?;

    match single_header(headers, &H_SIGNED_FOR)? {
        Some(bound) if bound == receiver => {}
        _ => return Err(Refusal::WrongReceiver),
    }

    freshness(timestamp, now_ms, MAX_AGE, MAX_SKEW, 1_000)?;

    let public = sender_key(signed_by)?;
    let signature = signature.ok_or(Refusal::Malformed)?;
    Ok(HeadersChecked {
        uuid,
        timestamp,
        signed_by,
        receiver,
        public,
        signature,
    })
}

impl HeadersChecked<'_> {
    /// Verifies the signature over the message with `body`'s hash.
    pub fn verify_body(self, body: &[u8]) -> Result<Signed, Refusal> {
        let mut signed = Vec::with_capacity(
            BYTES_OPEN.len() + message_capacity(self.uuid, self.receiver) + BYTES_CLOSE.len(),
        );
        signed.extend_from_slice(BYTES_OPEN);
        write_message(
            &mut signed,
            &body_sha256_hex(body),
            self.uuid,
            self.timestamp,
            self.receiver,
        );
        signed.extend_from_slice(BYTES_CLOSE);

        let public = sr25519::Public::from_raw(self.public);
        let signature = sr25519::Signature::from_raw(self.signature);
        verify_raw_or_wrapped(&signed, |m| sr25519::Pair::verify(&signature, m, &public))?;

        Ok(Signed {
            hotkey: self.signed_by.to_owned(),
            replay_id: self.uuid.to_owned(),
            mark_ttl: mark_window(MAX_AGE, MAX_SKEW),
            scheme: Scheme::Epistula,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_matches_the_documented_format() {
        let bytes = message(b"", "u", 12, "R");
        assert_eq!(
            bytes,
            b"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855.u.12.R"
        );
        assert!(bytes.len() <= message_capacity("u", "R"));
    }

    #[test]
    fn present_sees_any_epistula_header_in_any_case() {
        let mut headers = HeaderMap::new();
        headers.insert("x-bittensor-version", "1".parse().expect("value"));
        assert!(!present(&headers));
        headers.insert(
            HeaderName::from_bytes(b"EPISTULA-UUID").expect("name"),
            "x".parse().expect("value"),
        );
        assert!(present(&headers));
    }
}
