//! [`Held`]: a key acquired from the store, released on drop unless completed.

use std::sync::Arc;

use idem::{FencingToken, Hold, Key, Scope, Store, StoreError, StoredResponse};

/// A record this request holds. If the request ends any way other than [`Held::complete`]
/// or [`Held::release`] — the handler failed or panicked, or the client disconnected and
/// the future was dropped — `Drop` spawns the release, so a retry can run at once instead
/// of waiting for the lease to end.
pub(crate) struct Held {
    store: Arc<dyn Store>,
    scope: Scope,
    key: Key,
    token: FencingToken,
    armed: bool,
}

impl Held {
    pub(crate) fn new(store: Arc<dyn Store>, scope: Scope, key: Key, token: FencingToken) -> Self {
        Self {
            store,
            scope,
            key,
            token,
            armed: true,
        }
    }

    /// Stores the response. On failure the record is released: a failed `complete` must not
    /// leave the key held with nothing to replay.
    pub(crate) async fn complete(mut self, response: &StoredResponse) -> Result<(), StoreError> {
        let result = self
            .store
            .complete(Hold::new(&self.scope, &self.key, self.token), response)
            .await;
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
        release(&*self.store, &self.scope, &self.key, self.token).await;
    }
}

async fn release(store: &dyn Store, scope: &Scope, key: &Key, token: FencingToken) {
    match store.release(Hold::new(scope, key, token)).await {
        Ok(()) | Err(StoreError::Fenced) => {}
        Err(error) => tracing::warn!(
            %error, scope = %scope, key = %key,
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
            tracing::warn!(key = %self.key, "no runtime to release an abandoned key; its lease will end");
            return;
        };
        let (store, scope, key, token) = (
            Arc::clone(&self.store),
            self.scope.clone(),
            self.key.clone(),
            self.token,
        );
        tracing::debug!(key = %key, "request abandoned; releasing its idempotency key");
        runtime.spawn(async move { release(&*store, &scope, &key, token).await });
    }
}
