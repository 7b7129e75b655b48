//! Fuzz target `redis_record` (`fuzz/`) replayed on every input it kept: the corpus and
//! each reproducer of a crash once found. Plain `cargo test`: no nightly, no Redis.

#[test]
fn redis_record_corpus_passes() {
    idem::fuzzing::replay_corpus("redis_record", idem_redis::fuzzing::redis_record);
}
