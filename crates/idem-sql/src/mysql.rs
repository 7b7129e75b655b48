//! [`MySqlStore`]: records in a MySQL or MariaDB (InnoDB) table shared by any number of nodes.
//!
//! InnoDB's duplicate-key handling takes locks, and concurrent inserters of one key can
//! deadlock when they then upgrade those locks. So outside a caller's transaction, every
//! statement here is its own autocommit transaction that touches one row once: a plain
//! read decides; a fresh key is one `INSERT` (a duplicate-key error means another caller
//! won: read again); a take-over is one `UPDATE … WHERE token = <the token read>`. No
//! statement waits while holding a lock another one wants, and a deadlock or lock-wait
//! timeout that still happens is retried inside the store (bounded, counted by
//! [`MySqlStore::retries`]). Time is `NOW(3)` of the server (the session time zone is UTC).

use std::time::Duration;

use async_trait::async_trait;
use idem::{
    ClockOffset, FencingToken, Fingerprint, Key, Outcome, Record, Scope, Store, StoreError,
    StoredResponse, TimeTravel, Timestamp,
};
use sqlx::mysql::{MySql, MySqlPool, MySqlPoolOptions};
use sqlx::Executor;

use crate::begin::{self, decode, run_on, BeginSql, Found, On, Request};
use crate::common::{
    birth_state, fenced_unless, ms, retry_contention, RetryCounter, Row, RELEASED,
};
use crate::error::{classify, open_error, store_error, Class};
use crate::options::checked_identifier;
use crate::transactional::impl_transactional;
use crate::WriteTransaction;
use crate::{Error, MySqlOptions};

/// The server's clock in Unix milliseconds plus the handle's offset (one `?` each time).
/// `NOW(3)` is fixed for the whole statement, so every use in one statement agrees. It is
/// written inline rather than as a joined one-row table: InnoDB runs a single-table
/// `INSERT … VALUES`, `UPDATE` or `DELETE` on its fast path, and a multi-table one (or an
/// `INSERT … SELECT`) costs far more per statement.
macro_rules! now {
    () => {
        "(CAST(ROUND(UNIX_TIMESTAMP(NOW(3)) * 1000) AS SIGNED) + ?)"
    };
}

/// Binds: offset, scope, key.
const READ: &str = concat!(
    "SELECT fingerprint, token, state, lease_until, response, created_at, expires_at, ",
    now!(),
    " FROM idem_records WHERE scope = ? AND idem_key = ?"
);

/// [`READ`] with a shared lock, for the transactional mode: it sees the latest committed
/// row (not the transaction's snapshot) and keeps it until the caller's commit.
const READ_LOCKED: &str = concat!(
    "SELECT fingerprint, token, state, lease_until, response, created_at, expires_at, ",
    now!(),
    " FROM idem_records WHERE scope = ? AND idem_key = ? LOCK IN SHARE MODE"
);

/// Binds: scope, key, fingerprint, state, offset, lease, response, offset, offset,
/// lifetime (the longer of TTL and lease: a record never expires while its lease runs).
const INSERT: &str = concat!(
    "INSERT INTO idem_records (scope, idem_key, fingerprint, token, state, lease_until, response, created_at, expires_at) ",
    "VALUES (?, ?, ?, 1, ?, ", now!(), " + ?, ?, ", now!(), ", ", now!(), " + ?)"
);

/// Binds: fingerprint, new token, state, offset, lease, response, offset, offset,
/// lifetime, scope, key, old token, then the condition's.
macro_rules! replace_set {
    () => {
        concat!(
            "UPDATE idem_records ",
            "SET fingerprint = ?, token = ?, state = ?, lease_until = ",
            now!(),
            " + ?, ",
            "response = ?, created_at = ",
            now!(),
            ", expires_at = ",
            now!(),
            " + ? ",
            "WHERE scope = ? AND idem_key = ? AND token = ? AND "
        )
    };
}

/// Takes over an abandoned lease of the same request. Condition binds: fingerprint,
/// offset, offset.
const TAKEOVER: &str = concat!(
    replace_set!(),
    "state = 0 AND fingerprint = ? AND lease_until <= ",
    now!(),
    " AND expires_at > ",
    now!()
);

/// Replaces an expired record. Condition binds: offset.
const REPLACE_EXPIRED: &str = concat!(replace_set!(), "(state = 2 OR expires_at <= ", now!(), ")");

/// Binds: response, scope, key, token, offset.
const COMPLETE: &str = concat!(
    "UPDATE idem_records SET state = 1, response = ? ",
    "WHERE scope = ? AND idem_key = ? AND token = ? AND state = 0 AND expires_at > ",
    now!()
);

/// Binds: scope, key, token, offset.
const RELEASE: &str = concat!(
    "UPDATE idem_records SET state = 2, response = NULL ",
    "WHERE scope = ? AND idem_key = ? AND token = ? AND state = 0 AND expires_at > ",
    now!()
);

/// Binds: offset, limit.
const PURGE: &str = "DELETE FROM idem_records \
    WHERE expires_at <= CAST(ROUND(UNIX_TIMESTAMP(NOW(3)) * 1000) + ? AS SIGNED) LIMIT ?";

/// Binds: offset.
const NOW: &str = "SELECT CAST(ROUND(UNIX_TIMESTAMP(NOW(3)) * 1000) + ? AS SIGNED)";

/// Records in a MySQL or MariaDB table (`idem_records`). Clones share the pool; any number
/// of nodes may share the database.
///
/// # Example
///
/// ```no_run
/// # async fn run() -> Result<(), idem_sql::Error> {
/// let store = idem_sql::MySqlStore::connect("mysql://app@db/app").await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct MySqlStore {
    pool: MySqlPool,
    offset: ClockOffset,
    retries: RetryCounter,
}

impl MySqlStore {
    /// Connects to `url` (the database named in it) with default options and migrates.
    ///
    /// # Errors
    /// [`Error::InvalidOption`] for a bad URL, [`Error::Connect`] when the server cannot be
    /// reached, [`Error::Migrate`] when the schema cannot be created.
    pub async fn connect(url: &str) -> Result<Self, Error> {
        Self::connect_with(&MySqlOptions::from_url(url)?).await
    }

    /// Opens the store `options` describe; their database, if set, is used instead of the
    /// URL's (created if missing).
    ///
    /// # Errors
    /// As [`MySqlStore::connect`], and [`Error::InvalidOption`] for a bad database name.
    pub async fn connect_with(options: &MySqlOptions) -> Result<Self, Error> {
        let mut connect = options
            .connect
            .clone()
            // NOW(3) → Unix time goes through the session time zone: UTC has no DST fold.
            .timezone(Some(String::from("+00:00")));
        if let Some(database) = &options.database {
            let database = checked_identifier(database)?;
            let mut admin: sqlx::MySqlConnection = sqlx::Connection::connect_with(&connect)
                .await
                .map_err(open_error)?;
            let sql = format!("CREATE DATABASE IF NOT EXISTS `{database}`");
            admin.execute(sql.as_str()).await.map_err(open_error)?;
            sqlx::Connection::close(admin).await.map_err(open_error)?;
            connect = connect.database(database);
        }
        let pool = MySqlPoolOptions::new()
            .max_connections(options.pool.max_connections)
            .acquire_timeout(options.pool.acquire_timeout)
            .connect_with(connect)
            .await
            .map_err(open_error)?;
        Self::open(pool, options.pool.migrate).await
    }

    /// A store over an existing pool (its session time zone should be UTC); migrates.
    ///
    /// # Errors
    /// [`Error::Migrate`] when the schema cannot be created.
    pub async fn from_pool(pool: MySqlPool) -> Result<Self, Error> {
        Self::open(pool, true).await
    }

    async fn open(pool: MySqlPool, migrate: bool) -> Result<Self, Error> {
        if migrate {
            crate::migrate::run_mysql(crate::migrate::mysql(), &pool).await?;
        }
        Ok(Self {
            pool,
            offset: ClockOffset::new(),
            retries: RetryCounter::default(),
        })
    }

    /// The pool, for the caller's own queries and transactions.
    pub fn pool(&self) -> &MySqlPool {
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

    /// How many statements were retried after a deadlock (1213) or a lock-wait timeout
    /// (1205) so far.
    pub fn retries(&self) -> u64 {
        self.retries.get()
    }

    /// A write transaction (the session's isolation level; READ COMMITTED suits the
    /// transactional mode, whose locked read sees the latest committed record anyway).
    async fn open_write(&self) -> Result<WriteTransaction<MySql>, sqlx::Error> {
        Ok(WriteTransaction::new(self.pool.begin().await?, None))
    }
}

async fn read(
    on: &mut On<'_, '_, MySql>,
    sql: &'static str,
    scope: &Scope,
    key: &Key,
    offset: i64,
) -> Result<Option<(Row, Timestamp)>, sqlx::Error> {
    let query = sqlx::query(sql)
        .bind(offset)
        .bind(scope.as_str())
        .bind(key.as_str());
    let row = run_on!(on, ex => query.fetch_optional(ex).await)?;
    row.as_ref().map(|row| decode(row, 0)).transpose()
}

#[async_trait]
impl BeginSql for MySqlStore {
    type Db = MySql;

    async fn first(
        &self,
        on: &mut On<'_, '_, MySql>,
        r: &Request<'_>,
    ) -> Result<Found, sqlx::Error> {
        if on.pooled() {
            // Read first, without locks: replays and refusals take no lock at all, and an
            // answer read here is true at the moment of the read.
            let found = read(on, READ, r.scope, r.key, r.offset).await?;
            return Ok(found.map_or(Found::Absent, |(raw, now)| Found::Record(raw, now)));
        }
        // In a transaction, insert first: it waits on the key's lock while another
        // transaction holds it, and its duplicate-key error only rolls back this statement.
        if let Some(token) = BeginSql::insert(self, on, r).await? {
            return Ok(Found::Claimed(token));
        }
        let found = read(on, READ_LOCKED, r.scope, r.key, r.offset).await?;
        Ok(found.map_or(Found::Lost, |(raw, now)| Found::Record(raw, now)))
    }

    /// A duplicate key (recognised by its code) is `None`: another caller won.
    async fn insert(
        &self,
        on: &mut On<'_, '_, MySql>,
        r: &Request<'_>,
    ) -> Result<Option<FencingToken>, sqlx::Error> {
        let query = sqlx::query(INSERT)
            .bind(r.scope.as_str())
            .bind(r.key.as_str())
            .bind(&r.fingerprint.as_bytes()[..])
            .bind(birth_state(r.answer))
            .bind(r.offset)
            .bind(ms(r.lease))
            .bind(r.answer)
            .bind(r.offset)
            .bind(r.offset)
            .bind(ms(r.ttl.max(r.lease)));
        match run_on!(on, ex => query.execute(ex).await) {
            Ok(_) => Ok(Some(FencingToken::FIRST)),
            Err(err) if classify(&err) == Class::Unique => Ok(None),
            Err(err) => Err(err),
        }
    }

    async fn replace(
        &self,
        on: &mut On<'_, '_, MySql>,
        r: &Request<'_>,
        old: FencingToken,
        new: FencingToken,
        recovered: bool,
    ) -> Result<bool, sqlx::Error> {
        let sql = if recovered { TAKEOVER } else { REPLACE_EXPIRED };
        let fingerprint = &r.fingerprint.as_bytes()[..];
        let mut query = sqlx::query(sql)
            .bind(fingerprint)
            .bind(new.as_i64())
            .bind(birth_state(r.answer))
            .bind(r.offset)
            .bind(ms(r.lease))
            .bind(r.answer)
            .bind(r.offset)
            .bind(r.offset)
            .bind(ms(r.ttl.max(r.lease)))
            .bind(r.scope.as_str())
            .bind(r.key.as_str())
            .bind(old.as_i64());
        query = if recovered {
            query.bind(fingerprint).bind(r.offset).bind(r.offset)
        } else {
            query.bind(r.offset)
        };
        // The connection reports matched rows (CLIENT_FOUND_ROWS), and the token changes.
        let done = run_on!(on, ex => query.execute(ex).await)?;
        Ok(done.rows_affected() == 1)
    }
}

async fn complete<'e, E: Executor<'e, Database = MySql>>(
    ex: E,
    scope: &Scope,
    key: &Key,
    token: FencingToken,
    response: &StoredResponse,
    offset: i64,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(COMPLETE)
        .bind(response.encode())
        .bind(scope.as_str())
        .bind(key.as_str())
        .bind(token.as_i64())
        .bind(offset)
        .execute(ex)
        .await?;
    Ok(done.rows_affected() == 1)
}

#[async_trait]
impl Store for MySqlStore {
    async fn begin(
        &self,
        scope: &Scope,
        key: &Key,
        fingerprint: &Fingerprint,
        lease: Duration,
        ttl: Duration,
    ) -> Result<Outcome, StoreError> {
        let request = Request {
            scope,
            key,
            fingerprint,
            lease,
            ttl,
            offset: self.offset.millis(),
            answer: None,
        };
        begin::begin(self, &mut On::Pool(&self.pool), &self.retries, &request).await
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
        let found = read(
            &mut On::Pool(&self.pool),
            READ,
            scope,
            key,
            self.offset.millis(),
        )
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

    async fn purge_expired(&self, limit: usize) -> Result<usize, StoreError> {
        if limit == 0 {
            return Ok(0);
        }
        let limit = u64::try_from(limit).unwrap_or(u64::MAX);
        let offset = self.offset.millis();
        let done = retry_contention!(
            self.retries,
            sqlx::query(PURGE)
                .bind(offset)
                .bind(limit)
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

impl_transactional!(MySqlStore, MySql, run_mysql);

impl TimeTravel for MySqlStore {
    fn advance_clock(&self, by: Duration) {
        self.offset.advance(by);
    }
}
