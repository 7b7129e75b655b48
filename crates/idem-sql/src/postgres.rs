//! [`PostgresStore`]: records in a PostgreSQL table shared by any number of nodes.
//!
//! `begin` is one call in the common cases: the function `idem_begin` (a migration) reads
//! the row and, only when there is none, inserts one with `ON CONFLICT DO NOTHING` (so a
//! replay is one indexed read: no lock, no write). Replacing an expired record or taking
//! over an abandoned lease is a second, conditional `UPDATE … WHERE token = <the token
//! read>`, so it applies to exactly the row that was decided on. Time is
//! `clock_timestamp()` of the server.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use idem::{
    ClockOffset, FencingToken, Fingerprint, Key, Outcome, Record, Scope, Store, StoreError,
    StoredResponse, TimeTravel, Timestamp,
};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::{Executor, Postgres, Row as _, Transaction};

use crate::common::{
    self, birth_state, fenced_unless, ms, next_step, retry_contention, Next, RetryCounter, Row,
};
use crate::error::{open_error, store_error};
use crate::options::checked_identifier;
use crate::transactional::impl_transactional;
use crate::WriteTransaction;
use crate::{Error, StoreOptions};

/// The server's clock in Unix milliseconds, plus the handle's offset (`$N`).
/// `clock_timestamp()` moves within a statement, so a statement that uses one instant
/// several times (the replacing `UPDATE`s) reads it once, from a one-row subquery.
macro_rules! now {
    ($offset:literal) => {
        concat!(
            "((extract(epoch FROM clock_timestamp()) * 1000)::bigint + $",
            $offset,
            "::bigint)"
        )
    };
}

/// `$1` scope, `$2` key, `$3` fingerprint, `$4` lease ms, `$5` ttl ms, `$6` offset,
/// `$7` the answer of a record born completed (NULL: in progress).
/// One row `(inserted, columns…, now_ms)`, or none when a concurrent insert won (see the
/// migration that creates `idem_begin`).
const BEGIN: &str = "SELECT inserted, fingerprint, token, state, lease_until, response, \
    created_at, expires_at, now_ms FROM idem_begin($1, $2, $3, $4, $5, $6, $7)";

macro_rules! replace_set {
    () => {
        concat!(
            "UPDATE idem_records AS r SET fingerprint = $3, token = $4, state = $9, ",
            "lease_until = c.now_ms + $5, response = $10, created_at = c.now_ms, ",
            "expires_at = greatest(c.now_ms + $6, c.now_ms + $5) ",
            "FROM (SELECT ",
            now!("7"),
            " AS now_ms) AS c ",
            "WHERE r.scope = $1 AND r.idem_key = $2 AND r.token = $8 AND "
        )
    };
}

/// Takes over an abandoned lease of the same request, if the row still holds `$8`.
const TAKEOVER: &str = concat!(
    replace_set!(),
    "r.state = 0 AND r.fingerprint = $3 AND r.lease_until <= c.now_ms AND r.expires_at > c.now_ms"
);

/// Replaces an expired or released record, if the row still holds `$8`.
const REPLACE_EXPIRED: &str = concat!(replace_set!(), "(r.state = 2 OR r.expires_at <= c.now_ms)");

const COMPLETE: &str = concat!(
    "UPDATE idem_records SET state = 1, response = $4 ",
    "WHERE scope = $1 AND idem_key = $2 AND token = $3 AND state = 0 AND expires_at > ",
    now!("5")
);

const RELEASE: &str = concat!(
    "UPDATE idem_records SET state = 2, response = NULL ",
    "WHERE scope = $1 AND idem_key = $2 AND token = $3 AND state = 0 AND expires_at > ",
    now!("4")
);

const GET: &str =
    concat!(
    "SELECT fingerprint, token, state, lease_until, response, created_at, expires_at, c.now_ms ",
    "FROM idem_records r CROSS JOIN (SELECT ", now!("3"), " AS now_ms) AS c ",
    "WHERE r.scope = $1 AND r.idem_key = $2 AND r.expires_at > c.now_ms AND r.state <> 2"
);

// SKIP LOCKED: two purgers never wait for each other, and a row being replaced right now
// is left for the next batch.
const PURGE: &str = concat!(
    "DELETE FROM idem_records AS r USING (SELECT scope, idem_key FROM idem_records ",
    "WHERE expires_at <= ",
    now!("2"),
    " LIMIT $1 FOR UPDATE SKIP LOCKED) AS d ",
    "WHERE r.scope = d.scope AND r.idem_key = d.idem_key"
);

const NOW: &str = concat!("SELECT ", now!("1"));

/// Records in a PostgreSQL table (`idem_records`, in the connections' schema). Clones share
/// the pool; any number of nodes may share the database.
///
/// # Example
///
/// ```no_run
/// # async fn run() -> Result<(), idem_sql::Error> {
/// use idem_sql::{PostgresStore, StoreOptions};
/// let options = StoreOptions::new().schema("idem").max_connections(20);
/// let store = PostgresStore::connect_with("postgres://app@db/app", &options).await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
    offset: ClockOffset,
    retries: RetryCounter,
}

impl PostgresStore {
    /// Connects to `url` with default options and migrates.
    ///
    /// # Errors
    /// [`Error::Connect`] when the server cannot be reached, [`Error::Migrate`] when the
    /// schema cannot be created.
    pub async fn connect(url: &str) -> Result<Self, Error> {
        Self::connect_with(url, &StoreOptions::default()).await
    }

    /// [`PostgresStore::connect`] with `options`; `options.schema` is created if missing
    /// and becomes the connections' `search_path`.
    ///
    /// # Errors
    /// As [`PostgresStore::connect`], and [`Error::InvalidOption`] for a bad URL or schema.
    pub async fn connect_with(url: &str, options: &StoreOptions) -> Result<Self, Error> {
        let mut connect = PgConnectOptions::from_str(url)
            .map_err(|e| Error::InvalidOption(format!("postgres url: {e}")))?;
        if let Some(schema) = &options.schema {
            let schema = checked_identifier(schema)?;
            let mut admin = sqlx::Connection::connect_with(&connect)
                .await
                .map_err(open_error)?;
            create_schema(&mut admin, schema).await?;
            sqlx::Connection::close(admin).await.map_err(open_error)?;
            connect = connect.options([("search_path", schema)]);
        }
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections)
            .acquire_timeout(options.acquire_timeout)
            .connect_with(connect)
            .await
            .map_err(open_error)?;
        Self::open(pool, options.migrate).await
    }

    /// A store over an existing pool (its `search_path` picks the schema); migrates.
    ///
    /// # Errors
    /// [`Error::Migrate`] when the schema cannot be created.
    pub async fn from_pool(pool: PgPool) -> Result<Self, Error> {
        Self::open(pool, true).await
    }

    async fn open(pool: PgPool, migrate: bool) -> Result<Self, Error> {
        if migrate {
            crate::migrate::run(crate::migrate::postgres(), &pool).await?;
        }
        Ok(Self {
            pool,
            offset: ClockOffset::new(),
            retries: RetryCounter::default(),
        })
    }

    /// The pool, for the caller's own queries and transactions.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// This handle's clock offset (zero unless a test moved it).
    pub fn clock_offset(&self) -> &ClockOffset {
        &self.offset
    }

    /// This store with `offset` as its clock offset (a test's second node forks the first's).
    pub fn with_clock_offset(mut self, offset: ClockOffset) -> Self {
        self.offset = offset;
        self
    }

    /// How many statements were retried after contention (deadlock, serialization
    /// failure) so far.
    pub fn retries(&self) -> u64 {
        self.retries.get()
    }

    /// A write transaction (READ COMMITTED, the server's default).
    async fn open_write(&self) -> Result<WriteTransaction<Postgres>, sqlx::Error> {
        Ok(WriteTransaction::new(self.pool.begin().await?, None))
    }

    /// `begin` inside the caller's transaction (see [`crate::TransactionalStore`]), the
    /// record in progress or born completed with `answer`. `idem_begin` reads first; a
    /// concurrent duplicate's insert waits on the primary key until this transaction ends.
    #[allow(clippy::too_many_arguments)]
    async fn begin_tx(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        scope: &Scope,
        key: &Key,
        fingerprint: &Fingerprint,
        lease: Duration,
        ttl: Duration,
        answer: Option<&[u8]>,
    ) -> Result<Outcome, StoreError> {
        let offset = self.offset.millis();
        for _ in 0..common::ROUNDS_MAX {
            let found = begin_once(
                &mut **tx,
                scope,
                key,
                fingerprint,
                lease,
                ttl,
                offset,
                answer,
            )
            .await
            .map_err(store_error)?;
            match decide(found, scope, key, fingerprint)? {
                Decided::Done(outcome) => return Ok(outcome),
                Decided::Again => continue,
                Decided::Replace {
                    old,
                    new,
                    recovered,
                } => {
                    let won = replace(
                        &mut **tx,
                        scope,
                        key,
                        fingerprint,
                        lease,
                        ttl,
                        old,
                        new,
                        recovered,
                        offset,
                        answer,
                    )
                    .await
                    .map_err(store_error)?;
                    if won {
                        return Ok(Outcome::Acquired {
                            token: new,
                            recovered,
                        });
                    }
                }
            }
        }
        Err(common::rounds_exhausted())
    }
}

async fn create_schema(conn: &mut sqlx::PgConnection, schema: &str) -> Result<(), Error> {
    // Two nodes creating one schema at once can collide on the catalog's unique index even
    // with IF NOT EXISTS; the loser finds it there.
    let sql = format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\"");
    match conn.execute(sql.as_str()).await {
        Ok(_) => Ok(()),
        Err(err) if crate::error::classify(&err) == crate::error::Class::Unique => Ok(()),
        Err(err) => Err(open_error(err)),
    }
}

/// What one round of `begin` found out.
enum Decided {
    /// The answer.
    Done(Outcome),
    /// A concurrent writer won between the read and the insert: read again.
    Again,
    /// Try the conditional replace.
    Replace {
        old: FencingToken,
        new: FencingToken,
        recovered: bool,
    },
}

fn decide(
    found: Option<(bool, Row, Timestamp)>,
    scope: &Scope,
    key: &Key,
    fingerprint: &Fingerprint,
) -> Result<Decided, StoreError> {
    let Some((inserted, raw, now)) = found else {
        return Ok(Decided::Again);
    };
    if inserted {
        return Ok(Decided::Done(Outcome::Acquired {
            token: FencingToken::from_i64(raw.token),
            recovered: false,
        }));
    }
    let record = raw.into_record(scope, key)?;
    Ok(match next_step(Some(&record), fingerprint, now) {
        Next::Answer(outcome) => Decided::Done(outcome),
        Next::Insert => Decided::Again,
        Next::Replace {
            old,
            new,
            recovered,
        } => Decided::Replace {
            old,
            new,
            recovered,
        },
    })
}

fn decode(row: &PgRow, first: usize) -> Result<(Row, Timestamp), sqlx::Error> {
    Ok((
        Row {
            fingerprint: row.try_get(first)?,
            token: row.try_get(first + 1)?,
            state: row.try_get(first + 2)?,
            lease_until: row.try_get(first + 3)?,
            response: row.try_get(first + 4)?,
            created_at: row.try_get(first + 5)?,
            expires_at: row.try_get(first + 6)?,
        },
        Timestamp(row.try_get(first + 7)?),
    ))
}

#[allow(clippy::too_many_arguments)]
async fn begin_once<'e, E: Executor<'e, Database = Postgres>>(
    ex: E,
    scope: &Scope,
    key: &Key,
    fingerprint: &Fingerprint,
    lease: Duration,
    ttl: Duration,
    offset: i64,
    answer: Option<&[u8]>,
) -> Result<Option<(bool, Row, Timestamp)>, sqlx::Error> {
    let row = sqlx::query(BEGIN)
        .bind(scope.as_str())
        .bind(key.as_str())
        .bind(&fingerprint.as_bytes()[..])
        .bind(ms(lease))
        .bind(ms(ttl))
        .bind(offset)
        .bind(answer)
        .fetch_optional(ex)
        .await?;
    match row {
        None => Ok(None),
        Some(row) => {
            let inserted: bool = row.try_get(0)?;
            let (raw, now) = decode(&row, 1)?;
            Ok(Some((inserted, raw, now)))
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn replace<'e, E: Executor<'e, Database = Postgres>>(
    ex: E,
    scope: &Scope,
    key: &Key,
    fingerprint: &Fingerprint,
    lease: Duration,
    ttl: Duration,
    old: FencingToken,
    new: FencingToken,
    recovered: bool,
    offset: i64,
    answer: Option<&[u8]>,
) -> Result<bool, sqlx::Error> {
    let sql = if recovered { TAKEOVER } else { REPLACE_EXPIRED };
    let done = sqlx::query(sql)
        .bind(scope.as_str())
        .bind(key.as_str())
        .bind(&fingerprint.as_bytes()[..])
        .bind(new.as_i64())
        .bind(ms(lease))
        .bind(ms(ttl))
        .bind(offset)
        .bind(old.as_i64())
        .bind(birth_state(answer))
        .bind(answer)
        .execute(ex)
        .await?;
    Ok(done.rows_affected() == 1)
}

async fn complete<'e, E: Executor<'e, Database = Postgres>>(
    ex: E,
    scope: &Scope,
    key: &Key,
    token: FencingToken,
    response: &StoredResponse,
    offset: i64,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(COMPLETE)
        .bind(scope.as_str())
        .bind(key.as_str())
        .bind(token.as_i64())
        .bind(response.encode())
        .bind(offset)
        .execute(ex)
        .await?;
    Ok(done.rows_affected() == 1)
}

#[async_trait]
impl Store for PostgresStore {
    async fn begin(
        &self,
        scope: &Scope,
        key: &Key,
        fingerprint: &Fingerprint,
        lease: Duration,
        ttl: Duration,
    ) -> Result<Outcome, StoreError> {
        let offset = self.offset.millis();
        for _ in 0..common::ROUNDS_MAX {
            let found = retry_contention!(
                self.retries,
                begin_once(
                    &self.pool,
                    scope,
                    key,
                    fingerprint,
                    lease,
                    ttl,
                    offset,
                    None
                )
                .await
            )
            .map_err(store_error)?;
            match decide(found, scope, key, fingerprint)? {
                Decided::Done(outcome) => return Ok(outcome),
                Decided::Again => continue,
                Decided::Replace {
                    old,
                    new,
                    recovered,
                } => {
                    let won = retry_contention!(
                        self.retries,
                        replace(
                            &self.pool,
                            scope,
                            key,
                            fingerprint,
                            lease,
                            ttl,
                            old,
                            new,
                            recovered,
                            offset,
                            None
                        )
                        .await
                    )
                    .map_err(store_error)?;
                    if won {
                        return Ok(Outcome::Acquired {
                            token: new,
                            recovered,
                        });
                    }
                }
            }
        }
        Err(common::rounds_exhausted())
    }

    async fn complete(
        &self,
        scope: &Scope,
        key: &Key,
        token: FencingToken,
        response: &StoredResponse,
    ) -> Result<(), StoreError> {
        let offset = self.offset.millis();
        let done = retry_contention!(
            self.retries,
            complete(&self.pool, scope, key, token, response, offset).await
        )
        .map_err(store_error)?;
        fenced_unless(done)
    }

    async fn release(
        &self,
        scope: &Scope,
        key: &Key,
        token: FencingToken,
    ) -> Result<(), StoreError> {
        let offset = self.offset.millis();
        let done = retry_contention!(
            self.retries,
            sqlx::query(RELEASE)
                .bind(scope.as_str())
                .bind(key.as_str())
                .bind(token.as_i64())
                .bind(offset)
                .execute(&self.pool)
                .await
        )
        .map_err(store_error)?;
        fenced_unless(done.rows_affected() == 1)
    }

    async fn get(&self, scope: &Scope, key: &Key) -> Result<Option<Record>, StoreError> {
        let row = sqlx::query(GET)
            .bind(scope.as_str())
            .bind(key.as_str())
            .bind(self.offset.millis())
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

    async fn purge_expired(&self, limit: usize) -> Result<usize, StoreError> {
        if limit == 0 {
            return Ok(0);
        }
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let offset = self.offset.millis();
        let done = retry_contention!(
            self.retries,
            sqlx::query(PURGE)
                .bind(limit)
                .bind(offset)
                .execute(&self.pool)
                .await
        )
        .map_err(store_error)?;
        Ok(usize::try_from(done.rows_affected()).unwrap_or(usize::MAX))
    }

    async fn now(&self) -> Result<Timestamp, StoreError> {
        let now: i64 = sqlx::query_scalar(NOW)
            .bind(self.offset.millis())
            .fetch_one(&self.pool)
            .await
            .map_err(store_error)?;
        Ok(Timestamp(now))
    }
}

impl_transactional!(PostgresStore, Postgres, run);

impl TimeTravel for PostgresStore {
    fn advance_clock(&self, by: Duration) {
        self.offset.advance(by);
    }
}
