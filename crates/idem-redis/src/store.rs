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

/// The largest batch one `purge_expired` call takes on; larger limits are cut to it.
pub const PURGE_LIMIT_MAX: usize = 10_000;

/// Keys one `SCAN` step of `purge_expired` asks the server to look at.
const PURGE_SCAN_COUNT: usize = 1_000;

/// An idempotency store on Redis (or Valkey). Clones share the connection and clock offset.
///
/// Each record is one string at `<prefix>:{<scope>}:<key>` that Redis expires (`PXAT`) at
/// the record's expiry; each operation is one Lua script touching that key only (see the
/// crate docs for the layout). Connection failures are [`StoreError::Unavailable`].
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

/// The bytes of a record before its response: the fingerprint (32), then the state, token,
/// lease end, expiry and creation time as Lua's `struct.pack('>c1dddd', …)` writes them.
const HEADER_LEN: usize = 65;

/// One record as `begin.lua` lays it out in its string value.
struct RawRecord<'a> {
    fingerprint: &'a [u8],
    completed: bool,
    token: i64,
    lease_until: i64,
    expires_at: i64,
    created_at: i64,
    response: &'a [u8],
}

impl<'a> RawRecord<'a> {
    fn parse(raw: &'a [u8]) -> Result<Self, StoreError> {
        let corrupt = |what: &str| StoreError::Corrupt(format!("record {what} is unreadable"));
        if raw.len() < HEADER_LEN {
            return Err(corrupt("header"));
        }
        let (header, response) = raw.split_at(HEADER_LEN);
        // Timestamps and tokens are whole numbers far below 2^53: exact as doubles.
        let number = |at: usize| -> Result<i64, StoreError> {
            let bytes: [u8; 8] = header[at..at + 8]
                .try_into()
                .map_err(|_| corrupt("number"))?;
            let value = f64::from_be_bytes(bytes);
            if value.fract() != 0.0 || !(0.0..9.0e15).contains(&value) {
                return Err(corrupt("number"));
            }
            Ok(value as i64)
        };
        let completed = match header[32] {
            b'p' => false,
            b'c' => true,
            _ => return Err(corrupt("state")),
        };
        Ok(Self {
            fingerprint: &header[..32],
            completed,
            token: number(33)?,
            lease_until: number(41)?,
            expires_at: number(49)?,
            created_at: number(57)?,
            response,
        })
    }
}

/// Reads `begin.lua`'s reply: `{1, token, recovered} | {2, record} | {3} | {4, ms}`.
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
        (Some(2), Some(record), None) => {
            let raw = bytes(record).ok_or_else(|| bad_reply("begin", reply))?;
            Ok(Outcome::Replay(decode_response(
                RawRecord::parse(raw)?.response,
            )?))
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

/// Reads `get.lua`'s reply: nil, or the record's string.
fn parse_record(scope: &Scope, key: &Key, reply: &Value) -> Result<Option<Record>, StoreError> {
    let raw = match reply {
        Value::Nil => return Ok(None),
        Value::BulkString(raw) => RawRecord::parse(raw)?,
        _ => return Err(bad_reply("get", reply)),
    };
    let fingerprint = Fingerprint::from_slice(raw.fingerprint)
        .ok_or_else(|| StoreError::Corrupt("record fingerprint is unreadable".to_owned()))?;
    let token = FencingToken::from_i64(raw.token);
    let state = if raw.completed {
        RecordState::Completed {
            token,
            response: decode_response(raw.response)?,
        }
    } else {
        RecordState::InProgress {
            token,
            lease_until: Timestamp(raw.lease_until),
        }
    };
    Ok(Some(Record {
        scope: scope.clone(),
        key: key.clone(),
        fingerprint,
        state,
        created_at: Timestamp(raw.created_at),
        expires_at: Timestamp(raw.expires_at),
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
        let script = &SCRIPTS.purge;
        // Loaded once here, so the pipelined calls below can go by SHA.
        script
            .prepare_invoke()
            .load_async(&mut conn)
            .await
            .map_err(store_error)?;
        let pattern = self.keys.record_pattern();
        let mut cursor: u64 = 0;
        let mut purged = 0;
        loop {
            let (next, candidates): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(PURGE_SCAN_COUNT)
                .query_async(&mut conn)
                .await
                .map_err(store_error)?;
            // Each candidate deletes at most one record, so sending no more than the
            // remaining allowance at a time keeps the total within `limit`.
            let mut rest = candidates.as_slice();
            while !rest.is_empty() {
                let (chunk, tail) = rest.split_at(rest.len().min(limit - purged));
                rest = tail;
                let mut pipe = redis::pipe();
                for candidate in chunk {
                    pipe.cmd("EVALSHA")
                        .arg(script.get_hash())
                        .arg(1)
                        .arg(candidate)
                        .arg(self.offset.millis());
                }
                let deleted: Vec<i64> = pipe.query_async(&mut conn).await.map_err(store_error)?;
                purged += deleted.iter().filter(|&&d| d == 1).count();
                debug_assert!(purged <= limit, "purge deleted more than its limit");
                if purged == limit {
                    return Ok(purged);
                }
            }
            if next == 0 {
                return Ok(purged);
            }
            cursor = next;
        }
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

    /// A record as `begin.lua` writes it.
    fn record(state: u8, numbers: [f64; 4], response: &[u8]) -> Vec<u8> {
        let mut raw = vec![7u8; 32];
        raw.push(state);
        for n in numbers {
            raw.extend_from_slice(&n.to_be_bytes());
        }
        raw.extend_from_slice(response);
        raw
    }

    #[test]
    fn records_parse_from_their_header_and_response() {
        let response = StoredResponse::new(201, "ok").with_header("content-type", "text/plain");
        let raw = record(b'c', [3.0, 10.0, 20.0, 5.0], &response.encode());
        let scope = Scope::global();
        let key = Key::new("k").expect("key");
        let parsed = parse_record(&scope, &key, &Value::BulkString(raw))
            .expect("parses")
            .expect("a record");
        assert_eq!(parsed.expires_at, Timestamp(20));
        assert_eq!(parsed.created_at, Timestamp(5));
        assert_eq!(
            parsed.state,
            RecordState::Completed {
                token: FencingToken(3),
                response
            }
        );
        let raw = record(b'p', [4.0, 10.0, 20.0, 5.0], b"");
        let parsed = parse_record(&scope, &key, &Value::BulkString(raw))
            .expect("parses")
            .expect("a record");
        assert_eq!(
            parsed.state,
            RecordState::InProgress {
                token: FencingToken(4),
                lease_until: Timestamp(10)
            }
        );
        assert_eq!(parse_record(&scope, &key, &Value::Nil).expect("nil"), None);
        for bad in [
            record(b'x', [1.0, 1.0, 1.0, 1.0], b""),
            record(b'p', [1.5, 1.0, 1.0, 1.0], b""),
            record(b'p', [f64::NAN, 1.0, 1.0, 1.0], b""),
            vec![0; 64],
        ] {
            assert!(matches!(
                parse_record(&scope, &key, &Value::BulkString(bad)),
                Err(StoreError::Corrupt(_))
            ));
        }
    }

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
        let raw = record(b'c', [1.0, 2.0, 3.0, 4.0], &response.encode());
        let replay = Value::Array(vec![Value::Int(2), Value::BulkString(raw)]);
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
        for junk in [b"junk".to_vec(), record(b'c', [1.0; 4], b"junk")] {
            let replay = Value::Array(vec![Value::Int(2), Value::BulkString(junk)]);
            assert!(matches!(
                parse_outcome(&replay),
                Err(StoreError::Corrupt(_))
            ));
        }
    }
}
