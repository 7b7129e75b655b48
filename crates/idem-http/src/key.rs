//! Reading the `Idempotency-Key` header: an RFC 8941 structured-field string (`"abc"`), as
//! draft-ietf-httpapi-idempotency-key-header defines it, or a bare token for Stripe-style
//! clients that send the key unquoted.

use http::header::{HeaderMap, HeaderName};
use idem::Key;

use crate::Error;

/// The header the IETF draft names.
pub const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");

/// The key in header `name` of `headers`: `None` when absent.
///
/// # Errors
/// [`Error::KeyInvalid`] when the header is repeated, not ASCII, a malformed sf-string, or
/// not a valid [`Key`] (empty, over 255 characters).
pub fn from_header(headers: &HeaderMap, name: &HeaderName) -> Result<Option<Key>, Error> {
    let mut values = headers.get_all(name).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(invalid("the header appears more than once"));
    }
    let text = value
        .to_str()
        .map_err(|_| invalid("the header value is not visible ASCII"))?;
    parse(text).map(Some)
}

/// Parses one header value: `"abc"` (an sf-string) or `abc` (a bare token).
///
/// # Errors
/// [`Error::KeyInvalid`] naming what is wrong with the value.
pub fn parse(value: &str) -> Result<Key, Error> {
    // RFC 8941 §4.2: leading and trailing spaces around a field value are discarded.
    let value = value.trim_matches(' ');
    let raw = if let Some(quoted) = value.strip_prefix('"') {
        parse_sf_string(quoted)?
    } else {
        parse_bare(value)?
    };
    Key::new(raw).map_err(|e| invalid(&e.to_string()))
}

/// RFC 8941 §4.2.5, after the opening quote: printable ASCII, `\"` and `\\` escapes only,
/// and nothing after the closing quote.
fn parse_sf_string(rest: &str) -> Result<String, Error> {
    let mut out = String::with_capacity(rest.len());
    let mut chars = rest.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(escaped @ ('"' | '\\')) => out.push(escaped),
                _ => return Err(invalid("a backslash must escape '\"' or '\\'")),
            },
            '"' => {
                return if chars.as_str().is_empty() {
                    Ok(out)
                } else {
                    Err(invalid("unexpected characters after the closing quote"))
                };
            }
            ' '..='~' => out.push(c),
            _ => {
                return Err(invalid(
                    "the string holds a character outside printable ASCII",
                ))
            }
        }
    }
    Err(invalid("the string has no closing quote"))
}

/// A bare key: visible ASCII without quotes, commas or spaces (so a list or a half-quoted
/// value is refused rather than misread).
fn parse_bare(value: &str) -> Result<String, Error> {
    if value.is_empty() {
        return Err(invalid("the key is empty"));
    }
    match value
        .bytes()
        .find(|b| !(0x21..=0x7e).contains(b) || matches!(b, b'"' | b','))
    {
        Some(_) => Err(invalid(
            "an unquoted key must be visible ASCII without spaces, quotes or commas; quote it as an sf-string",
        )),
        None => Ok(value.to_owned()),
    }
}

fn invalid(reason: &str) -> Error {
    Error::KeyInvalid {
        reason: reason.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn ok(value: &str) -> String {
        parse(value).expect("a valid key").as_str().to_owned()
    }

    fn bad(value: &str) -> String {
        match parse(value) {
            Err(Error::KeyInvalid { reason }) => reason,
            other => panic!("{value:?} should be invalid, got {other:?}"),
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
        assert_eq!(ok("  \"padded\"  "), "padded");
    }

    #[test]
    fn bare_token_is_accepted_for_stripe_style_clients() {
        assert_eq!(ok("abc"), "abc");
        assert_eq!(ok("8e03978e-40d5-43e8"), "8e03978e-40d5-43e8");
        assert_eq!(ok("order:42/x_y.z*"), "order:42/x_y.z*");
    }

    #[test]
    fn malformed_sf_strings_are_invalid() {
        assert!(bad("\"abc").contains("closing quote"));
        assert!(bad("\"abc\"def").contains("after the closing quote"));
        assert!(bad("\"a\\nb\"").contains("backslash"));
        assert!(bad("\"a\tb\"").contains("printable ASCII"));
        assert!(bad("\"\"").contains("empty"));
    }

    #[test]
    fn malformed_bare_keys_are_invalid() {
        assert!(bad("").contains("empty"));
        assert!(bad("a b").contains("unquoted"));
        assert!(bad("a,b").contains("unquoted"));
        assert!(bad("ab\"").contains("unquoted"));
        assert!(bad("é").contains("unquoted"));
    }

    #[test]
    fn length_limit_is_255_characters() {
        assert_eq!(ok(&"k".repeat(255)).len(), 255);
        assert!(bad(&"k".repeat(256)).contains("at most 255"));
        assert!(bad(&"k".repeat(300)).contains("at most 255"));
        assert!(bad(&format!("\"{}\"", "k".repeat(300))).contains("at most 255"));
    }

    #[test]
    fn header_absent_repeated_or_non_ascii() {
        let mut headers = HeaderMap::new();
        assert!(matches!(from_header(&headers, &IDEMPOTENCY_KEY), Ok(None)));
        headers.insert(IDEMPOTENCY_KEY, HeaderValue::from_static("\"k1\""));
        let key = from_header(&headers, &IDEMPOTENCY_KEY).expect("valid");
        assert_eq!(key.map(|k| k.as_str().to_owned()).as_deref(), Some("k1"));
        headers.append(IDEMPOTENCY_KEY, HeaderValue::from_static("k2"));
        assert!(from_header(&headers, &IDEMPOTENCY_KEY).is_err());

        let mut headers = HeaderMap::new();
        let latin1 = HeaderValue::from_bytes(b"caf\xe9").expect("obs-text is a valid value");
        headers.insert(IDEMPOTENCY_KEY, latin1);
        assert!(from_header(&headers, &IDEMPOTENCY_KEY).is_err());
    }
}
