//! [`Held`]: a key acquired from the store, released on drop unless completed; and
//! [`within_lease`], the bound on every store call the layer makes.

use std::future::Future;
use std::sync::Arc;

use std::time::Duration;

use crate::flow::key_hash;
use idem::{FencingToken, Hold, Key, Scope, Store, StoreError, StoredResponse};

/// Tries of a `complete` that fails transiently, and the first pause between two (doubled
/// each time: 25 + 50 + 100 ms, well within any lease).
const COMPLETE_TRIES: u32 = 4;
const COMPLETE_PAUSE_FIRST: Duration = Duration::from_millis(25);

/// Runs the store call `call` for at most `lease`, else fails it as
/// [`StoreError::Unavailable`]: a store reached over a dead network path (a half-open
/// connection) may never answer, and past the lease the key may be another holder's anyway.
/// The call is dropped, as a client that gave up drops it.
pub(crate) async fn within_lease<T>(
    lease: Duration,
    call: impl Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    tokio::time::timeout(lease, call).await.unwrap_or_else(|_| {
        let why = format!("no answer within the lease ({} ms)", lease.as_millis());
        Err(StoreError::Unavailable(why.into()))
    })
}

/// A record this request holds. If the request ends any way other than [`Held::complete`]
/// or [`Held::release`] — the handler failed or panicked, or the client disconnected and
/// the future was dropped — `Drop` spawns the release, so a retry can run at once instead
/// of waiting for the lease to end.
pub(crate) struct Held {
    store: Arc<dyn Store>,
    scope: Scope,
    key: Key,
    token: FencingToken,
    /// The lease it was acquired for: the bound on each store call about it.
    lease: Duration,
    armed: bool,
}

impl Held {
    pub(crate) fn new(
        store: Arc<dyn Store>,
        scope: Scope,
        key: Key,
        token: FencingToken,
        lease: Duration,
    ) -> Self {
        Self {
            store,
            scope,
            key,
            token,
            lease,
            armed: true,
        }
    }

    /// Stores the response, trying again after a transient failure (a cut connection that
    /// the pool replaces at once): the operation has run, and a released key lets a retry run
    /// it again. On a lasting failure the record is released: a failed `complete` must not
    /// leave the key held with nothing to replay.
    pub(crate) async fn complete(mut self, response: &StoredResponse) -> Result<(), StoreError> {
        let mut pause = COMPLETE_PAUSE_FIRST;
        let mut tries = 1;
        let result = loop {
            let hold = Hold::new(&self.scope, &self.key, self.token);
            let result = within_lease(self.lease, self.store.complete(hold, response)).await;
            match &result {
                Err(e) if e.is_transient() && tries < COMPLETE_TRIES => {
                    idem::metrics::transient_retry("complete");
                    tokio::time::sleep(pause).await;
                    pause *= 2;
                    tries += 1;
                }
                _ => break result,
            }
        };
        match &result {
            Ok(()) => self.armed = false,
            // Someone else holds the record now (our lease ended): it is theirs to finish.
            Err(StoreError::Fenced) => self.armed = false,
            // Left armed: dropping `self` releases it.
            Err(_) => {}
        }
        result
    }

    /// Releases the record now: the operation had no effect worth replaying.
    pub(crate) async fn release(mut self) {
        self.armed = false;
        release(&*self.store, &self.scope, &self.key, self.token, self.lease).await;
    }
}

async fn release(
    store: &dyn Store,
    scope: &Scope,
    key: &Key,
    token: FencingToken,
    lease: Duration,
) {
    match within_lease(lease, store.release(Hold::new(scope, key, token))).await {
        Ok(()) | Err(StoreError::Fenced) => {}
        Err(error) => tracing::warn!(
            %error, key_hash = %key_hash(key),
            "could not release an idempotency key; it frees itself when its lease ends"
        ),
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!(key_hash = %key_hash(&self.key), "no runtime to release an abandoned key; its lease will end");
            return;
        };
        let (store, scope, key, token, lease) = (
            Arc::clone(&self.store),
            self.scope.clone(),
            self.key.clone(),
            self.token,
            self.lease,
        );
        tracing::debug!(key_hash = %key_hash(&key), "request abandoned; releasing its idempotency key");
        runtime.spawn(async move { release(&*store, &scope, &key, token, lease).await });
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use idem::{Claim, Fingerprint, MemoryStore, Outcome, Record, RecordState};

    use super::*;

    /// A memory store whose first `failures` completes fail as a cut connection does.
    struct CutOnComplete {
        inner: MemoryStore,
        failures: AtomicU32,
    }

    #[async_trait::async_trait]
    impl Store for CutOnComplete {
        async fn begin(&self, claim: Claim<'_>) -> Result<Outcome, StoreError> {
            self.inner.begin(claim).await
        }
        async fn complete(
            &self,
            hold: Hold<'_>,
            response: &StoredResponse,
        ) -> Result<(), StoreError> {
            let cut = self
                .failures
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
            if cut.is_ok() {
                return Err(StoreError::Unavailable("connection reset".into()));
            }
            self.inner.complete(hold, response).await
        }
        async fn release(&self, hold: Hold<'_>) -> Result<(), StoreError> {
            self.inner.release(hold).await
        }
        async fn get(&self, scope: &Scope, key: &Key) -> Result<Option<Record>, StoreError> {
            self.inner.get(scope, key).await
        }
        async fn purge_expired(&self, limit: usize) -> Result<usize, StoreError> {
            self.inner.purge_expired(limit).await
        }
    }

    /// The record's state after a holder completes through `failures` cut completes.
    async fn state_after(failures: u32) -> Option<RecordState> {
        let store = Arc::new(CutOnComplete {
            inner: MemoryStore::new(),
            failures: AtomicU32::new(failures),
        });
        let scope = Scope::for_operation(None, "POST /transfers");
        let key = Key::new("k1").expect("a valid key");
        let fingerprint = Fingerprint::of_bytes("POST", "/transfers", b"{}");
        let claim = Claim::new(
            &scope,
            &key,
            &fingerprint,
            Duration::from_secs(60),
            Duration::from_secs(600),
        );
        let Ok(Outcome::Acquired { token, .. }) = store.begin(claim).await else {
            panic!("a fresh key is acquired");
        };
        let held = Held::new(
            store.clone(),
            scope.clone(),
            key.clone(),
            token,
            Duration::from_secs(60),
        );
        let response = StoredResponse::new(201, bytes::Bytes::from_static(b"done"));
        let _ = held.complete(&response).await;
        // A release is spawned when the holder gives up: let it run.
        tokio::time::sleep(Duration::from_millis(20)).await;
        store
            .get(&scope, &key)
            .await
            .expect("the store answers")
            .map(|r| r.state)
    }

    #[tokio::test]
    async fn a_complete_cut_once_is_tried_again_and_the_answer_kept() {
        let state = state_after(1).await;
        assert!(
            matches!(state, Some(RecordState::Completed { .. })),
            "{state:?}"
        );
    }

    #[tokio::test]
    async fn a_complete_that_keeps_failing_releases_the_key() {
        let state = state_after(COMPLETE_TRIES).await;
        assert!(state.is_none(), "{state:?}");
    }
}
