//! [`ReplayMemory`]: a node's memory of settled answers, so that a replay is served without
//! a round trip to the store.
//!
//! A completed record never changes before it expires, so an answer remembered from it is
//! the one the store would give, on every node, until then. The memory is used only for a
//! request with the same fingerprint; anything else goes to the store, which decides
//! (`Mismatch`, or a new generation after expiry). It is bounded: two generations of at
//! most `capacity / 2` entries each; when the young one fills, the old one is dropped
//! whole, so a lookup and an insert are O(1) and the least recently used half is what goes.
//!
//! How long an entry is trusted is the caller's to say, from what it knows without reading
//! any clock but its own monotonic one: a record begun with [`crate::TTL_FOREVER`] never
//! expires; one begun at local instant `t` with `ttl` expires no earlier than `t + ttl`.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::{Fingerprint, Key, Scope, StoredResponse};

/// A bounded, node-local memory of settled answers by `(scope, key)`, shareable by every
/// surface (the payment service, a layer, a proxy) over any store. Capacity 0 remembers
/// nothing.
#[derive(Debug)]
pub struct ReplayMemory {
    recent: Recent<(Scope, Key), Settled>,
}

/// One remembered answer.
#[derive(Debug)]
struct Settled {
    fingerprint: Fingerprint,
    response: StoredResponse,
    /// `None`: the record never expires.
    trusted_until: Option<Instant>,
}

impl ReplayMemory {
    /// A memory of at most `capacity` answers.
    pub fn new(capacity: usize) -> Self {
        Self {
            recent: Recent::new(capacity),
        }
    }

    /// How many answers it can hold (0: it remembers nothing).
    pub fn capacity(&self) -> usize {
        self.recent.capacity()
    }

    /// The remembered answer of `(scope, key)` when it answers a request with
    /// `fingerprint` and is still trusted; `None` sends the caller to its store.
    pub fn replay(
        &self,
        scope: &Scope,
        key: &Key,
        fingerprint: &Fingerprint,
    ) -> Option<StoredResponse> {
        if self.capacity() == 0 {
            return None;
        }
        let entry = self.recent.get(&(scope.clone(), key.clone()))?;
        let trusted = entry.trusted_until.is_none_or(|t| Instant::now() < t);
        (trusted && entry.fingerprint == *fingerprint).then(|| entry.response.clone())
    }

    /// Remembers the completed answer of `(scope, key)` for requests with `fingerprint`,
    /// trusted for `valid_for` from now ([`crate::TTL_FOREVER`]: for ever). Pass no more
    /// than the record is sure to live: its TTL counted from before the `begin` that
    /// created it.
    pub fn remember(
        &self,
        scope: &Scope,
        key: &Key,
        fingerprint: &Fingerprint,
        response: &StoredResponse,
        valid_for: Duration,
    ) {
        if self.capacity() == 0 {
            return;
        }
        let trusted_until = if valid_for >= crate::TTL_FOREVER {
            None
        } else {
            // An instant past what the platform can hold is as good as for ever.
            Instant::now().checked_add(valid_for)
        };
        self.recent.insert(
            (scope.clone(), key.clone()),
            Settled {
                fingerprint: *fingerprint,
                response: response.clone(),
                trusted_until,
            },
        );
    }
}

/// A bounded map from keys to shared values, forgetting the least recently used half when
/// full. `capacity` 0 remembers nothing.
#[derive(Debug)]
struct Recent<K, V> {
    half: usize,
    generations: Mutex<Generations<K, V>>,
}

#[derive(Debug)]
struct Generations<K, V> {
    young: HashMap<K, Arc<V>>,
    old: HashMap<K, Arc<V>>,
}

impl<K: Hash + Eq, V> Recent<K, V> {
    /// A memory of at most `capacity` entries.
    fn new(capacity: usize) -> Self {
        Self {
            half: capacity / 2,
            generations: Mutex::new(Generations {
                young: HashMap::new(),
                old: HashMap::new(),
            }),
        }
    }

    /// How many entries it can hold (0: it remembers nothing).
    fn capacity(&self) -> usize {
        self.half * 2
    }

    /// The value under `key`, if remembered; a hit in the old generation moves it to the
    /// young one, so entries in use survive the next turnover.
    fn get<Q>(&self, key: &Q) -> Option<Arc<V>>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        if self.half == 0 {
            return None;
        }
        let mut generations = self.lock();
        if let Some(value) = generations.young.get(key) {
            return Some(Arc::clone(value));
        }
        let (key, value) = generations.old.remove_entry(key)?;
        generations.insert(self.half, key, Arc::clone(&value));
        Some(value)
    }

    /// Remembers `value` under `key`.
    fn insert(&self, key: K, value: V) {
        if self.half == 0 {
            return;
        }
        self.lock().insert(self.half, key, Arc::new(value));
    }

    /// How many entries are remembered.
    #[cfg(test)]
    fn len(&self) -> usize {
        let generations = self.lock();
        generations.young.len() + generations.old.len()
    }

    // Every write is one map operation, so a panic elsewhere cannot leave the maps torn:
    // a poisoned lock is safe to keep using.
    fn lock(&self) -> MutexGuard<'_, Generations<K, V>> {
        self.generations
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl<K: Hash + Eq, V> Generations<K, V> {
    fn insert(&mut self, half: usize, key: K, value: Arc<V>) {
        if self.young.len() >= half && !self.young.contains_key(&key) {
            self.old = std::mem::take(&mut self.young);
        }
        self.young.insert(key, value);
        debug_assert!(self.young.len() <= half && self.old.len() <= half);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(raw: &str) -> (Scope, Key) {
        (Scope::global(), Key::new(raw).expect("valid key"))
    }

    #[test]
    fn replays_only_the_same_fingerprint_while_trusted() {
        let memory = ReplayMemory::new(8);
        let (s, k) = id("order-1");
        let (fp, other) = (
            Fingerprint::of_bytes("POST", "/p", b"a"),
            Fingerprint::of_bytes("POST", "/p", b"b"),
        );
        let answer = StoredResponse::new(201, "paid");
        assert_eq!(memory.replay(&s, &k, &fp), None);
        memory.remember(&s, &k, &fp, &answer, crate::TTL_FOREVER);
        assert_eq!(memory.replay(&s, &k, &fp), Some(answer.clone()));
        assert_eq!(
            memory.replay(&s, &k, &other),
            None,
            "another request goes to the store"
        );

        let (_, short) = id("order-2");
        memory.remember(&s, &short, &fp, &answer, Duration::ZERO);
        assert_eq!(
            memory.replay(&s, &short, &fp),
            None,
            "past its trust, never replayed"
        );
        assert_eq!(ReplayMemory::new(0).capacity(), 0);
    }

    #[test]
    fn remembers_and_answers() {
        let memory = Recent::new(8);
        memory.insert("a".to_owned(), 1);
        assert_eq!(memory.get("a").as_deref(), Some(&1));
        assert_eq!(memory.get("b"), None);
    }

    #[test]
    fn zero_capacity_remembers_nothing() {
        let memory = Recent::new(0);
        memory.insert("a".to_owned(), 1);
        assert_eq!(memory.get("a"), None);
        assert_eq!(memory.len(), 0);
    }

    #[test]
    fn stays_bounded_and_keeps_what_is_used() {
        let memory = Recent::new(10);
        memory.insert(0, 0);
        for i in 1..1_000 {
            memory.insert(i, i);
            // Key 0 is read all the time: it must never be forgotten.
            assert_eq!(memory.get(&0).as_deref(), Some(&0), "after {i} inserts");
            assert!(
                memory.len() <= 10,
                "{} entries after {i} inserts",
                memory.len()
            );
        }
        // A key not touched since long ago is gone.
        assert_eq!(memory.get(&1), None);
        assert_eq!(memory.get(&999).as_deref(), Some(&999));
    }
}
