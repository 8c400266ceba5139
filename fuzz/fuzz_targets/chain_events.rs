#![no_main]

use std::sync::LazyLock;

use affine_gateway::fuzzing::ChainEvents;

/// The recorded finney metadata the events are decoded with.
static TARGET: LazyLock<ChainEvents> = LazyLock::new(|| {
    let hex_text = include_str!("../../src/chain/fixtures/state_getMetadata.hex");
    let bytes = hex::decode(hex_text.trim().trim_start_matches("0x")).expect("fixture is hex");
    ChainEvents::new(&bytes).expect("fixture metadata decodes")
});

libfuzzer_sys::fuzz_target!(|data: &[u8]| TARGET.run(data));
