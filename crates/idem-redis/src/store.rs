//! [`RedisStore`]: records in Redis, every operation one Lua script.

use std::time::Duration;

use async_trait::async_trait;
use idem::{
    duration_ms, ClockOffset, FencingToken, Fingerprint, Key, Outcome, Record, RecordState, Scope,
    Store, StoreError, StoredResponse, TimeTravel, Timestamp,
};
use redis::aio::ConnectionManager;
use redis::Value;

use crate::connection::{Connection, KeyLayout};
use crate::error::{bad_reply, store_error};
use crate::scripts::SCRIPTS;
use crate::{Error, RedisOptions};

/// The largest batch one `purge_expired` call takes on; larger limits are cut to it, so a
/// single script never holds the server for long.
pub const PURGE_LIMIT_MAX: usize = 10_000;

/// An idempotency store on Redis (or Valkey). Clones share the connection and clock offset.
///
/// Each record is one hash at `<prefix>:{<scope>}:<key>` with `PEXPIREAT` at its expiry;
/// each operation is one Lua script (see the crate docs for the layout and the cluster
/// story). Connection failures are [`StoreError::Unavailable`].
#[derive(Debug, Clone)]
pub struct RedisStore {
    connection: Connection,
    keys: KeyLayout,
    offset: ClockOffset,
}

impl RedisStore {
    /// Opens a store and makes its first connection now, so a wrong URL or a down server
    /// shows at start-up.
    ///
    /// # Errors
    /// [`Error::Url`] or [`Error::Prefix`] for bad options, [`Error::Connect`] when the
    /// server does not answer.
    pub async fn connect(options: RedisOptions) -> Result<Self, Error> {
        let store = Self::lazy(options)?;
        store.connection.get().await.map_err(Error::Connect)?;
        Ok(store)
    }

    /// A store that connects on first use (and again after every failure), so it can be
    /// built while Redis is down; calls fail with [`StoreError::Unavailable`] until it is up.
    ///
    /// # Errors
    /// [`Error::Url`] or [`Error::Prefix`] for bad options.
    pub fn lazy(options: RedisOptions) -> Result<Self, Error> {
        let prefix = options.checked_prefix()?;
        Ok(Self {
            connection: Connection::new(&options)?,
            keys: KeyLayout::new(&prefix),
            offset: ClockOffset::new(),
        })
    }

    /// A second handle on the same records over a connection of its own, with a clock
    /// offset of its own starting at this one's: another node, as tests need it.
    pub fn peer(&self) -> Self {
        Self {
            connection: self.connection.independent(),
            keys: self.keys.clone(),
            offset: self.offset.fork(),
        }
    }

    /// The key prefix this store keeps its records under.
    pub fn prefix(&self) -> &str {
        self.keys.prefix()
    }

    /// The Redis key of one record: `<prefix>:{<scope>}:<key>`.
    pub fn record_key(&self, scope: &Scope, key: &Key) -> String {
        self.keys.record(scope, key)
    }

    /// The sorted set indexing this prefix's records by expiry: `<prefix>:expiry`.
    pub fn expiry_index_key(&self) -> &str {
        self.keys.index()
    }

    async fn conn(&self) -> Result<ConnectionManager, StoreError> {
        self.connection.get().await.map_err(store_error)
    }
}

fn int(value: &Value) -> Option<i64> {
    match value {
        Value::Int(n) => Some(*n),
        Value::BulkString(bytes) => std::str::from_utf8(bytes).ok()?.parse().ok(),
        _ => None,
    }
}

fn bytes(value: &Value) -> Option<&[u8]> {
    match value {
        Value::BulkString(bytes) => Some(bytes),
        _ => None,
    }
}

fn decode_response(raw: &[u8]) -> Result<StoredResponse, StoreError> {
    StoredResponse::decode(raw).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// Reads `begin.lua`'s reply: `{1, token, recovered} | {2, response} | {3} | {4, ms}`.
fn parse_outcome(reply: &Value) -> Result<Outcome, StoreError> {
    let Value::Array(items) = reply else {
        return Err(bad_reply("begin", reply));
    };
    match (items.first().and_then(int), items.get(1), items.get(2)) {
        (Some(1), Some(token), Some(recovered)) => {
            let token = int(token).ok_or_else(|| bad_reply("begin", reply))?;
            Ok(Outcome::Acquired {
                token: FencingToken::from_i64(token),
                recovered: int(recovered) == Some(1),
            })
        }
        (Some(2), Some(response), None) => {
            let raw = bytes(response).ok_or_else(|| bad_reply("begin", reply))?;
            Ok(Outcome::Replay(decode_response(raw)?))
        }
        (Some(3), None, None) => Ok(Outcome::Mismatch),
        (Some(4), Some(ms), None) => {
            let ms = int(ms).ok_or_else(|| bad_reply("begin", reply))?;
            Ok(Outcome::InFlight {
                retry_after: Duration::from_millis(u64::try_from(ms.max(1)).unwrap_or(1)),
            })
        }
        _ => Err(bad_reply("begin", reply)),
    }
}

/// Reads `get.lua`'s reply: nil, or `{fp, state, token, lease, exp, created, response}`.
fn parse_record(scope: &Scope, key: &Key, reply: &Value) -> Result<Option<Record>, StoreError> {
    let items = match reply {
        Value::Nil => return Ok(None),
        Value::Array(items) if items.len() == 7 => items,
        _ => return Err(bad_reply("get", reply)),
    };
    let corrupt = |what: &str| StoreError::Corrupt(format!("record field {what} is unreadable"));
    let fingerprint = bytes(&items[0])
        .and_then(Fingerprint::from_slice)
        .ok_or_else(|| corrupt("fp"))?;
    let token = FencingToken::from_i64(int(&items[2]).ok_or_else(|| corrupt("tok"))?);
    let lease_until = Timestamp(int(&items[3]).ok_or_else(|| corrupt("lease"))?);
    let expires_at = Timestamp(int(&items[4]).ok_or_else(|| corrupt("exp"))?);
    let created_at = Timestamp(int(&items[5]).ok_or_else(|| corrupt("at"))?);
    let state = match bytes(&items[1]) {
        Some(b"p") => RecordState::InProgress { token, lease_until },
        Some(b"c") => RecordState::Completed {
            token,
            response: decode_response(bytes(&items[6]).ok_or_else(|| corrupt("resp"))?)?,
        },
        _ => return Err(corrupt("st")),
    };
    Ok(Some(Record {
        scope: scope.clone(),
        key: key.clone(),
        fingerprint,
        state,
        created_at,
        expires_at,
    }))
}

/// Reads a `1`/`0` reply of `complete.lua` and `release.lua`: done or fenced.
fn done_or_fenced(what: &str, reply: &Value) -> Result<(), StoreError> {
    match int(reply) {
        Some(1) => Ok(()),
        Some(0) => Err(StoreError::Fenced),
        _ => Err(bad_reply(what, reply)),
    }
}

#[async_trait]
impl Store for RedisStore {
    async fn begin(
        &self,
        scope: &Scope,
        key: &Key,
        fingerprint: &Fingerprint,
        lease: Duration,
        ttl: Duration,
    ) -> Result<Outcome, StoreError> {
        let mut conn = self.conn().await?;
        let reply: Value = SCRIPTS
            .begin
            .key(self.keys.record(scope, key))
            .key(self.keys.index())
            .arg(self.offset.millis())
            .arg(&fingerprint.as_bytes()[..])
            .arg(duration_ms(lease))
            .arg(duration_ms(ttl))
            .invoke_async(&mut conn)
            .await
            .map_err(store_error)?;
        parse_outcome(&reply)
    }

    async fn complete(
        &self,
        scope: &Scope,
        key: &Key,
        token: FencingToken,
        response: &StoredResponse,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn().await?;
        let reply: Value = SCRIPTS
            .complete
            .key(self.keys.record(scope, key))
            .arg(self.offset.millis())
            .arg(token.as_i64())
            .arg(response.encode())
            .invoke_async(&mut conn)
            .await
            .map_err(store_error)?;
        done_or_fenced("complete", &reply)
    }

    async fn release(
        &self,
        scope: &Scope,
        key: &Key,
        token: FencingToken,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn().await?;
        let reply: Value = SCRIPTS
            .release
            .key(self.keys.record(scope, key))
            .key(self.keys.index())
            .arg(self.offset.millis())
            .arg(token.as_i64())
            .invoke_async(&mut conn)
            .await
            .map_err(store_error)?;
        done_or_fenced("release", &reply)
    }

    async fn get(&self, scope: &Scope, key: &Key) -> Result<Option<Record>, StoreError> {
        let mut conn = self.conn().await?;
        let reply: Value = SCRIPTS
            .get
            .key(self.keys.record(scope, key))
            .arg(self.offset.millis())
            .invoke_async(&mut conn)
            .await
            .map_err(store_error)?;
        parse_record(scope, key, &reply)
    }

    async fn purge_expired(&self, limit: usize) -> Result<usize, StoreError> {
        let limit = limit.min(PURGE_LIMIT_MAX);
        if limit == 0 {
            return Ok(0);
        }
        let mut conn = self.conn().await?;
        let reply: Value = SCRIPTS
            .purge
            .key(self.keys.index())
            .arg(self.offset.millis())
            .arg(limit)
            .invoke_async(&mut conn)
            .await
            .map_err(store_error)?;
        let purged = int(&reply).ok_or_else(|| bad_reply("purge", &reply))?;
        let purged = usize::try_from(purged).map_err(|_| bad_reply("purge", &reply))?;
        debug_assert!(purged <= limit, "purge.lua deleted more than its limit");
        Ok(purged)
    }

    async fn now(&self) -> Result<Timestamp, StoreError> {
        let mut conn = self.conn().await?;
        let reply: Value = SCRIPTS
            .now
            .arg(self.offset.millis())
            .invoke_async(&mut conn)
            .await
            .map_err(store_error)?;
        int(&reply)
            .map(Timestamp)
            .ok_or_else(|| bad_reply("now", &reply))
    }
}

impl TimeTravel for RedisStore {
    fn advance_clock(&self, by: Duration) {
        self.offset.advance(by);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn begin_replies_parse_in_table_order() {
        let acquired = Value::Array(vec![Value::Int(1), Value::Int(7), Value::Int(1)]);
        assert_eq!(
            parse_outcome(&acquired).expect("acquired"),
            Outcome::Acquired {
                token: FencingToken(7),
                recovered: true
            }
        );
        let response = StoredResponse::new(201, "ok");
        let replay = Value::Array(vec![Value::Int(2), Value::BulkString(response.encode())]);
        assert_eq!(
            parse_outcome(&replay).expect("replay"),
            Outcome::Replay(response)
        );
        assert_eq!(
            parse_outcome(&Value::Array(vec![Value::Int(3)])).expect("mismatch"),
            Outcome::Mismatch
        );
        let in_flight = Value::Array(vec![Value::Int(4), Value::Int(1500)]);
        assert_eq!(
            parse_outcome(&in_flight).expect("in flight"),
            Outcome::InFlight {
                retry_after: Duration::from_millis(1500)
            }
        );
        assert!(parse_outcome(&Value::Int(1)).is_err());
        assert!(parse_outcome(&Value::Array(vec![Value::Int(9)])).is_err());
    }

    #[test]
    fn a_corrupt_response_is_corrupt_not_a_panic() {
        let replay = Value::Array(vec![Value::Int(2), Value::BulkString(b"junk".to_vec())]);
        assert!(matches!(
            parse_outcome(&replay),
            Err(StoreError::Corrupt(_))
        ));
    }
}
