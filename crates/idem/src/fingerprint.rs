//! The [`Fingerprint`] of a request: SHA-256 over its method, path and canonical body.
//!
//! Two requests under one key are "the same request" exactly when their fingerprints are
//! equal. JSON bodies are hashed in the canonical form of RFC 8785 (JCS): object members
//! sorted by their UTF-16 code units at every depth, no insignificant whitespace, numbers
//! written as ECMAScript writes them and strings with the minimal escapes. So
//! `{"b":1,"a":2.0}` and `{ "a": 2, "b": 1 }` are one request.

use std::fmt;

use serde_json::Value;
use sha2::{Digest, Sha256};

/// Which top-level fields of a JSON body make the fingerprint.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum FieldSelection {
    /// The whole body.
    #[default]
    All,
    /// Only these top-level members of an object body; absent ones are left out. A body
    /// that is not an object is hashed whole.
    Only(Vec<String>),
}

/// A SHA-256 digest identifying a request's significant parts.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint([u8; 32]);

impl Fingerprint {
    /// Wraps a digest computed elsewhere (for example read back from a store).
    pub fn from_digest(digest: [u8; 32]) -> Self {
        Self(digest)
    }

    /// Reads a digest from a slice, which must be 32 bytes long.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        <[u8; 32]>::try_from(bytes).ok().map(Self)
    }

    /// The fingerprint of a request with a JSON body.
    pub fn of_json(method: &str, path: &str, body: &Value, fields: &FieldSelection) -> Self {
        let mut canonical = String::new();
        match (fields, body) {
            (FieldSelection::Only(names), Value::Object(members)) => {
                let kept: serde_json::Map<String, Value> = names
                    .iter()
                    .filter_map(|name| members.get(name).map(|v| (name.clone(), v.clone())))
                    .collect();
                write_canonical(&mut canonical, &Value::Object(kept));
            }
            _ => write_canonical(&mut canonical, body),
        }
        Self::digest(method, path, b"json", canonical.as_bytes())
    }

    /// The fingerprint of a request whose body is opaque bytes (not JSON, or empty).
    pub fn of_bytes(method: &str, path: &str, body: &[u8]) -> Self {
        Self::digest(method, path, b"raw", body)
    }

    fn digest(method: &str, path: &str, kind: &[u8], body: &[u8]) -> Self {
        // Length prefixes keep the parts apart: no (method, path) pair can imitate another.
        let mut hasher = Sha256::new();
        for part in [method.as_bytes(), path.as_bytes(), kind, body] {
            hasher.update((part.len() as u64).to_be_bytes());
            hasher.update(part);
        }
        Self(hasher.finalize().into())
    }

    /// The 32 digest bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The digest as 64 lowercase hex digits.
    pub fn to_hex(&self) -> String {
        to_hex(&self.0)
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({})", &self.to_hex()[..16])
    }
}

pub(crate) fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push(char::from(DIGITS[usize::from(byte >> 4)]));
        out.push(char::from(DIGITS[usize::from(byte & 0xf)]));
    }
    out
}

/// Writes `value` in the canonical JSON form of RFC 8785.
pub fn canonical_json(value: &Value) -> String {
    let mut out = String::new();
    write_canonical(&mut out, value);
    out
}

fn write_canonical(out: &mut String, value: &Value) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => write_number(out, n),
        Value::String(s) => write_string(out, s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(out, item);
            }
            out.push(']');
        }
        Value::Object(members) => {
            // RFC 8785 §3.2.3: members sorted by the UTF-16 code units of their names.
            let mut sorted: Vec<(&String, &Value)> = members.iter().collect();
            sorted.sort_by(|(a, _), (b, _)| a.encode_utf16().cmp(b.encode_utf16()));
            out.push('{');
            for (i, (name, item)) in sorted.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_string(out, name);
                out.push(':');
                write_canonical(out, item);
            }
            out.push('}');
        }
    }
}

fn write_number(out: &mut String, n: &serde_json::Number) {
    // RFC 8785 §3.2.2.3: every number is an IEEE-754 double written as ECMAScript does.
    match n.as_f64() {
        Some(f) if f.is_finite() => out.push_str(ryu_js::Buffer::new().format_finite(f)),
        // serde_json never yields a non-finite number from JSON text; keep its own form.
        _ => out.push_str(&n.to_string()),
    }
}

fn write_string(out: &mut String, s: &str) {
    // RFC 8785 §3.2.2.2: escape only '"', '\\' and control characters, short forms first.
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\u{c}' => out.push_str("\\f"),
            '\r' => out.push_str("\\r"),
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(text: &str) -> Value {
        serde_json::from_str(text).expect("test JSON parses")
    }

    #[test]
    fn canonical_form_sorts_keys_at_every_depth_and_drops_whitespace() {
        let v = parse(r#"{ "b": [1, {"z": true, "a": null}], "a": "x" }"#);
        assert_eq!(
            canonical_json(&v),
            r#"{"a":"x","b":[1,{"a":null,"z":true}]}"#
        );
    }

    #[test]
    fn numbers_are_written_as_ecmascript_does() {
        let v = parse("[2.0, 1e21, 1e-7, 0.1, -0.0, 100, 123456789012345678901, 1E+2]");
        assert_eq!(
            canonical_json(&v),
            "[2,1e+21,1e-7,0.1,0,100,123456789012345680000,100]"
        );
    }

    #[test]
    fn strings_use_minimal_escapes() {
        let v = json!("a\"b\\c\u{1}\n\u{7f}é€😀/");
        assert_eq!(canonical_json(&v), "\"a\\\"b\\\\c\\u0001\\n\u{7f}é€😀/\"");
    }

    #[test]
    fn keys_sort_by_utf16_code_units() {
        // U+1F600 (surrogates D83D DE00) sorts before U+E000 in UTF-16, after it in UTF-8.
        let v = json!({"\u{E000}": 2, "\u{1F600}": 1});
        assert_eq!(canonical_json(&v), "{\"\u{1F600}\":1,\"\u{E000}\":2}");
    }

    #[test]
    fn rfc8785_sample() {
        let v = parse(
            r#"{"numbers":[333333333.33333329,1E30,4.50,2e-3,0.000000000000000000000000001],"string":"\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/","literals":[null,true,false]}"#,
        );
        assert_eq!(
            canonical_json(&v),
            r#"{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],"string":"€$\u000f\nA'B\"\\\\\"/"}"#
        );
    }

    #[test]
    fn fingerprint_ignores_formatting_but_not_content_method_or_path() {
        let of = |method: &str, path: &str, body: &str| {
            Fingerprint::of_json(method, path, &parse(body), &FieldSelection::All)
        };
        let a = of("POST", "/p", r#"{"a":1,"b":2}"#);
        assert_eq!(a, of("POST", "/p", r#"{ "b":2, "a":1.0 }"#));
        assert_ne!(a, of("POST", "/p", r#"{"a":1,"b":3}"#), "content");
        assert_ne!(a, of("PATCH", "/p", r#"{"a":1,"b":2}"#), "method");
        assert_ne!(a, of("POST", "/q", r#"{"a":1,"b":2}"#), "path");
    }

    #[test]
    fn field_subset_ignores_other_fields() {
        let only = FieldSelection::Only(vec!["amount".into(), "payer".into()]);
        let a = Fingerprint::of_json(
            "POST",
            "/p",
            &json!({"amount": 5, "payer": "x", "note": "1"}),
            &only,
        );
        let b = Fingerprint::of_json(
            "POST",
            "/p",
            &json!({"payer": "x", "amount": 5, "note": "2"}),
            &only,
        );
        let c = Fingerprint::of_json("POST", "/p", &json!({"payer": "x", "amount": 6}), &only);
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn parts_cannot_imitate_each_other() {
        assert_ne!(
            Fingerprint::of_bytes("POST", "/ab", b""),
            Fingerprint::of_bytes("POST/", "ab", b"")
        );
        assert_ne!(
            Fingerprint::of_bytes("POST", "/", b"{}"),
            Fingerprint::of_json("POST", "/", &json!({}), &FieldSelection::All)
        );
    }

    #[test]
    fn hex_round_trip() {
        let f = Fingerprint::of_bytes("GET", "/", b"x");
        assert_eq!(f.to_hex().len(), 64);
        assert_eq!(Fingerprint::from_slice(f.as_bytes()), Some(f));
        assert_eq!(Fingerprint::from_slice(&[0; 31]), None);
    }
}
