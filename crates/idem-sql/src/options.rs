//! [`StoreOptions`]: what a caller may tune when opening a store.

use std::time::Duration;

use crate::Error;

/// How to open a store. Every field has a sensible default; build on [`StoreOptions::new`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct StoreOptions {
    /// The most connections the store's pool opens (default 10).
    pub max_connections: u32,
    /// How long a call waits for a free connection before failing as unavailable
    /// (default 10 s).
    pub acquire_timeout: Duration,
    /// PostgreSQL only: the schema that holds the records table (created if missing, and
    /// set as the connections' `search_path`). Default: the server's `search_path`.
    pub schema: Option<String>,
    /// SQLite only: how long a writer waits for the database lock (default 5 s).
    pub busy_timeout: Duration,
    /// Run the embedded migrations on open (default true).
    pub migrate: bool,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            max_connections: 10,
            acquire_timeout: Duration::from_secs(10),
            schema: None,
            busy_timeout: Duration::from_secs(5),
            migrate: true,
        }
    }
}

impl StoreOptions {
    /// The defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the pool size.
    pub fn max_connections(mut self, max: u32) -> Self {
        self.max_connections = max.max(1);
        self
    }

    /// Sets how long a call waits for a free connection.
    pub fn acquire_timeout(mut self, timeout: Duration) -> Self {
        self.acquire_timeout = timeout;
        self
    }

    /// Sets the PostgreSQL schema (an identifier: ASCII letters, digits and `_`).
    pub fn schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = Some(schema.into());
        self
    }

    /// Sets SQLite's busy timeout.
    pub fn busy_timeout(mut self, timeout: Duration) -> Self {
        self.busy_timeout = timeout;
        self
    }

    /// Turns the migrations on open on or off (off when the schema is managed elsewhere).
    pub fn migrate(mut self, on: bool) -> Self {
        self.migrate = on;
        self
    }
}

/// Checks that `name` is a plain SQL identifier, so it can be spliced into DDL safely.
#[cfg_attr(not(feature = "postgres"), allow(dead_code))]
pub(crate) fn checked_identifier(name: &str) -> Result<&str, Error> {
    let mut bytes = name.bytes();
    let first_ok = bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_');
    if first_ok && name.len() <= 63 && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        Ok(name)
    } else {
        Err(Error::InvalidOption(format!(
            "schema {name:?} is not an identifier (ASCII letters, digits, _; at most 63)"
        )))
    }
}
