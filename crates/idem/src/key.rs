//! Who owns a key ([`Scope`]) and the client's request id ([`Key`]).

use std::fmt;

/// The longest [`Key`] accepted, in bytes (DESIGN §1: 1 to 255 printable ASCII characters).
pub const KEY_LEN_MAX: usize = 255;

/// The longest [`Scope`] accepted, in bytes.
pub const SCOPE_LEN_MAX: usize = 512;

/// Why a string is not a valid [`Key`] or [`Scope`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The key is the empty string.
    #[error("key is empty")]
    Empty,
    /// The string is longer than allowed.
    #[error("{what} is {len} bytes long; at most {max} are allowed")]
    TooLong {
        /// `"key"` or `"scope"`.
        what: &'static str,
        /// Its length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The string holds a byte outside printable ASCII (or a brace, in a scope).
    #[error("{what} has a forbidden character at byte {position} (0x{byte:02x}): only printable ASCII is allowed")]
    Character {
        /// `"key"` or `"scope"`.
        what: &'static str,
        /// Byte offset of the first bad character.
        position: usize,
        /// The first byte of that character.
        byte: u8,
    },
}

fn is_printable_ascii(byte: u8) -> bool {
    (0x20..=0x7e).contains(&byte)
}

/// A client's unique request id: an `Idempotency-Key` or a business key such as an `order_id`.
///
/// Always 1 to 255 printable ASCII characters (0x20..=0x7E), checked on construction, so
/// every store can keep it in a fixed-width column and in a Redis key name.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key(String);

/// What logs and spans show of a key: the first 16 hex digits of its SHA-256. The key
/// itself may carry what a client considers private (an order number, an e-mail).
pub fn key_hash(key: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(key.as_bytes());
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

impl Key {
    /// Checks `raw` and makes it a key.
    ///
    /// # Errors
    /// [`KeyError`] when `raw` is empty, longer than [`KEY_LEN_MAX`], or not printable ASCII.
    pub fn new(raw: impl Into<String>) -> Result<Self, KeyError> {
        let raw = raw.into();
        if raw.is_empty() {
            return Err(KeyError::Empty);
        }
        if raw.len() > KEY_LEN_MAX {
            return Err(KeyError::TooLong {
                what: "key",
                len: raw.len(),
                max: KEY_LEN_MAX,
            });
        }
        if let Some(position) = raw.bytes().position(|b| !is_printable_ascii(b)) {
            let byte = raw.as_bytes()[position];
            return Err(KeyError::Character {
                what: "key",
                position,
                byte,
            });
        }
        Ok(Self(raw))
    }

    /// The key as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key({:?})", self.0)
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<&str> for Key {
    type Error = KeyError;
    fn try_from(raw: &str) -> Result<Self, KeyError> {
        Self::new(raw)
    }
}

/// Whose key it is and for what: the principal (tenant) and the operation.
///
/// Keys of different scopes never meet. A scope is 0 to 512 printable ASCII characters
/// without `{` or `}` (so the Redis store can wrap it in a hash tag); the empty scope is
/// the global one. [`Scope::for_operation`] builds one from arbitrary parts.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Scope(String);

impl Scope {
    /// The empty scope, shared by every caller.
    pub fn global() -> Self {
        Self(String::new())
    }

    /// Checks `raw` and makes it a scope.
    ///
    /// # Errors
    /// [`KeyError`] when `raw` is too long, not printable ASCII, or holds a brace.
    pub fn new(raw: impl Into<String>) -> Result<Self, KeyError> {
        let raw = raw.into();
        if raw.len() > SCOPE_LEN_MAX {
            return Err(KeyError::TooLong {
                what: "scope",
                len: raw.len(),
                max: SCOPE_LEN_MAX,
            });
        }
        if let Some(position) = raw
            .bytes()
            .position(|b| !is_printable_ascii(b) || b == b'{' || b == b'}')
        {
            let byte = raw.as_bytes()[position];
            return Err(KeyError::Character {
                what: "scope",
                position,
                byte,
            });
        }
        Ok(Self(raw))
    }

    /// A scope for `operation` (such as `POST /v1/payments`) on behalf of `principal`.
    ///
    /// Any bytes are accepted: characters a scope cannot hold are percent-encoded, and an
    /// over-long result is shortened to a SHA-256 digest, so distinct inputs stay distinct.
    pub fn for_operation(principal: Option<&str>, operation: &str) -> Self {
        let mut raw = String::new();
        if let Some(principal) = principal {
            push_escaped(&mut raw, principal);
            raw.push('|');
        }
        push_escaped(&mut raw, operation);
        if raw.len() > SCOPE_LEN_MAX {
            use sha2::Digest;
            let digest = sha2::Sha256::digest(raw.as_bytes());
            raw = format!("sha256:{}", crate::fingerprint::to_hex(&digest));
        }
        Self(raw)
    }

    /// The scope as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn push_escaped(out: &mut String, part: &str) {
    for byte in part.bytes() {
        if is_printable_ascii(byte) && !matches!(byte, b'{' | b'}' | b'%' | b'|') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
}

impl fmt::Debug for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Scope({:?})", self.0)
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_accepts_printable_ascii_up_to_255() {
        assert!(Key::new("a").is_ok());
        assert!(Key::new("x".repeat(255)).is_ok());
        assert!(Key::new("order 42:~!").is_ok());
    }

    #[test]
    fn key_rejects_empty_long_and_non_ascii() {
        assert_eq!(Key::new(""), Err(KeyError::Empty));
        assert!(matches!(
            Key::new("x".repeat(256)),
            Err(KeyError::TooLong { len: 256, .. })
        ));
        assert!(matches!(
            Key::new("é"),
            Err(KeyError::Character { position: 0, .. })
        ));
        assert!(matches!(
            Key::new("a\nb"),
            Err(KeyError::Character {
                position: 1,
                byte: b'\n',
                ..
            })
        ));
        assert!(matches!(
            Key::new("a\x7f"),
            Err(KeyError::Character { position: 1, .. })
        ));
    }

    #[test]
    fn scope_rejects_braces_and_escapes_them_for_operations() {
        assert!(Scope::new("a{b").is_err());
        let scope = Scope::for_operation(Some("user{1}|é"), "POST /v1/payments");
        assert_eq!(scope.as_str(), "user%7B1%7D%7C%C3%A9|POST /v1/payments");
        assert!(Scope::new(scope.as_str()).is_ok());
        assert_ne!(
            Scope::for_operation(Some("a|b"), "c"),
            Scope::for_operation(Some("a"), "b|c")
        );
    }

    #[test]
    fn long_scope_is_hashed() {
        let scope = Scope::for_operation(Some(&"p".repeat(600)), "POST /x");
        assert!(scope.as_str().starts_with("sha256:"));
        assert!(Scope::new(scope.as_str()).is_ok());
    }
}
