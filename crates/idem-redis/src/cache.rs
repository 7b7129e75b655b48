//! [`ReplayCache`]: completed answers in Redis, in front of a truth store, so replays need
//! no trip to it — the tier of [`crate::TieredStore`], and usable alone by a caller that
//! claims in its own SQL transaction (`idem serve --redis`).

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use idem::metrics as metrics_names;
use idem::{
    duration_ms, Fingerprint, Key, Record, RecordState, Scope, StoredResponse, DURATION_MS_MAX,
};
use redis::{RedisError, Value};

use crate::connection::Connection;
use crate::keys::KeyLayout;
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
    clock_skew: Duration,
    cooldown: Duration,
    retention_max: Duration,
    cooling: Arc<Cooldown>,
    counters: Arc<Counters>,
}

#[derive(Debug, Default)]
struct Counters {
    hits: AtomicU64,
    misses: AtomicU64,
    fills: AtomicU64,
    errors: AtomicU64,
}

/// How a [`ReplayCache`] has served so far (since it was built; clones share the counts).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct CacheStats {
    /// Lookups answered with a replay from Redis.
    pub hits: u64,
    /// Lookups the cache could not answer (the caller asked its truth store).
    pub misses: u64,
    /// Entries written to Redis.
    pub fills: u64,
    /// Redis failures (lookups and fills), each ignored after being logged.
    pub errors: u64,
}

impl CacheStats {
    /// Hits over lookups, 0 when nothing was looked up.
    pub fn hit_ratio(&self) -> f64 {
        let lookups = self.hits + self.misses;
        if lookups == 0 {
            0.0
        } else {
            self.hits as f64 / lookups as f64
        }
    }
}

/// Counts one event in `counter` (this cache's [`CacheStats`]) and in the process's
/// `series` (`idem::metrics`).
fn count(counter: &AtomicU64, series: &'static str) {
    counter.fetch_add(1, Ordering::Relaxed);
    metrics::counter!(series).increment(1);
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
    pub fn lazy(options: &RedisOptions) -> Result<Self, Error> {
        let prefix = options.checked_prefix()?;
        Ok(Self {
            connection: Connection::new(options)?,
            keys: KeyLayout::new(&prefix),
            clock_skew: Duration::from_secs(5),
            cooldown: Duration::from_secs(1),
            retention_max: Duration::from_secs(24 * 3600),
            cooling: Arc::new(Cooldown {
                epoch: Instant::now(),
                until_ms: AtomicI64::new(0),
            }),
            counters: Arc::default(),
        })
    }

    /// A cache on the server at `url` (default options) that makes its first connection
    /// now, to report a down server at start-up.
    ///
    /// # Errors
    /// [`Error::Url`] for a bad URL, [`Error::Connect`] when the server does not answer.
    pub async fn connect(url: &str) -> Result<Self, Error> {
        Self::connect_with(&RedisOptions::from_url(url)?).await
    }

    /// [`ReplayCache::connect`] with `options` (prefix, timeouts).
    ///
    /// # Errors
    /// As [`ReplayCache::lazy`], and [`Error::Connect`] when the server does not answer.
    pub async fn connect_with(options: &RedisOptions) -> Result<Self, Error> {
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

    /// The longest an entry stays in Redis (default 24 h), however long its record lives:
    /// a record that never expires ([`idem::TTL_FOREVER`]) must not hold Redis memory for
    /// ever. A replay after that goes to the truth store, and fills the entry again.
    pub fn retention_max(mut self, retention: Duration) -> Self {
        self.retention_max = retention;
        self
    }

    /// How the cache has served so far.
    pub fn stats(&self) -> CacheStats {
        let c = &self.counters;
        CacheStats {
            hits: c.hits.load(Ordering::Relaxed),
            misses: c.misses.load(Ordering::Relaxed),
            fills: c.fills.load(Ordering::Relaxed),
            errors: c.errors.load(Ordering::Relaxed),
        }
    }

    /// The cached answer of `(scope, key)` when a live entry answers `fingerprint`.
    /// Best effort: a miss, a cooling-down cache, a Redis failure or a corrupt entry is
    /// `None` (failures logged and counted), and the caller asks its truth store.
    pub async fn lookup(
        &self,
        scope: &Scope,
        key: &Key,
        fingerprint: &Fingerprint,
    ) -> Option<StoredResponse> {
        match self.replay(scope, key, fingerprint).await {
            Ok(Some(raw)) => match StoredResponse::decode(&raw) {
                Ok(response) => {
                    count(&self.counters.hits, metrics_names::REPLAY_CACHE_HITS_TOTAL);
                    return Some(response);
                }
                Err(err) => {
                    count(
                        &self.counters.errors,
                        metrics_names::REPLAY_CACHE_ERRORS_TOTAL,
                    );
                    tracing::warn!(target: "idem_redis::cache", error = %err, "corrupt Redis cache entry; asking the truth store");
                }
            },
            Ok(None) => {}
            Err(err) => {
                count(
                    &self.counters.errors,
                    metrics_names::REPLAY_CACHE_ERRORS_TOTAL,
                );
                tracing::warn!(target: "idem_redis::cache", error = %err, "Redis cache lookup failed; asking the truth store");
            }
        }
        count(
            &self.counters.misses,
            metrics_names::REPLAY_CACHE_MISSES_TOTAL,
        );
        None
    }

    /// Caches a completed `record` read from the truth store. Best effort: failures are
    /// logged and counted, never returned.
    pub async fn remember(&self, record: &Record) {
        let RecordState::Completed { response, .. } = &record.state else {
            return;
        };
        let expires_at = record.expires_at.as_millis();
        self.put(
            &record.scope,
            &record.key,
            &record.fingerprint,
            expires_at,
            response,
        )
        .await;
    }

    /// Caches the answer of a record that never expires (begun with
    /// [`idem::TTL_FOREVER`]), known complete by the caller (its transaction committed),
    /// without reading the record back. Best effort, as [`ReplayCache::remember`].
    pub async fn remember_settled(
        &self,
        scope: &Scope,
        key: &Key,
        fingerprint: &Fingerprint,
        response: &StoredResponse,
    ) {
        self.put(scope, key, fingerprint, DURATION_MS_MAX, response)
            .await;
    }

    async fn put(
        &self,
        scope: &Scope,
        key: &Key,
        fingerprint: &Fingerprint,
        expires_at_ms: i64,
        response: &StoredResponse,
    ) {
        match self
            .fill(scope, key, fingerprint, expires_at_ms, &response.encode())
            .await
        {
            Ok(true) => count(
                &self.counters.fills,
                metrics_names::REPLAY_CACHE_FILLS_TOTAL,
            ),
            Ok(false) => {}
            Err(err) => {
                count(
                    &self.counters.errors,
                    metrics_names::REPLAY_CACHE_ERRORS_TOTAL,
                );
                tracing::warn!(target: "idem_redis::cache", error = %err, "Redis cache write failed; ignored");
            }
        }
    }

    /// A second handle on the same entries over a connection of its own (another node, for
    /// tests).
    pub fn peer(&self) -> Self {
        Self {
            connection: self.connection.independent(),
            keys: self.keys.clone(),
            clock_skew: self.clock_skew,
            cooldown: self.cooldown,
            retention_max: self.retention_max,
            cooling: Arc::new(Cooldown {
                epoch: Instant::now(),
                until_ms: AtomicI64::new(0),
            }),
            counters: Arc::default(),
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
    async fn replay(
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

    /// Writes an entry valid until `expires_at_ms` (store time, less `clock_skew`, and
    /// no later than `retention_max` from now); says whether it was written (not when
    /// already within `clock_skew` of its expiry, or cooling down).
    async fn fill(
        &self,
        scope: &Scope,
        key: &Key,
        fingerprint: &Fingerprint,
        expires_at_ms: i64,
        response: &[u8],
    ) -> Result<bool, RedisError> {
        if self.is_cooling_down() {
            return Ok(false);
        }
        let expires_at = expires_at_ms.saturating_sub(duration_ms(self.clock_skew));
        let result = async {
            let mut conn = self.connection.get().await?;
            SCRIPTS
                .cache_put
                .key(self.keys.cache_entry(scope, key))
                .arg(&fingerprint.as_bytes()[..])
                .arg(expires_at)
                .arg(response)
                .arg(duration_ms(self.retention_max))
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

impl ReplayCache {
    /// Ages every entry of the prefix by `by`, as `idem::TimeTravel::advance` ages the
    /// records the entries were read from (tests only).
    ///
    /// # Errors
    /// [`idem::StoreError::Unavailable`] when Redis cannot be reached.
    #[cfg(feature = "test-clock")]
    pub async fn advance(&self, by: Duration) -> Result<(), idem::StoreError> {
        let mut conn = self
            .connection
            .get()
            .await
            .map_err(crate::error::store_error)?;
        crate::store::age(&mut conn, &self.keys.cache_pattern(), by).await
    }
}
