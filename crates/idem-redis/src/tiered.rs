//! [`TieredStore`]: Redis in front for replays, any [`Store`] behind as the truth.

use async_trait::async_trait;
use idem::metrics::instrument;
use idem::{Claim, Hold, Key, Outcome, Record, Scope, Store, StoreError, StoredResponse};

use crate::{CacheStats, ReplayCache};

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
}

impl<S: Store> TieredStore<S> {
    /// `truth` behind `cache`.
    pub fn new(truth: S, cache: ReplayCache) -> Self {
        Self { truth, cache }
    }

    /// The cache's counts so far.
    pub fn stats(&self) -> CacheStats {
        self.cache.stats()
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

    /// Reads the record back from the truth store and caches it when completed. Best
    /// effort: every failure is logged and counted, never returned.
    async fn fill(&self, scope: &Scope, key: &Key) {
        if self.cache.is_cooling_down() {
            return;
        }
        match self.truth.get(scope, key).await {
            Ok(Some(record)) => self.cache.remember(&record).await,
            Ok(None) => {}
            Err(err) => {
                tracing::debug!(target: "idem_redis::tiered", error = %err, "cannot read the record back to cache it");
            }
        }
    }
}

/// The `store` label of this store's series (`idem::metrics`).
const NAME: &str = "tiered";

#[async_trait]
impl<S: Store> Store for TieredStore<S> {
    async fn begin(&self, claim: Claim<'_>) -> Result<Outcome, StoreError> {
        instrument(NAME, "begin", async {
            let (scope, key) = (claim.scope, claim.key);
            if let Some(response) = self.cache.lookup(scope, key, claim.fingerprint).await {
                return Ok(Outcome::Replay(response));
            }
            let outcome = self.truth.begin(claim).await?;
            if matches!(outcome, Outcome::Replay(_)) {
                self.fill(scope, key).await;
            }
            Ok(outcome)
        })
        .await
    }

    async fn complete(&self, hold: Hold<'_>, response: &StoredResponse) -> Result<(), StoreError> {
        instrument(NAME, "complete", async {
            self.truth.complete(hold, response).await?;
            self.fill(hold.scope, hold.key).await;
            Ok(())
        })
        .await
    }

    async fn release(&self, hold: Hold<'_>) -> Result<(), StoreError> {
        instrument(NAME, "release", async {
            // The cache holds completed records only, and a completed record cannot be
            // released: nothing to invalidate.
            self.truth.release(hold).await
        })
        .await
    }

    async fn get(&self, scope: &Scope, key: &Key) -> Result<Option<Record>, StoreError> {
        instrument(NAME, "get", async { self.truth.get(scope, key).await }).await
    }

    async fn purge_expired(&self, limit: usize) -> Result<usize, StoreError> {
        instrument(NAME, "purge", async {
            // Cache entries expire in Redis on their own, never later than their records.
            self.truth.purge_expired(limit).await
        })
        .await
    }
    fn name(&self) -> &'static str {
        NAME
    }
}

#[cfg(feature = "test-clock")]
#[async_trait]
impl<S: Store + idem::TimeTravel> idem::TimeTravel for TieredStore<S> {
    async fn now(&self) -> Result<idem::Timestamp, StoreError> {
        self.truth.now().await
    }

    /// Ages the truth store's records and the cache's entries alike. A cache that cannot
    /// be reached keeps its entries as they are: as every cache failure, that is logged,
    /// never returned (the truth store's answers are the ones under test).
    async fn advance(&self, by: std::time::Duration) -> Result<(), StoreError> {
        self.truth.advance(by).await?;
        if let Err(err) = self.cache.advance(by).await {
            tracing::debug!(target: "idem_redis::tiered", error = %err, "cannot age the cache's entries");
        }
        Ok(())
    }
}
