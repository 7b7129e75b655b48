//! [`RedisStore`]: records in Redis, every operation one atomic step on one key.

#[cfg(feature = "test-clock")]
use std::time::Duration;

use async_trait::async_trait;
use idem::metrics::instrument;
#[cfg(feature = "test-clock")]
use idem::Timestamp;
use idem::{
    duration_ms, Claim, FencingToken, Hold, Key, Outcome, Record, Scope, Store, StoreError,
    StoredResponse,
};
use redis::Value;

use crate::connection::{Conn, Connection};
use crate::error::{bad_reply, store_error};
use crate::keys::KeyLayout;
use crate::scripts::SCRIPTS;
use crate::{Error, RedisOptions};

#[cfg(feature = "fuzzing")]
pub mod fuzzing;
mod reply;

#[cfg(feature = "test-clock")]
use reply::int;
use reply::{decode_response, done_or_fenced, parse_outcome, parse_record, RawRecord, EXACT_MS};

/// Keys one `SCAN` step of `TimeTravel::advance` asks the server to look at.
#[cfg(feature = "test-clock")]
pub(crate) const SCAN_COUNT: usize = 1_000;

/// An idempotency store on Redis (or Valkey). Clones share the connection.
///
/// Each record is one string at `<prefix>:{<scope>}:<key>` that Redis expires (`PXAT`) at
/// the record's expiry; each operation is one command or one Lua script touching that key
/// only (see the crate docs for the layout). Connection failures are
/// [`StoreError::Unavailable`].
#[derive(Debug, Clone)]
pub struct RedisStore {
    connection: Connection,
    keys: KeyLayout,
}

impl RedisStore {
    /// Opens a store and makes its first connection now, so a wrong URL or a down server
    /// shows at start-up.
    ///
    /// It also checks the server's version, so an old one is refused here rather than
    /// failing every `begin`.
    ///
    /// # Errors
    /// [`Error::Url`] for a bad URL, [`Error::Connect`] when the server does not answer,
    /// [`Error::Version`] before Redis 7.0.
    pub async fn connect(url: &str) -> Result<Self, Error> {
        Self::connect_with(&RedisOptions::from_url(url)?).await
    }

    /// [`RedisStore::connect`] with `options` (prefix, timeouts).
    ///
    /// # Errors
    /// As [`RedisStore::connect`], and [`Error::Prefix`] for a bad prefix.
    pub async fn connect_with(options: &RedisOptions) -> Result<Self, Error> {
        let store = Self::lazy(options)?;
        let mut conn = store.connection.get().await.map_err(Error::Connect)?;
        let info = conn
            .on_any_node(redis::cmd("INFO").arg("server"))
            .await
            .and_then(|info| redis::from_redis_value::<String>(&info))
            .map_err(Error::Connect)?;
        match server_version(&info) {
            Some(version) if version.0 < 7 => Err(Error::Version(version.1.to_owned())),
            // A server that hides its version (a proxy, say) is given the benefit of the
            // doubt: an old one fails each `begin` with the server's own error.
            _ => Ok(store),
        }
    }

    /// A store that connects on first use (and again after every failure), so it can be
    /// built while Redis is down; calls fail with [`StoreError::Unavailable`] until it is up.
    ///
    /// # Errors
    /// [`Error::Url`] or [`Error::Prefix`] for bad options.
    pub fn lazy(options: &RedisOptions) -> Result<Self, Error> {
        let prefix = options.checked_prefix()?;
        Ok(Self {
            connection: Connection::new(options)?,
            keys: KeyLayout::new(&prefix),
        })
    }

    /// A second handle on the same records over a connection of its own: another node,
    /// as tests need it.
    pub fn peer(&self) -> Self {
        Self {
            connection: self.connection.independent(),
            keys: self.keys.clone(),
        }
    }

    /// The key prefix this store keeps its records under.
    pub fn prefix(&self) -> &str {
        self.keys.prefix()
    }

    /// The Redis key of one record: `<prefix>:{<scope>}:<key>`.
    pub fn record_key(&self, scope: &Scope, key: &Key) -> String {
        self.keys.record(scope, key).to_string()
    }

    async fn conn(&self) -> Result<Conn, StoreError> {
        self.connection.get().await.map_err(store_error)
    }

    /// Runs `script` (complete or release) on the record `hold` names, as its holder: the
    /// token, then `response` when given; `what` names the call in a fenced error.
    async fn as_holder(
        &self,
        script: &redis::Script,
        hold: Hold<'_>,
        response: Option<&[u8]>,
        what: &'static str,
    ) -> Result<(), StoreError> {
        let Hold { scope, key, token } = hold;
        let mut conn = self.conn().await?;
        let mut invocation = script.key(self.keys.record(scope, key));
        invocation.arg(token.as_i64());
        if let Some(response) = response {
            invocation.arg(response);
        }
        let reply: Value = invocation
            .invoke_async(&mut conn)
            .await
            .map_err(store_error)?;
        done_or_fenced(what, &reply)
    }
}

/// The major version and the whole version string from an `INFO server` reply.
fn server_version(info: &str) -> Option<(u32, &str)> {
    let version = info
        .lines()
        .find_map(|line| line.strip_prefix("redis_version:"))?
        .trim();
    let major = version.split('.').next()?.parse().ok()?;
    Some((major, version))
}

/// The `store` label of this store's series (`idem::metrics`).
const NAME: &str = "redis";

#[async_trait]
impl Store for RedisStore {
    async fn begin(&self, claim: Claim<'_>) -> Result<Outcome, StoreError> {
        instrument(NAME, "begin", async {
            let fingerprint = claim.fingerprint;
            let mut conn = self.conn().await?;
            let name = self.keys.record(claim.scope, claim.key);
            let (lease_ms, ttl_ms) = (duration_ms(claim.lease), duration_ms(claim.ttl));
            // A record never expires while its lease runs.
            let life_ms = ttl_ms.max(lease_ms);
            // The common cases in one native command: claim a fresh key with the record
            // `begin.lua` would write (Redis's clock sets its expiry, which pins its creation),
            // or get the record that is there. A live record — Redis still holds it — with
            // another fingerprint is a mismatch, a completed one a replay; one in progress needs
            // the clock to tell a running lease from an ended one, so the script decides.
            if (2..EXACT_MS).contains(&life_ms) {
                let reply: Value = redis::cmd("SET")
                    .arg(name)
                    .arg(&RawRecord::fresh(fingerprint, lease_ms, life_ms)[..])
                    .arg("NX")
                    .arg("GET")
                    .arg("PX")
                    .arg(life_ms - 1)
                    .query_async(&mut conn)
                    .await
                    .map_err(store_error)?;
                match &reply {
                    Value::Nil => {
                        return Ok(Outcome::Acquired {
                            token: FencingToken::FIRST,
                            recovered: false,
                        })
                    }
                    Value::BulkString(raw) => {
                        let record = RawRecord::parse(raw)?;
                        // A released record is absent: the script takes it with a larger token.
                        if !record.released {
                            if record.fingerprint != &fingerprint.as_bytes()[..] {
                                return Ok(Outcome::Mismatch);
                            }
                            if record.completed {
                                return Ok(Outcome::Replay(decode_response(record.response)?));
                            }
                        }
                    }
                    _ => return Err(bad_reply("begin", &reply)),
                }
            }
            let reply: Value = SCRIPTS
                .begin
                .key(name)
                .arg(&fingerprint.as_bytes()[..])
                .arg(lease_ms)
                .arg(ttl_ms)
                .invoke_async(&mut conn)
                .await
                .map_err(store_error)?;
            parse_outcome(&reply)
        })
        .await
    }

    async fn complete(&self, hold: Hold<'_>, response: &StoredResponse) -> Result<(), StoreError> {
        instrument(NAME, "complete", async {
            let encoded = response.encode();
            self.as_holder(&SCRIPTS.complete, hold, Some(&encoded), "complete")
                .await
        })
        .await
    }

    async fn release(&self, hold: Hold<'_>) -> Result<(), StoreError> {
        instrument(NAME, "release", async {
            self.as_holder(&SCRIPTS.release, hold, None, "release")
                .await
        })
        .await
    }

    async fn get(&self, scope: &Scope, key: &Key) -> Result<Option<Record>, StoreError> {
        instrument(NAME, "get", async {
            let mut conn = self.conn().await?;
            let reply: Value = SCRIPTS
                .get
                .key(self.keys.record(scope, key))
                .invoke_async(&mut conn)
                .await
                .map_err(store_error)?;
            parse_record(scope, key, &reply)
        })
        .await
    }

    async fn purge_expired(&self, _limit: usize) -> Result<usize, StoreError> {
        instrument(NAME, "purge", async {
            // Redis drops each record at its expiry by its own clock, the store's clock: no
            // expired record is left to purge, and walking the keyspace would find nothing.
            Ok(0)
        })
        .await
    }
    fn name(&self) -> &'static str {
        NAME
    }
}

#[cfg(feature = "test-clock")]
#[async_trait]
impl idem::TimeTravel for RedisStore {
    async fn now(&self) -> Result<Timestamp, StoreError> {
        let mut conn = self.conn().await?;
        let reply: Value = SCRIPTS
            .now
            .invoke_async(&mut conn)
            .await
            .map_err(store_error)?;
        int(&reply)
            .map(Timestamp)
            .ok_or_else(|| bad_reply("now", &reply))
    }

    async fn advance(&self, by: Duration) -> Result<(), StoreError> {
        let mut conn = self.conn().await?;
        age(&mut conn, &self.keys.record_pattern(), by).await
    }
}

/// Ages every key matching `pattern` by `by` (`age.lua`, one call per key): a test's
/// `TimeTravel::advance` for records and cache entries alike. On a cluster the walk visits
/// every master, since `SCAN` sees one node's keys only.
#[cfg(feature = "test-clock")]
pub(crate) async fn age(conn: &mut Conn, pattern: &str, by: Duration) -> Result<(), StoreError> {
    for master in conn.masters().await.map_err(store_error)? {
        let mut cursor: u64 = 0;
        loop {
            let mut scan = redis::cmd("SCAN");
            scan.arg(cursor)
                .arg("MATCH")
                .arg(pattern)
                .arg("COUNT")
                .arg(SCAN_COUNT);
            let reply = conn.on_master(&master, &scan).await.map_err(store_error)?;
            let (next, keys): (u64, Vec<Vec<u8>>) =
                redis::from_redis_value(&reply).map_err(store_error)?;
            for key in keys {
                let _: i64 = SCRIPTS
                    .age
                    .key(key)
                    .arg(duration_ms(by))
                    .invoke_async(conn)
                    .await
                    .map_err(store_error)?;
            }
            if next == 0 {
                break;
            }
            cursor = next;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use idem::{Fingerprint, RecordState, Timestamp};

    /// A record as `begin.lua` writes it: state, then token, lease and life.
    fn record(state: u8, numbers: [f64; 3], response: &[u8]) -> Vec<u8> {
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
        let raw = record(b'C', [3.0, 10.0, 15.0], &response.encode());
        let scope = Scope::global();
        let key = Key::new("k").expect("key");
        let reply = |raw: Vec<u8>, expires_at: i64| {
            Value::Array(vec![Value::BulkString(raw), Value::Int(expires_at)])
        };
        let parsed = parse_record(&scope, &key, &reply(raw, 20))
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
        let raw = record(b'P', [4.0, 10.0, 15.0], b"");
        let parsed = parse_record(&scope, &key, &reply(raw, 20))
            .expect("parses")
            .expect("a record");
        assert_eq!(
            parsed.state,
            RecordState::InProgress {
                token: FencingToken(4),
                lease_until: Timestamp(15)
            }
        );
        assert_eq!(parse_record(&scope, &key, &Value::Nil).expect("nil"), None);
        for (bad, expires_at) in [
            (record(b'x', [1.0, 1.0, 1.0], b""), 20),
            // The layout before relative times: lower-case states.
            (record(b'p', [1.0, 1.0, 1.0], b""), 20),
            (record(b'P', [1.5, 1.0, 1.0], b""), 20),
            (record(b'P', [f64::NAN, 1.0, 1.0], b""), 20),
            (record(b'P', [1.0, 1.0, 9.0e15], b""), 20),
            (vec![0; 56], 20),
            // No expiry in Redis (PEXPIRETIME -1), or one before the record's life.
            (record(b'P', [1.0, 1.0, 1.0], b""), 0),
            (record(b'P', [1.0, 1.0, 30.0], b""), 20),
            // Expiries no server sends, where creation or lease end would overflow (found
            // by fuzz target redis_record).
            (record(b'P', [1.0, 1.0, 30.0], b""), i64::MIN),
            (record(b'P', [1.0, 1.0e15, 0.0], b""), i64::MAX),
        ] {
            assert!(matches!(
                parse_record(&scope, &key, &reply(bad, expires_at)),
                Err(StoreError::Corrupt(_))
            ));
        }
        assert!(parse_record(&scope, &key, &Value::BulkString(vec![0; 60])).is_err());
    }

    #[test]
    fn the_server_version_comes_from_info() {
        let info = "# Server\r\nredis_version:7.0.15\r\nredis_git_sha1:00000000\r\n";
        assert_eq!(server_version(info), Some((7, "7.0.15")));
        assert_eq!(
            server_version("redis_version:6.2.14\r\n"),
            Some((6, "6.2.14"))
        );
        assert_eq!(server_version("# Server\r\n"), None);
        assert_eq!(server_version("redis_version:x\r\n"), None);
    }

    #[test]
    fn a_fresh_record_is_what_begin_lua_writes() {
        let fp = Fingerprint::of_bytes("POST", "/x", b"{}");
        let raw = RawRecord::fresh(&fp, 30_000, 86_400_000);
        let mut lua = fp.as_bytes().to_vec();
        lua.push(b'P');
        for n in [1.0f64, 30_000.0, 86_400_000.0] {
            lua.extend_from_slice(&n.to_be_bytes());
        }
        assert_eq!(raw[..], lua[..]);
        let parsed = RawRecord::parse(&raw).expect("parses");
        assert_eq!(
            (
                parsed.completed,
                parsed.token,
                parsed.lease_ms,
                parsed.life_ms
            ),
            (false, 1, 30_000, 86_400_000)
        );
        assert!(parsed.response.is_empty());
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
        let raw = record(b'C', [1.0, 2.0, 3.0], &response.encode());
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
        for junk in [b"junk".to_vec(), record(b'C', [1.0; 3], b"junk")] {
            let replay = Value::Array(vec![Value::Int(2), Value::BulkString(junk)]);
            assert!(matches!(
                parse_outcome(&replay),
                Err(StoreError::Corrupt(_))
            ));
        }
    }
}
