//! Fuzz target `key_header`: the `Idempotency-Key` header parser.
//!
//! The check is `idem::fuzzing::key_header`; plain `cargo test` runs it on this
//! target's inputs too (`tests/fuzz_regressions.rs` of its crate).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| idem::fuzzing::key_header(data));
