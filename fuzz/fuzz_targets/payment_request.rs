//! Fuzz target `payment_request`: the payment, refund and account validators.
//!
//! The check is `idem_pay::fuzzing::payment_request`; plain `cargo test` runs it on this
//! target's inputs too (`tests/fuzz_regressions.rs` of its crate).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| idem_pay::fuzzing::payment_request(data));
