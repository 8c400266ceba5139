//! SS58 addresses restricted to Bittensor's prefix, 42.
//!
//! Signed requests name their sender (and receiver) by SS58 address. Only prefix 42 is
//! accepted: an address pasted from another Substrate chain carries the same key under a
//! different checksum, and accepting it would give one key two spellings, hence two replay
//! and quota identities.
//!
//! The structure (alphabet, length, prefix) is checked here on a stack buffer, so garbage is
//! refused without allocating; only a well-formed prefix-42 address reaches sp-core for the
//! blake2b checksum, the one step that needs a hash this crate does not otherwise depend on.

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
}

/// Public key length of an account (sr25519 and ed25519 alike).
const KEY_LEN: usize = 32;
/// Checksum bytes SS58 appends for account-sized payloads.
const CHECKSUM_LEN: usize = 2;
/// Largest decoded address: a two-byte prefix, the key and the checksum.
const MAX_DECODED: usize = 2 + KEY_LEN + CHECKSUM_LEN;
/// Longer text cannot decode to [`MAX_DECODED`] bytes (each leading `1` is a whole byte).
const MAX_TEXT: usize = 64;

/// The Bitcoin base58 alphabet, which SS58 uses.
const ALPHABET: &[u8; 58] = b"123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";

/// Digit value of each byte, 0xff for bytes outside the alphabet.
const DIGITS: [u8; 256] = {
    let mut table = [0xffu8; 256];
    let mut i = 0;
    while i < ALPHABET.len() {
        table[ALPHABET[i] as usize] = i as u8;
        i += 1;
    }
    table
};

/// Decodes base58 text into a stack buffer; returns the buffer and the decoded length.
fn base58_decode(text: &str) -> Result<([u8; MAX_DECODED], usize), Ss58Error> {
    let bytes = text.as_bytes();
    // Alphabet first, so the verdict on garbage does not depend on where the garbage sits.
    if bytes.iter().any(|&b| DIGITS[usize::from(b)] == 0xff) {
        return Err(Ss58Error::Encoding);
    }
    if bytes.len() > MAX_TEXT {
        return Err(Ss58Error::Length);
    }
    // Little-endian big number; `used` bytes of it are significant.
    let mut num = [0u8; MAX_DECODED];
    let mut used = 0usize;
    for &b in bytes {
        let mut carry = u32::from(DIGITS[usize::from(b)]);
        for limb in num.iter_mut().take(used) {
            carry += u32::from(*limb) * 58;
            *limb = (carry & 0xff) as u8;
            carry >>= 8;
        }
        while carry > 0 {
            let limb = num.get_mut(used).ok_or(Ss58Error::Length)?;
            *limb = (carry & 0xff) as u8;
            used += 1;
            carry >>= 8;
        }
    }
    // Each leading '1' stands for one leading zero byte.
    let zeros = bytes.iter().take_while(|&&b| b == b'1').count();
    let total = zeros + used;
    if total > MAX_DECODED {
        return Err(Ss58Error::Length);
    }
    let mut out = [0u8; MAX_DECODED];
    for (dst, src) in out[zeros..total].iter_mut().zip(num[..used].iter().rev()) {
        *dst = *src;
    }
    Ok((out, total))
}

/// Decodes an SS58 address that must use prefix 42; returns the 32-byte public key.
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
        Ok((account, format)) if u16::from(format) == PREFIX && account.as_ref() == key => Ok(key),
        Err(PublicError::InvalidChecksum) => Err(Ss58Error::Checksum),
        // Unreachable for input that passed the checks above; refuse rather than trust it.
        _ => Err(Ss58Error::Encoding),
    }
}

/// Encodes a public key as an SS58 address with prefix 42.
pub fn encode42(public: &[u8; 32]) -> String {
    AccountId32::new(*public).to_ss58check_with_version(Ss58AddressFormat::custom(PREFIX))
}

/// True if `addr` is a valid SS58 address with prefix 42.
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

    /// Straightforward base58 encoder, only to build test inputs.
    fn base58_encode(bytes: &[u8]) -> String {
        let zeros = bytes.iter().take_while(|&&b| b == 0).count();
        let mut digits: Vec<u8> = Vec::new();
        for &b in bytes {
            let mut carry = u32::from(b);
            for d in digits.iter_mut() {
                carry += u32::from(*d) << 8;
                *d = (carry % 58) as u8;
                carry /= 58;
            }
            while carry > 0 {
                digits.push((carry % 58) as u8);
                carry /= 58;
            }
        }
        let mut out = "1".repeat(zeros);
        out.extend(
            digits
                .iter()
                .rev()
                .map(|&d| char::from(ALPHABET[usize::from(d)])),
        );
        out
    }
}
