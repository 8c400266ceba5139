//! `SubnetInfoRuntimeApi_get_subnet_state`: one `state_call` answers a whole subnet's
//! metagraph (hotkeys, coldkeys, permits, stakes), which fits a 1 request/s budget.
//!
//! The answer is `Option<SubnetState>`. The `Option` tag must be decoded: without it, the `0x01`
//! tag and a one-byte Compact netuid happen to read as a two-byte Compact, so a decoder that
//! forgets it only works for netuids 1–63.

use parity_scale_codec::{Compact, Decode};

use super::DecodeError;

/// The runtime API method, for [`super::ChainRpc::state_call`].
pub(crate) const GET_SUBNET_STATE: &str = "SubnetInfoRuntimeApi_get_subnet_state";

/// The call's argument: `NetUid(u16)` SCALE-encoded, i.e. two bytes little-endian (not a
/// Compact; netuid 1 is `0x0100`).
pub(crate) fn call_arg(netuid: u16) -> [u8; 2] {
    netuid.to_le_bytes()
}

/// One UID of a subnet, with what the gateway's gates need. Stakes are in rao.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Neuron {
    /// Position in the subnet's vectors.
    pub uid: u16,
    /// The neuron's hotkey (AccountId32).
    pub hotkey: [u8; 32],
    /// The coldkey owning the hotkey.
    pub coldkey: [u8; 32],
    /// Whether the hotkey holds a validator permit in this subnet.
    pub validator_permit: bool,
    /// Inherited alpha (after parent/child delegation), rao.
    pub alpha_stake: u64,
    /// Root TAO stake, rao.
    pub tao_stake: u64,
    /// `alpha + tao · TaoWeight`, rao: the SDK's `metagraph.S`, what `min_stake_rao` compares.
    pub total_stake: u64,
}

/// A subnet's metagraph as the runtime reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SubnetState {
    /// The subnet.
    pub netuid: u16,
    /// Indexed by UID.
    pub neurons: Vec<Neuron>,
}

/// Mirror of subtensor's `SubnetState` (`rpc_info/show_subnet.rs`), every field in order.
/// `AlphaBalance`/`TaoBalance`/`NetUid` are transparent newtypes, so plain integers decode
/// them; `Compact<PerU16>` encodes as `Compact<u16>`.
#[derive(Decode)]
#[cfg_attr(test, derive(parity_scale_codec::Encode, Clone, Debug))]
#[allow(
    dead_code,
    reason = "every field is decoded to keep the layout; only the core ones are used"
)]
pub(crate) struct RawSubnetState {
    pub(crate) netuid: Compact<u16>,
    pub(crate) hotkeys: Vec<[u8; 32]>,
    pub(crate) coldkeys: Vec<[u8; 32]>,
    pub(crate) active: Vec<bool>,
    pub(crate) validator_permit: Vec<bool>,
    pub(crate) pruning_score: Vec<Compact<u16>>,
    pub(crate) last_update: Vec<Compact<u64>>,
    pub(crate) emission: Vec<Compact<u64>>,
    pub(crate) dividends: Vec<Compact<u16>>,
    pub(crate) incentives: Vec<Compact<u16>>,
    pub(crate) consensus: Vec<Compact<u16>>,
    pub(crate) trust: Vec<Compact<u16>>,
    pub(crate) rank: Vec<Compact<u16>>,
    pub(crate) block_at_registration: Vec<Compact<u64>>,
    pub(crate) alpha_stake: Vec<Compact<u64>>,
    pub(crate) tao_stake: Vec<Compact<u64>>,
    pub(crate) total_stake: Vec<Compact<u64>>,
    pub(crate) emission_history: Vec<Vec<Compact<u64>>>,
}

/// Decodes the runtime API's answer. `Ok(None)`: the subnet does not exist.
///
/// Bytes after the struct are ignored (a newer runtime may append fields). The core vectors —
/// hotkeys, coldkeys, validator_permit and the three stakes — must have one entry per hotkey,
/// else the answer is refused: a short vector would shift every UID's data. The other vectors
/// (pruning_score, trust and rank are empty since subtensor a1258cd) are not read.
pub(crate) fn decode(bytes: &[u8]) -> Result<Option<SubnetState>, DecodeError> {
    let raw = Option::<RawSubnetState>::decode(&mut &bytes[..])
        .map_err(|e| DecodeError::Scale(e.to_string()))?;
    let Some(raw) = raw else { return Ok(None) };
    let n = raw.hotkeys.len();
    if n > usize::from(u16::MAX) + 1 {
        return Err(DecodeError::Scale(format!("{n} hotkeys: UIDs are u16")));
    }
    let check = |field: &'static str, len: usize| {
        if len == n {
            Ok(())
        } else {
            Err(DecodeError::Length {
                field,
                len,
                expected: n,
            })
        }
    };
    check("coldkeys", raw.coldkeys.len())?;
    check("validator_permit", raw.validator_permit.len())?;
    check("alpha_stake", raw.alpha_stake.len())?;
    check("tao_stake", raw.tao_stake.len())?;
    check("total_stake", raw.total_stake.len())?;
    let neurons = (0..n)
        .map(|i| Neuron {
            uid: i as u16,
            hotkey: raw.hotkeys[i],
            coldkey: raw.coldkeys[i],
            validator_permit: raw.validator_permit[i],
            alpha_stake: raw.alpha_stake[i].0,
            tao_stake: raw.tao_stake[i].0,
            total_stake: raw.total_stake[i].0,
        })
        .collect();
    Ok(Some(SubnetState {
        netuid: raw.netuid.0,
        neurons,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use parity_scale_codec::Encode;
    use proptest::prelude::*;

    fn fixture_bytes() -> Vec<u8> {
        let text = include_str!("fixtures/get_subnet_state_netuid1.json");
        let v: serde_json::Value = serde_json::from_str(text).unwrap();
        let result = v["response"]["result"]
            .as_str()
            .expect("fixture has response.result");
        hex::decode(result.trim_start_matches("0x")).unwrap()
    }

    #[test]
    fn call_arg_is_u16_le() {
        assert_eq!(call_arg(1), [1, 0]);
        assert_eq!(call_arg(300), [0x2c, 0x01]);
    }

    #[test]
    fn recorded_netuid1_answer() {
        let state = decode(&fixture_bytes()).unwrap().expect("subnet 1 exists");
        assert_eq!(state.netuid, 1);
        assert_eq!(state.neurons.len(), 1024);
        assert_eq!(
            state.neurons.iter().filter(|n| n.validator_permit).count(),
            12
        );
        assert!(
            state
                .neurons
                .iter()
                .enumerate()
                .all(|(i, n)| n.uid as usize == i)
        );
        // Permit holders are the staked validators: each has stake.
        assert!(
            state
                .neurons
                .iter()
                .filter(|n| n.validator_permit)
                .all(|n| n.total_stake > 0)
        );
    }

    #[test]
    fn recorded_answer_truncated_is_an_error() {
        let bytes = fixture_bytes();
        assert!(matches!(
            decode(&bytes[..bytes.len() / 2]),
            Err(DecodeError::Scale(_))
        ));
    }

    fn synthetic(netuid: u16, n: usize, seed: u64) -> RawSubnetState {
        let c64 = |k: u64| {
            (0..n as u64)
                .map(|i| Compact(i.wrapping_mul(k) ^ seed))
                .collect()
        };
        let c16 = |k: u16| (0..n as u16).map(|i| Compact(i.wrapping_mul(k))).collect();
        RawSubnetState {
            netuid: Compact(netuid),
            hotkeys: (0..n).map(|i| [(i % 251) as u8; 32]).collect(),
            coldkeys: (0..n).map(|i| [(i % 241) as u8 ^ 0xff; 32]).collect(),
            active: vec![true; n],
            validator_permit: (0..n)
                .map(|i| (i as u64 ^ seed).is_multiple_of(3))
                .collect(),
            pruning_score: c16(3),
            last_update: c64(5),
            emission: c64(7),
            dividends: c16(11),
            incentives: c16(13),
            consensus: c16(17),
            trust: c16(19),
            rank: c16(23),
            block_at_registration: c64(29),
            alpha_stake: c64(31),
            tao_stake: c64(37),
            total_stake: c64(41),
            emission_history: vec![c64(43), c64(47)],
        }
    }

    fn check_matches(raw: &RawSubnetState, got: &SubnetState) {
        assert_eq!(got.netuid, raw.netuid.0);
        assert_eq!(got.neurons.len(), raw.hotkeys.len());
        for (i, n) in got.neurons.iter().enumerate() {
            assert_eq!(n.uid as usize, i);
            assert_eq!(n.hotkey, raw.hotkeys[i]);
            assert_eq!(n.coldkey, raw.coldkeys[i]);
            assert_eq!(n.validator_permit, raw.validator_permit[i]);
            assert_eq!(n.alpha_stake, raw.alpha_stake[i].0);
            assert_eq!(n.tao_stake, raw.tao_stake[i].0);
            assert_eq!(n.total_stake, raw.total_stake[i].0);
        }
    }

    #[test]
    fn none_is_no_subnet() {
        assert_eq!(decode(&[0]).unwrap(), None);
        assert_eq!(decode(&None::<RawSubnetState>.encode()).unwrap(), None);
    }

    #[test]
    fn empty_input_is_an_error() {
        assert!(decode(&[]).is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Any netuid (≥ 64 needs the two-byte Compact that a tag-less decoder misreads),
        /// any n including 0, any trailing bytes.
        #[test]
        fn roundtrip(netuid in any::<u16>(), n in 0usize..300, seed in any::<u64>(),
                     trailing in proptest::collection::vec(any::<u8>(), 0..40)) {
            let raw = synthetic(netuid, n, seed);
            let mut bytes = Some(raw.clone()).encode();
            bytes.extend_from_slice(&trailing);
            let got = decode(&bytes).unwrap().unwrap();
            check_matches(&raw, &got);
        }

        /// Netuids ≥ 64 specifically, where the Option tag matters.
        #[test]
        fn high_netuids(netuid in 64u16.., n in 0usize..8) {
            let raw = synthetic(netuid, n, 1);
            let got = decode(&Some(raw.clone()).encode()).unwrap().unwrap();
            prop_assert_eq!(got.netuid, netuid);
        }

        /// The deprecated and other non-core vectors may be empty (or any length).
        #[test]
        fn non_core_vectors_may_be_empty(n in 1usize..100, mask in any::<u16>()) {
            let mut raw = synthetic(7, n, 9);
            if mask & 1 != 0 { raw.pruning_score.clear(); }
            if mask & 2 != 0 { raw.trust.clear(); }
            if mask & 4 != 0 { raw.rank.clear(); }
            if mask & 8 != 0 { raw.active.clear(); }
            if mask & 16 != 0 { raw.emission.truncate(n / 2); }
            if mask & 32 != 0 { raw.emission_history.clear(); }
            if mask & 64 != 0 { raw.last_update.clear(); raw.block_at_registration.clear(); }
            let got = decode(&Some(raw.clone()).encode()).unwrap().unwrap();
            check_matches(&raw, &got);
        }

        /// A core vector of the wrong length is refused, naming the field.
        #[test]
        fn core_length_mismatch_refused(n in 1usize..100, which in 0usize..5, grow in any::<bool>()) {
            let mut raw = synthetic(3, n, 5);
            let field = match which {
                0 => { if grow { raw.coldkeys.push([0; 32]) } else { raw.coldkeys.pop(); } "coldkeys" }
                1 => { if grow { raw.validator_permit.push(true) } else { raw.validator_permit.pop(); } "validator_permit" }
                2 => { if grow { raw.alpha_stake.push(Compact(1)) } else { raw.alpha_stake.pop(); } "alpha_stake" }
                3 => { if grow { raw.tao_stake.push(Compact(1)) } else { raw.tao_stake.pop(); } "tao_stake" }
                _ => { if grow { raw.total_stake.push(Compact(1)) } else { raw.total_stake.pop(); } "total_stake" }
            };
            let err = decode(&Some(raw).encode()).unwrap_err();
            prop_assert!(matches!(err, DecodeError::Length { field: f, .. } if f == field), "{err:?}");
        }
    }
}
