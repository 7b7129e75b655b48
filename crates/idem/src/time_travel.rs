//! [`TimeTravel`]: the test hook that ends leases and TTLs without sleeping (feature
//! `test-clock`, off in production builds).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::{Record, RecordState, StoreError, Timestamp, DURATION_MS_MAX};

/// Ages a store's records, as if time had passed, and reads the store's clock.
///
/// The store's clock itself never moves: `advance` rewrites the stored times instead, so
/// every other operation runs the same statements and scripts, fast paths included, as in
/// production. The records belong to the store, not to a handle: a test with two handles
/// on one store advances one of them.
#[async_trait]
pub trait TimeTravel: Send + Sync {
    /// The store's clock: milliseconds since the Unix epoch by the store's time.
    ///
    /// # Errors
    /// A [`StoreError`] when the store fails.
    async fn now(&self) -> Result<Timestamp, StoreError>;

    /// Moves every time stored in this store's namespace (its table or key prefix) back by
    /// `by`: lease ends, expiries and creation times. A record begun with
    /// [`crate::TTL_FOREVER`] keeps its expiry, so it never expires.
    ///
    /// # Errors
    /// A [`StoreError`] when the store fails; some records may then be aged and others not.
    async fn advance(&self, by: Duration) -> Result<(), StoreError>;
}

#[async_trait]
impl<S: TimeTravel + ?Sized> TimeTravel for Arc<S> {
    async fn now(&self) -> Result<Timestamp, StoreError> {
        (**self).now().await
    }

    async fn advance(&self, by: Duration) -> Result<(), StoreError> {
        (**self).advance(by).await
    }
}

/// `record` with its times moved back by `by_ms`, as every store's `advance` does: its
/// lease end, creation and expiry, except the expiry of a record that never expires.
pub fn aged(mut record: Record, by_ms: i64) -> Record {
    let back = |t: Timestamp| Timestamp(t.0.saturating_sub(by_ms));
    if let RecordState::InProgress { lease_until, .. } = &mut record.state {
        *lease_until = back(*lease_until);
    }
    record.created_at = back(record.created_at);
    if record.expires_at.0 < DURATION_MS_MAX {
        record.expires_at = back(record.expires_at);
    }
    record
}
