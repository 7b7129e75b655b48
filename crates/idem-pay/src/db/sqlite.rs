//! SQLite: the embedded default. One writer per file, taken up front with `BEGIN IMMEDIATE`
//! so that a transaction never upgrades a read lock (the classic SQLite deadlock); no row
//! locks needed or available.

use std::path::Path;

use sqlx::error::DatabaseError;
use sqlx::migrate::Migrator;
use sqlx::{AnyConnection, Executor};

use super::Dialect;
use crate::{Error, Result};

pub(super) const DIALECT: Dialect = Dialect {
    begin_write: "BEGIN IMMEDIATE",
    for_update: "",
    insert_ignore: "",
    on_conflict_nothing: "ON CONFLICT DO NOTHING",
    int_type: "INTEGER",
    numbered_params: false,
    data_modifying_cte: false,
};

pub(super) fn migrator() -> Migrator {
    sqlx::migrate!("migrations/sqlite")
}

/// Creates the file's directory and asks sqlx to create the file (`mode=rwc`).
pub(super) fn prepare(url: &str) -> Result<String> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .ok_or_else(|| Error::UnsupportedDatabase(url.to_owned()))?;
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    if path.is_empty() || path.contains(":memory:") {
        // A pool of in-memory databases would be several unrelated databases.
        return Err(Error::UnsupportedDatabase(url.to_owned()));
    }
    if let Some(dir) = Path::new(path)
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
    {
        std::fs::create_dir_all(dir).map_err(|e| Error::Database(sqlx::Error::Io(e)))?;
    }
    let query = if query.contains("mode=") {
        query.to_owned()
    } else if query.is_empty() {
        "mode=rwc".to_owned()
    } else {
        format!("{query}&mode=rwc")
    };
    Ok(format!("sqlite://{path}?{query}"))
}

pub(super) async fn after_connect(conn: &mut AnyConnection) -> sqlx::Result<()> {
    // WAL lets readers go on while one writer commits; FULL keeps every acknowledged
    // payment across a power cut.
    conn.execute("PRAGMA journal_mode = WAL").await?;
    conn.execute("PRAGMA synchronous = FULL").await?;
    conn.execute("PRAGMA busy_timeout = 10000").await?;
    Ok(())
}

/// SQLITE_BUSY (5) and SQLITE_LOCKED (6), with their extended codes.
pub(super) fn is_transient(error: &dyn DatabaseError) -> bool {
    let Some(sqlite) = error.try_downcast_ref::<sqlx::sqlite::SqliteError>() else {
        return false;
    };
    let code: i64 = sqlite.code().and_then(|c| c.parse().ok()).unwrap_or(0);
    matches!(code & 0xff, 5 | 6)
}
