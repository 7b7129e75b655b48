//! Fuzz target `fingerprint`: canonical JSON and the request fingerprint.
//!
//! The check is `idem::fuzzing::fingerprint`; plain `cargo test` runs it on this
//! target's inputs too (`tests/fuzz_regressions.rs` of its crate).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| idem::fuzzing::fingerprint(data));
