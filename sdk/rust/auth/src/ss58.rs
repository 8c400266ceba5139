//! SS58 addresses restricted to Bittensor's prefix, 42, in their canonical spelling.
//!
//! Signed requests name their sender (and receiver) by SS58 address, and the address is the
//! caller's identity (replay marks, accounts, limits, usage). One key must therefore have
//! exactly one accepted spelling:
//! - only prefix 42: an address pasted from another Substrate chain carries the same key
//!   under a different checksum;
//! - only the one-byte prefix form: SS58 can also write ident 42 in its two-byte form, which
//!   decodes (here and in sp-core) to the same key and network, yet is different text.
//!
//! So an address is accepted only if re-encoding its key canonically gives back the very
//! same text. Base58 decoding uses the `bs58` crate onto a stack buffer after a length bound,
//! so garbage is refused cheaply; sp-core checks the blake2b checksum.

use sp_core::crypto::{AccountId32, PublicError, Ss58AddressFormat, Ss58Codec};

/// Bittensor's SS58 address prefix (the generic Substrate one).
pub const PREFIX: u16 = 42;

/// Why an address was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Ss58Error {
    /// Not base58, or a prefix byte no SS58 encoding produces.
    #[error("not an SS58 address")]
    Encoding,
    /// The checksum does not match (typically a mistyped character).
    #[error("SS58 checksum mismatch")]
    Checksum,
    /// Decodes to the wrong number of bytes for a 32-byte account key.
    #[error("SS58 address has the wrong length")]
    Length,
    /// A valid encoding for another network's prefix.
    #[error("SS58 address uses prefix {0}, expected 42")]
    WrongPrefix(u16),
    /// A valid prefix-42 address in a spelling other than the canonical one (the two-byte
    /// prefix form): accepting it would give the key a second identity.
    #[error("SS58 address is not in its canonical form")]
    NonCanonical,
}

/// Public key length of an account (sr25519 and ed25519 alike).
const KEY_LEN: usize = 32;
/// Checksum bytes SS58 appends for account-sized payloads.
const CHECKSUM_LEN: usize = 2;
/// Largest decoded address: a two-byte prefix, the key and the checksum.
const MAX_DECODED: usize = 2 + KEY_LEN + CHECKSUM_LEN;
/// Longer text cannot decode to [`MAX_DECODED`] bytes (each leading `1` is a whole byte);
/// checked before decoding so oversized input costs nothing.
const MAX_TEXT: usize = 64;

/// Decodes base58 text into a stack buffer; returns the buffer and the decoded length.
fn base58_decode(text: &str) -> Result<([u8; MAX_DECODED], usize), Ss58Error> {
    if text.len() > MAX_TEXT {
        return Err(Ss58Error::Length);
    }
    let mut out = [0u8; MAX_DECODED];
    match bs58::decode(text).onto(&mut out) {
        Ok(len) => Ok((out, len)),
        Err(bs58::decode::Error::BufferTooSmall) => Err(Ss58Error::Length),
        Err(_) => Err(Ss58Error::Encoding),
    }
}

/// Decodes an SS58 address that must use prefix 42 in its canonical one-byte form; returns
/// the 32-byte public key.
pub fn decode42(addr: &str) -> Result<[u8; 32], Ss58Error> {
    let (data, len) = base58_decode(addr)?;
    // Length before the prefix byte: a truncated or extended address is a length problem,
    // whatever its first byte happens to decode to.
    if len != 1 + KEY_LEN + CHECKSUM_LEN && len != 2 + KEY_LEN + CHECKSUM_LEN {
        return Err(Ss58Error::Length);
    }
    let data = &data[..len];
    let (prefix_len, ident) = match data {
        [] | [_] => return Err(Ss58Error::Length),
        [first @ 0..=63, ..] => (1, u16::from(*first)),
        [first @ 64..=127, second, ..] => {
            // Two-byte form: 01aaaaaa bbcccccc encodes the 14-bit ident aaaaaabb 00cccccc
            // (little-endian), as the SS58 specification lays it out.
            let lower = (first << 2) | (second >> 6);
            let upper = second & 0b0011_1111;
            (2, u16::from(lower) | (u16::from(upper) << 8))
        }
        _ => return Err(Ss58Error::Encoding),
    };
    if len != prefix_len + KEY_LEN + CHECKSUM_LEN {
        return Err(Ss58Error::Length);
    }
    if ident != PREFIX {
        return Err(Ss58Error::WrongPrefix(ident));
    }
    let mut key = [0u8; KEY_LEN];
    key.copy_from_slice(&data[prefix_len..prefix_len + KEY_LEN]);
    match AccountId32::from_ss58check_with_version(addr) {
        Ok((account, format)) if u16::from(format) == PREFIX && account.as_ref() == key => {}
        Err(PublicError::InvalidChecksum) => return Err(Ss58Error::Checksum),
        // Unreachable for input that passed the checks above; refuse rather than trust it.
        _ => return Err(Ss58Error::Encoding),
    }
    // The identity is the text, so only the text the key canonically encodes to is accepted.
    if encode42(&key) != addr {
        return Err(Ss58Error::NonCanonical);
    }
    Ok(key)
}

/// Encodes a public key as an SS58 address with prefix 42 (the canonical one-byte form).
pub fn encode42(public: &[u8; 32]) -> String {
    AccountId32::new(*public).to_ss58check_with_version(Ss58AddressFormat::custom(PREFIX))
}

/// True if `addr` is a valid SS58 address with prefix 42, spelled canonically.
pub fn is_valid42(addr: &str) -> bool {
    decode42(addr).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use sp_core::{Pair, sr25519};

    const ALICE: &str = "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY";
    const BOB: &str = "5FHneW46xGXgs5mUiveU4sbTyGBzmstUspZC92UhjJM694ty";

    fn public_of(uri: &str) -> [u8; 32] {
        sr25519::Pair::from_string(uri, None)
            .expect("dev uri")
            .public()
            .0
    }

    #[test]
    fn dev_addresses_round_trip() {
        for (uri, addr) in [("//Alice", ALICE), ("//Bob", BOB)] {
            let key = public_of(uri);
            assert_eq!(decode42(addr), Ok(key));
            assert_eq!(encode42(&key), addr);
            assert!(is_valid42(addr));
        }
    }

    #[test]
    fn other_prefixes_are_refused_with_their_prefix() {
        let key = public_of("//Alice");
        let account = AccountId32::new(key);
        for prefix in [0u16, 2, 46, 63, 64, 255, 1284, 16383] {
            let addr = account.to_ss58check_with_version(Ss58AddressFormat::custom(prefix));
            assert_eq!(
                decode42(&addr),
                Err(Ss58Error::WrongPrefix(prefix)),
                "{addr}"
            );
            assert!(!is_valid42(&addr));
        }
    }

    #[test]
    fn a_flipped_character_breaks_the_checksum() {
        // The vectors' hotkey_bad_checksum case: last character Y -> Z.
        let flipped = "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQZ";
        assert_eq!(decode42(flipped), Err(Ss58Error::Checksum));
        // A change inside the key part is caught by the checksum too.
        let mut chars: Vec<char> = ALICE.chars().collect();
        chars[10] = if chars[10] == 'a' { 'b' } else { 'a' };
        let inner: String = chars.into_iter().collect();
        assert_eq!(decode42(&inner), Err(Ss58Error::Checksum));
    }

    #[test]
    fn wrong_lengths_are_refused() {
        assert_eq!(decode42(""), Err(Ss58Error::Length));
        assert_eq!(decode42("5"), Err(Ss58Error::Length));
        assert_eq!(decode42(&ALICE[..ALICE.len() - 1]), Err(Ss58Error::Length));
        assert_eq!(decode42(&format!("{ALICE}2")), Err(Ss58Error::Length));
        assert_eq!(decode42(&"1".repeat(40)), Err(Ss58Error::Length));
        assert_eq!(decode42(&"z".repeat(200)), Err(Ss58Error::Length));
        // A 33-byte (ecdsa-sized) key under prefix 42 decodes but is not an account key.
        let mut payload = vec![42u8];
        payload.extend([7u8; 33]);
        payload.extend([0u8; 2]);
        assert_eq!(decode42(&base58_encode(&payload)), Err(Ss58Error::Length));
    }

    #[test]
    fn non_base58_characters_are_refused() {
        for bad in [
            "0GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY",
            "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQl",
            "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQI",
            "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutO",
            " 5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY",
            "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY\n",
            "5Grwvaé",
        ] {
            assert_eq!(decode42(bad), Err(Ss58Error::Encoding), "{bad:?}");
        }
    }

    #[test]
    fn reserved_prefix_bytes_are_refused() {
        // A first byte >= 128 is not produced by any SS58 prefix.
        let mut payload = vec![200u8];
        payload.extend([1u8; 34]);
        assert_eq!(decode42(&base58_encode(&payload)), Err(Ss58Error::Encoding));
    }

    #[test]
    fn base58_decoder_matches_known_values() {
        let (buf, len) = base58_decode("11").expect("decodes");
        assert_eq!(&buf[..len], &[0, 0]);
        let (buf, len) = base58_decode("5Q").expect("decodes");
        assert_eq!(&buf[..len], &[255]);
        for payload in [vec![0u8, 0, 1, 2, 3], vec![255; 36], vec![0; 36]] {
            let (buf, len) = base58_decode(&base58_encode(&payload)).expect("decodes");
            assert_eq!(&buf[..len], payload.as_slice());
        }
    }

    fn base58_encode(bytes: &[u8]) -> String {
        bs58::encode(bytes).into_string()
    }
}
