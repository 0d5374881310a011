#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| openwit_fuzz_targets::kafka_message(data));
