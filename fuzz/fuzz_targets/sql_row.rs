//! Fuzz target `sql_row`: reading an SQL store's row and its stored response.
//!
//! The check is `idem_sql::fuzzing::sql_row`; plain `cargo test` runs it on this
//! target's inputs too (`tests/fuzz_regressions.rs` of its crate).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| idem_sql::fuzzing::sql_row(data));
