#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| openwit_fuzz_targets::query_request(data));
