//! [`SqliteStore`]: records in an SQLite file (WAL), the embedded default.
//!
//! SQLite has one writer at a time, so a write statement is atomic by construction; the
//! store still keeps `begin` to single conditional statements (an `INSERT … ON CONFLICT DO
//! NOTHING`, or an `UPDATE` that only applies while the row holds the token that was read),
//! so a reader never decides on a row another connection has changed since.

use std::sync::Arc;

use async_trait::async_trait;
use idem::{FencingToken, Hold, Key, Record, Scope, StoreError, StoredResponse, Timestamp};
use sqlx::sqlite::{SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Executor, Row as _, Sqlite};
use tokio::sync::Mutex;

use crate::begin::{decode, run_on, BeginSql, Found, On, Request};
use crate::common::{birth_state, forever_ms, ms, RetryCounter, Row, RELEASED};
use crate::error::{open_error, store_error};
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
    /// Opens (creating if missing) the database at `url` (`sqlite://path`, `sqlite:path`,
    /// `?mode=rwc` accepted) with default options, and migrates it.
    ///
    /// The file's directory must exist: creating it is the caller's job.
    ///
    /// # Errors
    /// [`Error::Connect`] when the file cannot be opened, [`Error::Migrate`] when the schema
    /// cannot be created.
    pub async fn connect(url: &str) -> Result<Self, Error> {
        Self::connect_with(&SqliteOptions::from_url(url)?).await
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
        let pool = SqlitePoolOptions::new()
            .max_connections(options.pool.max_connections)
            .acquire_timeout(options.pool.acquire_timeout)
            .connect_with(connect)
            .await
            .map_err(open_error)?;
        Self::open(pool, options.pool.migrate).await
    }

    /// A store over an existing pool (which should use WAL and a busy timeout); runs the
    /// migrations.
    ///
    /// # Errors
    /// [`Error::Migrate`] when the schema cannot be created.
    pub async fn from_pool(pool: SqlitePool) -> Result<Self, Error> {
        Self::open(pool, true).await
    }

    async fn open(pool: SqlitePool, migrate: bool) -> Result<Self, Error> {
        if migrate {
            crate::migrate::run(crate::migrate::sqlite(), &pool).await?;
        }
        Ok(Self {
            pool,
            retries: RetryCounter::default(),
            writer: Arc::default(),
        })
    }

    /// The pool, for the caller's own queries and transactions.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// How many statements were retried after contention (SQLite BUSY) so far.
    pub fn retries(&self) -> u64 {
        self.retries.get()
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
    let query = sqlx::query(READ).bind(scope.as_str()).bind(key.as_str());
    let row = run_on!(on, ex => query.fetch_optional(ex).await)?;
    row.as_ref().map(|row| decode(row, 0)).transpose()
}

#[async_trait]
impl BeginSql for SqliteStore {
    type Db = Sqlite;

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

    async fn insert(
        &self,
        on: &mut On<'_, '_, Sqlite>,
        r: &Request<'_>,
    ) -> Result<Option<FencingToken>, sqlx::Error> {
        let query = sqlx::query(INSERT)
            .bind(r.claim.scope.as_str())
            .bind(r.claim.key.as_str())
            .bind(&r.claim.fingerprint.as_bytes()[..])
            .bind(ms(r.claim.lease))
            .bind(ms(r.claim.ttl))
            .bind(birth_state(r.answer))
            .bind(r.answer);
        let row = run_on!(on, ex => query.fetch_optional(ex).await)?;
        row.map(|row| row.try_get::<i64, _>(0).map(FencingToken::from_i64))
            .transpose()
    }

    async fn replace(
        &self,
        on: &mut On<'_, '_, Sqlite>,
        r: &Request<'_>,
        old: FencingToken,
        new: FencingToken,
        recovered: bool,
    ) -> Result<bool, sqlx::Error> {
        let sql = if recovered { TAKEOVER } else { REPLACE_EXPIRED };
        let query = sqlx::query(sql)
            .bind(r.claim.scope.as_str())
            .bind(r.claim.key.as_str())
            .bind(&r.claim.fingerprint.as_bytes()[..])
            .bind(new.as_i64())
            .bind(ms(r.claim.lease))
            .bind(ms(r.claim.ttl))
            .bind(old.as_i64())
            .bind(birth_state(r.answer))
            .bind(r.answer);
        let done = run_on!(on, ex => query.execute(ex).await)?;
        Ok(done.rows_affected() == 1)
    }
}

async fn complete<'e, E: Executor<'e, Database = Sqlite>>(
    ex: E,
    hold: Hold<'_>,
    response: &StoredResponse,
) -> Result<bool, sqlx::Error> {
    let Hold { scope, key, token } = hold;
    let done = sqlx::query(COMPLETE)
        .bind(scope.as_str())
        .bind(key.as_str())
        .bind(token.as_i64())
        .bind(response.encode())
        .execute(ex)
        .await?;
    Ok(done.rows_affected() == 1)
}

impl SqliteStore {
    /// The live record of `(scope, key)`: `Store::get`.
    async fn live(&self, scope: &Scope, key: &Key) -> Result<Option<Record>, StoreError> {
        let found = read(&mut On::Pool(&self.pool), scope, key)
            .await
            .map_err(store_error)?;
        match found {
            // An expired or released record is absent.
            Some((raw, now)) if raw.expires_at > now.as_millis() && raw.state != RELEASED => {
                raw.into_record(scope, key).map(Some)
            }
            _ => Ok(None),
        }
    }
}

crate::common::impl_store!(SqliteStore);

impl_transactional!(SqliteStore, Sqlite, run);

#[cfg(feature = "test-clock")]
crate::common::impl_time_travel!(SqliteStore, NOW, crate::common::age_sql!("?1"), 1);
