//! SS58 addresses (the text form of Bittensor account keys) for the HTTP control routes.

use sp_crypto_hashing::blake2_512;

/// Bittensor's (and Substrate's generic) address format.
pub const SS58_PREFIX: u16 = 42;

fn checksum(body: &[u8]) -> [u8; 2] {
    let mut data = b"SS58PRE".to_vec();
    data.extend_from_slice(body);
    let hash = blake2_512(&data);
    [hash[0], hash[1]]
}

/// The SS58 text of `key` under prefix 42 (what `bittensor` prints for a coldkey).
pub fn ss58_encode(key: &[u8; 32]) -> String {
    let mut body = vec![SS58_PREFIX as u8];
    body.extend_from_slice(key);
    let sum = checksum(&body);
    body.extend_from_slice(&sum);
    bs58::encode(body).into_string()
}

/// A 32-byte account from SS58 text (any one- or two-byte prefix, checksum verified) or
/// `0x` + 64 hex digits.
pub fn parse_account(text: &str) -> Option<[u8; 32]> {
    if let Some(hex_text) = text.strip_prefix("0x") {
        return hex::decode(hex_text).ok()?.try_into().ok();
    }
    let raw = bs58::decode(text).into_vec().ok()?;
    let prefix_len = match raw.len() {
        35 => 1,
        36 => 2,
        _ => return None,
    };
    let (body, sum) = raw.split_at(raw.len() - 2);
    if checksum(body) != [sum[0], sum[1]] {
        return None;
    }
    body[prefix_len..].try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_address_round_trips() {
        // Alice's well-known sr25519 key and its generic-prefix address.
        let alice = hex::decode("d43593c715fdd31c61141abd04a99fd6822c8558854ccde39a5684e7a56da27d")
            .unwrap();
        let alice: [u8; 32] = alice.try_into().unwrap();
        assert_eq!(
            ss58_encode(&alice),
            "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY"
        );
        assert_eq!(
            parse_account("5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY"),
            Some(alice)
        );
        assert_eq!(
            parse_account(&format!("0x{}", hex::encode(alice))),
            Some(alice)
        );
        assert_eq!(
            parse_account("5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQZ"),
            None
        );
        assert_eq!(parse_account("0x1234"), None);
    }
}
