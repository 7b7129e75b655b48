//! [`MemoryStore`]: records in this process's memory, for tests, single-process services
//! and benchmarks of everything around the store.

use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use hashbrown::hash_table::Entry;
use hashbrown::HashTable;

use crate::decide::{
    begin_step, claimed, complete_step, expiry_passed, live, release_step, BeginStep,
};
use crate::metrics::instrument;
use crate::{
    Claim, Hold, Key, Outcome, Record, Scope, Store, StoreError, StoredResponse, Timestamp,
};

const SHARDS: usize = 32;

/// One shard's records.
type Shard = HashTable<Slot>;

/// A record in its shard's table. The hash of its scope and key is computed once per
/// operation, picks the shard and finds the record; kept here, it spares the table a rehash
/// of every key when it grows. The expiry is kept beside it so that a purge scans the table
/// without reading a record. The record is boxed: a table that grows or compacts under
/// constant churn moves slots, not records.
#[derive(Debug)]
struct Slot {
    hash: u64,
    /// Always the record's own `expires_at`.
    expires_at: Timestamp,
    record: Box<Record>,
}

impl Slot {
    fn new(hash: u64, record: Record) -> Self {
        Self {
            hash,
            expires_at: record.expires_at,
            record: Box::new(record),
        }
    }
}

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
    /// Seeded at random per store: keys come from clients, and a fixed hash would let them
    /// choose colliding ones.
    hasher: RandomState,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        let shards: Vec<Mutex<Shard>> = (0..SHARDS).map(|_| Mutex::new(HashTable::new())).collect();
        Self {
            shards: shards.into(),
            hasher: RandomState::new(),
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

    fn hash(&self, scope: &Scope, key: &Key) -> u64 {
        self.hasher.hash_one((scope.as_str(), key.as_str()))
    }

    /// The shard of `hash`, locked. The table places a record by the hash's low bits and
    /// tags it with its top seven, so the shard is taken from bits that neither uses.
    fn shard(&self, hash: u64) -> MutexGuard<'_, Shard> {
        let index = ((hash >> 32) % SHARDS as u64) as usize;
        lock(&self.shards[index])
    }

    fn clock(&self) -> Timestamp {
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        Timestamp(crate::record::duration_ms(wall))
    }
}

/// Whether a slot holds the record of `scope` and `key`, whose hash is `hash`. The kept hash
/// is compared first: a slot the table's tag matched by chance is then passed over without
/// reading its record.
fn is_record_of<'a>(hash: u64, scope: &'a Scope, key: &'a Key) -> impl Fn(&Slot) -> bool + 'a {
    move |slot| slot.hash == hash && slot.record.key == *key && slot.record.scope == *scope
}

/// A slot's kept hash, for the table to place it when it grows.
fn kept_hash(slot: &Slot) -> u64 {
    slot.hash
}

// A panic while a shard is locked cannot leave a record half-written (every write is one
// insert, remove or assignment), so a poisoned lock is safe to keep using.
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
        let hash = self.hash(claim.scope, claim.key);
        let mut shard = self.shard(hash);
        let entry = shard.entry(hash, is_record_of(hash, claim.scope, claim.key), kept_hash);
        let existing = match &entry {
            Entry::Occupied(found) => Some(&*found.get().record),
            Entry::Vacant(_) => None,
        };
        match begin_step(existing, claim.fingerprint, now) {
            BeginStep::Answer(outcome) => Ok(outcome),
            BeginStep::Write { token, recovered } => {
                let record = claimed(claim, token, now);
                match entry {
                    Entry::Occupied(mut found) => *found.get_mut() = Slot::new(hash, record),
                    Entry::Vacant(free) => {
                        free.insert(Slot::new(hash, record));
                    }
                }
                Ok(Outcome::Acquired { token, recovered })
            }
        }
    }

    fn complete_now(&self, hold: Hold<'_>, response: &StoredResponse) -> Result<(), StoreError> {
        let Hold { scope, key, token } = hold;
        let now = self.clock();
        let hash = self.hash(scope, key);
        let mut shard = self.shard(hash);
        let record = shard.find_mut(hash, is_record_of(hash, scope, key));
        let state = complete_step(
            record.as_deref().map(|slot| &*slot.record),
            token,
            response,
            now,
        )
        .ok_or(StoreError::Fenced)?;
        if let Some(slot) = record {
            slot.record.state = state;
        }
        Ok(())
    }

    fn release_now(&self, hold: Hold<'_>) -> Result<(), StoreError> {
        let Hold { scope, key, token } = hold;
        let now = self.clock();
        let hash = self.hash(scope, key);
        let mut shard = self.shard(hash);
        let record = shard.find_mut(hash, is_record_of(hash, scope, key));
        let state = release_step(record.as_deref().map(|slot| &*slot.record), token, now)
            .ok_or(StoreError::Fenced)?;
        if let Some(slot) = record {
            slot.record.state = state;
        }
        Ok(())
    }

    fn get_now(&self, scope: &Scope, key: &Key) -> Result<Option<Record>, StoreError> {
        let now = self.clock();
        let hash = self.hash(scope, key);
        let shard = self.shard(hash);
        Ok(shard
            .find(hash, is_record_of(hash, scope, key))
            .map(|slot| &*slot.record)
            .filter(|r| live(r, now))
            .cloned())
    }

    fn purge_expired_now(&self, limit: usize) -> Result<usize, StoreError> {
        let now = self.clock();
        let mut purged = 0;
        for shard in self.shards.iter() {
            if purged >= limit {
                break;
            }
            purged += lock(shard)
                .extract_if(|slot| expiry_passed(slot.expires_at, now))
                .take(limit - purged)
                .count();
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
            for slot in lock(shard).iter_mut() {
                let aged = crate::aged((*slot.record).clone(), by_ms);
                *slot = Slot::new(slot.hash, aged);
            }
        }
        Ok(())
    }
}
