//! [`RedisOptions`] and the lazily opened, self-reconnecting connection both the store and
//! the cache use.

use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, RedisError};
use tokio::sync::OnceCell;

use crate::Error;

/// The key prefix used unless [`RedisOptions::prefix`] says otherwise.
pub const DEFAULT_PREFIX: &str = "idem";

/// Where and how to reach Redis, and under which key prefix to keep records.
///
/// ```
/// use std::time::Duration;
/// use idem_redis::RedisOptions;
///
/// let options = RedisOptions::from_url("redis://127.0.0.1:6379")?
///     .prefix("payments")
///     .response_timeout(Duration::from_millis(500));
/// assert_eq!(options.key_prefix(), "payments");
/// # Ok::<(), idem_redis::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct RedisOptions {
    url: String,
    prefix: String,
    connection_timeout: Duration,
    response_timeout: Duration,
}

impl RedisOptions {
    /// Options for the server at `url` (`redis://[user:pass@]host:port[/db]`, `rediss://`
    /// for TLS), prefix `idem`, a 1 s connection timeout and a 2 s response timeout.
    ///
    /// # Errors
    /// [`Error::Url`] for a URL the client rejects.
    pub fn from_url(url: &str) -> Result<Self, Error> {
        Client::open(url).map_err(Error::Url)?;
        Ok(Self {
            url: url.to_owned(),
            prefix: DEFAULT_PREFIX.to_owned(),
            connection_timeout: Duration::from_secs(1),
            response_timeout: Duration::from_secs(2),
        })
    }

    /// Keeps every key under `prefix` (checked when the store is opened): several services,
    /// or tests, can share one server without meeting.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// How long one connection attempt may take before it fails as unavailable.
    pub fn connection_timeout(mut self, timeout: Duration) -> Self {
        self.connection_timeout = timeout;
        self
    }

    /// How long one script call may wait for its answer before it fails as unavailable.
    pub fn response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = timeout;
        self
    }

    /// The server URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The key prefix.
    pub fn key_prefix(&self) -> &str {
        &self.prefix
    }

    pub(crate) fn checked_prefix(&self) -> Result<String, Error> {
        let ok = !self.prefix.is_empty()
            && self
                .prefix
                .bytes()
                .all(|b| (0x21..=0x7e).contains(&b) && b != b'{' && b != b'}');
        if ok {
            Ok(self.prefix.clone())
        } else {
            Err(Error::Prefix(self.prefix.clone()))
        }
    }
}

impl std::str::FromStr for RedisOptions {
    type Err = Error;

    fn from_str(url: &str) -> Result<Self, Error> {
        Self::from_url(url)
    }
}

/// One multiplexed connection, opened on first use and reopened by [`ConnectionManager`]
/// whenever it drops. Clones share it.
///
/// Opening lazily lets a node start while Redis is down: the two-tier store then answers
/// from its truth store until Redis comes back.
#[derive(Clone)]
pub(crate) struct Connection {
    client: Client,
    config: ConnectionManagerConfig,
    manager: Arc<OnceCell<ConnectionManager>>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("server", &self.client.get_connection_info().addr)
            .field("open", &self.manager.initialized())
            .finish()
    }
}

impl Connection {
    pub(crate) fn new(options: &RedisOptions) -> Result<Self, Error> {
        let client = Client::open(options.url.as_str()).map_err(Error::Url)?;
        // One attempt per reconnect: the manager tries again on the next call, so a down
        // server costs each call one refused connect instead of a backoff schedule of
        // seconds (the crate's default first delay is 1 s).
        let config = ConnectionManagerConfig::new()
            .set_number_of_retries(0)
            .set_connection_timeout(options.connection_timeout)
            .set_response_timeout(options.response_timeout);
        Ok(Self {
            client,
            config,
            manager: Arc::new(OnceCell::new()),
        })
    }

    /// A second, independent connection to the same server (a second "node").
    pub(crate) fn independent(&self) -> Self {
        Self {
            client: self.client.clone(),
            config: self.config.clone(),
            manager: Arc::new(OnceCell::new()),
        }
    }

    /// The connection, opening it if this is the first use (or every earlier attempt failed).
    pub(crate) async fn get(&self) -> Result<ConnectionManager, RedisError> {
        self.manager
            .get_or_try_init(|| {
                ConnectionManager::new_with_config(self.client.clone(), self.config.clone())
            })
            .await
            .cloned()
    }
}

/// Where one prefix's keys live: `<prefix>:{<scope>}:<key>` for a record, so every key of
/// one scope shares a cluster hash slot.
///
/// A scope never holds a brace (see [`idem::Scope`]), so the hash tag is exactly the
/// scope, and the first `}` ends it: no (scope, key) pair can name another's key.
#[derive(Debug, Clone)]
pub(crate) struct KeyLayout {
    prefix: Arc<str>,
}

impl KeyLayout {
    pub(crate) fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.into(),
        }
    }

    /// A `SCAN MATCH` pattern for every record of the prefix (and no cache entry): the
    /// prefix with its glob characters escaped, then `:{*`.
    #[cfg(feature = "test-clock")]
    pub(crate) fn record_pattern(&self) -> String {
        self.pattern(":{*")
    }

    /// A `SCAN MATCH` pattern for every cache entry of the prefix.
    #[cfg(feature = "test-clock")]
    pub(crate) fn cache_pattern(&self) -> String {
        self.pattern(":cache:{*")
    }

    /// The prefix with its glob characters escaped, then `tail`.
    #[cfg(feature = "test-clock")]
    fn pattern(&self, tail: &str) -> String {
        let mut pattern = String::with_capacity(self.prefix.len() + tail.len() + 2);
        for c in self.prefix.chars() {
            if matches!(c, '*' | '?' | '[' | ']' | '\\') {
                pattern.push('\\');
            }
            pattern.push(c);
        }
        pattern.push_str(tail);
        pattern
    }

    pub(crate) fn record<'a>(
        &'a self,
        scope: &'a idem::Scope,
        key: &'a idem::Key,
    ) -> RecordName<'a> {
        RecordName {
            prefix: &self.prefix,
            scope,
            key,
        }
    }

    pub(crate) fn cache_entry(&self, scope: &idem::Scope, key: &idem::Key) -> String {
        format!(
            "{}:cache:{{{}}}:{}",
            self.prefix,
            scope.as_str(),
            key.as_str()
        )
    }

    pub(crate) fn prefix(&self) -> &str {
        &self.prefix
    }
}

/// A record's key, `<prefix>:{<scope>}:<key>`: a command writes it straight into its
/// buffer, with no string of its own on the way (every `begin` names one).
#[derive(Debug, Clone, Copy)]
pub(crate) struct RecordName<'a> {
    prefix: &'a str,
    scope: &'a idem::Scope,
    key: &'a idem::Key,
}

impl std::fmt::Display for RecordName<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{{{}}}:{}",
            self.prefix,
            self.scope.as_str(),
            self.key.as_str()
        )
    }
}

impl redis::ToRedisArgs for RecordName<'_> {
    fn write_redis_args<W: ?Sized + redis::RedisWrite>(&self, out: &mut W) {
        out.write_arg_fmt(self);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(feature = "test-clock")]
    fn scan_patterns_escape_the_prefix() {
        let layout = KeyLayout::new("idem");
        assert_eq!(layout.record_pattern(), "idem:{*");
        assert_eq!(layout.cache_pattern(), "idem:cache:{*");
        assert_eq!(
            KeyLayout::new("a*b?[c]\\").record_pattern(),
            "a\\*b\\?\\[c\\]\\\\:{*"
        );
    }

    #[test]
    fn records_of_one_scope_share_a_hash_tag() {
        let layout = KeyLayout::new("idem");
        let scope = idem::Scope::new("tenant-1|POST /v1/payments").expect("scope");
        let key = idem::Key::new("order:}{-7").expect("key");
        assert_eq!(
            layout.record(&scope, &key).to_string(),
            "idem:{tenant-1|POST /v1/payments}:order:}{-7"
        );
        let mut cmd = redis::cmd("GET");
        cmd.arg(layout.record(&scope, &key));
        let written = match cmd.args_iter().nth(1) {
            Some(redis::Arg::Simple(bytes)) => bytes.to_vec(),
            _ => Vec::new(),
        };
        assert_eq!(written, b"idem:{tenant-1|POST /v1/payments}:order:}{-7");
        assert_eq!(
            layout.cache_entry(&scope, &key),
            "idem:cache:{tenant-1|POST /v1/payments}:order:}{-7"
        );
        assert_eq!(
            layout.record(&idem::Scope::global(), &key).to_string(),
            "idem:{}:order:}{-7"
        );
    }

    #[test]
    fn prefixes_with_braces_or_spaces_are_refused() {
        for bad in ["", "a{b", "a}b", "a b"] {
            assert!(RedisOptions::from_url("redis://x")
                .expect("a Redis URL")
                .prefix(bad)
                .checked_prefix()
                .is_err());
        }
        let options = RedisOptions::from_url("redis://x").expect("a Redis URL");
        assert!(options.checked_prefix().is_ok());
        assert!("http://x".parse::<RedisOptions>().is_err());
    }
}
