//! Namespaces for tests: a fresh SQLite file, PostgreSQL schema or MySQL database per
//! store, and a second "node" (its own pool, a forked clock) on the same namespace.
//!
//! Namespaces left by test processes that have exited are dropped on the next run, so the
//! shared servers do not fill up; only names with this crate's prefixes and a dead process
//! id are touched.

#![allow(dead_code, unreachable_pub)]

use std::path::PathBuf;

use idem::conformance::unique_name;
use idem_sql::StoreOptions;
use sqlx::{Connection, Executor};

/// A pool size that leaves room for many parallel tests on one server.
pub fn options() -> StoreOptions {
    StoreOptions::new().max_connections(8)
}

/// True when the process that made `name` (`prefix_<pid>_…`) is gone.
fn owner_exited(name: &str, prefix: &str) -> bool {
    let Some(rest) = name.strip_prefix(prefix).and_then(|r| r.strip_prefix('_')) else {
        return false;
    };
    let Some(pid) = rest.split('_').next().and_then(|p| p.parse::<u32>().ok()) else {
        return false;
    };
    pid != std::process::id() && !PathBuf::from(format!("/proc/{pid}")).exists()
}

pub const SQLITE_PREFIX: &str = "idem_sql_sqlite";
pub const PG_PREFIX: &str = "idem_sql_pg";
pub const MYSQL_PREFIX: &str = "idem_sql_my";

/// A fresh SQLite URL in a new temporary directory.
pub fn sqlite_url() -> String {
    let temp = std::env::temp_dir();
    if let Ok(entries) = std::fs::read_dir(&temp) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if owner_exited(&name, SQLITE_PREFIX) {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
    let dir = temp.join(unique_name(SQLITE_PREFIX));
    std::fs::create_dir_all(&dir).expect("temp dir for the test database");
    format!("sqlite://{}?mode=rwc", dir.join("idem.db").display())
}

/// A fresh schema name on the PostgreSQL server at `url`, after dropping stale ones.
pub async fn pg_schema(url: &str) -> String {
    let mut conn = sqlx::PgConnection::connect(url).await.expect("postgres");
    let names: Vec<String> =
        sqlx::query_scalar("SELECT nspname::text FROM pg_namespace WHERE nspname LIKE $1")
            .bind(format!("{PG_PREFIX}%"))
            .fetch_all(&mut conn)
            .await
            .expect("list schemas");
    for name in names.iter().filter(|n| owner_exited(n, PG_PREFIX)) {
        let _ = conn
            .execute(format!("DROP SCHEMA IF EXISTS \"{name}\" CASCADE").as_str())
            .await;
    }
    let _ = conn.close().await;
    unique_name(PG_PREFIX)
}

/// A fresh database name on the MySQL server at `url`, after dropping stale ones.
pub async fn mysql_database(url: &str) -> String {
    let mut conn = sqlx::MySqlConnection::connect(url).await.expect("mysql");
    let names: Vec<Vec<u8>> = sqlx::query_scalar(
        "SELECT CAST(SCHEMA_NAME AS BINARY) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME LIKE ?",
    )
    .bind(format!("{MYSQL_PREFIX}%"))
    .fetch_all(&mut conn)
    .await
    .expect("list databases");
    for name in names
        .iter()
        .map(|n| String::from_utf8_lossy(n).into_owned())
    {
        if owner_exited(&name, MYSQL_PREFIX) {
            let _ = conn
                .execute(format!("DROP DATABASE IF EXISTS `{name}`").as_str())
                .await;
        }
    }
    let _ = conn.close().await;
    unique_name(MYSQL_PREFIX)
}
