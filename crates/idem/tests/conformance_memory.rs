//! The conformance suite and the model-based property test against [`MemoryStore`].

use idem::conformance::CloneHarness;
use idem::MemoryStore;

async fn harness() -> Option<CloneHarness<MemoryStore>> {
    Some(CloneHarness::new())
}

idem::conformance_tests!(harness());
