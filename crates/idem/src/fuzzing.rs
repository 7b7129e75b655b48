//! The checks the fuzz targets run (`fuzz/`), one function per target, so that the fuzzer
//! and the regression tests of plain `cargo test` run the same code (feature `fuzzing`).
//!
//! Each check takes arbitrary bytes, feeds them to the code under test and panics when a
//! documented property fails; the code under test must never panic on its own. The
//! crates that own the other targets (`idem-redis`, `idem-sql`, `idem-pay`) build their
//! checks from [`Input`] and replay their corpora with [`replay_corpus`].
//!
//! ## Example
//!
//! ```
//! idem::fuzzing::key_header(b"\"order-1\"");
//! idem::fuzzing::fingerprint(br#"{"b":1,"a":[2.0,"x"]}"#);
//! idem::fuzzing::stored_response(b"IDR1\x00\xc8\x00\x00\x00\x00ok");
//! ```

use std::path::{Path, PathBuf};

use bytes::Bytes;
use serde_json::{Map, Number, Value};

use crate::{
    canonical_json, key_from_header, parse_key_header_value, FieldSelection, Fingerprint,
    KeyHeaderError, StoredResponse, KEY_LEN_MAX,
};

/// Bytes read front to back as the parts of a structured input; past the end every read
/// yields zeros, so any input is a whole value.
#[derive(Debug, Clone)]
pub struct Input<'a> {
    rest: &'a [u8],
}

impl<'a> Input<'a> {
    /// Reads `data` from its start.
    pub fn new(data: &'a [u8]) -> Self {
        Self { rest: data }
    }

    /// The next byte (0 past the end).
    pub fn byte(&mut self) -> u8 {
        self.array::<1>()[0]
    }

    /// The next 8 bytes as a big-endian `i64` (zero-padded past the end).
    pub fn i64(&mut self) -> i64 {
        i64::from_be_bytes(self.array())
    }

    /// The next `N` bytes, zero-padded past the end.
    pub fn array<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0; N];
        let taken = self.bytes(N);
        out[..taken.len()].copy_from_slice(taken);
        out
    }

    /// The next `len` bytes, or fewer when the input ends first.
    pub fn bytes(&mut self, len: usize) -> &'a [u8] {
        let (head, tail) = self.rest.split_at(len.min(self.rest.len()));
        self.rest = tail;
        head
    }

    /// Everything not read yet.
    pub fn rest(&mut self) -> &'a [u8] {
        self.bytes(self.rest.len())
    }
}

/// `Idempotency-Key` values, one per line of `data` (a newline is refused inside a value
/// anyway): [`key_from_header`] never panics, agrees with [`parse_key_header_value`], and
/// every key it accepts is 1 to 255 printable ASCII characters that read back the same
/// when written as an sf-string (and as a bare token, where one can hold it).
pub fn key_header(data: &[u8]) {
    let values: Vec<&[u8]> = data.split(|b| *b == b'\n').collect();
    let parsed = key_from_header(values.iter().copied());
    if let [value] = values.as_slice() {
        assert_eq!(parsed, parse_key_header_value(value).map(Some));
    } else {
        assert_eq!(parsed, Err(KeyHeaderError::Repeated));
    }
    let Ok(Some(key)) = parsed else { return };
    let raw = key.as_str();
    assert!((1..=KEY_LEN_MAX).contains(&raw.len()), "{key:?}");
    assert!(raw.bytes().all(|b| (0x20..=0x7e).contains(&b)), "{key:?}");

    let mut quoted = String::from('"');
    for c in raw.chars() {
        if matches!(c, '"' | '\\') {
            quoted.push('\\');
        }
        quoted.push(c);
    }
    quoted.push('"');
    assert_eq!(parse_key_header_value(quoted.as_bytes()).as_ref(), Ok(&key));
    if !raw.contains([' ', ',', '"']) {
        assert_eq!(parse_key_header_value(raw.as_bytes()).as_ref(), Ok(&key));
    }
}

/// A request body two ways, as JSON text and as a [`Value`] built from the bytes:
/// [`Fingerprint::of_bytes`] never panics and is deterministic, and the canonical form is
/// stable — it parses, and canonicalising the parsed form gives it back, so a replayed
/// request keeps its fingerprint.
pub fn fingerprint(data: &[u8]) {
    let raw = Fingerprint::of_bytes("POST", "/v1/payments", data);
    assert_eq!(raw, Fingerprint::of_bytes("POST", "/v1/payments", data));
    if let Ok(value) = serde_json::from_slice::<Value>(data) {
        canonical_is_stable(&value);
    }
    canonical_is_stable(&json_value(&mut Input::new(data), 0));
}

fn canonical_is_stable(value: &Value) {
    let canonical = canonical_json(value);
    let reparsed: Value = serde_json::from_str(&canonical)
        .unwrap_or_else(|e| panic!("canonical form {canonical:?} does not parse: {e}"));
    // The whole-body fingerprint hashes exactly this canonical form, so it is stable too;
    // a field selection hashes the canonical form of the members it keeps.
    assert_eq!(canonical_json(&reparsed), canonical, "of {value:?}");
    let some = FieldSelection::Only(vec!["amount".to_owned(), String::new()]);
    assert_eq!(
        Fingerprint::of_json("POST", "/", value, &some),
        Fingerprint::of_json("POST", "/", &reparsed, &some)
    );
}

/// The deepest array or object [`json_value`] builds, below serde_json's parsing limit.
const DEPTH_MAX: u32 = 32;

/// A JSON value of any shape, including numbers and strings that text rarely reaches.
fn json_value(input: &mut Input<'_>, depth: u32) -> Value {
    let tag = input.byte();
    match tag % 8 {
        0 => Value::Null,
        1 => Value::Bool(tag & 0x80 != 0),
        2 => Value::from(input.i64()),
        3 => Value::from(u64::from_be_bytes(input.array())),
        4 => Number::from_f64(f64::from_be_bytes(input.array())).map_or(Value::Null, Value::Number),
        5 => Value::String(json_string(input)),
        6 if depth < DEPTH_MAX => {
            let len = usize::from(input.byte() % 8);
            Value::Array((0..len).map(|_| json_value(input, depth + 1)).collect())
        }
        7 if depth < DEPTH_MAX => {
            let len = usize::from(input.byte() % 8);
            let members: Map<String, Value> = (0..len)
                .map(|_| (json_string(input), json_value(input, depth + 1)))
                .collect();
            Value::Object(members)
        }
        _ => Value::Null,
    }
}

fn json_string(input: &mut Input<'_>) -> String {
    let len = usize::from(input.byte() % 32);
    String::from_utf8_lossy(input.bytes(len)).into_owned()
}

/// Bytes read back from a store: [`StoredResponse::decode`] never panics, and what it
/// accepts is exactly what [`StoredResponse::encode`] writes for the result; a response
/// built from the bytes survives `encode` then `decode`.
pub fn stored_response(data: &[u8]) {
    if let Ok(response) = StoredResponse::decode(data) {
        assert_eq!(response.encode(), data);
    }
    let response = stored_response_of(&mut Input::new(data));
    assert_eq!(StoredResponse::decode(&response.encode()), Ok(response));
}

fn stored_response_of(input: &mut Input<'_>) -> StoredResponse {
    let status = u16::from_be_bytes(input.array());
    let headers = (0..input.byte() % 4)
        .map(|_| {
            let name_len = usize::from(input.byte() % 32);
            let name = String::from_utf8_lossy(input.bytes(name_len)).into_owned();
            let value_len = usize::from(input.byte());
            (name, input.bytes(value_len).to_vec())
        })
        .collect();
    StoredResponse {
        status,
        headers,
        body: Bytes::copy_from_slice(input.rest()),
    }
}

/// The folders whose files are the inputs of fuzz target `target`: its corpus, the
/// reproducers kept as regressions, and any crash the fuzzer left in `artifacts`.
pub fn corpus_dirs(target: &str) -> [PathBuf; 3] {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz");
    ["corpus", "regressions", "artifacts"].map(|kind| fuzz.join(kind).join(target))
}

/// Runs `check` on every input of fuzz target `target` (see [`corpus_dirs`]) and returns
/// how many there were.
///
/// # Panics
/// When `check` panics on an input (the message names the file), when a folder cannot be
/// read, or when the target has no input at all (a corpus that went missing).
pub fn replay_corpus(target: &str, check: impl Fn(&[u8])) -> usize {
    let mut files: Vec<PathBuf> = corpus_dirs(target)
        .iter()
        .filter(|dir| dir.is_dir())
        .flat_map(|dir| {
            std::fs::read_dir(dir)
                .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
                .map(|entry| entry.expect("a readable folder entry").path())
        })
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "fuzz target {target} has no corpus");
    for path in &files {
        let data =
            std::fs::read(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(&data)));
        assert!(outcome.is_ok(), "{target}: {} fails", path.display());
    }
    files.len()
}
