//! Namespaces for tests: a fresh SQLite file, PostgreSQL schema or MySQL database per
//! store (from `idem-test-support`, under this crate's prefixes), and the pool size.

#![allow(dead_code, unreachable_pub)]

use idem_sql::StoreOptions;

/// A pool size that leaves room for many parallel tests on one server.
pub fn options() -> StoreOptions {
    StoreOptions::new().max_connections(8)
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
