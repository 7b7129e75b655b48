//! Fuzz target `stored_response`: decoding a stored response, as every store reads it.
//!
//! The check is `idem::fuzzing::stored_response`; plain `cargo test` runs it on this
//! target's inputs too (`tests/fuzz_regressions.rs` of its crate).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| idem::fuzzing::stored_response(data));
