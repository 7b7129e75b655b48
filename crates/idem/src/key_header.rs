//! Reading the `Idempotency-Key` header, once for every surface (the tower layer, `idem
//! proxy`, `idem serve`), so that they accept and refuse the same values.
//!
//! The value is an RFC 8941 structured-field string (`"abc"`, with `\"` and `\\` escapes),
//! as draft-ietf-httpapi-idempotency-key-header defines it, or a bare token (`abc`) for
//! Stripe-style clients that send the key unquoted. Either way the result must be a valid
//! [`Key`]: 1 to 255 printable ASCII characters.
//!
//! This module knows no HTTP library: it takes the header's raw values as bytes.
//!
//! ## Example
//!
//! ```
//! use idem::{key_from_header, KeyHeaderError};
//!
//! let key = key_from_header([&b"\"a \\\"b\\\"\""[..]]).unwrap().unwrap();
//! assert_eq!(key.as_str(), r#"a "b""#);
//! assert_eq!(key_from_header([&b"abc"[..]]).unwrap().unwrap().as_str(), "abc");
//! assert_eq!(key_from_header(std::iter::empty::<&[u8]>()), Ok(None));
//! assert_eq!(
//!     key_from_header([&b"\"k\""[..], &b"\"k\""[..]]),
//!     Err(KeyHeaderError::Repeated)
//! );
//! ```

use crate::{Key, KeyError};

/// The header's name, as the IETF draft spells it.
pub const KEY_HEADER: &str = "Idempotency-Key";

/// Why an `Idempotency-Key` header is refused; its `Display` is a reason safe to show the
/// client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyHeaderError {
    /// The header appears more than once (a key is one value, never a list).
    #[error("the header appears more than once")]
    Repeated,
    /// The value holds a byte outside visible ASCII, space and tab.
    #[error("the header value is not visible ASCII")]
    NotAscii,
    /// An sf-string has no closing quote.
    #[error("the string has no closing quote")]
    Unclosed,
    /// Something follows an sf-string's closing quote.
    #[error("unexpected characters after the closing quote")]
    AfterClosingQuote,
    /// A backslash in an sf-string escapes something other than `"` or `\`.
    #[error("a backslash must escape '\"' or '\\'")]
    BadEscape,
    /// An sf-string holds a character outside printable ASCII, such as a tab.
    #[error("the string holds a character outside printable ASCII")]
    StringCharacter,
    /// An unquoted key holds a space, quote, comma or tab.
    #[error(
        "an unquoted key must be visible ASCII without spaces, quotes or commas; quote it as an sf-string"
    )]
    BareCharacter,
    /// The value, once read, is not a valid [`Key`] (empty, or over 255 characters).
    #[error("{0}")]
    Key(#[from] KeyError),
}

/// The key in an `Idempotency-Key` header given all its raw `values` in order: `None` when
/// there are none.
///
/// # Errors
/// [`KeyHeaderError::Repeated`] for more than one value; otherwise as
/// [`parse_key_header_value`].
pub fn key_from_header<'a>(
    values: impl IntoIterator<Item = &'a [u8]>,
) -> Result<Option<Key>, KeyHeaderError> {
    let mut values = values.into_iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(KeyHeaderError::Repeated);
    }
    parse_key_header_value(value).map(Some)
}

/// Parses one `Idempotency-Key` value: `"abc"` (an sf-string, unescaped) or `abc` (a bare
/// token).
///
/// # Errors
/// [`KeyHeaderError`] naming what is wrong with the value.
pub fn parse_key_header_value(value: &[u8]) -> Result<Key, KeyHeaderError> {
    // What `http::HeaderValue::to_str` accepts: visible ASCII, space and tab.
    if !value
        .iter()
        .all(|b| (0x20..=0x7e).contains(b) || *b == b'\t')
    {
        return Err(KeyHeaderError::NotAscii);
    }
    let value = std::str::from_utf8(value).map_err(|_| KeyHeaderError::NotAscii)?;
    // RFC 8941 §4.2: leading and trailing spaces around a field value are discarded.
    let value = value.trim_matches(' ');
    let raw = match value.strip_prefix('"') {
        Some(quoted) => parse_sf_string(quoted)?,
        None => parse_bare(value)?,
    };
    Ok(Key::new(raw)?)
}

/// RFC 8941 §4.2.5, after the opening quote: printable ASCII, `\"` and `\\` escapes only,
/// and nothing after the closing quote.
fn parse_sf_string(rest: &str) -> Result<String, KeyHeaderError> {
    let mut out = String::with_capacity(rest.len());
    let mut chars = rest.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(escaped @ ('"' | '\\')) => out.push(escaped),
                _ => return Err(KeyHeaderError::BadEscape),
            },
            '"' if chars.as_str().is_empty() => return Ok(out),
            '"' => return Err(KeyHeaderError::AfterClosingQuote),
            ' '..='~' => out.push(c),
            _ => return Err(KeyHeaderError::StringCharacter),
        }
    }
    Err(KeyHeaderError::Unclosed)
}

/// A bare key: visible ASCII without quotes, commas or spaces (so a list or a half-quoted
/// value is refused rather than misread). An empty one is left to [`Key::new`].
fn parse_bare(value: &str) -> Result<String, KeyHeaderError> {
    if value
        .bytes()
        .any(|b| !(0x21..=0x7e).contains(&b) || matches!(b, b'"' | b','))
    {
        return Err(KeyHeaderError::BareCharacter);
    }
    Ok(value.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(value: &str) -> String {
        parse_key_header_value(value.as_bytes())
            .expect("a valid key")
            .as_str()
            .to_owned()
    }

    fn bad(value: &[u8]) -> KeyHeaderError {
        match parse_key_header_value(value) {
            Err(error) => error,
            Ok(key) => panic!("{value:?} should be invalid, got {key:?}"),
        }
    }

    #[test]
    fn sf_string_is_unquoted_and_unescaped() {
        assert_eq!(ok("\"abc\""), "abc");
        assert_eq!(
            ok("\"8e03978e-40d5-43e8-bc93-6894a57f9324\""),
            "8e03978e-40d5-43e8-bc93-6894a57f9324"
        );
        assert_eq!(ok(r#""a \"b\" \\ c""#), r#"a "b" \ c"#);
        assert_eq!(ok("\"a b\""), "a b");
        assert_eq!(ok("  \"padded\"  "), "padded");
    }

    #[test]
    fn bare_token_is_accepted_for_stripe_style_clients() {
        assert_eq!(ok("abc"), "abc");
        assert_eq!(ok("8e03978e-40d5-43e8"), "8e03978e-40d5-43e8");
        assert_eq!(ok("order:42/x_y.z*"), "order:42/x_y.z*");
        // A bare backslash is a character like any other: no escapes outside quotes.
        assert_eq!(ok(r"a\b"), r"a\b");
    }

    #[test]
    fn malformed_sf_strings_are_invalid() {
        assert_eq!(bad(b"\"abc"), KeyHeaderError::Unclosed);
        assert_eq!(bad(b"\"abc\"def"), KeyHeaderError::AfterClosingQuote);
        assert_eq!(bad(b"\"a\"b"), KeyHeaderError::AfterClosingQuote);
        assert_eq!(bad(b"\"a\\nb\""), KeyHeaderError::BadEscape);
        assert_eq!(bad(b"\"a\\qb\""), KeyHeaderError::BadEscape);
        assert_eq!(bad(b"\"a\\"), KeyHeaderError::BadEscape);
        assert_eq!(bad(b"\"a\tb\""), KeyHeaderError::StringCharacter);
        assert_eq!(bad(b"\"\""), KeyHeaderError::Key(KeyError::Empty));
    }

    #[test]
    fn malformed_bare_keys_are_invalid() {
        assert_eq!(bad(b""), KeyHeaderError::Key(KeyError::Empty));
        assert_eq!(bad(b"   "), KeyHeaderError::Key(KeyError::Empty));
        assert_eq!(bad(b"a b"), KeyHeaderError::BareCharacter);
        assert_eq!(bad(b"a,b"), KeyHeaderError::BareCharacter);
        assert_eq!(bad(b"ab\""), KeyHeaderError::BareCharacter);
        assert_eq!(bad(b"a\tb"), KeyHeaderError::BareCharacter);
        assert_eq!(bad("é".as_bytes()), KeyHeaderError::NotAscii);
        assert_eq!(bad(b"caf\xe9"), KeyHeaderError::NotAscii);
        assert_eq!(bad(b"a\nb"), KeyHeaderError::NotAscii);
    }

    #[test]
    fn length_limit_is_255_characters() {
        assert_eq!(ok(&"k".repeat(255)).len(), 255);
        assert_eq!(ok(&format!("\"{}\"", "k".repeat(255))).len(), 255);
        for value in [
            "k".repeat(256),
            "k".repeat(300),
            format!("\"{}\"", "k".repeat(256)),
        ] {
            let error = bad(value.as_bytes());
            assert!(
                matches!(error, KeyHeaderError::Key(KeyError::TooLong { .. })),
                "{error:?}"
            );
            assert!(error.to_string().contains("at most 255"), "{error}");
        }
    }

    #[test]
    fn header_absent_once_or_repeated() {
        assert_eq!(key_from_header(Vec::<&[u8]>::new()), Ok(None));
        let key = key_from_header([&b"\"k1\""[..]]).expect("valid");
        assert_eq!(key.as_ref().map(Key::as_str), Some("k1"));
        assert_eq!(
            key_from_header([&b"\"k1\""[..], &b"k2"[..]]),
            Err(KeyHeaderError::Repeated)
        );
        // Repeated is refused even when both copies agree.
        assert_eq!(
            key_from_header([&b"k"[..], &b"k"[..]]),
            Err(KeyHeaderError::Repeated)
        );
        assert_eq!(
            key_from_header([&b"caf\xe9"[..]]),
            Err(KeyHeaderError::NotAscii)
        );
    }

    #[test]
    fn reasons_are_human() {
        assert_eq!(
            KeyHeaderError::Key(KeyError::Empty).to_string(),
            "key is empty"
        );
        assert_eq!(
            KeyHeaderError::Repeated.to_string(),
            "the header appears more than once"
        );
    }
}
