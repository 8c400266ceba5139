//! `SubnetInfoRuntimeApi_get_subnet_state` answers: the recorded netuid 1 fixture and
//! synthesised `Option<SubnetState>`s in the current layout (empty `pruning_score`, `trust` and
//! `rank`, as on `main` since 2026-04) followed by trailing bytes, so a decoder must use
//! `Decode::decode`, not `decode_all`.

use std::sync::OnceLock;

use parity_scale_codec::{Compact, Encode};

use crate::SimNeuron;

/// The recorded `state_call` exchange for netuid 1 (finney block 6852690).
const FIXTURE_JSON: &str = include_str!("../fixtures/get_subnet_state_netuid1.json");

/// Bytes after the struct, standing for fields a newer runtime appends.
pub(crate) const TRAILING: [u8; 4] = [0x00, 0x2a, 0x2a, 0x00];

/// How many subnets the synthesised `emission_history` covers.
const HISTORY_SUBNETS: usize = 3;

/// The recorded answer's SCALE bytes (`0x01` + SubnetState for netuid 1, 1024 UIDs).
pub(crate) fn fixture_netuid1() -> &'static [u8] {
    static BYTES: OnceLock<Vec<u8>> = OnceLock::new();
    BYTES.get_or_init(|| {
        let doc: serde_json::Value =
            serde_json::from_str(FIXTURE_JSON).expect("the subnet fixture is JSON");
        let result = doc["response"]["result"]
            .as_str()
            .expect("the fixture has a result");
        hex::decode(result.trim_start_matches("0x")).expect("the result is hex")
    })
}

/// Field order of `SubnetState` (`pallets/subtensor/src/rpc_info/show_subnet.rs`).
#[derive(Encode)]
struct SubnetStateWire {
    netuid: Compact<u16>,
    hotkeys: Vec<[u8; 32]>,
    coldkeys: Vec<[u8; 32]>,
    active: Vec<bool>,
    validator_permit: Vec<bool>,
    pruning_score: Vec<Compact<u16>>,
    last_update: Vec<Compact<u64>>,
    emission: Vec<Compact<u64>>,
    dividends: Vec<Compact<u16>>,
    incentives: Vec<Compact<u16>>,
    consensus: Vec<Compact<u16>>,
    trust: Vec<Compact<u16>>,
    rank: Vec<Compact<u16>>,
    block_at_registration: Vec<Compact<u64>>,
    alpha_stake: Vec<Compact<u64>>,
    tao_stake: Vec<Compact<u64>>,
    total_stake: Vec<Compact<u64>>,
    emission_history: Vec<Vec<Compact<u64>>>,
}

/// `Some(SubnetState)` for `neurons` (UID = position) as of `block`, plus [`TRAILING`].
pub(crate) fn synthesize(netuid: u16, neurons: &[SimNeuron], block: u64) -> Vec<u8> {
    let n = neurons.len();
    let per = |f: &dyn Fn(usize, &SimNeuron) -> u64| -> Vec<Compact<u64>> {
        neurons
            .iter()
            .enumerate()
            .map(|(i, s)| Compact(f(i, s)))
            .collect()
    };
    let small =
        |f: &dyn Fn(usize) -> u16| -> Vec<Compact<u16>> { (0..n).map(|i| Compact(f(i))).collect() };
    let wire = SubnetStateWire {
        netuid: Compact(netuid),
        hotkeys: neurons.iter().map(|s| s.hotkey).collect(),
        coldkeys: neurons.iter().map(|s| s.coldkey).collect(),
        active: vec![true; n],
        validator_permit: neurons.iter().map(|s| s.validator_permit).collect(),
        pruning_score: Vec::new(),
        last_update: per(&|_, _| block),
        emission: per(&|i, _| 1_000 + i as u64),
        dividends: small(&|i| (i % 100) as u16),
        incentives: small(&|i| (i % 200) as u16),
        consensus: small(&|i| (i % 300) as u16),
        trust: Vec::new(),
        rank: Vec::new(),
        block_at_registration: per(&|i, _| block.saturating_sub(1_000 + i as u64)),
        alpha_stake: per(&|_, s| s.alpha_stake),
        tao_stake: per(&|_, s| s.tao_stake),
        total_stake: per(&|_, s| s.total_stake),
        emission_history: (0..HISTORY_SUBNETS)
            .map(|k| per(&|i, _| (k * 10 + i) as u64))
            .collect(),
    };
    let mut out = vec![1u8];
    wire.encode_to(&mut out);
    out.extend_from_slice(&TRAILING);
    out
}

#[cfg(test)]
mod tests {
    use parity_scale_codec::{Compact, Decode};

    use super::*;

    /// The decoder a gateway would write, mirrored to check what the simulator serves.
    #[derive(Decode)]
    struct Decoded {
        netuid: Compact<u16>,
        hotkeys: Vec<[u8; 32]>,
        coldkeys: Vec<[u8; 32]>,
        _active: Vec<bool>,
        validator_permit: Vec<bool>,
        pruning_score: Vec<Compact<u16>>,
        _last_update: Vec<Compact<u64>>,
        _emission: Vec<Compact<u64>>,
        _dividends: Vec<Compact<u16>>,
        _incentives: Vec<Compact<u16>>,
        _consensus: Vec<Compact<u16>>,
        trust: Vec<Compact<u16>>,
        rank: Vec<Compact<u16>>,
        _block_at_registration: Vec<Compact<u64>>,
        alpha_stake: Vec<Compact<u64>>,
        tao_stake: Vec<Compact<u64>>,
        total_stake: Vec<Compact<u64>>,
        _emission_history: Vec<Vec<Compact<u64>>>,
    }

    #[test]
    fn fixture_is_netuid1_with_1024_uids_and_12_permits() {
        let decoded = Option::<Decoded>::decode(&mut fixture_netuid1())
            .unwrap()
            .unwrap();
        assert_eq!(decoded.netuid.0, 1);
        assert_eq!(decoded.hotkeys.len(), 1024);
        assert_eq!(decoded.validator_permit.iter().filter(|p| **p).count(), 12);
    }

    #[test]
    fn synthesized_state_decodes_with_empty_deprecated_vectors_and_trailing_bytes() {
        let neurons: Vec<SimNeuron> = (0..70u8)
            .map(|i| SimNeuron {
                hotkey: [i; 32],
                coldkey: [i.wrapping_add(100); 32],
                validator_permit: i % 10 == 0,
                alpha_stake: u64::from(i) * 1_000_000_000,
                tao_stake: 5,
                total_stake: u64::from(i) * 1_000_000_000 + 5,
            })
            .collect();
        let bytes = synthesize(77, &neurons, 1234);
        let mut input = &bytes[..];
        let decoded = Option::<Decoded>::decode(&mut input).unwrap().unwrap();
        assert_eq!(input, &TRAILING[..], "only the trailing bytes remain");
        assert_eq!(decoded.netuid.0, 77);
        assert_eq!(decoded.hotkeys[69], [69; 32]);
        assert_eq!(decoded.coldkeys[1], [101; 32]);
        assert_eq!(decoded.validator_permit.iter().filter(|p| **p).count(), 7);
        assert!(
            decoded.pruning_score.is_empty() && decoded.trust.is_empty() && decoded.rank.is_empty()
        );
        assert_eq!(decoded.alpha_stake[3].0, 3_000_000_000);
        assert_eq!(decoded.tao_stake[3].0, 5);
        assert_eq!(decoded.total_stake[3].0, 3_000_000_005);
    }
}
