//! [`ReplayCache`]: the Redis tier of [`crate::TieredStore`], holding snapshots of completed
//! records so replays need no trip to the truth store.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use idem::{duration_ms, ClockOffset, Fingerprint, Key, Record, Scope, TimeTravel};
use redis::{RedisError, Value};

use crate::connection::{Connection, KeyLayout};
use crate::scripts::SCRIPTS;
use crate::{Error, RedisOptions};

/// A cache of completed responses in Redis, keyed `<prefix>:cache:{<scope>}:<key>`.
///
/// An entry is a snapshot of a completed record read from the truth store: fingerprint,
/// response and expiry. A completed record never changes before it expires, so the
/// snapshot stays true until then; the entry is dropped `clock_skew` earlier, in case the
/// Redis clock runs behind the truth store's. After a Redis failure the cache is skipped
/// for `cooldown`, so a down or hanging Redis costs at most one failed call per cooldown
/// instead of one per request.
#[derive(Debug, Clone)]
pub struct ReplayCache {
    connection: Connection,
    keys: KeyLayout,
    offset: ClockOffset,
    clock_skew: Duration,
    cooldown: Duration,
    cooling: Arc<Cooldown>,
}

/// When the cache may be tried again after a failure, in ms since `epoch`.
#[derive(Debug)]
struct Cooldown {
    epoch: Instant,
    until_ms: AtomicI64,
}

impl ReplayCache {
    /// A cache that connects on first use (and again after failures), so a node starts and
    /// serves from its truth store while Redis is down.
    ///
    /// # Errors
    /// [`Error::Url`] or [`Error::Prefix`] for bad options.
    pub fn lazy(options: RedisOptions) -> Result<Self, Error> {
        let prefix = options.checked_prefix()?;
        Ok(Self {
            connection: Connection::new(&options)?,
            keys: KeyLayout::new(&prefix),
            offset: ClockOffset::new(),
            clock_skew: Duration::from_secs(5),
            cooldown: Duration::from_secs(1),
            cooling: Arc::new(Cooldown {
                epoch: Instant::now(),
                until_ms: AtomicI64::new(0),
            }),
        })
    }

    /// A cache that makes its first connection now, to report a down server at start-up.
    ///
    /// # Errors
    /// As [`ReplayCache::lazy`], and [`Error::Connect`] when the server does not answer.
    pub async fn connect(options: RedisOptions) -> Result<Self, Error> {
        let cache = Self::lazy(options)?;
        cache.connection.get().await.map_err(Error::Connect)?;
        Ok(cache)
    }

    /// How much earlier than its record an entry expires (default 5 s): the largest
    /// difference between the Redis and truth-store clocks the cache tolerates.
    pub fn clock_skew(mut self, skew: Duration) -> Self {
        self.clock_skew = skew;
        self
    }

    /// How long the cache is skipped after a Redis failure (default 1 s; zero never skips).
    pub fn cooldown(mut self, cooldown: Duration) -> Self {
        self.cooldown = cooldown;
        self
    }

    /// A second handle on the same entries over a connection of its own, with a clock
    /// offset of its own starting at this one's (another node, for tests).
    pub fn peer(&self) -> Self {
        Self {
            connection: self.connection.independent(),
            keys: self.keys.clone(),
            offset: self.offset.fork(),
            clock_skew: self.clock_skew,
            cooldown: self.cooldown,
            cooling: Arc::new(Cooldown {
                epoch: Instant::now(),
                until_ms: AtomicI64::new(0),
            }),
        }
    }

    /// The key prefix the entries live under.
    pub fn prefix(&self) -> &str {
        self.keys.prefix()
    }

    /// The Redis key of one entry: `<prefix>:cache:{<scope>}:<key>`.
    pub fn entry_key(&self, scope: &Scope, key: &Key) -> String {
        self.keys.cache_entry(scope, key)
    }

    /// True while the cache is skipped after a failure.
    pub fn is_cooling_down(&self) -> bool {
        self.elapsed_ms() < self.cooling.until_ms.load(Ordering::Relaxed)
    }

    fn elapsed_ms(&self) -> i64 {
        duration_ms(self.cooling.epoch.elapsed())
    }

    fn failed(&self) {
        let until = self.elapsed_ms().saturating_add(duration_ms(self.cooldown));
        self.cooling.until_ms.store(until, Ordering::Relaxed);
    }

    /// The cached response bytes for `(scope, key)` when a live entry with `fingerprint`
    /// is there; `None` otherwise (including while cooling down).
    pub(crate) async fn replay(
        &self,
        scope: &Scope,
        key: &Key,
        fingerprint: &Fingerprint,
    ) -> Result<Option<Vec<u8>>, RedisError> {
        if self.is_cooling_down() {
            return Ok(None);
        }
        let result = async {
            let mut conn = self.connection.get().await?;
            SCRIPTS
                .cache_get
                .key(self.keys.cache_entry(scope, key))
                .arg(self.offset.millis())
                .arg(&fingerprint.as_bytes()[..])
                .invoke_async::<Value>(&mut conn)
                .await
        }
        .await;
        match result {
            Ok(Value::BulkString(bytes)) => Ok(Some(bytes)),
            Ok(_) => Ok(None),
            Err(err) => {
                self.failed();
                Err(err)
            }
        }
    }

    /// Writes a snapshot of a completed `record` read from the truth store; says whether
    /// it was written (not when already within `clock_skew` of its expiry, or cooling
    /// down). Callers pass only completed records.
    pub(crate) async fn fill(&self, record: &Record, response: &[u8]) -> Result<bool, RedisError> {
        if self.is_cooling_down() {
            return Ok(false);
        }
        let expires_at = record
            .expires_at
            .as_millis()
            .saturating_sub(duration_ms(self.clock_skew));
        let result = async {
            let mut conn = self.connection.get().await?;
            SCRIPTS
                .cache_put
                .key(self.keys.cache_entry(&record.scope, &record.key))
                .arg(self.offset.millis())
                .arg(&record.fingerprint.as_bytes()[..])
                .arg(expires_at)
                .arg(response)
                .invoke_async::<i64>(&mut conn)
                .await
        }
        .await;
        match result {
            Ok(written) => Ok(written == 1),
            Err(err) => {
                self.failed();
                Err(err)
            }
        }
    }
}

impl TimeTravel for ReplayCache {
    fn advance_clock(&self, by: Duration) {
        self.offset.advance(by);
    }
}
