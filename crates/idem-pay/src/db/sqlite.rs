//! SQLite: the embedded default. One writer per file, taken up front with `BEGIN IMMEDIATE`
//! (the store's `begin_write`) so that a transaction never upgrades a read lock (the
//! classic SQLite deadlock); no row locks needed or available.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use idem_sql::SqliteStore;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use super::Dialect;
use crate::{Error, Result};

pub(super) const DIALECT: Dialect = Dialect {
    for_update: "",
    int_type: "INTEGER",
    text_type: "TEXT",
    numbered_params: false,
    data_modifying_cte: false,
    arrays: false,
};

/// Opens the file (creating it and its directory) in WAL mode with `synchronous = FULL`:
/// WAL lets readers go on while one writer commits; FULL keeps every acknowledged payment
/// across a power cut.
pub(super) async fn open(url: &str, max_connections: u32) -> Result<SqliteStore> {
    let path = file_path(url)?;
    if let Some(dir) = Path::new(path)
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
    {
        std::fs::create_dir_all(dir).map_err(|e| Error::Database(sqlx::Error::Io(e)))?;
    }
    let connect = SqliteConnectOptions::from_str(url)?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .busy_timeout(Duration::from_secs(10));
    let pool = SqlitePoolOptions::new()
        .max_connections(max_connections.max(1))
        .acquire_timeout(super::ACQUIRE_TIMEOUT)
        .connect_with(connect)
        .await?;
    Ok(SqliteStore::from_pool(pool).await?)
}

/// The file a `sqlite:` URL names; an in-memory database is refused (a pool of them would
/// be several unrelated databases).
fn file_path(url: &str) -> Result<&str> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .ok_or_else(|| Error::UnsupportedDatabase(url.to_owned()))?;
    let path = rest.split_once('?').map_or(rest, |(path, _)| path);
    if path.is_empty() || path.contains(":memory:") {
        return Err(Error::UnsupportedDatabase(url.to_owned()));
    }
    Ok(path)
}
