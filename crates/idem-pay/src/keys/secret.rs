//! The secret's format and its stored form: `idem_sk_` and 64 lowercase hex digits (32
//! bytes of the operating system's CSPRNG), stored only as the hex SHA-256 of the whole
//! string. A key's id (`key_` and 16 hex digits) is random too, never derived from the
//! secret, so that it can be shown and logged.

use rand::rngs::OsRng;
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::{Error, Result};

/// What every secret key starts with, so that a leaked one is recognisable (and scannable).
pub const SECRET_PREFIX: &str = "idem_sk_";

/// The random bytes of a secret; the secret carries them as twice as many hex digits.
pub const SECRET_RANDOM_BYTES: usize = 32;

/// The length of a whole secret: the prefix and 64 hex digits.
pub const SECRET_LEN: usize = SECRET_PREFIX.len() + 2 * SECRET_RANDOM_BYTES;

/// What every key id starts with.
pub const KEY_ID_PREFIX: &str = "key_";

/// The random bytes of a key id (16 hex digits).
const KEY_ID_RANDOM_BYTES: usize = 8;

/// The SHA-256 of a secret: the cache's key; its hex form is the stored `key_hash`.
pub(crate) type SecretHash = [u8; 32];

/// Whether `secret` has the exact form of a secret: the prefix, then exactly 64 digits of
/// `0-9a-f`. Decided without the database, so that malformed keys cost nothing.
pub fn is_well_formed(secret: &str) -> bool {
    secret.len() == SECRET_LEN
        && secret.strip_prefix(SECRET_PREFIX).is_some_and(|digits| {
            digits
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        })
}

/// The SHA-256 of the whole secret string, prefix included.
pub(crate) fn hash(secret: &str) -> SecretHash {
    Sha256::digest(secret.as_bytes()).into()
}

/// A new secret, from the operating system's CSPRNG.
///
/// # Errors
/// [`Error::Internal`] when the operating system gives no random bytes.
pub(crate) fn new_secret() -> Result<String> {
    Ok(format!(
        "{SECRET_PREFIX}{}",
        hex::encode(random::<SECRET_RANDOM_BYTES>()?)
    ))
}

/// A new key id, random and unrelated to the secret.
///
/// # Errors
/// [`Error::Internal`] when the operating system gives no random bytes.
pub(crate) fn new_key_id() -> Result<String> {
    Ok(format!(
        "{KEY_ID_PREFIX}{}",
        hex::encode(random::<KEY_ID_RANDOM_BYTES>()?)
    ))
}

/// `N` bytes from the operating system's CSPRNG.
fn random<const N: usize>() -> Result<[u8; N]> {
    let mut bytes = [0u8; N];
    OsRng
        .try_fill_bytes(&mut bytes)
        .map_err(|e| Error::Internal(format!("no random bytes for a key: {e}")))?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_secrets_are_well_formed_and_differ() {
        let a = new_secret().expect("random bytes");
        let b = new_secret().expect("random bytes");
        assert_eq!(a.len(), SECRET_LEN);
        assert_eq!(SECRET_LEN, 72);
        assert!(is_well_formed(&a) && is_well_formed(&b), "{a} {b}");
        assert_ne!(a, b);
        assert_ne!(hash(&a), hash(&b));
    }

    #[test]
    fn key_ids_are_the_prefix_and_16_hex_digits() {
        let id = new_key_id().expect("random bytes");
        let digits = id.strip_prefix(KEY_ID_PREFIX).expect("the prefix");
        assert_eq!(digits.len(), 16);
        assert!(digits
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        assert!(!is_well_formed(&id));
    }

    #[test]
    fn only_the_exact_form_is_well_formed() {
        let good = format!("{SECRET_PREFIX}{}", "0123456789abcdef".repeat(4));
        assert!(is_well_formed(&good));
        let bad = [
            String::new(),
            SECRET_PREFIX.to_owned(),
            good.to_uppercase(),
            good.replace("idem_sk_", "idem_pk_"),
            good.replacen('a', "A", 1),
            good.replacen('0', "g", 1),
            format!("{good}0"),
            good[..SECRET_LEN - 1].to_owned(),
            format!(" {}", &good[1..]),
            format!("{}\n", &good[..SECRET_LEN - 1]),
            // Same byte length, a multi-byte character among the digits.
            format!("{SECRET_PREFIX}é{}", "0".repeat(62)),
        ];
        for secret in &bad {
            assert!(!is_well_formed(secret), "{secret:?}");
        }
    }

    #[test]
    fn the_hash_is_sha256_of_the_whole_string() {
        // SHA-256("abc"), the FIPS 180-2 test vector.
        assert_eq!(
            hex::encode(hash("abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
