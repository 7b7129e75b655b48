//! The conformance suite and the model-based property test against [`SqliteStore`]: each
//! store a new database file in a new temporary directory, its peer a second pool on it.

mod support;

use async_trait::async_trait;
use idem::conformance::Harness;
use idem_sql::SqliteStore;

struct SqliteHarness;

#[async_trait]
impl Harness for SqliteHarness {
    type Store = SqliteStore;

    async fn fresh(&self) -> SqliteStore {
        support::sqlite_store().await
    }

    async fn peer(&self, store: &SqliteStore) -> SqliteStore {
        support::sqlite_peer(store).await
    }
}

async fn harness() -> Option<SqliteHarness> {
    Some(SqliteHarness)
}

idem::conformance_tests!(harness());
