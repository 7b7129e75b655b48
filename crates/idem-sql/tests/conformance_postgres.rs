//! The conformance suite and the model-based property test against [`PostgresStore`] on the
//! server in `IDEM_TEST_POSTGRES`: each store a new schema, its peer a second pool on it.

mod support;

use async_trait::async_trait;
use idem::conformance::Harness;
use idem_sql::PostgresStore;
use idem_test_support::backend_url;

struct PostgresHarness {
    url: String,
}

#[async_trait]
impl Harness for PostgresHarness {
    type Store = PostgresStore;

    async fn fresh(&self) -> PostgresStore {
        let schema = support::pg_schema(&self.url).await;
        PostgresStore::connect_with(&support::pg_options(&self.url, schema))
            .await
            .expect("open a PostgreSQL store on a fresh schema")
    }

    async fn peer(&self, store: &PostgresStore) -> PostgresStore {
        let schema: String = sqlx::query_scalar("SELECT current_schema()::text")
            .fetch_one(store.pool())
            .await
            .expect("the store's schema");
        PostgresStore::connect_with(&support::pg_options(&self.url, schema))
            .await
            .expect("open a second pool on the same schema")
    }
}

async fn harness() -> Option<PostgresHarness> {
    backend_url("IDEM_TEST_POSTGRES").map(|url| PostgresHarness { url })
}

idem::conformance_tests!(harness());
