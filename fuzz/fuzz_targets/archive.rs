//! Fuzz target `archive`: feeds libFuzzer's bytes to docstore_fuzz::checks::archive (see there).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| docstore_fuzz::checks::archive(data));
