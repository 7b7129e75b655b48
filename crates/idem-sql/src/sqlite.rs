//! [`SqliteStore`]: records in an SQLite file (WAL), the embedded default.
//!
//! SQLite has one writer at a time, so a write statement is atomic by construction; the
//! store still keeps `begin` to single conditional statements (an `INSERT … ON CONFLICT DO
//! NOTHING`, or an `UPDATE` that only applies while the row holds the token that was read),
//! so a reader never decides on a row another connection has changed since.

use std::sync::Arc;

use idem::{Key, Record, Scope, StoreError, Timestamp};
use sqlx::sqlite::{SqliteJournalMode, SqlitePool, SqliteSynchronous};
use sqlx::Sqlite;
use tokio::sync::Mutex;

use crate::begin::{read_record, Found, On, Request};
use crate::common::{forever_ms, live_record, RetryCounter, Row};
use crate::error::store_error;
use crate::transactional::impl_transactional;
use crate::WriteTransaction;
use crate::{Error, SqliteOptions};

/// The database's clock in Unix milliseconds. SQLite keeps `'now'` fixed for the whole
/// statement, so every use in one statement agrees.
macro_rules! now {
    () => {
        "CAST(ROUND((julianday('now') - 2440587.5) * 86400000.0) AS INTEGER)"
    };
}

const READ: &str = concat!(
    "SELECT fingerprint, token, state, lease_until, response, created_at, expires_at, ",
    now!(),
    " AS now_ms FROM idem_records WHERE scope = ?1 AND idem_key = ?2"
);

const INSERT: &str = concat!(
    "INSERT INTO idem_records (scope, idem_key, fingerprint, token, state, lease_until, response, created_at, expires_at) ",
    "VALUES (?1, ?2, ?3, 1, ?6, ", now!(), " + ?4, ?7, ", now!(), ", ", now!(), " + MAX(?5, ?4)) ",
    "ON CONFLICT (scope, idem_key) DO NOTHING RETURNING token"
);

macro_rules! replace_set {
    () => {
        concat!(
            "UPDATE idem_records SET fingerprint = ?3, token = ?4, state = ?8, lease_until = ",
            now!(),
            " + ?5, response = ?9, created_at = ",
            now!(),
            ", expires_at = MAX(",
            now!(),
            " + ?6, ",
            now!(),
            " + ?5) WHERE scope = ?1 AND idem_key = ?2 AND token = ?7 AND "
        )
    };
}

/// Takes over an abandoned lease of the same request, if the row still holds `?7`.
const TAKEOVER: &str = concat!(
    replace_set!(),
    "state = 0 AND fingerprint = ?3 AND lease_until <= ",
    now!(),
    " AND expires_at > ",
    now!()
);

/// Replaces an expired or released record, if the row still holds `?7`.
const REPLACE_EXPIRED: &str = concat!(replace_set!(), "(state = 2 OR expires_at <= ", now!(), ")");

const COMPLETE: &str = concat!(
    "UPDATE idem_records SET state = 1, response = ?4 ",
    "WHERE scope = ?1 AND idem_key = ?2 AND token = ?3 AND state = 0 AND expires_at > ",
    now!()
);

const RELEASE: &str = concat!(
    "UPDATE idem_records SET state = 2, response = NULL ",
    "WHERE scope = ?1 AND idem_key = ?2 AND token = ?3 AND state = 0 AND expires_at > ",
    now!()
);

const PURGE: &str = concat!(
    "DELETE FROM idem_records WHERE (scope, idem_key) IN ",
    "(SELECT scope, idem_key FROM idem_records WHERE expires_at < ",
    forever_ms!(),
    " AND expires_at <= ",
    now!(),
    " LIMIT ?1)"
);

#[cfg(feature = "test-clock")]
const NOW: &str = concat!("SELECT ", now!());

/// Records in an SQLite database file, in WAL mode. Clones share the pool.
///
/// # Example
///
/// ```no_run
/// # async fn run() -> Result<(), idem_sql::Error> {
/// std::fs::create_dir_all("idem-data").expect("data dir");
/// let store = idem_sql::SqliteStore::connect("sqlite://idem-data/idem.db?mode=rwc").await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    retries: RetryCounter,
    // SQLite has one writer per file; queueing this process's writers here is cheaper
    // than letting them spin in SQLite's busy handler. Other processes are still kept
    // out by `BEGIN IMMEDIATE`.
    writer: Arc<Mutex<()>>,
}

impl SqliteStore {
    crate::common::store_basics! {
        pool: SqlitePool,
        options: SqliteOptions,
        migrate: crate::migrate::run, crate::migrate::sqlite,
        fields: { writer: Arc::default() },
        /// Opens (creating if missing) the database at `url` (`sqlite://path`, `sqlite:path`,
        /// `?mode=rwc` accepted) with default options, and migrates it.
        ///
        /// The file's directory must exist: creating it is the caller's job.
        ///
        /// # Errors
        /// [`Error::Connect`] when the file cannot be opened, [`Error::Migrate`] when the schema
        /// cannot be created.
        connect;
        /// A store over an existing pool (which should use WAL and a busy timeout); runs the
        /// migrations.
        ///
        /// # Errors
        /// [`Error::Migrate`] when the schema cannot be created.
        from_pool;
        /// How many statements were retried after contention (SQLite BUSY) so far.
        retries;
    }

    /// Opens the store `options` describe (file, pool size, busy timeout, migrations).
    ///
    /// # Errors
    /// As [`SqliteStore::connect`].
    pub async fn connect_with(options: &SqliteOptions) -> Result<Self, Error> {
        let connect = options
            .connect
            .clone()
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // WAL + NORMAL survives a process crash; a power loss may drop the latest
            // commits, the records and the business rows of one file together.
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(options.busy_timeout);
        let pool = options.pool.open(connect).await?;
        Self::open(pool, options.pool.migrate).await
    }

    /// A write transaction: this process's writer slot, then `BEGIN IMMEDIATE`.
    async fn open_write(&self) -> Result<WriteTransaction<Sqlite>, sqlx::Error> {
        let writer = Arc::clone(&self.writer).lock_owned().await;
        let tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        Ok(WriteTransaction::new(tx, Some(writer)))
    }
}

async fn read(
    on: &mut On<'_, '_, Sqlite>,
    scope: &Scope,
    key: &Key,
) -> Result<Option<(Row, Timestamp)>, sqlx::Error> {
    read_record!(on, READ, scope, key)
}

crate::begin::impl_numbered_begin_sql!(SqliteStore, Sqlite, {
    /// Read first: replays and refusals need no write lock.
    async fn first_pooled(
        &self,
        on: &mut On<'_, '_, Sqlite>,
        r: &Request<'_>,
    ) -> Result<Found, sqlx::Error> {
        let found = read(on, r.claim.scope, r.claim.key).await?;
        Ok(found.map_or(Found::Absent, |(raw, now)| Found::Record(raw, now)))
    }

    /// The transaction's insert took the write lock, so a plain read is the latest.
    async fn read_in_tx(
        &self,
        on: &mut On<'_, '_, Sqlite>,
        r: &Request<'_>,
    ) -> Result<Option<(Row, Timestamp)>, sqlx::Error> {
        read(on, r.claim.scope, r.claim.key).await
    }
});

crate::common::numbered_complete!(Sqlite);

impl SqliteStore {
    /// The live record of `(scope, key)`: `Store::get`.
    async fn live(&self, scope: &Scope, key: &Key) -> Result<Option<Record>, StoreError> {
        let found = read(&mut On::Pool(&self.pool), scope, key)
            .await
            .map_err(store_error)?;
        live_record(found, scope, key)
    }
}

crate::common::impl_store!(SqliteStore, "sqlite");

crate::fresh::fresh_claims!(
    Sqlite,
    crate::fresh::Spelling {
        now: now!(),
        returning: true,
    }
);

impl_transactional!(SqliteStore, Sqlite, run);

#[cfg(feature = "test-clock")]
crate::common::impl_time_travel!(SqliteStore, NOW, crate::common::age_sql!("?1"), 1);
