//! # idem-test-support — what idem's tests share (a dev-dependency, never published)
//!
//! - **Which server.** [`backend_url`] reads a test server's URL from `IDEM_TEST_POSTGRES`,
//!   `IDEM_TEST_MYSQL`, `IDEM_TEST_REDIS` or `IDEM_TEST_REDIS_CLUSTER`; unset, the test is skipped with a printed
//!   reason, or fails when `IDEM_REQUIRE_BACKENDS=1` (CI). [`skip`] does the same for any
//!   other missing prerequisite.
//! - **A namespace of the test's own.** [`sqlite_url`], [`pg_schema`] and
//!   [`mysql_database`] give each test a fresh SQLite file, PostgreSQL schema or MySQL
//!   database; [`TestDatabase`] a fresh database on the server a variable names, dropped by
//!   the test. Names carry the test process's id ([`unique_name`]), and each call first
//!   drops what exited test processes left under the same prefix, so a test that panicked
//!   before its clean-up does not fill the shared server.
//!
//! The runtime half (engines, URLs, creating and dropping a database) is the published
//! `idem-sql-admin`, re-exported here.

use std::io::Write;

use sqlx::{Connection, Executor};

pub use idem_sql_admin::{
    create_database, drop_database, owner_exited, unique_name, with_database, Engine,
    Error as AdminError, ScratchDatabase,
};

/// The variable that turns "skipped: no server" into a test failure (CI sets it).
pub const REQUIRE_BACKENDS: &str = "IDEM_REQUIRE_BACKENDS";

/// The URL of a test server from the variable `var` (such as `IDEM_TEST_POSTGRES`).
///
/// Unset or empty: [`skip`]s, saying why.
pub fn backend_url(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ => skip(&format!(
            "{var} is not set, so there is no server for this test (see README: backend tests)"
        )),
    }
}

/// Skips a test whose prerequisite is missing: prints `skipped: <reason>` (straight to
/// stderr, past the test harness's capture) and returns `None`; with
/// `IDEM_REQUIRE_BACKENDS=1`, panics instead, so that CI cannot pass by skipping.
pub fn skip<T>(reason: &str) -> Option<T> {
    if std::env::var(REQUIRE_BACKENDS).is_ok_and(|v| v == "1") {
        panic!("{reason}, and {REQUIRE_BACKENDS}=1 forbids skipping this backend test");
    }
    let _ = writeln!(std::io::stderr(), "skipped: {reason}");
    None
}

/// A URL for a new SQLite file (`idem.db`, created on open) in a new directory named
/// after `prefix` under the system's temporary directory, after removing the directories
/// of exited test processes with the same prefix.
///
/// # Panics
/// When the directory cannot be created.
pub fn sqlite_url(prefix: &str) -> String {
    let temp = std::env::temp_dir();
    if let Ok(entries) = std::fs::read_dir(&temp) {
        for entry in entries.flatten() {
            if owner_exited(&entry.file_name().to_string_lossy(), prefix) {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
    let dir = temp.join(unique_name(prefix));
    std::fs::create_dir_all(&dir).expect("a temporary directory for the test database");
    format!("sqlite://{}?mode=rwc", dir.join("idem.db").display())
}

/// A fresh schema name for a store on the PostgreSQL server at `url` (the store creates
/// it), after dropping the schemas exited test processes left with the same prefix.
///
/// # Panics
/// When the server cannot be reached.
pub async fn pg_schema(url: &str, prefix: &str) -> String {
    let mut conn = sqlx::PgConnection::connect(url).await.expect("PostgreSQL");
    let names: Vec<String> =
        sqlx::query_scalar("SELECT nspname::text FROM pg_namespace WHERE nspname LIKE $1")
            .bind(format!("{prefix}%"))
            .fetch_all(&mut conn)
            .await
            .expect("list schemas");
    for name in names.iter().filter(|n| owner_exited(n, prefix)) {
        let _ = conn
            .execute(format!("DROP SCHEMA IF EXISTS \"{name}\" CASCADE").as_str())
            .await;
    }
    let _ = conn.close().await;
    unique_name(prefix)
}

/// A fresh database name for a store on the MySQL server at `url` (the store creates it),
/// after dropping the databases exited test processes left with the same prefix.
///
/// # Panics
/// When the server cannot be reached.
pub async fn mysql_database(url: &str, prefix: &str) -> String {
    drop_stale_databases(url, prefix).await;
    unique_name(prefix)
}

/// Drops the databases exited test processes left on the server at `url` with `prefix`.
async fn drop_stale_databases(url: &str, prefix: &str) {
    let names = match Engine::of(url) {
        Ok(Engine::Postgres) => pg_databases(url, &format!("{prefix}%")).await,
        Ok(Engine::MySql) => mysql_databases(url, &format!("{prefix}%")).await,
        _ => Vec::new(),
    };
    for name in names.iter().filter(|n| owner_exited(n, prefix)) {
        let _ = idem_sql_admin::drop_database(url, name).await;
    }
}

/// The PostgreSQL databases whose names are `LIKE pattern`.
async fn pg_databases(url: &str, pattern: &str) -> Vec<String> {
    let mut conn = sqlx::PgConnection::connect(url).await.expect("PostgreSQL");
    let names: Vec<String> =
        sqlx::query_scalar("SELECT datname::text FROM pg_database WHERE datname LIKE $1")
            .bind(pattern)
            .fetch_all(&mut conn)
            .await
            .expect("list databases");
    let _ = conn.close().await;
    names
}

/// The MySQL databases whose names are `LIKE pattern`.
async fn mysql_databases(url: &str, pattern: &str) -> Vec<String> {
    let mut conn = sqlx::MySqlConnection::connect(url).await.expect("MySQL");
    let names: Vec<Vec<u8>> = sqlx::query_scalar(
        "SELECT CAST(SCHEMA_NAME AS BINARY) FROM information_schema.SCHEMATA \
         WHERE SCHEMA_NAME LIKE ?",
    )
    .bind(pattern)
    .fetch_all(&mut conn)
    .await
    .expect("list databases");
    let _ = conn.close().await;
    names
        .iter()
        .map(|n| String::from_utf8_lossy(n).into_owned())
        .collect()
}

/// A database of the test's own on the server a variable names (or a fresh SQLite file,
/// for `"sqlite"`), created at the start; the test drops it with
/// [`TestDatabase::drop_database`] at its end.
#[derive(Debug)]
pub struct TestDatabase {
    scratch: ScratchDatabase,
}

impl TestDatabase {
    /// A fresh database on the server in the variable `var` (`IDEM_TEST_POSTGRES`,
    /// `IDEM_TEST_MYSQL`), or `None` when the test is [`skip`]ped; `"sqlite"` makes a new
    /// file instead. Drops what exited test processes left with the same prefix first.
    ///
    /// # Panics
    /// When the server refuses.
    pub async fn create(var: &str, prefix: &str) -> Option<Self> {
        let server = if var == "sqlite" {
            "sqlite://".to_owned()
        } else {
            backend_url(var)?
        };
        drop_stale_databases(&server, prefix).await;
        let scratch = ScratchDatabase::create(&server, prefix)
            .await
            .unwrap_or_else(|e| panic!("creating the test database on {var}: {e}"));
        Some(Self { scratch })
    }

    /// The URL of the database.
    pub fn url(&self) -> &str {
        self.scratch.url()
    }

    /// The database's name (for SQLite, its directory's).
    pub fn name(&self) -> &str {
        self.scratch.name()
    }

    /// Its engine.
    pub fn engine(&self) -> Engine {
        self.scratch.engine()
    }

    /// Drops the database (or removes the SQLite directory): call it once the test is done
    /// and every connection to it is closed. Leftovers of a test that panicked first are
    /// dropped by a later [`TestDatabase::create`] with the same prefix.
    pub async fn drop_database(self) {
        if let Err(e) = self.scratch.drop_database().await {
            let _ = writeln!(
                std::io::stderr(),
                "could not drop the test database {}: {e}",
                self.scratch.name()
            );
        }
    }
}
