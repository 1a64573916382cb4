//! Fuzz target `settings`: feeds libFuzzer's bytes to docstore_fuzz::checks::settings (see there).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| docstore_fuzz::checks::settings(data));
