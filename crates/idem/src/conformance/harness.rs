use std::marker::PhantomData;
use std::time::Duration;

use async_trait::async_trait;

use crate::{Store, TimeTravel};

/// The lease the cases use unless a case says otherwise.
pub const LEASE: Duration = Duration::from_secs(30);

/// The time to live the cases use unless a case says otherwise.
pub const TTL: Duration = Duration::from_secs(3600);

/// How the suite gets stores of one backend.
#[async_trait]
pub trait Harness: Send + Sync + 'static {
    /// The store under test.
    type Store: Store + TimeTravel + Send + Sync + 'static;

    /// True when the store drops a record itself at its expiry (Redis does): the cases then
    /// expect nothing left for `purge_expired`, and a key's next generation may start again
    /// at the first token, as after a purge.
    const DROPS_EXPIRED: bool = false;

    /// A store over a fresh, empty namespace no other test sees (its own database,
    /// schema, table or key prefix). Panics if it cannot be opened: tests only.
    async fn fresh(&self) -> Self::Store;

    /// A second node on the same namespace as `store`, with connections of its own.
    async fn peer(&self, store: &Self::Store) -> Self::Store;
}

/// The harness of an in-process store whose clones share its records, as
/// [`crate::MemoryStore`]'s do: `S::default()` is a fresh namespace and a clone is a
/// second node on it.
pub struct CloneHarness<S>(PhantomData<fn() -> S>);

impl<S> CloneHarness<S> {
    /// The harness; it holds nothing, every store comes from `S::default()`.
    pub const fn new() -> Self {
        Self(PhantomData)
    }
}

impl<S> Default for CloneHarness<S> {
    fn default() -> Self {
        Self::new()
    }
}

#[async_trait]
impl<S> Harness for CloneHarness<S>
where
    S: Store + TimeTravel + Clone + Default + Send + Sync + 'static,
{
    type Store = S;

    async fn fresh(&self) -> S {
        S::default()
    }

    async fn peer(&self, store: &S) -> S {
        store.clone()
    }
}
