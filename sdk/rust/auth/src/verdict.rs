//! The outcome of verifying a signed request, shared by btauth/1 and Epistula v2.
//!
//! Both verifiers answer with the same two types so the layer that calls them (and the replay
//! store behind it) does not care which protocol a caller used.

use std::time::Duration;

/// Why a signed request was refused. Names follow the vectors' `expect` values.
///
/// A refusal never carries the offending value: the caller is unauthenticated, so nothing
/// beyond the category goes back to it (or into logs by accident).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// A required header is missing, repeated, not text, or not in its documented shape
    /// (also an unsupported protocol version or crypto scheme, or an undecodable hotkey).
    #[error("malformed signed request")]
    Malformed,
    /// The signature does not verify against the claimed hotkey under the declared scheme.
    #[error("signature does not verify")]
    BadSignature,
    /// The timestamp or nonce is outside the freshness window (too old or too far ahead).
    #[error("signed request is outside the freshness window")]
    Stale,
    /// The sender's address is a valid prefix-42 address in a non-canonical spelling (SS58's
    /// two-byte prefix form). A [`Refusal::Malformed`] in the vectors' terms, kept apart so
    /// the caller is told why an address that decodes elsewhere is refused here.
    #[error("the sender's SS58 address is not in its canonical form")]
    NonCanonicalHotkey,
    /// The request is not bound to this gateway's hotkey (bound elsewhere, or not at all).
    #[error("signed request is not bound to this gateway")]
    WrongReceiver,
}

impl Refusal {
    /// The verdict string used in the test vectors and in error codes.
    pub fn verdict(self) -> &'static str {
        match self {
            Refusal::Malformed | Refusal::NonCanonicalHotkey => "malformed",
            Refusal::BadSignature => "bad_signature",
            Refusal::Stale => "stale",
            Refusal::WrongReceiver => "wrong_receiver",
        }
    }
}

/// Which protocol authenticated a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// `bittensor.http_auth` (btauth/1), X-Bittensor-* headers.
    BtAuth,
    /// Epistula v2, Epistula-* headers.
    Epistula,
}

/// A verified signed request.
///
/// Verification is pure CPU work; the caller still has to record `(hotkey, replay_id)` in the
/// replay store (for `mark_ttl`) and refuse the request if that mark already existed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    /// The sender's SS58 address: prefix 42 in its canonical spelling (any other spelling of
    /// the key is refused), so one key is always one identity.
    pub hotkey: String,
    /// The replay identity within the hotkey: the canonical decimal nonce for btauth/1 (so
    /// `007` and `7`, which sign the same payload, collide), the UUID as signed for Epistula.
    pub replay_id: String,
    /// How long, from now, a replay mark must live to cover every moment at which this
    /// replica could still accept the stamp: the age limit plus how far ahead a stamp may be,
    /// plus one second of margin for clock granularity. Measured from when the mark is written,
    /// not from the stamp, so it does not depend on our clock agreeing with the sender's. The
    /// authentication layer adds the allowed clock difference between replicas.
    pub mark_ttl: Duration,
    /// The protocol that authenticated the request.
    pub scheme: Scheme,
}

/// Checks a timestamp against a window.
///
/// All values are in one unit (`unit_per_sec` of them per second): nanoseconds for btauth/1,
/// milliseconds for Epistula. `stamp` may be at most `max_age` old and `max_skew` ahead;
/// both limits are inclusive, as in the reference verifier (`now - stamp > max_age` is stale).
pub(crate) fn freshness(
    stamp: u128,
    now: u128,
    max_age: Duration,
    max_skew: Duration,
    unit_per_sec: u128,
) -> Result<(), Refusal> {
    let per_unit = |d: Duration| d.as_nanos() * unit_per_sec / 1_000_000_000;
    if now > stamp && now - stamp > per_unit(max_age) {
        return Err(Refusal::Stale);
    }
    if stamp > now && stamp - now > per_unit(max_skew) {
        return Err(Refusal::Stale);
    }
    Ok(())
}

/// The replay-mark lifetime of a protocol's window (see [`Signed::mark_ttl`]): a stamp
/// accepted now was at most `max_skew` ahead, so it stays acceptable for at most
/// `max_age + max_skew` more on this clock.
pub(crate) fn mark_window(max_age: Duration, max_skew: Duration) -> Duration {
    max_age + max_skew + Duration::from_secs(1)
}

/// Parses a strictly decimal, unsigned integer (ASCII digits only, leading zeros allowed).
///
/// No sign, whitespace, underscore or exponent: the headers are documented as decimal, and a
/// lenient parser would only widen the set of byte strings that map to one signed value.
pub(crate) fn parse_decimal(s: &str) -> Option<u128> {
    // 39 digits is the most a u128 can hold; longer input is refused before any arithmetic.
    if s.is_empty() || s.len() > 39 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Decodes a `0x`-prefixed hex signature of exactly 64 bytes into a stack array.
///
/// Returns `Err` if the value is not hex at all and `Ok(None)` if it is hex of another length,
/// because the reference verifier reports those at different steps (shape first, length only
/// when it verifies), and both end as [`Refusal::Malformed`].
pub(crate) fn parse_signature(s: &str) -> Result<Option<[u8; 64]>, Refusal> {
    let hex_part = s.strip_prefix("0x").unwrap_or(s);
    // Bound the work on oversized values; a 64-byte signature is 128 hex digits.
    if hex_part.is_empty() || hex_part.len() > 1024 || !hex_part.len().is_multiple_of(2) {
        return Err(Refusal::Malformed);
    }
    if !hex_part.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Refusal::Malformed);
    }
    let mut sig = [0u8; 64];
    if hex_part.len() != 128 {
        return Ok(None);
    }
    hex::decode_to_slice(hex_part, &mut sig).map_err(|_| Refusal::Malformed)?;
    Ok(Some(sig))
}

/// Lowercase hex of the body's SHA-256, on the stack.
pub(crate) fn body_sha256_hex(body: &[u8]) -> [u8; 64] {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(body);
    let mut out = [0u8; 64];
    // The output buffer is exactly twice the digest length, so this cannot fail.
    let _ = hex::encode_to_slice(digest.as_slice(), &mut out);
    out
}

/// The single value of a header, as text.
///
/// `Ok(None)` when absent; [`Refusal::Malformed`] when repeated or not visible ASCII, since a
/// verifier must never have to choose between two values of a signed field.
pub(crate) fn single_header<'a>(
    headers: &'a http::HeaderMap,
    name: &http::HeaderName,
) -> Result<Option<&'a str>, Refusal> {
    let mut values = headers.get_all(name).iter();
    let Some(first) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(Refusal::Malformed);
    }
    first.to_str().map(Some).map_err(|_| Refusal::Malformed)
}

/// Decodes the sender's SS58 address (prefix 42, canonical spelling) into its public key.
pub(crate) fn sender_key(addr: &str) -> Result<[u8; 32], Refusal> {
    match crate::ss58::decode42(addr) {
        Ok(key) => Ok(key),
        Err(crate::ss58::Ss58Error::NonCanonical) => Err(Refusal::NonCanonicalHotkey),
        Err(_) => Err(Refusal::Malformed),
    }
}

/// Verifies a signature over `message`, raw or wrapped in `<Bytes>…</Bytes>`.
///
/// polkadot.js `signRaw` (and wallets built on it) wrap the message; substrate-interface's
/// `Keypair.verify` accepts both forms, so the reference verdicts do too. `wrapped` must
/// already hold `<Bytes>` + message + `</Bytes>`; the raw form is the slice in between, so
/// one buffer serves both attempts.
pub(crate) fn verify_raw_or_wrapped(
    wrapped: &[u8],
    check: impl Fn(&[u8]) -> bool,
) -> Result<(), Refusal> {
    let inner = wrapped
        .get(BYTES_OPEN.len()..wrapped.len().saturating_sub(BYTES_CLOSE.len()))
        .ok_or(Refusal::BadSignature)?;
    if check(inner) || check(wrapped) {
        Ok(())
    } else {
        Err(Refusal::BadSignature)
    }
}

/// Opening tag of the polkadot.js `signRaw` wrapping.
pub(crate) const BYTES_OPEN: &[u8] = b"<Bytes>";
/// Closing tag of the polkadot.js `signRaw` wrapping.
pub(crate) const BYTES_CLOSE: &[u8] = b"</Bytes>";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdict_names_match_the_vectors() {
        assert_eq!(Refusal::Malformed.verdict(), "malformed");
        assert_eq!(Refusal::NonCanonicalHotkey.verdict(), "malformed");
        assert_eq!(Refusal::BadSignature.verdict(), "bad_signature");
        assert_eq!(Refusal::Stale.verdict(), "stale");
        assert_eq!(Refusal::WrongReceiver.verdict(), "wrong_receiver");
    }

    #[test]
    fn freshness_bounds_are_inclusive() {
        let age = Duration::from_secs(10);
        let skew = Duration::from_secs(2);
        let now = 1_000_000u128;
        // Milliseconds: exactly 10 s old and exactly 2 s ahead are still fresh.
        assert_eq!(freshness(now - 10_000, now, age, skew, 1_000), Ok(()));
        assert_eq!(freshness(now + 2_000, now, age, skew, 1_000), Ok(()));
        assert_eq!(freshness(now, now, age, skew, 1_000), Ok(()));
        assert_eq!(
            freshness(now - 10_001, now, age, skew, 1_000),
            Err(Refusal::Stale)
        );
        assert_eq!(
            freshness(now + 2_001, now, age, skew, 1_000),
            Err(Refusal::Stale)
        );
    }

    #[test]
    fn the_mark_window_covers_age_and_skew_from_the_time_of_writing() {
        assert_eq!(
            mark_window(Duration::from_secs(10), Duration::from_secs(2)),
            Duration::from_secs(13)
        );
        // Never zero, so a store never receives a zero TTL.
        assert!(mark_window(Duration::ZERO, Duration::ZERO) > Duration::ZERO);
    }

    #[test]
    fn decimal_parsing_is_strict() {
        assert_eq!(parse_decimal("0"), Some(0));
        assert_eq!(parse_decimal("007"), Some(7));
        for bad in [
            "", "+1", "-1", " 1", "1 ", "1_0", "1e3", "0x10", "12ab", "1.0",
        ] {
            assert_eq!(parse_decimal(bad), None, "{bad:?}");
        }
        assert_eq!(parse_decimal(&"9".repeat(40)), None);
        // 2^128 has 39 digits but overflows.
        assert_eq!(
            parse_decimal("340282366920938463463374607431768211456"),
            None
        );
    }

    #[test]
    fn signature_parsing_separates_shape_from_length() {
        let good = format!("0x{}", "ab".repeat(64));
        assert_eq!(parse_signature(&good), Ok(Some([0xab; 64])));
        assert_eq!(parse_signature(&"AB".repeat(64)), Ok(Some([0xab; 64])));
        assert_eq!(parse_signature(&format!("0x{}", "ab".repeat(63))), Ok(None));
        assert_eq!(parse_signature("0x"), Err(Refusal::Malformed));
        assert_eq!(parse_signature("0xabc"), Err(Refusal::Malformed));
        assert_eq!(
            parse_signature(&format!("0xzz{}", "ab".repeat(63))),
            Err(Refusal::Malformed)
        );
        assert_eq!(parse_signature(&"ab".repeat(600)), Err(Refusal::Malformed));
    }

    #[test]
    fn body_hash_is_lowercase_hex_sha256() {
        assert_eq!(
            &body_sha256_hex(b""),
            b"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn wrapped_verification_tries_raw_then_wrapped_only() {
        let wrapped = b"<Bytes>msg</Bytes>";
        assert_eq!(verify_raw_or_wrapped(wrapped, |m| m == b"msg"), Ok(()));
        assert_eq!(verify_raw_or_wrapped(wrapped, |m| m == wrapped), Ok(()));
        assert_eq!(
            verify_raw_or_wrapped(wrapped, |m| m == b"other"),
            Err(Refusal::BadSignature)
        );
    }
}
