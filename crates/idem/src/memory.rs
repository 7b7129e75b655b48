//! [`MemoryStore`]: records in this process's memory, for tests, single-process services
//! and benchmarks of everything around the store.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;

use crate::decide::{begin_step, claimed, complete_step, expired, live, release_step, BeginStep};
use crate::metrics::instrument;
use crate::{
    Claim, Hold, Key, Outcome, Record, Scope, Store, StoreError, StoredResponse, Timestamp,
};

const SHARDS: usize = 32;

type Shard = HashMap<(Scope, Key), Record>;

/// A store in this process's memory. Clones share the records.
///
/// Each `begin` holds the lock of one shard for its whole decision, so it is atomic across
/// tasks and threads; the clock is this process's, which is the one clock every caller of
/// an in-process store shares.
///
/// Records stay in memory until [`Store::purge_expired`] removes them after their TTL: a
/// long-running service calls it now and then (`idem_http::spawn_purger` does), or the
/// store grows by one record per request for as long as the TTL.
#[derive(Debug, Clone)]
pub struct MemoryStore {
    shards: Arc<[Mutex<Shard>]>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        let shards: Vec<Mutex<Shard>> = (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect();
        Self {
            shards: shards.into(),
        }
    }

    /// How many records are held, expired ones included.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| lock(s).len()).sum()
    }

    /// True when no record is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn shard(&self, scope: &Scope, key: &Key) -> MutexGuard<'_, Shard> {
        let mut hasher = DefaultHasher::new();
        (scope, key).hash(&mut hasher);
        let index = (hasher.finish() % SHARDS as u64) as usize;
        lock(&self.shards[index])
    }

    fn clock(&self) -> Timestamp {
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        Timestamp(crate::record::duration_ms(wall))
    }
}

// A panic while a shard is locked cannot leave a record half-written (every write is one
// insert or remove), so a poisoned lock is safe to keep using.
fn lock(shard: &Mutex<Shard>) -> MutexGuard<'_, Shard> {
    shard
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The operations themselves, each one step under its shard's lock; the `Store` impl
/// below times them.
impl MemoryStore {
    fn begin_now(&self, claim: Claim<'_>) -> Result<Outcome, StoreError> {
        let now = self.clock();
        let id = (claim.scope.clone(), claim.key.clone());
        let mut shard = self.shard(claim.scope, claim.key);
        match begin_step(shard.get(&id), claim.fingerprint, now) {
            BeginStep::Answer(outcome) => Ok(outcome),
            BeginStep::Write { token, recovered } => {
                shard.insert(id, claimed(claim, token, now));
                Ok(Outcome::Acquired { token, recovered })
            }
        }
    }

    fn complete_now(&self, hold: Hold<'_>, response: &StoredResponse) -> Result<(), StoreError> {
        let Hold { scope, key, token } = hold;
        let now = self.clock();
        let id = (scope.clone(), key.clone());
        let mut shard = self.shard(scope, key);
        let state =
            complete_step(shard.get(&id), token, response, now).ok_or(StoreError::Fenced)?;
        if let Some(record) = shard.get_mut(&id) {
            record.state = state;
        }
        Ok(())
    }

    fn release_now(&self, hold: Hold<'_>) -> Result<(), StoreError> {
        let Hold { scope, key, token } = hold;
        let now = self.clock();
        let id = (scope.clone(), key.clone());
        let mut shard = self.shard(scope, key);
        let state = release_step(shard.get(&id), token, now).ok_or(StoreError::Fenced)?;
        if let Some(record) = shard.get_mut(&id) {
            record.state = state;
        }
        Ok(())
    }

    fn get_now(&self, scope: &Scope, key: &Key) -> Result<Option<Record>, StoreError> {
        let now = self.clock();
        let id = (scope.clone(), key.clone());
        let shard = self.shard(scope, key);
        Ok(shard.get(&id).filter(|r| live(r, now)).cloned())
    }

    fn purge_expired_now(&self, limit: usize) -> Result<usize, StoreError> {
        let now = self.clock();
        let mut purged = 0;
        for shard in self.shards.iter() {
            if purged >= limit {
                break;
            }
            let mut shard = lock(shard);
            let expired: Vec<(Scope, Key)> = shard
                .iter()
                .filter(|(_, r)| expired(r, now))
                .map(|(id, _)| id.clone())
                .take(limit - purged)
                .collect();
            for id in expired {
                shard.remove(&id);
                purged += 1;
            }
        }
        Ok(purged)
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn begin(&self, claim: Claim<'_>) -> Result<Outcome, StoreError> {
        instrument(NAME, "begin", async { self.begin_now(claim) }).await
    }

    async fn complete(&self, hold: Hold<'_>, response: &StoredResponse) -> Result<(), StoreError> {
        instrument(NAME, "complete", async {
            self.complete_now(hold, response)
        })
        .await
    }

    async fn release(&self, hold: Hold<'_>) -> Result<(), StoreError> {
        instrument(NAME, "release", async { self.release_now(hold) }).await
    }

    async fn get(&self, scope: &Scope, key: &Key) -> Result<Option<Record>, StoreError> {
        instrument(NAME, "get", async { self.get_now(scope, key) }).await
    }

    async fn purge_expired(&self, limit: usize) -> Result<usize, StoreError> {
        instrument(NAME, "purge", async { self.purge_expired_now(limit) }).await
    }

    fn name(&self) -> &'static str {
        NAME
    }
}

/// The `store` label of this store's series.
const NAME: &str = "memory";

#[cfg(feature = "test-clock")]
#[async_trait]
impl crate::TimeTravel for MemoryStore {
    async fn now(&self) -> Result<Timestamp, StoreError> {
        Ok(self.clock())
    }

    async fn advance(&self, by: Duration) -> Result<(), StoreError> {
        let by_ms = crate::duration_ms(by);
        for shard in self.shards.iter() {
            for record in lock(shard).values_mut() {
                *record = crate::aged(record.clone(), by_ms);
            }
        }
        Ok(())
    }
}
