//! The fuzz targets of this crate's code (`fuzz/`), replayed on every input they kept: the
//! corpus and each reproducer of a crash once found. Plain `cargo test`, no nightly.

use idem::fuzzing::{fingerprint, key_header, replay_corpus, stored_response};

#[test]
fn key_header_corpus_passes() {
    replay_corpus("key_header", key_header);
}

#[test]
fn fingerprint_corpus_passes() {
    replay_corpus("fingerprint", fingerprint);
}

#[test]
fn stored_response_corpus_passes() {
    replay_corpus("stored_response", stored_response);
}
