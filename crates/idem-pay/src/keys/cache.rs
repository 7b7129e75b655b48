//! [`TenantCache`]: each node's short memory of which tenant a secret's hash belongs to, so
//! that a hot key costs no database round trip per request, while a revocation still
//! reaches every node within [`CACHE_AGE_MAX`] plus one read.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::secret::SecretHash;
use crate::Tenant;

/// How long an answer is trusted, counted from before the read that produced it. A key
/// revoked at `t` is refused by every node from `t` + this at the latest (DESIGN §5a asks
/// for 1 s).
pub const CACHE_AGE_MAX: Duration = Duration::from_millis(500);

/// How many answers a node remembers; when full, it forgets them all (one cheap step, and a
/// flood of made-up keys cannot make it slow).
pub const CACHE_ENTRIES_MAX: usize = 10_000;

/// One remembered answer: the tenant, or `None` for unknown or revoked.
#[derive(Clone)]
struct Entry {
    read_at: Instant,
    tenant: Option<Tenant>,
}

/// Answers of [`super::ApiKeys::tenant_of`] by secret hash, positive and negative, each for
/// at most `age_max`.
pub(crate) struct TenantCache {
    age_max: Duration,
    entries_max: usize,
    entries: Mutex<HashMap<SecretHash, Entry>>,
}

impl TenantCache {
    /// An empty cache keeping up to `entries_max` answers for less than `age_max` each.
    pub(crate) fn new(age_max: Duration, entries_max: usize) -> Self {
        Self {
            age_max,
            entries_max: entries_max.max(1),
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// The answer remembered for `hash`, if it was read less than `age_max` before `now`:
    /// `Some(None)` is a remembered refusal.
    pub(crate) fn get(&self, hash: &SecretHash, now: Instant) -> Option<Option<Tenant>> {
        let entries = self.lock();
        let entry = entries.get(hash)?;
        (now.saturating_duration_since(entry.read_at) < self.age_max).then(|| entry.tenant.clone())
    }

    /// Remembers `tenant` for `hash`, as read by a query that started at `read_at` (the
    /// start, not the end: a revocation committed while the query ran may be missing from
    /// its answer, and the age must count from before it).
    pub(crate) fn insert(&self, hash: SecretHash, tenant: Option<Tenant>, read_at: Instant) {
        let mut entries = self.lock();
        if entries.len() >= self.entries_max && !entries.contains_key(&hash) {
            entries.clear();
        }
        entries.insert(hash, Entry { read_at, tenant });
    }

    /// Forgets every answer (after a revocation on this node, so that it refuses the key at
    /// once).
    pub(crate) fn clear(&self) {
        self.lock().clear();
    }

    /// How many answers are remembered, fresh or not.
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }

    /// The map; a panic elsewhere while it was held cannot leave it half-changed (every
    /// change is one `insert` or `clear`), so a poisoned lock is used as is.
    fn lock(&self) -> MutexGuard<'_, HashMap<SecretHash, Entry>> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl fmt::Debug for TenantCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TenantCache")
            .field("age_max", &self.age_max)
            .field("entries_max", &self.entries_max)
            .field("entries", &self.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant(name: &str) -> Option<Tenant> {
        Some(Tenant::new(name).expect("a valid tenant"))
    }

    #[test]
    fn answers_are_kept_for_less_than_the_age() {
        let cache = TenantCache::new(CACHE_AGE_MAX, 4);
        let t0 = Instant::now();
        assert_eq!(cache.get(&[1; 32], t0), None);
        cache.insert([1; 32], tenant("acme"), t0);
        assert_eq!(cache.get(&[1; 32], t0), Some(tenant("acme")));
        let almost = t0 + CACHE_AGE_MAX - Duration::from_millis(1);
        assert_eq!(cache.get(&[1; 32], almost), Some(tenant("acme")));
        assert_eq!(cache.get(&[1; 32], t0 + CACHE_AGE_MAX), None, "expired");
        assert_eq!(cache.get(&[2; 32], t0), None, "another hash");
    }

    #[test]
    fn refusals_are_remembered_too() {
        let cache = TenantCache::new(CACHE_AGE_MAX, 4);
        let t0 = Instant::now();
        cache.insert([7; 32], None, t0);
        assert_eq!(cache.get(&[7; 32], t0), Some(None));
        assert_eq!(cache.get(&[7; 32], t0 + CACHE_AGE_MAX), None);
    }

    #[test]
    fn a_full_cache_forgets_everything_and_stays_bounded() {
        let cache = TenantCache::new(CACHE_AGE_MAX, 3);
        let t0 = Instant::now();
        for i in 0..3u8 {
            cache.insert([i; 32], tenant("t"), t0);
        }
        assert_eq!(cache.len(), 3);
        // Refreshing a remembered hash does not evict.
        cache.insert([0; 32], tenant("u"), t0);
        assert_eq!(
            (cache.len(), cache.get(&[0; 32], t0)),
            (3, Some(tenant("u")))
        );
        cache.insert([9; 32], None, t0);
        assert_eq!(cache.len(), 1);
        assert_eq!(cache.get(&[1; 32], t0), None);
        assert_eq!(cache.get(&[9; 32], t0), Some(None));
        for i in 0..=255u8 {
            cache.insert([i; 32], None, t0);
            assert!(cache.len() <= 3);
        }
    }

    #[test]
    fn clear_forgets_everything() {
        let cache = TenantCache::new(CACHE_AGE_MAX, 4);
        let t0 = Instant::now();
        cache.insert([1; 32], tenant("acme"), t0);
        cache.clear();
        assert_eq!(cache.get(&[1; 32], t0), None);
    }
}
