//! [`Tenant`]: whose accounts, orders and refunds a request touches (DESIGN §5a). Every id
//! lives inside one tenant; an API key names its tenant, and without authentication every
//! request belongs to [`Tenant::DEFAULT`].

use std::fmt;

use crate::validate::id_byte;

/// The longest tenant name.
pub const TENANT_LEN_MAX: usize = 64;

/// A tenant's name: 1 to 64 of `[A-Za-z0-9._:-]`, checked once where it enters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tenant(String);

/// Why a tenant name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a tenant is 1 to {TENANT_LEN_MAX} characters of A-Z, a-z, 0-9 and . _ : - (got {0:?})")]
pub struct InvalidTenant(pub String);

impl Tenant {
    /// The built-in tenant of `--auth none`.
    pub const DEFAULT: &'static str = "default";

    /// Checks `name`.
    ///
    /// # Errors
    /// [`InvalidTenant`] when it is empty, longer than 64 or has another character.
    pub fn new(name: impl Into<String>) -> Result<Self, InvalidTenant> {
        let name = name.into();
        if name.is_empty() || name.len() > TENANT_LEN_MAX || !name.bytes().all(id_byte) {
            return Err(InvalidTenant(name));
        }
        Ok(Self(name))
    }

    /// The built-in tenant every request belongs to without authentication.
    pub fn default_tenant() -> Self {
        Self(Self::DEFAULT.to_owned())
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for Tenant {
    fn default() -> Self {
        Self::default_tenant()
    }
}

impl fmt::Display for Tenant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for Tenant {
    type Err = InvalidTenant;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Self::new(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_id_alphabet() {
        assert_eq!(
            Tenant::new("acme-eu.1:x_y")
                .map(|t| t.to_string())
                .as_deref(),
            Ok("acme-eu.1:x_y")
        );
        assert!(Tenant::new("").is_err());
        assert!(Tenant::new("a".repeat(TENANT_LEN_MAX)).is_ok());
        assert!(Tenant::new("a".repeat(TENANT_LEN_MAX + 1)).is_err());
        for bad in ["a b", "a/b", "a|b", "é", "a\n"] {
            assert!(Tenant::new(bad).is_err(), "{bad:?}");
        }
        assert_eq!(Tenant::default().as_str(), "default");
    }
}
