//! `begin`, written once for the three backends: the loop that reads, decides by
//! `idem::decide`'s rules and writes conditionally, over a small per-backend trait
//! ([`BeginSql`]) that holds only each backend's statements.
//!
//! One round: the backend's first step (a read, an insert then a read, or both in one call)
//! finds a fresh claim, a record, no record, or that a concurrent writer won in between. A
//! record is decided by [`begin_step`]: an answer ends the call; a write (an expired record
//! replaced, an abandoned lease taken over) is one `UPDATE … WHERE token = <the token read>`,
//! so it applies to exactly the row that was decided on. A lost write goes round again, a
//! fresh read each time.

use async_trait::async_trait;
use idem::decide::{begin_step, BeginStep};
use idem::{Claim, FencingToken, Outcome, StoreError, Timestamp};
use sqlx::{ColumnIndex, Database, Decode, Pool, Transaction, Type};

use crate::common::{retry_contention, RetryCounter, Row, ROUNDS_MAX};
use crate::error::store_error;

/// Where a statement runs: the store's pool (each statement its own transaction; one that
/// failed with contention is tried again here) or the caller's transaction (a failure
/// ends it: the caller retries the whole transaction).
pub(crate) enum On<'a, 't, DB: Database> {
    /// Autocommit on the store's pool.
    Pool(&'a Pool<DB>),
    /// Inside the caller's transaction.
    Tx(&'a mut Transaction<'t, DB>),
}

impl<DB: Database> On<'_, '_, DB> {
    /// True on the pool: each statement is its own transaction.
    pub(crate) fn pooled(&self) -> bool {
        matches!(self, On::Pool(_))
    }
}

/// Runs `$call` with `$ex` bound to the executor of `$on` (an `&mut On`).
macro_rules! run_on {
    ($on:expr, $ex:ident => $call:expr) => {
        match $on {
            $crate::begin::On::Pool(pool) => {
                let $ex = *pool;
                $call
            }
            $crate::begin::On::Tx(tx) => {
                let $ex = &mut ***tx;
                $call
            }
        }
    };
}
pub(crate) use run_on;

/// Implements [`BeginSql`] for a backend whose statements number their placeholders
/// (SQLite's `?N`, PostgreSQL's `$N`), so that `insert` and `replace` bind in one order,
/// written here once: `INSERT` returns the new row's token, and `TAKEOVER` /
/// `REPLACE_EXPIRED` share their binds. The backend passes its own `first_pooled` and
/// `read_in_tx`. (The whole `impl` is generated because `async_trait` only rewrites the
/// methods it sees written out.)
#[cfg(any(feature = "sqlite", feature = "postgres"))]
macro_rules! impl_numbered_begin_sql {
    ($store:ty, $db:ty, { $($own:tt)* }) => {
        #[async_trait::async_trait]
        impl $crate::begin::BeginSql for $store {
            type Db = $db;

            $($own)*

            async fn insert(
                &self,
                on: &mut $crate::begin::On<'_, '_, Self::Db>,
                r: &$crate::begin::Request<'_>,
            ) -> Result<Option<idem::FencingToken>, sqlx::Error> {
                let query = sqlx::query(INSERT)
                    .bind(r.claim.scope.as_str())
                    .bind(r.claim.key.as_str())
                    .bind(&r.claim.fingerprint.as_bytes()[..])
                    .bind($crate::common::ms(r.claim.lease))
                    .bind($crate::common::ms(r.claim.ttl))
                    .bind($crate::common::birth_state(r.answer))
                    .bind(r.answer);
                let row = $crate::begin::run_on!(on, ex => query.fetch_optional(ex).await)?;
                row.map(|row| {
                    sqlx::Row::try_get::<i64, _>(&row, 0).map(idem::FencingToken::from_i64)
                })
                .transpose()
            }

            async fn replace(
                &self,
                on: &mut $crate::begin::On<'_, '_, Self::Db>,
                r: &$crate::begin::Request<'_>,
                old: idem::FencingToken,
                new: idem::FencingToken,
                recovered: bool,
            ) -> Result<bool, sqlx::Error> {
                let sql = if recovered { TAKEOVER } else { REPLACE_EXPIRED };
                let query = sqlx::query(sql)
                    .bind(r.claim.scope.as_str())
                    .bind(r.claim.key.as_str())
                    .bind(&r.claim.fingerprint.as_bytes()[..])
                    .bind(new.as_i64())
                    .bind($crate::common::ms(r.claim.lease))
                    .bind($crate::common::ms(r.claim.ttl))
                    .bind(old.as_i64())
                    .bind($crate::common::birth_state(r.answer))
                    .bind(r.answer);
                let done = $crate::begin::run_on!(on, ex => query.execute(ex).await)?;
                Ok(done.rows_affected() == 1)
            }
        }
    };
}
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) use impl_numbered_begin_sql;

/// Reads the record of `(scope, key)` and the store's time with `sql` (binds: scope, key;
/// the eight columns of [`decode`] from the first on).
macro_rules! read_record {
    ($on:expr, $sql:expr, $scope:expr, $key:expr) => {{
        let query = sqlx::query($sql)
            .bind($scope.as_str())
            .bind($key.as_str());
        let row = $crate::begin::run_on!($on, ex => query.fetch_optional(ex).await)?;
        row.as_ref()
            .map(|row| $crate::begin::decode(row, 0))
            .transpose()
    }};
}
pub(crate) use read_record;

/// One `begin` call's inputs, as bound into SQL: the caller's claim, and the answer of a
/// record born completed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Request<'a> {
    pub(crate) claim: Claim<'a>,
    /// The answer of a record born completed (`begin_answered_in`); `None`: in progress.
    pub(crate) answer: Option<&'a [u8]>,
}

/// What a backend's first step of a round found.
#[derive(Debug)]
pub(crate) enum Found {
    /// It inserted a fresh record, which this caller holds under the token.
    Claimed(FencingToken),
    /// The record there, and the store's time when it was read.
    Record(Row, Timestamp),
    /// No record: insert one (a backend that reads first).
    #[cfg_attr(not(any(feature = "sqlite", feature = "mysql")), allow(dead_code))]
    Absent,
    /// A concurrent writer won between two statements: go round again.
    Lost,
}

/// The statements one SQL backend's `begin` is made of.
#[async_trait]
pub(crate) trait BeginSql: Send + Sync {
    /// The backend's database.
    type Db: Database;

    /// The round's first step on the pool, where each statement is its own transaction.
    async fn first_pooled(
        &self,
        on: &mut On<'_, '_, Self::Db>,
        request: &Request<'_>,
    ) -> Result<Found, sqlx::Error>;

    /// The record a transaction's insert found in its way, as the transaction must decide
    /// on it: the latest committed row, with the store's time.
    async fn read_in_tx(
        &self,
        on: &mut On<'_, '_, Self::Db>,
        request: &Request<'_>,
    ) -> Result<Option<(Row, Timestamp)>, sqlx::Error>;

    /// The round's first step. On the pool, [`BeginSql::first_pooled`]. In a transaction,
    /// insert first: the common case there is a fresh key (one statement), and a
    /// concurrent insert of the key waits for its transaction to end; then read the row
    /// that was there.
    async fn first(
        &self,
        on: &mut On<'_, '_, Self::Db>,
        request: &Request<'_>,
    ) -> Result<Found, sqlx::Error> {
        if on.pooled() {
            return self.first_pooled(on, request).await;
        }
        if let Some(token) = self.insert(on, request).await? {
            return Ok(Found::Claimed(token));
        }
        let found = self.read_in_tx(on, request).await?;
        Ok(found.map_or(Found::Lost, |(raw, now)| Found::Record(raw, now)))
    }

    /// Inserts a fresh record (token 1); `None` when a row was there first.
    async fn insert(
        &self,
        on: &mut On<'_, '_, Self::Db>,
        request: &Request<'_>,
    ) -> Result<Option<FencingToken>, sqlx::Error>;

    /// Overwrites the row if it still holds `old` and still qualifies: an expired record
    /// (`recovered = false`) or an abandoned lease of the same request (`recovered =
    /// true`); true when it did.
    async fn replace(
        &self,
        on: &mut On<'_, '_, Self::Db>,
        request: &Request<'_>,
        old: FencingToken,
        new: FencingToken,
        recovered: bool,
    ) -> Result<bool, sqlx::Error>;
}

/// Runs one statement of a round: on the pool, tried again while it fails with contention.
macro_rules! attempt {
    ($on:expr, $retries:expr, $call:expr) => {
        if $on.pooled() {
            retry_contention!($retries, $call)
        } else {
            $call
        }
        .map_err(store_error)
    };
}

/// `begin` by `idem::decide`'s rules over `sql`'s statements, on the pool or in a
/// transaction.
///
/// # Errors
/// A [`StoreError`]; `Contention` when [`ROUNDS_MAX`] rounds in a row lost their race.
pub(crate) async fn begin<B: BeginSql>(
    sql: &B,
    on: &mut On<'_, '_, B::Db>,
    retries: &RetryCounter,
    request: &Request<'_>,
) -> Result<Outcome, StoreError> {
    let Claim {
        scope,
        key,
        fingerprint,
        ..
    } = request.claim;
    for _ in 0..ROUNDS_MAX {
        let (raw, now) = match attempt!(on, retries, sql.first(on, request).await)? {
            Found::Claimed(token) => return Ok(acquired(token, false)),
            Found::Lost => continue,
            Found::Absent => match attempt!(on, retries, sql.insert(on, request).await)? {
                Some(token) => return Ok(acquired(token, false)),
                None => continue,
            },
            Found::Record(raw, now) => (raw, now),
        };
        let record = raw.into_record(scope, key)?;
        match begin_step(Some(&record), fingerprint, now) {
            BeginStep::Answer(outcome) => return Ok(outcome),
            BeginStep::Write { token, recovered } => {
                let old = record.token();
                let won = attempt!(
                    on,
                    retries,
                    sql.replace(on, request, old, token, recovered).await
                )?;
                if won {
                    return Ok(acquired(token, recovered));
                }
            }
        }
    }
    Err(StoreError::Contention(
        "begin lost every round of a race on one key; retry".into(),
    ))
}

fn acquired(token: FencingToken, recovered: bool) -> Outcome {
    Outcome::Acquired { token, recovered }
}

/// The record's seven columns from `first` on, then the store's time.
pub(crate) fn decode<'r, R>(row: &'r R, first: usize) -> Result<(Row, Timestamp), sqlx::Error>
where
    R: sqlx::Row,
    usize: ColumnIndex<R>,
    Vec<u8>: Decode<'r, R::Database> + Type<R::Database>,
    i64: Decode<'r, R::Database> + Type<R::Database>,
    i16: Decode<'r, R::Database> + Type<R::Database>,
{
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
