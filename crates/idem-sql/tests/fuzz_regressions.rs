//! Fuzz target `sql_row` (`fuzz/`) replayed on every input it kept: the corpus and each
//! reproducer of a crash once found. Plain `cargo test`: no nightly, no database.

#[test]
fn sql_row_corpus_passes() {
    idem::fuzzing::replay_corpus("sql_row", idem_sql::fuzzing::sql_row);
}
