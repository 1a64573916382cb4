//! Fuzz target `couchdb_response`: feeds libFuzzer's bytes to docstore_fuzz::checks::couchdb_response (see there).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| docstore_fuzz::checks::couchdb_response(data));
