//! The SCALE decoders of the chain module: runtime metadata, `System.Events` (decoded with
//! the recorded finney metadata) and the subnet state runtime API's answer.

use crate::chain::events::{Metadata, decode_block_events};
use crate::chain::{DecodeError, subnet_state};

/// Fuzz body: `state_getMetadata` bytes.
pub fn chain_metadata(data: &[u8]) {
    let _ = Metadata::decode(data);
}

/// Fuzz body: `SubnetInfoRuntimeApi_get_subnet_state` bytes. An accepted answer has one
/// neuron per UID, numbered from 0.
pub fn chain_subnet_state(data: &[u8]) {
    let Ok(Some(state)) = subnet_state::decode(data) else {
        return;
    };
    assert!(state.neurons.len() <= usize::from(u16::MAX) + 1);
    for (i, n) in state.neurons.iter().enumerate() {
        assert_eq!(usize::from(n.uid), i);
    }
}

/// The `System.Events` target, holding the metadata to decode with (read once by the harness:
/// the recorded metadata is half a megabyte, kept out of the library).
pub struct ChainEvents {
    md: Metadata,
}

impl ChainEvents {
    /// Decodes `state_getMetadata` bytes (`src/chain/fixtures/state_getMetadata.hex`).
    pub fn new(metadata: &[u8]) -> Result<ChainEvents, String> {
        Metadata::decode(metadata)
            .map(|md| ChainEvents { md })
            .map_err(|e| e.to_string())
    }

    /// Fuzz body: a block's `System.Events` value. Decoding reads every byte: what decodes
    /// stops decoding when cut short and refuses a trailing byte, and its transfers are events
    /// of the block, in order.
    pub fn run(&self, data: &[u8]) {
        let Ok(block) = decode_block_events(&self.md, data) else {
            return;
        };
        let mut last = None;
        for t in &block.transfers {
            assert!(t.event_index < block.count);
            assert!(last < Some(t.event_index), "transfers out of order");
            last = Some(t.event_index);
        }
        if !data.is_empty() {
            assert!(
                decode_block_events(&self.md, &data[..data.len() - 1]).is_err(),
                "a truncated vector decoded"
            );
        }
        let mut longer = data.to_vec();
        longer.push(0);
        assert_eq!(
            decode_block_events(&self.md, &longer),
            Err(DecodeError::Trailing(1))
        );
    }
}
