//! Reading the `Idempotency-Key` header: [`idem::key_from_header`] does the parsing (an RFC
//! 8941 sf-string such as `"abc"`, or a bare token for Stripe-style clients), the same for
//! the layer, `idem proxy` and `idem serve`; this module maps its errors to [`Error`].

use http::header::{HeaderMap, HeaderName, HeaderValue};
use idem::{Key, KeyHeaderError};

use crate::Error;

/// The header the IETF draft names.
pub const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");

/// The key in header `name` of `headers`: `None` when absent.
///
/// # Errors
/// [`Error::KeyInvalid`] when the header is repeated, not ASCII, a malformed sf-string, or
/// not a valid [`Key`] (empty, over 255 characters).
pub fn from_header(headers: &HeaderMap, name: &HeaderName) -> Result<Option<Key>, Error> {
    idem::key_from_header(headers.get_all(name).iter().map(HeaderValue::as_bytes)).map_err(invalid)
}

/// Parses one header value: `"abc"` (an sf-string) or `abc` (a bare token).
///
/// # Errors
/// [`Error::KeyInvalid`] naming what is wrong with the value.
pub fn parse(value: &str) -> Result<Key, Error> {
    idem::parse_key_header_value(value.as_bytes()).map_err(invalid)
}

fn invalid(error: KeyHeaderError) -> Error {
    Error::KeyInvalid {
        reason: error.to_string(),
    }
}

#[cfg(test)]
mod tests {
    //! The parsing itself is tested in `idem`; these check the mapping to [`Error`].

    use super::*;

    #[test]
    fn parse_maps_to_key_invalid_with_the_parsers_reason() {
        assert_eq!(parse("\"a\\\"b\"").expect("valid").as_str(), "a\"b");
        match parse("a b") {
            Err(Error::KeyInvalid { reason }) => {
                assert_eq!(reason, KeyHeaderError::BareCharacter.to_string());
            }
            other => panic!("`a b` is invalid, got {other:?}"),
        }
    }

    #[test]
    fn header_absent_repeated_or_non_ascii() {
        let mut headers = HeaderMap::new();
        assert!(matches!(from_header(&headers, &IDEMPOTENCY_KEY), Ok(None)));
        headers.insert(IDEMPOTENCY_KEY, HeaderValue::from_static("\"k1\""));
        let key = from_header(&headers, &IDEMPOTENCY_KEY).expect("valid");
        assert_eq!(key.map(|k| k.as_str().to_owned()).as_deref(), Some("k1"));
        headers.append(IDEMPOTENCY_KEY, HeaderValue::from_static("k2"));
        assert!(matches!(
            from_header(&headers, &IDEMPOTENCY_KEY),
            Err(Error::KeyInvalid { reason }) if reason.contains("more than once")
        ));

        let mut headers = HeaderMap::new();
        let latin1 = HeaderValue::from_bytes(b"caf\xe9").expect("obs-text is a valid value");
        headers.insert(IDEMPOTENCY_KEY, latin1);
        assert!(matches!(
            from_header(&headers, &IDEMPOTENCY_KEY),
            Err(Error::KeyInvalid { reason }) if reason.contains("not visible ASCII")
        ));
    }
}
