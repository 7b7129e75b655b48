//! What every SQL backend shares besides `begin` (see `crate::begin`): the row as stored,
//! the state a record is born in, the fenced answer, and statement retries with their
//! counter.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use idem::{
    FencingToken, Fingerprint, Key, Record, RecordState, Scope, StoreError, StoredResponse,
    Timestamp,
};

use crate::Retry;

/// [`idem::DURATION_MS_MAX`] as an SQL literal: a record whose expiry is at or past it
/// never expires (its TTL was `TTL_FOREVER`), so purge leaves it, and the expiry index of
/// PostgreSQL and SQLite, partial on the same bound, holds it not.
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "test-clock"))]
macro_rules! forever_ms {
    () => {
        "4503599627370496"
    };
}
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "test-clock"))]
pub(crate) use forever_ms;

/// Implements `idem::Store` for an SQL store, written once for the three backends: `begin`
/// by [`crate::begin`], and `complete`, `release` and `purge_expired` as one conditional
/// statement each (the backend's `complete` function, `RELEASE` and `PURGE`), tried again
/// on contention. `get` is the backend's own `live` method. Each backend keeps only its SQL;
/// every operation is timed and counted under the `store` label `$name` (`idem::metrics`).
macro_rules! impl_store {
    ($store:ty, $name:literal) => {
        #[async_trait::async_trait]
        impl idem::Store for $store {
            async fn begin(
                &self,
                claim: idem::Claim<'_>,
            ) -> Result<idem::Outcome, idem::StoreError> {
                let request = $crate::begin::Request {
                    claim,
                    answer: None,
                };
                idem::metrics::instrument($name, "begin", async {
                    let on = &mut $crate::begin::On::Pool(&self.pool);
                    $crate::begin::begin(self, on, &self.retries, &request).await
                })
                .await
            }

            async fn complete(
                &self,
                hold: idem::Hold<'_>,
                response: &idem::StoredResponse,
            ) -> Result<(), idem::StoreError> {
                idem::metrics::instrument($name, "complete", async {
                    let done = $crate::common::retry_contention!(
                        self.retries,
                        complete(&self.pool, hold, response).await
                    )
                    .map_err($crate::error::store_error)?;
                    $crate::common::fenced_unless(done)
                })
                .await
            }

            async fn release(&self, hold: idem::Hold<'_>) -> Result<(), idem::StoreError> {
                idem::metrics::instrument($name, "release", async {
                    let done = $crate::common::retry_contention!(
                        self.retries,
                        sqlx::query(RELEASE)
                            .bind(hold.scope.as_str())
                            .bind(hold.key.as_str())
                            .bind(hold.token.as_i64())
                            .execute(&self.pool)
                            .await
                    )
                    .map_err($crate::error::store_error)?;
                    $crate::common::fenced_unless(done.rows_affected() == 1)
                })
                .await
            }

            async fn get(
                &self,
                scope: &idem::Scope,
                key: &idem::Key,
            ) -> Result<Option<idem::Record>, idem::StoreError> {
                idem::metrics::instrument($name, "get", self.live(scope, key)).await
            }

            async fn purge_expired(&self, limit: usize) -> Result<usize, idem::StoreError> {
                if limit == 0 {
                    return Ok(0);
                }
                let limit = i64::try_from(limit).unwrap_or(i64::MAX);
                idem::metrics::instrument($name, "purge", async {
                    let done = $crate::common::retry_contention!(
                        self.retries,
                        sqlx::query(PURGE).bind(limit).execute(&self.pool).await
                    )
                    .map_err($crate::error::store_error)?;
                    Ok(usize::try_from(done.rows_affected()).unwrap_or(usize::MAX))
                })
                .await
            }

            fn name(&self) -> &'static str {
                $name
            }
        }
    };
}
pub(crate) use impl_store;

/// The constructors and accessors every store has, written once inside the store's `impl`:
/// `connect(url)` (the backend's options from the URL, then its `connect_with`),
/// `from_pool` (migrating), `pool` and `retries`. Each keeps the doc the backend gives it,
/// since what a URL, a pool or a retry is differs by backend. `open(pool, migrate)` runs
/// the backend's migrations with `$run` and builds the store, with any fields of its own
/// (`$field: $value`); the backend writes its own `connect_with`.
macro_rules! store_basics {
    (
        pool: $pool:ty,
        options: $options:ty,
        migrate: $run:path, $migrations:path,
        fields: { $($field:ident: $value:expr),* $(,)? },
        $(#[$connect:meta])* connect;
        $(#[$from_pool:meta])* from_pool;
        $(#[$retries:meta])* retries;
    ) => {
        $(#[$connect])*
        pub async fn connect(url: &str) -> Result<Self, $crate::Error> {
            Self::connect_with(&<$options>::from_url(url)?).await
        }

        $(#[$from_pool])*
        pub async fn from_pool(pool: $pool) -> Result<Self, $crate::Error> {
            Self::open(pool, true).await
        }

        /// The pool, for the caller's own queries and transactions.
        pub fn pool(&self) -> &$pool {
            &self.pool
        }

        $(#[$retries])*
        pub fn retries(&self) -> u64 {
            self.retries.get()
        }

        async fn open(pool: $pool, migrate: bool) -> Result<Self, $crate::Error> {
            if migrate {
                $run($migrations(), &pool).await?;
            }
            Ok(Self {
                pool,
                retries: $crate::common::RetryCounter::default(),
                $($field: $value),*
            })
        }
    };
}
pub(crate) use store_basics;

/// The backend's `complete` function for statements that number their placeholders
/// (SQLite's `?N`, PostgreSQL's `$N`): `COMPLETE` binds scope, key, token, response; true
/// when it applied.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
macro_rules! numbered_complete {
    ($db:ty) => {
        async fn complete<'e, E: sqlx::Executor<'e, Database = $db>>(
            ex: E,
            hold: idem::Hold<'_>,
            response: &idem::StoredResponse,
        ) -> Result<bool, sqlx::Error> {
            let idem::Hold { scope, key, token } = hold;
            let done = sqlx::query(COMPLETE)
                .bind(scope.as_str())
                .bind(key.as_str())
                .bind(token.as_i64())
                .bind(response.encode())
                .execute(ex)
                .await?;
            Ok(done.rows_affected() == 1)
        }
    };
}
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) use numbered_complete;

/// `Store::get`'s answer from a record read with the store's time: an expired or
/// released record is absent.
#[cfg(any(feature = "sqlite", feature = "mysql"))]
pub(crate) fn live_record(
    found: Option<(Row, Timestamp)>,
    scope: &Scope,
    key: &Key,
) -> Result<Option<Record>, StoreError> {
    match found {
        Some((raw, now)) if raw.expires_at > now.as_millis() && raw.state != RELEASED => {
            raw.into_record(scope, key).map(Some)
        }
        _ => Ok(None),
    }
}

/// The statement that ages every record of the table by the bound duration (`$by`, one
/// placeholder each time it appears), for `idem::TimeTravel::advance`: lease ends,
/// creation and expiry move back, except the expiry of a record that never expires.
#[cfg(feature = "test-clock")]
macro_rules! age_sql {
    ($by:literal) => {
        concat!(
            "UPDATE idem_records SET lease_until = lease_until - ",
            $by,
            ", created_at = created_at - ",
            $by,
            ", expires_at = CASE WHEN expires_at >= ",
            $crate::common::forever_ms!(),
            " THEN expires_at ELSE expires_at - ",
            $by,
            " END"
        )
    };
}
#[cfg(feature = "test-clock")]
pub(crate) use age_sql;

/// Implements `idem::TimeTravel` for a store with a `pool`: `$now` reads the database's
/// clock, `$age` (from [`age_sql!`], with `$binds` placeholders) ages its records.
#[cfg(feature = "test-clock")]
macro_rules! impl_time_travel {
    ($store:ty, $now:expr, $age:expr, $binds:literal) => {
        #[async_trait::async_trait]
        impl idem::TimeTravel for $store {
            async fn now(&self) -> Result<idem::Timestamp, idem::StoreError> {
                let now: i64 = sqlx::query_scalar($now)
                    .fetch_one(&self.pool)
                    .await
                    .map_err($crate::error::store_error)?;
                Ok(idem::Timestamp(now))
            }

            async fn advance(&self, by: std::time::Duration) -> Result<(), idem::StoreError> {
                let by_ms = $crate::common::ms(by);
                let mut query = sqlx::query($age);
                for _ in 0..$binds {
                    query = query.bind(by_ms);
                }
                query
                    .execute(&self.pool)
                    .await
                    .map_err($crate::error::store_error)?;
                Ok(())
            }
        }
    };
}
#[cfg(feature = "test-clock")]
pub(crate) use impl_time_travel;

/// `state` of a record whose holder still runs the operation.
pub(crate) const IN_PROGRESS: i16 = 0;
/// `state` of a record whose response is stored.
pub(crate) const COMPLETED: i16 = 1;
/// `state` of a record its holder released: absent to callers, kept with its token until
/// it expires so the next holder's token is larger (`idem::RecordState::Released`).
pub(crate) const RELEASED: i16 = 2;

/// How often `begin` goes round when it loses a race (another caller wrote between its read
/// and its write). Each round is a fresh read, so this only runs out under a storm of
/// writers on one key that never settles.
pub(crate) const ROUNDS_MAX: usize = 32;

/// The `state` a record written by `begin` starts in: in progress while its holder runs
/// the operation, or completed at birth when the caller knew its answer before its writes
/// (`begin_answered_in`: the record then commits or vanishes with those writes).
pub(crate) fn birth_state(answer: Option<&[u8]>) -> i16 {
    if answer.is_some() {
        COMPLETED
    } else {
        IN_PROGRESS
    }
}

/// One `idem_records` row as read back, before it is checked.
#[derive(Debug)]
pub(crate) struct Row {
    pub(crate) fingerprint: Vec<u8>,
    pub(crate) token: i64,
    pub(crate) state: i16,
    pub(crate) lease_until: i64,
    pub(crate) response: Option<Vec<u8>>,
    pub(crate) created_at: i64,
    pub(crate) expires_at: i64,
}

impl Row {
    /// The record this row holds.
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] when a column holds what no store writes.
    pub(crate) fn into_record(self, scope: &Scope, key: &Key) -> Result<Record, StoreError> {
        let fingerprint = Fingerprint::from_slice(&self.fingerprint)
            .ok_or_else(|| corrupt(scope, key, "fingerprint is not 32 bytes"))?;
        let token = FencingToken::from_i64(self.token);
        let state = match (self.state, self.response) {
            (IN_PROGRESS, _) => RecordState::InProgress {
                token,
                lease_until: Timestamp(self.lease_until),
            },
            (COMPLETED, Some(bytes)) => RecordState::Completed {
                token,
                response: StoredResponse::decode(&bytes)
                    .map_err(|e| corrupt(scope, key, &e.to_string()))?,
            },
            (COMPLETED, None) => return Err(corrupt(scope, key, "completed without response")),
            (RELEASED, _) => RecordState::Released { token },
            (other, _) => return Err(corrupt(scope, key, &format!("unknown state {other}"))),
        };
        Ok(Record {
            scope: scope.clone(),
            key: key.clone(),
            fingerprint,
            state,
            created_at: Timestamp(self.created_at),
            expires_at: Timestamp(self.expires_at),
        })
    }
}

fn corrupt(scope: &Scope, key: &Key, what: &str) -> StoreError {
    StoreError::Corrupt(format!(
        "record ({:?}, {:?}): {what}",
        scope.as_str(),
        key.as_str()
    ))
}

/// `Ok` when a conditional `complete` or `release` changed its row, `Fenced` otherwise.
pub(crate) fn fenced_unless(done: bool) -> Result<(), StoreError> {
    if done {
        Ok(())
    } else {
        Err(StoreError::Fenced)
    }
}

/// Counts statements retried after contention, shared by a store's clones.
#[derive(Debug, Clone, Default)]
pub(crate) struct RetryCounter(Arc<AtomicU64>);

impl RetryCounter {
    pub(crate) fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    /// Records one retry and sleeps before it, as [`Retry::STATEMENT`] says.
    pub(crate) async fn backoff(&self, attempt: u32) {
        self.0.fetch_add(1, Ordering::Relaxed);
        idem::metrics::transient_retry("store");
        tokio::time::sleep(Retry::STATEMENT.delay(attempt)).await;
    }
}

/// Runs `op` and tries it again (bounded) when it fails with contention, counting retries.
/// Only for statements that change nothing when they fail.
macro_rules! retry_contention {
    ($counter:expr, $op:expr) => {{
        let mut attempt = 1u32;
        loop {
            match $op {
                // Contention only: it rolled the statement back. An unavailable server may
                // have run it, and `complete` run twice would fence its own holder.
                Err(err)
                    if attempt < $crate::Retry::STATEMENT.attempts_max
                        && $crate::error::classify(&err) == $crate::error::Class::Contention =>
                {
                    ::tracing::debug!(error = %err, attempt, "idem-sql: contention, retrying");
                    $counter.backoff(attempt).await;
                    attempt += 1;
                }
                other => break other,
            }
        }
    }};
}
pub(crate) use retry_contention;

/// Milliseconds of a lease or TTL as bound into SQL.
pub(crate) fn ms(d: Duration) -> i64 {
    idem::duration_ms(d)
}

#[cfg(all(test, any(feature = "sqlite", feature = "postgres")))]
mod tests {
    #[test]
    fn the_forever_literal_is_the_protocols_bound() {
        assert_eq!(
            forever_ms!().parse::<i64>().ok(),
            Some(idem::DURATION_MS_MAX)
        );
    }
}
