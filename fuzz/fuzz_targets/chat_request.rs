#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| affine_gateway::fuzzing::chat_request(data));
