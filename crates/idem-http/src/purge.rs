//! [`spawn_purger`]: deletes expired records in the background, so that a store holds only
//! what can still be replayed instead of every record it ever kept.

use std::sync::Arc;
use std::time::Duration;

use idem::Store;
use tokio::task::JoinHandle;

/// Records one `purge_expired` call deletes at most; a full batch is followed at once by
/// another, so a backlog clears without one call holding the store for long.
pub const PURGE_BATCH: usize = 1_000;

/// Starts a task on the current tokio runtime that, every `every`, deletes the store's
/// expired records in batches of [`PURGE_BATCH`] until none is left. A failed call is
/// logged and tried again at the next period. Abort the handle (or drop the runtime) to
/// stop it.
///
/// # Panics
/// Outside a tokio runtime, as `tokio::spawn` does.
pub fn spawn_purger(store: Arc<dyn Store>, every: Duration) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The first tick is immediate: a store left full by an earlier run is purged now.
        loop {
            ticks.tick().await;
            purge_all(&*store).await;
        }
    })
}

async fn purge_all(store: &dyn Store) {
    let mut purged = 0;
    loop {
        match store.purge_expired(PURGE_BATCH).await {
            Ok(n) => {
                purged += n;
                if n < PURGE_BATCH {
                    break;
                }
            }
            Err(error) => {
                tracing::warn!(%error, "could not purge expired idempotency records; trying again later");
                break;
            }
        }
    }
    if purged > 0 {
        tracing::debug!(purged, "purged expired idempotency records");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use idem::{Claim, Fingerprint, Key, MemoryStore, Outcome, Scope, TimeTravel};

    #[tokio::test]
    async fn expired_records_go_and_live_ones_stay() {
        let store = MemoryStore::new();
        let scope = Scope::global();
        let fp = Fingerprint::of_bytes("POST", "/", b"");
        let short = Duration::from_secs(60);
        for i in 0..(PURGE_BATCH + 5) {
            let key = Key::new(format!("k-{i}")).expect("key");
            let outcome = store
                .begin(Claim::new(&scope, &key, &fp, Duration::from_secs(1), short))
                .await
                .expect("begin");
            assert!(matches!(outcome, Outcome::Acquired { .. }));
        }
        let live = Key::new("live").expect("key");
        let outcome = store
            .begin(Claim::new(
                &scope,
                &live,
                &fp,
                Duration::from_secs(1),
                short * 10,
            ))
            .await
            .expect("begin");
        assert!(matches!(outcome, Outcome::Acquired { .. }));
        store
            .advance(short + Duration::from_secs(1))
            .await
            .expect("advance");

        let purger = spawn_purger(Arc::new(store.clone()), Duration::from_millis(10));
        for _ in 0..500 {
            if store.len() == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        purger.abort();
        assert_eq!(
            store.len(),
            1,
            "more than one batch of expired records is purged"
        );
        assert!(store.get(&scope, &live).await.expect("get").is_some());
    }
}
