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
        SqliteStore::connect_with(&support::sqlite_options(&support::sqlite_url()))
            .await
            .expect("open a fresh SQLite store")
    }

    async fn peer(&self, store: &SqliteStore) -> SqliteStore {
        let file = store.pool().connect_options().get_filename().to_owned();
        let url = format!("sqlite://{}?mode=rwc", file.display());
        SqliteStore::connect_with(&support::sqlite_options(&url))
            .await
            .expect("open a second pool on the same file")
    }
}

async fn harness() -> Option<SqliteHarness> {
    Some(SqliteHarness)
}

idem::conformance_tests!(harness());
