//! [`TieredStore`]: Redis in front for replays, any [`Store`] behind as the truth.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use idem::{
    FencingToken, Fingerprint, Key, Outcome, Record, RecordState, Scope, Store, StoreError,
    StoredResponse, TimeTravel, Timestamp,
};

use crate::ReplayCache;

/// A two-tier store: replays come from a [`ReplayCache`] in Redis when it has them; every
/// state change (a `begin` that acquires, `complete`, `release`) and every answer the cache
/// cannot give come from the truth store `S` (SQL).
///
/// The cache only ever holds snapshots of completed records, written after the truth
/// store completed them and expiring no later than they do, and a replay is served only
/// for the same fingerprint. Losing Redis (its keys deleted, the server down or
/// unreachable) therefore loses nothing and changes no answer: it costs a trip to the
/// truth store. Cache failures are logged (`tracing`, target `idem_redis::tiered`) and
/// counted in [`CacheStats`], never returned.
#[derive(Debug, Clone)]
pub struct TieredStore<S> {
    truth: S,
    cache: ReplayCache,
    counters: Arc<Counters>,
}

#[derive(Debug, Default)]
struct Counters {
    hits: AtomicU64,
    misses: AtomicU64,
    fills: AtomicU64,
    errors: AtomicU64,
}

/// How a [`TieredStore`]'s cache has served so far (since the store was built; clones
/// share the counts).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct CacheStats {
    /// `begin` calls answered with a replay from Redis.
    pub hits: u64,
    /// `begin` calls the cache could not answer, which went to the truth store.
    pub misses: u64,
    /// Entries written to Redis after a `complete` or a replay from the truth store.
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

impl<S: Store> TieredStore<S> {
    /// `truth` behind `cache`.
    pub fn new(truth: S, cache: ReplayCache) -> Self {
        Self {
            truth,
            cache,
            counters: Arc::default(),
        }
    }

    /// The cache's counts so far.
    pub fn stats(&self) -> CacheStats {
        let c = &self.counters;
        CacheStats {
            hits: c.hits.load(Ordering::Relaxed),
            misses: c.misses.load(Ordering::Relaxed),
            fills: c.fills.load(Ordering::Relaxed),
            errors: c.errors.load(Ordering::Relaxed),
        }
    }

    /// The truth store.
    pub fn get_ref(&self) -> &S {
        &self.truth
    }

    /// The cache.
    pub fn cache(&self) -> &ReplayCache {
        &self.cache
    }

    /// The truth store and the cache.
    pub fn into_inner(self) -> (S, ReplayCache) {
        (self.truth, self.cache)
    }

    fn count(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Reads the record back from the truth store and, when it is completed, writes it to
    /// the cache. Best effort: every failure is logged and counted, never returned.
    async fn fill(&self, scope: &Scope, key: &Key) {
        if self.cache.is_cooling_down() {
            return;
        }
        let record = match self.truth.get(scope, key).await {
            Ok(Some(record)) => record,
            Ok(None) => return,
            Err(err) => {
                tracing::debug!(target: "idem_redis::tiered", error = %err, "cannot read the record back to cache it");
                return;
            }
        };
        let RecordState::Completed { response, .. } = &record.state else {
            return;
        };
        match self.cache.fill(&record, &response.encode()).await {
            Ok(true) => Self::count(&self.counters.fills),
            Ok(false) => {}
            Err(err) => {
                Self::count(&self.counters.errors);
                tracing::warn!(target: "idem_redis::tiered", error = %err, "Redis cache write failed; ignored");
            }
        }
    }
}

#[async_trait]
impl<S: Store> Store for TieredStore<S> {
    async fn begin(
        &self,
        scope: &Scope,
        key: &Key,
        fingerprint: &Fingerprint,
        lease: Duration,
        ttl: Duration,
    ) -> Result<Outcome, StoreError> {
        match self.cache.replay(scope, key, fingerprint).await {
            Ok(Some(raw)) => match StoredResponse::decode(&raw) {
                Ok(response) => {
                    Self::count(&self.counters.hits);
                    return Ok(Outcome::Replay(response));
                }
                Err(err) => {
                    Self::count(&self.counters.errors);
                    tracing::warn!(target: "idem_redis::tiered", error = %err, "corrupt Redis cache entry; asking the truth store");
                }
            },
            Ok(None) => {}
            Err(err) => {
                Self::count(&self.counters.errors);
                tracing::warn!(target: "idem_redis::tiered", error = %err, "Redis cache lookup failed; asking the truth store");
            }
        }
        Self::count(&self.counters.misses);
        let outcome = self
            .truth
            .begin(scope, key, fingerprint, lease, ttl)
            .await?;
        if matches!(outcome, Outcome::Replay(_)) {
            self.fill(scope, key).await;
        }
        Ok(outcome)
    }

    async fn complete(
        &self,
        scope: &Scope,
        key: &Key,
        token: FencingToken,
        response: &StoredResponse,
    ) -> Result<(), StoreError> {
        self.truth.complete(scope, key, token, response).await?;
        self.fill(scope, key).await;
        Ok(())
    }

    async fn release(
        &self,
        scope: &Scope,
        key: &Key,
        token: FencingToken,
    ) -> Result<(), StoreError> {
        // The cache holds completed records only, and a completed record cannot be
        // released: nothing to invalidate.
        self.truth.release(scope, key, token).await
    }

    async fn get(&self, scope: &Scope, key: &Key) -> Result<Option<Record>, StoreError> {
        self.truth.get(scope, key).await
    }

    async fn purge_expired(&self, limit: usize) -> Result<usize, StoreError> {
        // Cache entries expire in Redis on their own, never later than their records.
        self.truth.purge_expired(limit).await
    }

    async fn now(&self) -> Result<Timestamp, StoreError> {
        self.truth.now().await
    }
}

impl<S: TimeTravel> TimeTravel for TieredStore<S> {
    fn advance_clock(&self, by: Duration) {
        self.truth.advance_clock(by);
        self.cache.advance_clock(by);
    }
}
