//! Namespaces for tests: a fresh SQLite file, PostgreSQL schema or MySQL database per
//! store (from `idem-test-support`, under this crate's prefixes), and the pool size.

#![allow(dead_code, unreachable_pub, unused_macros)]

/// A pool size that leaves room for many parallel tests on one server.
const MAX_CONNECTIONS: u32 = 8;

/// Options for a SQLite store on `url`, with the tests' pool size.
#[cfg(feature = "sqlite")]
pub fn sqlite_options(url: &str) -> idem_sql::SqliteOptions {
    idem_sql::SqliteOptions::from_url(url)
        .expect("a SQLite URL")
        .max_connections(MAX_CONNECTIONS)
}

/// Options for a PostgreSQL store on `url` in `schema`, with the tests' pool size.
#[cfg(feature = "postgres")]
pub fn pg_options(url: &str, schema: String) -> idem_sql::PostgresOptions {
    idem_sql::PostgresOptions::from_url(url)
        .expect("a PostgreSQL URL")
        .max_connections(MAX_CONNECTIONS)
        .schema(schema)
}

/// Options for a MySQL store on `url` in `database`, with the tests' pool size.
#[cfg(feature = "mysql")]
pub fn mysql_options(url: &str, database: String) -> idem_sql::MySqlOptions {
    idem_sql::MySqlOptions::from_url(url)
        .expect("a MySQL URL")
        .max_connections(MAX_CONNECTIONS)
        .database(database)
}

/// A fresh SQLite URL in a new temporary directory.
pub fn sqlite_url() -> String {
    idem_test_support::sqlite_url("idem_sql_sqlite")
}

/// A fresh schema name on the PostgreSQL server at `url`, after dropping stale ones.
pub async fn pg_schema(url: &str) -> String {
    idem_test_support::pg_schema(url, "idem_sql_pg").await
}

/// A fresh database name on the MySQL server at `url`, after dropping stale ones.
pub async fn mysql_database(url: &str) -> String {
    idem_test_support::mysql_database(url, "idem_sql_my").await
}

/// A PostgreSQL store on the server at `url`, in a fresh schema.
#[cfg(feature = "postgres")]
pub async fn pg_store(url: &str) -> idem_sql::PostgresStore {
    pg_store_in(url, pg_schema(url).await).await
}

/// A second node beside `store`: a pool of its own on the same schema.
#[cfg(feature = "postgres")]
pub async fn pg_peer(url: &str, store: &idem_sql::PostgresStore) -> idem_sql::PostgresStore {
    let current = sqlx::query_scalar("SELECT current_schema()::text").fetch_one(store.pool());
    pg_store_in(url, current.await.expect("the store's schema")).await
}

#[cfg(feature = "postgres")]
async fn pg_store_in(url: &str, schema: String) -> idem_sql::PostgresStore {
    let store = idem_sql::PostgresStore::connect_with(&pg_options(url, schema)).await;
    store.expect("open a PostgreSQL store")
}

/// A MySQL store on the server at `url`, in a fresh database.
#[cfg(feature = "mysql")]
pub async fn mysql_store(url: &str) -> idem_sql::MySqlStore {
    mysql_store_in(url, mysql_database(url).await).await
}

/// A second node beside `store`: a pool of its own on the same database.
#[cfg(feature = "mysql")]
pub async fn mysql_peer(url: &str, store: &idem_sql::MySqlStore) -> idem_sql::MySqlStore {
    // Read as bytes: MySQL may type DATABASE() with a collation sqlx will not decode as text.
    let current: Vec<u8> = sqlx::query_scalar("SELECT CAST(DATABASE() AS BINARY)")
        .fetch_one(store.pool())
        .await
        .expect("the store's database");
    let database = String::from_utf8(current).expect("an ASCII name");
    mysql_store_in(url, database).await
}

#[cfg(feature = "mysql")]
async fn mysql_store_in(url: &str, database: String) -> idem_sql::MySqlStore {
    let store = idem_sql::MySqlStore::connect_with(&mysql_options(url, database)).await;
    store.expect("open a MySQL store")
}

/// A SQLite store on a new database file in a new temporary directory.
#[cfg(feature = "sqlite")]
pub async fn sqlite_store() -> idem_sql::SqliteStore {
    let store = idem_sql::SqliteStore::connect_with(&sqlite_options(&sqlite_url())).await;
    store.expect("open a fresh SQLite store")
}

/// A second node beside `store`: a pool of its own on the same file.
#[cfg(feature = "sqlite")]
pub async fn sqlite_peer(store: &idem_sql::SqliteStore) -> idem_sql::SqliteStore {
    let file = store.pool().connect_options().get_filename().to_owned();
    let url = format!("sqlite://{}?mode=rwc", file.display());
    let peer = idem_sql::SqliteStore::connect_with(&sqlite_options(&url)).await;
    peer.expect("open a second pool on the same file")
}

/// Expands the conformance suite against a store on the server named by the environment
/// variable `$env`: `$store(url)` opens each fresh store and `$peer(url, store)` its
/// second node.
macro_rules! server_conformance_tests {
    ($store:ty, $env:literal, $fresh:path, $peer:path) => {
        struct ServerHarness {
            url: String,
        }

        #[async_trait::async_trait]
        impl idem::conformance::Harness for ServerHarness {
            type Store = $store;

            async fn fresh(&self) -> $store {
                $fresh(&self.url).await
            }

            async fn peer(&self, store: &$store) -> $store {
                $peer(&self.url, store).await
            }
        }

        idem::conformance_tests!(async {
            idem_test_support::backend_url($env).map(|url| ServerHarness { url })
        });
    };
}
