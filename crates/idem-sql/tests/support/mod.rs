//! Namespaces for tests: a fresh SQLite file, PostgreSQL schema or MySQL database per
//! store (from `idem-test-support`, under this crate's prefixes), and the pool size.

#![allow(dead_code, unreachable_pub)]

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
