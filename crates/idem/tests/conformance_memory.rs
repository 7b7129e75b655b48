//! The conformance suite and the model-based property test against [`MemoryStore`].

use async_trait::async_trait;
use idem::conformance::Harness;
use idem::MemoryStore;

struct MemoryHarness;

#[async_trait]
impl Harness for MemoryHarness {
    type Store = MemoryStore;

    async fn fresh(&self) -> MemoryStore {
        MemoryStore::new()
    }

    async fn peer(&self, store: &MemoryStore) -> MemoryStore {
        store.clone()
    }
}

async fn harness() -> Option<MemoryHarness> {
    Some(MemoryHarness)
}

idem::conformance_tests!(harness());
