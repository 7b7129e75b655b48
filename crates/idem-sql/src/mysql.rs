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

use async_trait::async_trait;
use idem::{FencingToken, Hold, Key, Record, Scope, StoreError, StoredResponse, Timestamp};
use sqlx::mysql::{MySql, MySqlPool};
use sqlx::Executor;

use crate::begin::{read_record, run_on, BeginSql, Found, On, Request};
use crate::common::{birth_state, live_record, ms, RetryCounter, Row};
use crate::error::{classify, store_error, Class};
use crate::options::{checked_identifier, run_alone};
use crate::transactional::impl_transactional;
use crate::WriteTransaction;
use crate::{Error, MySqlOptions};

/// The server's clock in Unix milliseconds.
/// `NOW(3)` is fixed for the whole statement, so every use in one statement agrees. It is
/// written inline rather than as a joined one-row table: InnoDB runs a single-table
/// `INSERT … VALUES`, `UPDATE` or `DELETE` on its fast path, and a multi-table one (or an
/// `INSERT … SELECT`) costs far more per statement.
macro_rules! now {
    () => {
        "CAST(ROUND(UNIX_TIMESTAMP(NOW(3)) * 1000) AS SIGNED)"
    };
}

/// Binds: scope, key.
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

/// Binds: scope, key, fingerprint, state, lease, response, lifetime (the longer of TTL
/// and lease: a record never expires while its lease runs).
const INSERT: &str = concat!(
    "INSERT INTO idem_records (scope, idem_key, fingerprint, token, state, lease_until, response, created_at, expires_at) ",
    "VALUES (?, ?, ?, 1, ?, ", now!(), " + ?, ?, ", now!(), ", ", now!(), " + ?)"
);

/// Binds: fingerprint, new token, state, lease, response, lifetime, scope, key, old token,
/// then the condition's.
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

/// Takes over an abandoned lease of the same request. Condition binds: fingerprint.
const TAKEOVER: &str = concat!(
    replace_set!(),
    "state = 0 AND fingerprint = ? AND lease_until <= ",
    now!(),
    " AND expires_at > ",
    now!()
);

/// Replaces an expired record. No condition binds.
const REPLACE_EXPIRED: &str = concat!(replace_set!(), "(state = 2 OR expires_at <= ", now!(), ")");

/// Binds: response, scope, key, token.
const COMPLETE: &str = concat!(
    "UPDATE idem_records SET state = 1, response = ? ",
    "WHERE scope = ? AND idem_key = ? AND token = ? AND state = 0 AND expires_at > ",
    now!()
);

/// Binds: scope, key, token.
const RELEASE: &str = concat!(
    "UPDATE idem_records SET state = 2, response = NULL ",
    "WHERE scope = ? AND idem_key = ? AND token = ? AND state = 0 AND expires_at > ",
    now!()
);

/// Binds: limit.
const PURGE: &str = concat!(
    "DELETE FROM idem_records WHERE expires_at <= ",
    now!(),
    " LIMIT ?"
);

#[cfg(feature = "test-clock")]
const NOW: &str = concat!("SELECT ", now!());

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
    retries: RetryCounter,
}

impl MySqlStore {
    crate::common::store_basics! {
        pool: MySqlPool,
        options: MySqlOptions,
        migrate: crate::migrate::run_mysql, crate::migrate::mysql,
        fields: {},
        /// Connects to `url` (the database named in it) with default options and migrates.
        ///
        /// # Errors
        /// [`Error::InvalidOption`] for a bad URL, [`Error::Connect`] when the server cannot be
        /// reached, [`Error::Migrate`] when the schema cannot be created.
        connect;
        /// A store over an existing pool (its session time zone should be UTC); migrates.
        ///
        /// # Errors
        /// [`Error::Migrate`] when the schema cannot be created.
        from_pool;
        /// How many statements were retried after a deadlock (1213) or a lock-wait timeout
        /// (1205) so far.
        retries;
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
            let sql = format!("CREATE DATABASE IF NOT EXISTS `{database}`");
            run_alone::<sqlx::MySqlConnection>(&connect, &sql, |_| false).await?;
            connect = connect.database(database);
        }
        let pool = options.pool.open(connect).await?;
        Self::open(pool, options.pool.migrate).await
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
) -> Result<Option<(Row, Timestamp)>, sqlx::Error> {
    read_record!(on, sql, scope, key)
}

#[async_trait]
impl BeginSql for MySqlStore {
    type Db = MySql;

    /// Read first, without locks: replays and refusals take no lock at all, and an
    /// answer read here is true at the moment of the read.
    async fn first_pooled(
        &self,
        on: &mut On<'_, '_, MySql>,
        r: &Request<'_>,
    ) -> Result<Found, sqlx::Error> {
        let found = read(on, READ, r.claim.scope, r.claim.key).await?;
        Ok(found.map_or(Found::Absent, |(raw, now)| Found::Record(raw, now)))
    }

    /// A shared lock: the latest committed row, kept until the caller's commit. (The
    /// insert before it waited on the key's lock while another transaction held it, and
    /// its duplicate-key error only rolled back that statement.)
    async fn read_in_tx(
        &self,
        on: &mut On<'_, '_, MySql>,
        r: &Request<'_>,
    ) -> Result<Option<(Row, Timestamp)>, sqlx::Error> {
        read(on, READ_LOCKED, r.claim.scope, r.claim.key).await
    }

    /// A duplicate key (recognised by its code) is `None`: another caller won.
    async fn insert(
        &self,
        on: &mut On<'_, '_, MySql>,
        r: &Request<'_>,
    ) -> Result<Option<FencingToken>, sqlx::Error> {
        let query = sqlx::query(INSERT)
            .bind(r.claim.scope.as_str())
            .bind(r.claim.key.as_str())
            .bind(&r.claim.fingerprint.as_bytes()[..])
            .bind(birth_state(r.answer))
            .bind(ms(r.claim.lease))
            .bind(r.answer)
            .bind(ms(r.claim.ttl.max(r.claim.lease)));
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
        let fingerprint = &r.claim.fingerprint.as_bytes()[..];
        let mut query = sqlx::query(sql)
            .bind(fingerprint)
            .bind(new.as_i64())
            .bind(birth_state(r.answer))
            .bind(ms(r.claim.lease))
            .bind(r.answer)
            .bind(ms(r.claim.ttl.max(r.claim.lease)))
            .bind(r.claim.scope.as_str())
            .bind(r.claim.key.as_str())
            .bind(old.as_i64());
        if recovered {
            query = query.bind(fingerprint);
        }
        // The connection reports matched rows (CLIENT_FOUND_ROWS), and the token changes.
        let done = run_on!(on, ex => query.execute(ex).await)?;
        Ok(done.rows_affected() == 1)
    }
}

async fn complete<'e, E: Executor<'e, Database = MySql>>(
    ex: E,
    hold: Hold<'_>,
    response: &StoredResponse,
) -> Result<bool, sqlx::Error> {
    let Hold { scope, key, token } = hold;
    let done = sqlx::query(COMPLETE)
        .bind(response.encode())
        .bind(scope.as_str())
        .bind(key.as_str())
        .bind(token.as_i64())
        .execute(ex)
        .await?;
    Ok(done.rows_affected() == 1)
}

impl MySqlStore {
    /// The live record of `(scope, key)`: `Store::get`.
    async fn live(&self, scope: &Scope, key: &Key) -> Result<Option<Record>, StoreError> {
        let found = read(&mut On::Pool(&self.pool), READ, scope, key)
            .await
            .map_err(store_error)?;
        live_record(found, scope, key)
    }
}

crate::common::impl_store!(MySqlStore, "mysql");

crate::fresh::fresh_claims!(
    MySql,
    crate::fresh::Spelling {
        now: now!(),
        returning: false,
    }
);

impl_transactional!(MySqlStore, MySql, run_mysql);

#[cfg(feature = "test-clock")]
crate::common::impl_time_travel!(MySqlStore, NOW, crate::common::age_sql!("?"), 3);
