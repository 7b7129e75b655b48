//! The conformance suite and the model-based property test against [`MySqlStore`] on the
//! server in `IDEM_TEST_MYSQL`: each store a new database, its peer a second pool on it.

mod support;

use async_trait::async_trait;
use idem::conformance::Harness;
use idem_sql::MySqlStore;
use idem_test_support::backend_url;

struct MySqlHarness {
    url: String,
}

#[async_trait]
impl Harness for MySqlHarness {
    type Store = MySqlStore;

    async fn fresh(&self) -> MySqlStore {
        let database = support::mysql_database(&self.url).await;
        MySqlStore::connect_with(&support::mysql_options(&self.url, database))
            .await
            .expect("open a MySQL store on a fresh database")
    }

    async fn peer(&self, store: &MySqlStore) -> MySqlStore {
        let database: Vec<u8> = sqlx::query_scalar("SELECT CAST(DATABASE() AS BINARY)")
            .fetch_one(store.pool())
            .await
            .expect("the store's database");
        let database = String::from_utf8(database).expect("an ASCII name");
        MySqlStore::connect_with(&support::mysql_options(&self.url, database))
            .await
            .expect("open a second pool on the same database")
    }
}

async fn harness() -> Option<MySqlHarness> {
    backend_url("IDEM_TEST_MYSQL").map(|url| MySqlHarness { url })
}

idem::conformance_tests!(harness());
