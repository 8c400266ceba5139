//! Coldkey links: the message a coldkey signs to link itself to an account
//! (`POST /v1/account/coldkeys`), how a client signs it and how the gateway checks it.
//!
//! The coldkey signs (sr25519) the UTF-8 text of [`link_message`], raw or wrapped in
//! `<Bytes>…</Bytes>` as polkadot.js wallets sign. `tests/vectors/coldkey_link.json` (signed by
//! the bittensor SDK) pins it. What a link does, and the single use of nonces, is the
//! gateway's business; this module only defines the signed bytes.

use sp_core::{Pair, sr25519};

use crate::keys::{Crypto, KeyError, KeyPair};
use crate::verdict::{BYTES_CLOSE, BYTES_OPEN, parse_signature, verify_raw_or_wrapped};

/// The text a coldkey signs to link itself to `account_id` on the gateway whose hotkey is
/// `gateway_hotkey`: `affine-gateway:link-coldkey:<account id>:<gateway hotkey ss58>:<nonce>`.
///
/// Account ids (SS58 or `[a-z0-9-]` slugs) and SS58 addresses contain no `:`, so the fields
/// cannot be shifted into one another even though a nonce may contain `:`.
pub fn link_message(account_id: &str, gateway_hotkey: &str, nonce: &str) -> String {
    format!("affine-gateway:link-coldkey:{account_id}:{gateway_hotkey}:{nonce}")
}

/// Whether `nonce` is 1 to 64 of `[A-Za-z0-9._:-]`, the nonces a link accepts.
pub fn valid_nonce(nonce: &str) -> bool {
    (1..=64).contains(&nonce.len())
        && nonce
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

/// Parses a link signature: `0x` and exactly 128 hex digits.
pub fn parse_link_signature(signature: &str) -> Option<[u8; 64]> {
    match signature.strip_prefix("0x").map(parse_signature) {
        Some(Ok(Some(sig))) => Some(sig),
        _ => None,
    }
}

/// Whether `signature` is the coldkey `public`'s sr25519 signature of `message`, raw or
/// wrapped in `<Bytes>…</Bytes>`.
pub fn verify_link(public: &[u8; 32], message: &str, signature: &[u8; 64]) -> bool {
    let mut wrapped = Vec::with_capacity(BYTES_OPEN.len() + message.len() + BYTES_CLOSE.len());
    wrapped.extend_from_slice(BYTES_OPEN);
    wrapped.extend_from_slice(message.as_bytes());
    wrapped.extend_from_slice(BYTES_CLOSE);
    let public = sr25519::Public::from_raw(*public);
    let signature = sr25519::Signature::from_raw(*signature);
    verify_raw_or_wrapped(&wrapped, |m| sr25519::Pair::verify(&signature, m, &public)).is_ok()
}

/// The `signature` field of a link request: the coldkey's signature of
/// [`link_message`] as `0x` + hex. Coldkey links are sr25519 only.
pub fn sign_link(
    coldkey: &KeyPair,
    account_id: &str,
    gateway_hotkey: &str,
    nonce: &str,
) -> Result<String, KeyError> {
    if coldkey.crypto() != Crypto::Sr25519 {
        return Err(KeyError::WrongCrypto(Crypto::Sr25519));
    }
    let message = link_message(account_id, gateway_hotkey, nonce);
    Ok(format!(
        "0x{}",
        hex::encode(coldkey.sign(message.as_bytes()))
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GATEWAY: &str = "5FHneW46xGXgs5mUiveU4sbTyGBzmstUspZC92UhjJM694ty";

    #[test]
    fn signed_links_verify_and_bind_every_field() {
        let charlie = KeyPair::from_uri("//Charlie", Crypto::Sr25519).expect("dev key");
        let sig = sign_link(&charlie, "acme", GATEWAY, "n1").expect("sr25519");
        let parsed = parse_link_signature(&sig).expect("shape");
        let message = link_message("acme", GATEWAY, "n1");
        assert!(verify_link(&charlie.public(), &message, &parsed));
        assert!(!verify_link(
            &charlie.public(),
            &link_message("acme", GATEWAY, "n2"),
            &parsed
        ));
        let dave = KeyPair::from_uri("//Dave", Crypto::Sr25519).expect("dev key");
        assert!(!verify_link(&dave.public(), &message, &parsed));
        assert!(parse_link_signature(&sig[2..]).is_none());
        assert!(parse_link_signature("0xzz").is_none());
    }

    #[test]
    fn ed25519_coldkeys_cannot_sign_links() {
        let ed = KeyPair::from_uri("//Charlie", Crypto::Ed25519).expect("dev key");
        assert!(matches!(
            sign_link(&ed, "acme", GATEWAY, "n1"),
            Err(KeyError::WrongCrypto(Crypto::Sr25519))
        ));
    }
}
