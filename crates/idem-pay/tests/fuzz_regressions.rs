//! Fuzz target `payment_request` (`fuzz/`) replayed on every input it kept: the corpus and
//! each reproducer of a crash once found. Plain `cargo test`: no nightly, no database.

#[test]
fn payment_request_corpus_passes() {
    idem::fuzzing::replay_corpus("payment_request", idem_pay::fuzzing::payment_request);
}
