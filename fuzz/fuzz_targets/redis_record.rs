//! Fuzz target `redis_record`: decoding the Redis store's records and replies.
//!
//! The check is `idem_redis::fuzzing::redis_record`; plain `cargo test` runs it on this
//! target's inputs too (`tests/fuzz_regressions.rs` of its crate).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| idem_redis::fuzzing::redis_record(data));
