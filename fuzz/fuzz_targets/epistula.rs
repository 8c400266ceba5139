#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| affine_gateway::fuzzing::epistula(data));
