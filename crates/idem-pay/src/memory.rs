//! [`Recent`]: this node's memory of settled answers, so that a replay is served without a
//! round trip to the database.
//!
//! Only answers that can never change go in: a committed payment or refund is final (its
//! row holds the exact bytes, and nothing updates or deletes it), so a remembered answer is
//! the one the database would give, on every node. A remembered answer is used only when the
//! request's parameters equal the ones it answers; anything else goes to the database,
//! which decides (422). The memory is bounded: two generations of at most `capacity / 2`
//! entries each; when the young one fills, the old one is dropped whole, so a lookup and an
//! insert are O(1) and the least recently used half is what goes.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex, MutexGuard};

/// A bounded map from keys to shared values, forgetting the least recently used half when
/// full. `capacity` 0 remembers nothing.
#[derive(Debug)]
pub(crate) struct Recent<K, V> {
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
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            half: capacity / 2,
            generations: Mutex::new(Generations {
                young: HashMap::new(),
                old: HashMap::new(),
            }),
        }
    }

    /// How many entries it can hold (0: it remembers nothing).
    pub(crate) fn capacity(&self) -> usize {
        self.half * 2
    }

    /// The value under `key`, if remembered; a hit in the old generation moves it to the
    /// young one, so entries in use survive the next turnover.
    pub(crate) fn get<Q>(&self, key: &Q) -> Option<Arc<V>>
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
    pub(crate) fn insert(&self, key: K, value: V) {
        if self.half == 0 {
            return;
        }
        self.lock().insert(self.half, key, Arc::new(value));
    }

    /// How many entries are remembered.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
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
