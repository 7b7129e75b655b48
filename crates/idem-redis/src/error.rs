//! The crate's [`Error`] (setting a store up) and how Redis failures become
//! [`idem::StoreError`]s (using one).

use idem::StoreError;
use redis::{ErrorKind, RedisError};

/// Why a Redis store or cache could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The Redis URL does not parse or names an unsupported scheme.
    #[error("invalid Redis URL")]
    Url(#[source] RedisError),
    /// A `redis+cluster://` URL names no node, or a database (a cluster has only 0).
    #[error("invalid Redis Cluster URL: {0}")]
    ClusterUrl(&'static str),
    /// The key prefix is empty or holds a brace (which would break the hash-tag layout).
    #[error("invalid key prefix {0:?}: it must be non-empty printable ASCII without '{{' or '}}'")]
    Prefix(String),
    /// The first connection to Redis failed. Transient.
    #[error("cannot connect to Redis")]
    Connect(#[source] RedisError),
    /// The server is older than the store needs: `SET … NX GET` and `PEXPIRETIME` came
    /// with Redis 7.0 (Valkey has them from its first release, which reports 7.2).
    #[error("Redis {0} is too old: idem's Redis store needs 7.0 or later")]
    Version(String),
}

impl Error {
    /// True when retrying may succeed (the server may come up); false for a bad setting.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Connect(_))
    }
}

/// Maps a Redis failure to the protocol's error.
///
/// Anything that says "the server could not be reached or did not answer in time" is
/// [`StoreError::Unavailable`]: the script may or may not have run, and a retry sees the
/// truth. A server that is loading, failing over or between cluster states is too.
/// Everything else (a script error, a wrong type, a refused command) is
/// [`StoreError::Backend`].
pub(crate) fn store_error(err: RedisError) -> StoreError {
    let unreachable = err.is_io_error()
        || err.is_connection_dropped()
        || err.is_connection_refusal()
        || err.is_timeout()
        || matches!(
            err.kind(),
            ErrorKind::BusyLoadingError
                | ErrorKind::TryAgain
                | ErrorKind::ClusterDown
                | ErrorKind::MasterDown
                | ErrorKind::ReadOnly
                | ErrorKind::ClusterConnectionNotFound
        );
    if unreachable {
        StoreError::Unavailable(Box::new(err))
    } else {
        StoreError::Backend(Box::new(err))
    }
}

/// A reply that does not have the shape the script returns.
pub(crate) fn bad_reply(what: &str, got: &redis::Value) -> StoreError {
    StoreError::Backend(format!("unexpected reply from the {what} script: {got:?}").into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_failures_are_unavailable_and_script_errors_are_backend() {
        let io = RedisError::from(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "refused",
        ));
        assert!(matches!(store_error(io), StoreError::Unavailable(_)));
        let loading = RedisError::from((ErrorKind::BusyLoadingError, "loading"));
        assert!(store_error(loading).is_transient());
        let script = RedisError::from((ErrorKind::ResponseError, "ERR user_script:1"));
        assert!(matches!(store_error(script), StoreError::Backend(_)));
    }
}
