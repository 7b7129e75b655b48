//! The conformance suite and the model-based property test against [`TieredStore`]: Redis
//! (`IDEM_TEST_REDIS`, a key prefix per case, deleted when it ends) in front of a truth
//! store of its own per case — an SQLite file, and, when `IDEM_TEST_POSTGRES` is set, a
//! PostgreSQL schema; and (`cluster::`) the Redis Cluster at `IDEM_TEST_REDIS_CLUSTER` in
//! front of SQLite. The second node has its own Redis client and its own SQL pool on the
//! same namespace.

mod common;

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use idem::conformance::Harness;
use idem::{Store, TimeTravel};
use idem_redis::{ReplayCache, TieredStore};

/// How to open a truth store on a fresh namespace, and a second pool on the same one.
#[async_trait]
trait Truth: Send + Sync + 'static {
    type Store: Store + TimeTravel + Send + Sync + 'static;
    /// A store on a fresh namespace, and what `reopen` needs to find it again.
    async fn fresh(&self) -> (Self::Store, String);
    async fn reopen(&self, namespace: &str) -> Self::Store;
}

struct TieredHarness<T> {
    prefixes: common::Prefixes,
    truth: T,
    /// The truth namespace behind each cache prefix, for opening a peer's own pool.
    namespaces: Mutex<HashMap<String, String>>,
}

impl<T> TieredHarness<T> {
    fn new(redis_url: String, truth: T) -> Self {
        Self {
            prefixes: common::Prefixes::new(&redis_url),
            truth,
            namespaces: Mutex::default(),
        }
    }
}

#[async_trait]
impl<T: Truth> Harness for TieredHarness<T> {
    type Store = TieredStore<T::Store>;

    async fn fresh(&self) -> Self::Store {
        let (truth, namespace) = self.truth.fresh().await;
        let cache = ReplayCache::connect_with(&self.prefixes.fresh())
            .await
            .expect("connect to the test Redis");
        self.namespaces
            .lock()
            .expect("namespaces")
            .insert(cache.prefix().to_owned(), namespace);
        TieredStore::new(truth, cache)
    }

    async fn peer(&self, store: &Self::Store) -> Self::Store {
        let namespace = self
            .namespaces
            .lock()
            .expect("namespaces")
            .get(store.cache().prefix())
            .cloned()
            .expect("the store came from fresh()");
        let truth = self.truth.reopen(&namespace).await;
        TieredStore::new(truth, store.cache().peer())
    }
}

mod sqlite {
    use super::*;
    use idem_sql::SqliteStore;

    pub(super) struct Sqlite;

    #[async_trait]
    impl Truth for Sqlite {
        type Store = SqliteStore;

        async fn fresh(&self) -> (SqliteStore, String) {
            let url = common::sqlite_url();
            let store = SqliteStore::connect(&url).await.expect("open SQLite");
            (store, url)
        }

        async fn reopen(&self, url: &str) -> SqliteStore {
            SqliteStore::connect(url)
                .await
                .expect("a second pool on the SQLite file")
        }
    }

    async fn harness() -> Option<TieredHarness<Sqlite>> {
        common::redis_url().map(|url| TieredHarness::new(url, Sqlite))
    }

    idem::conformance_tests!(harness());

    mod cluster {
        use super::*;

        async fn harness() -> Option<TieredHarness<Sqlite>> {
            common::redis_cluster_url().map(|url| TieredHarness::new(url, Sqlite))
        }

        idem::conformance_tests!(harness());
    }
}

mod postgres {
    use super::*;
    use idem_sql::{PostgresOptions, PostgresStore};

    pub(super) struct Postgres {
        url: String,
    }

    fn options(url: &str, schema: &str) -> PostgresOptions {
        PostgresOptions::from_url(url)
            .expect("a PostgreSQL URL")
            .max_connections(8)
            .schema(schema)
    }

    #[async_trait]
    impl Truth for Postgres {
        type Store = PostgresStore;

        async fn fresh(&self) -> (PostgresStore, String) {
            let schema = common::pg_schema(&self.url).await;
            let store = PostgresStore::connect_with(&options(&self.url, &schema))
                .await
                .expect("open PostgreSQL on a fresh schema");
            (store, schema)
        }

        async fn reopen(&self, schema: &str) -> PostgresStore {
            PostgresStore::connect_with(&options(&self.url, schema))
                .await
                .expect("a second pool on the schema")
        }
    }

    /// Runs when both servers are configured; PostgreSQL alone is optional here (its own
    /// crate requires it), so an unset `IDEM_TEST_POSTGRES` skips with a message.
    async fn harness() -> Option<TieredHarness<Postgres>> {
        let redis = common::redis_url()?;
        match std::env::var("IDEM_TEST_POSTGRES") {
            Ok(url) if !url.trim().is_empty() => Some(TieredHarness::new(redis, Postgres { url })),
            _ => {
                eprintln!("skipped: IDEM_TEST_POSTGRES is not set, so the tiered store runs over SQLite only");
                None
            }
        }
    }

    idem::conformance_tests!(harness());
}
