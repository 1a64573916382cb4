//! Fuzz target `document`: feeds libFuzzer's bytes to docstore_fuzz::checks::document (see there).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| docstore_fuzz::checks::document(data));
