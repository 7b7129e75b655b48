//! [`PostgresStore`]: records in a PostgreSQL table shared by any number of nodes.
//!
//! `begin` is one call in the common cases. On the pool, the function `idem_begin` (a
//! migration) reads the row and, only when there is none, inserts one with `ON CONFLICT DO
//! NOTHING` (so a replay is one indexed read: no lock, no write). In the caller's
//! transaction, where a fresh key is the common case, a plain `INSERT … ON CONFLICT DO
//! NOTHING` goes first and a read follows only when a row was there. Replacing an expired
//! record or taking over an abandoned lease is a second, conditional `UPDATE … WHERE token
//! = <the token read>`, so it applies to exactly the row that was decided on. Time is
//! `clock_timestamp()` of the server.

mod inline;

pub use inline::{ClaimValue, InlineClaim};

use idem::{FencingToken, Key, Record, Scope, StoreError, Timestamp};
use sqlx::postgres::PgPool;
use sqlx::{Postgres, Row as _};

use crate::begin::{decode, read_record, run_on, Found, On, Request};
use crate::common::{forever_ms, ms, RetryCounter, Row};
use crate::error::store_error;
use crate::options::{checked_identifier, run_alone};
use crate::transactional::impl_transactional;
use crate::WriteTransaction;
use crate::{Error, PostgresOptions};

/// The server's clock in Unix milliseconds. `clock_timestamp()` moves within a
/// statement, so a statement that uses one instant several times (the replacing
/// `UPDATE`s) reads it once, from a one-row subquery.
macro_rules! now {
    () => {
        "(extract(epoch FROM clock_timestamp()) * 1000)::bigint"
    };
}

mod fresh;

/// `$1` scope, `$2` key, `$3` fingerprint, `$4` lease ms, `$5` ttl ms, `$6` the answer of
/// a record born completed (NULL: in progress).
/// One row `(inserted, columns…, now_ms)`, or none when a concurrent insert won (see the
/// migration that creates `idem_begin`).
const BEGIN: &str = "SELECT inserted, fingerprint, token, state, lease_until, response, \
    created_at, expires_at, now_ms FROM idem_begin($1, $2, $3, $4, $5, $6)";

/// Inserts a fresh record unless a row is there (a concurrent insert of the key waits for
/// its transaction to end), one clock reading for all its times. `$1` scope, `$2` key,
/// `$3` fingerprint, `$4` lease ms, `$5` ttl ms, `$6` state, `$7` response.
/// Returns the token, or no row when a row was there first.
const INSERT: &str = concat!(
    "INSERT INTO idem_records ",
    "(scope, idem_key, fingerprint, token, state, lease_until, response, created_at, expires_at) ",
    "SELECT $1, $2, $3, 1, $6, c.now_ms + $4, $7, c.now_ms, c.now_ms + greatest($5, $4) ",
    "FROM (SELECT ",
    now!(),
    " AS now_ms) AS c ",
    "ON CONFLICT (scope, idem_key) DO NOTHING RETURNING token"
);

/// The record, live or expired, and the clock: `$1` scope, `$2` key.
const READ: &str = concat!(
    "SELECT fingerprint, token, state, lease_until, response, created_at, expires_at, c.now_ms ",
    "FROM idem_records r CROSS JOIN (SELECT ",
    now!(),
    " AS now_ms) AS c ",
    "WHERE r.scope = $1 AND r.idem_key = $2"
);

macro_rules! replace_set {
    () => {
        concat!(
            "UPDATE idem_records AS r SET fingerprint = $3, token = $4, state = $8, ",
            "lease_until = c.now_ms + $5, response = $9, created_at = c.now_ms, ",
            "expires_at = greatest(c.now_ms + $6, c.now_ms + $5) ",
            "FROM (SELECT ",
            now!(),
            " AS now_ms) AS c ",
            "WHERE r.scope = $1 AND r.idem_key = $2 AND r.token = $7 AND "
        )
    };
}

/// Takes over an abandoned lease of the same request, if the row still holds `$7`.
const TAKEOVER: &str = concat!(
    replace_set!(),
    "r.state = 0 AND r.fingerprint = $3 AND r.lease_until <= c.now_ms AND r.expires_at > c.now_ms"
);

/// Replaces an expired or released record, if the row still holds `$7`.
const REPLACE_EXPIRED: &str = concat!(replace_set!(), "(r.state = 2 OR r.expires_at <= c.now_ms)");

const COMPLETE: &str = concat!(
    "UPDATE idem_records SET state = 1, response = $4 ",
    "WHERE scope = $1 AND idem_key = $2 AND token = $3 AND state = 0 AND expires_at > ",
    now!()
);

const RELEASE: &str = concat!(
    "UPDATE idem_records SET state = 2, response = NULL ",
    "WHERE scope = $1 AND idem_key = $2 AND token = $3 AND state = 0 AND expires_at > ",
    now!()
);

const GET: &str =
    concat!(
    "SELECT fingerprint, token, state, lease_until, response, created_at, expires_at, c.now_ms ",
    "FROM idem_records r CROSS JOIN (SELECT ", now!(), " AS now_ms) AS c ",
    "WHERE r.scope = $1 AND r.idem_key = $2 AND r.expires_at > c.now_ms AND r.state <> 2"
);

// SKIP LOCKED: two purgers never wait for each other, and a row being replaced right now
// is left for the next batch.
const PURGE: &str = concat!(
    "DELETE FROM idem_records AS r USING (SELECT scope, idem_key FROM idem_records ",
    "WHERE expires_at < ",
    forever_ms!(),
    " AND expires_at <= ",
    now!(),
    " LIMIT $1 FOR UPDATE SKIP LOCKED) AS d ",
    "WHERE r.scope = d.scope AND r.idem_key = d.idem_key"
);

#[cfg(feature = "test-clock")]
const NOW: &str = concat!("SELECT ", now!());

/// Records in a PostgreSQL table (`idem_records`, in the connections' schema). Clones share
/// the pool; any number of nodes may share the database.
///
/// # Example
///
/// ```no_run
/// # async fn run() -> Result<(), idem_sql::Error> {
/// use idem_sql::{PostgresOptions, PostgresStore};
/// let options = PostgresOptions::from_url("postgres://app@db/app")?
///     .schema("idem")
///     .max_connections(20);
/// let store = PostgresStore::connect_with(&options).await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
    retries: RetryCounter,
}

impl PostgresStore {
    crate::common::store_basics! {
        pool: PgPool,
        options: PostgresOptions,
        migrate: crate::migrate::run, crate::migrate::postgres,
        fields: {},
        /// Connects to `url` with default options and migrates.
        ///
        /// # Errors
        /// [`Error::InvalidOption`] for a bad URL, [`Error::Connect`] when the server cannot be
        /// reached, [`Error::Migrate`] when the schema cannot be created.
        connect;
        /// A store over an existing pool (its `search_path` picks the schema); migrates.
        ///
        /// # Errors
        /// [`Error::Migrate`] when the schema cannot be created.
        from_pool;
        /// How many statements were retried after contention (deadlock, serialization
        /// failure) so far.
        retries;
    }

    /// Opens the store `options` describe; their schema, if set, is created if missing and
    /// becomes the connections' `search_path`.
    ///
    /// # Errors
    /// As [`PostgresStore::connect`], and [`Error::InvalidOption`] for a bad schema name.
    pub async fn connect_with(options: &PostgresOptions) -> Result<Self, Error> {
        let mut connect = options.connect.clone();
        if let Some(schema) = &options.schema {
            let schema = checked_identifier(schema)?;
            // Two nodes creating one schema at once can collide on the catalog's unique
            // index even with IF NOT EXISTS; the loser finds it there.
            let sql = format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\"");
            run_alone::<sqlx::PgConnection>(&connect, &sql, |err| {
                crate::error::classify(err) == crate::error::Class::Unique
            })
            .await?;
            connect = connect.options([("search_path", schema)]);
        }
        let pool = options.pool.open(connect).await?;
        Self::open(pool, options.pool.migrate).await
    }

    /// A write transaction (READ COMMITTED, the server's default).
    async fn open_write(&self) -> Result<WriteTransaction<Postgres>, sqlx::Error> {
        Ok(WriteTransaction::new(self.pool.begin().await?, None))
    }
}

/// `idem_begin`: the record, or the fresh one it inserted; `Lost` when a concurrent insert
/// won between its read and its insert.
async fn read_or_insert(
    on: &mut On<'_, '_, Postgres>,
    r: &Request<'_>,
) -> Result<Found, sqlx::Error> {
    let query = sqlx::query(BEGIN)
        .bind(r.claim.scope.as_str())
        .bind(r.claim.key.as_str())
        .bind(&r.claim.fingerprint.as_bytes()[..])
        .bind(ms(r.claim.lease))
        .bind(ms(r.claim.ttl))
        .bind(r.answer);
    let Some(row) = run_on!(on, ex => query.fetch_optional(ex).await)? else {
        return Ok(Found::Lost);
    };
    let inserted: bool = row.try_get(0)?;
    let (raw, now) = decode(&row, 1)?;
    Ok(if inserted {
        Found::Claimed(FencingToken::from_i64(raw.token))
    } else {
        Found::Record(raw, now)
    })
}

crate::begin::impl_numbered_begin_sql!(PostgresStore, Postgres, {
    /// One call: `idem_begin` reads, and inserts only when there is no row (a replay is
    /// one indexed read, no lock, no write).
    async fn first_pooled(
        &self,
        on: &mut On<'_, '_, Postgres>,
        r: &Request<'_>,
    ) -> Result<Found, sqlx::Error> {
        read_or_insert(on, r).await
    }

    async fn read_in_tx(
        &self,
        on: &mut On<'_, '_, Postgres>,
        r: &Request<'_>,
    ) -> Result<Option<(Row, Timestamp)>, sqlx::Error> {
        read_record!(on, READ, r.claim.scope, r.claim.key)
    }
});

crate::common::numbered_complete!(Postgres);

impl PostgresStore {
    /// The live record of `(scope, key)`: `Store::get`.
    async fn live(&self, scope: &Scope, key: &Key) -> Result<Option<Record>, StoreError> {
        let row = sqlx::query(GET)
            .bind(scope.as_str())
            .bind(key.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(store_error)?;
        match row {
            None => Ok(None),
            Some(row) => {
                let (raw, _) = decode(&row, 0).map_err(store_error)?;
                raw.into_record(scope, key).map(Some)
            }
        }
    }
}

crate::common::impl_store!(PostgresStore, "postgres");

use fresh::{claim_fresh, forget_fresh};

impl_transactional!(PostgresStore, Postgres, run);

#[cfg(feature = "test-clock")]
crate::common::impl_time_travel!(PostgresStore, NOW, crate::common::age_sql!("$1"), 1);
