//! [`Business`]: the few ways the service's own SQL runs, implemented once for the three
//! stores of idem-sql, so the flows are written once, generic over the backend.

use async_trait::async_trait;
use idem_sql::{MySqlStore, PostgresStore, SqliteStore, TransactionalStore};
use sqlx::{MySql, Postgres, Row, Sqlite, Transaction};

/// One bound value: the business tables hold text and integers; an inline claim's record
/// also bytes.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Arg<'a> {
    Str(&'a str),
    Int(i64),
    Bytes(&'a [u8]),
}

impl<'a> From<idem_sql::ClaimValue<'a>> for Arg<'a> {
    fn from(value: idem_sql::ClaimValue<'a>) -> Self {
        match value {
            idem_sql::ClaimValue::Text(text) => Arg::Str(text),
            idem_sql::ClaimValue::Int(int) => Arg::Int(int),
            idem_sql::ClaimValue::Bytes(bytes) => Arg::Bytes(bytes),
        }
    }
}

/// One bound value of a statement that binds arrays (PostgreSQL's `= ANY`, `unnest`): a
/// text, or one column of a set's rows.
#[derive(Debug)]
pub(crate) enum ArrayArg<'a> {
    Str(&'a str),
    Strs(Vec<&'a str>),
    Ints(Vec<i64>),
}

/// The error of an array statement sent to a backend that binds no arrays: a bug, since
/// callers ask [`super::Sql::binds_arrays`] first.
fn no_arrays() -> sqlx::Error {
    sqlx::Error::Protocol("this backend binds no arrays".to_owned())
}

/// A payment row as read back: `payment_id, payer, payee, amount, refunded, created_at`.
#[derive(Debug)]
pub(crate) struct PaymentRow {
    pub(crate) payment_id: String,
    pub(crate) payer: String,
    pub(crate) payee: String,
    pub(crate) amount: i64,
    pub(crate) refunded: i64,
    pub(crate) created_at: String,
}

type PaymentTuple = (String, String, String, i64, i64, String);

impl From<PaymentTuple> for PaymentRow {
    fn from((payment_id, payer, payee, amount, refunded, created_at): PaymentTuple) -> Self {
        Self {
            payment_id,
            payer,
            payee,
            amount,
            refunded,
            created_at,
        }
    }
}

/// Runs the service's statements on a store's pool or inside its transaction.
#[async_trait]
pub(crate) trait Business: TransactionalStore {
    /// Runs `sql` in `tx`; the rows it changed.
    async fn execute_in(
        &self,
        tx: &mut Transaction<'_, Self::Database>,
        sql: &str,
        args: &[Arg<'_>],
    ) -> sqlx::Result<u64>;

    /// Every column of the first row `sql` returns in `tx`, as integers.
    async fn integers_in(
        &self,
        tx: &mut Transaction<'_, Self::Database>,
        sql: &str,
        args: &[Arg<'_>],
    ) -> sqlx::Result<Option<Vec<i64>>>;

    /// Every row `sql` returns in `tx`, each a text and an integer (the statement casts
    /// the text to the dialect's text type).
    async fn named_integers_in(
        &self,
        tx: &mut Transaction<'_, Self::Database>,
        sql: &str,
        args: &[Arg<'_>],
    ) -> sqlx::Result<Vec<(String, i64)>>;

    /// [`Business::named_integers_in`] with arrays bound; an error on a backend that binds
    /// no arrays.
    async fn named_integers_of_arrays_in(
        &self,
        _tx: &mut Transaction<'_, Self::Database>,
        _sql: &str,
        _args: &[ArrayArg<'_>],
    ) -> sqlx::Result<Vec<(String, i64)>> {
        Err(no_arrays())
    }

    /// [`Business::integers_in`] with arrays bound; an error on a backend that binds no
    /// arrays.
    async fn integers_of_arrays_in(
        &self,
        _tx: &mut Transaction<'_, Self::Database>,
        _sql: &str,
        _args: &[ArrayArg<'_>],
    ) -> sqlx::Result<Option<Vec<i64>>> {
        Err(no_arrays())
    }

    /// The payment row `sql` returns in `tx`, if any.
    async fn payment_in(
        &self,
        tx: &mut Transaction<'_, Self::Database>,
        sql: &str,
        args: &[Arg<'_>],
    ) -> sqlx::Result<Option<PaymentRow>>;

    /// The payment row `sql` returns, read on the pool.
    async fn payment(&self, sql: &str, args: &[Arg<'_>]) -> sqlx::Result<Option<PaymentRow>>;

    /// Every column of the first row `sql` returns, as integers, read on the pool.
    async fn integers(&self, sql: &str, args: &[Arg<'_>]) -> sqlx::Result<Option<Vec<i64>>>;

    /// Runs `sql` on the pool, in a transaction of its own; the rows it changed.
    async fn execute(&self, sql: &str, args: &[Arg<'_>]) -> sqlx::Result<u64>;

    /// Every row `sql` returns, read on the pool, each column as an optional string (the
    /// statement casts its columns to the dialect's text type).
    async fn strings(&self, sql: &str, args: &[Arg<'_>]) -> sqlx::Result<Vec<Vec<Option<String>>>>;
}

/// Every column of `row` as an integer.
fn integers<R>(row: &R) -> sqlx::Result<Vec<i64>>
where
    R: Row,
    usize: sqlx::ColumnIndex<R>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    (0..row.len()).map(|i| row.try_get::<i64, _>(i)).collect()
}

/// Every column of `row` as an optional string.
fn strings<R>(row: &R) -> sqlx::Result<Vec<Option<String>>>
where
    R: Row,
    usize: sqlx::ColumnIndex<R>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    (0..row.len())
        .map(|i| row.try_get::<Option<String>, _>(i))
        .collect()
}

/// Binds `args` to a query, in order.
macro_rules! bound {
    ($query:expr, $args:expr) => {{
        let mut query = $query;
        for arg in $args {
            query = match *arg {
                Arg::Str(value) => query.bind(value),
                Arg::Int(value) => query.bind(value),
                Arg::Bytes(value) => query.bind(value),
            };
        }
        query
    }};
}

/// Binds `args`, arrays among them, to a query, in order.
macro_rules! bound_arrays {
    ($query:expr, $args:expr) => {{
        let mut query = $query;
        for arg in $args {
            query = match arg {
                ArrayArg::Str(value) => query.bind(*value),
                ArrayArg::Strs(values) => query.bind(&values[..]),
                ArrayArg::Ints(values) => query.bind(&values[..]),
            };
        }
        query
    }};
}

/// Implements [`Business`] for `$store` on `$db`, with `$extra` items (the array methods
/// where the backend binds arrays).
macro_rules! impl_business {
    ($store:ty, $db:ty $(, { $($extra:tt)* })?) => {
        #[async_trait]
        impl Business for $store {
            $($($extra)*)?

            async fn execute_in(
                &self,
                tx: &mut Transaction<'_, $db>,
                sql: &str,
                args: &[Arg<'_>],
            ) -> sqlx::Result<u64> {
                let done = bound!(sqlx::query(sql), args).execute(&mut **tx).await?;
                Ok(done.rows_affected())
            }

            async fn named_integers_in(
                &self,
                tx: &mut Transaction<'_, $db>,
                sql: &str,
                args: &[Arg<'_>],
            ) -> sqlx::Result<Vec<(String, i64)>> {
                bound!(sqlx::query_as(sql), args).fetch_all(&mut **tx).await
            }

            async fn payment_in(
                &self,
                tx: &mut Transaction<'_, $db>,
                sql: &str,
                args: &[Arg<'_>],
            ) -> sqlx::Result<Option<PaymentRow>> {
                let row: Option<PaymentTuple> = bound!(sqlx::query_as(sql), args)
                    .fetch_optional(&mut **tx)
                    .await?;
                Ok(row.map(PaymentRow::from))
            }

            async fn payment(
                &self,
                sql: &str,
                args: &[Arg<'_>],
            ) -> sqlx::Result<Option<PaymentRow>> {
                let row: Option<PaymentTuple> = bound!(sqlx::query_as(sql), args)
                    .fetch_optional(self.pool())
                    .await?;
                Ok(row.map(PaymentRow::from))
            }

            async fn integers_in(
                &self,
                tx: &mut Transaction<'_, $db>,
                sql: &str,
                args: &[Arg<'_>],
            ) -> sqlx::Result<Option<Vec<i64>>> {
                let row = bound!(sqlx::query(sql), args)
                    .fetch_optional(&mut **tx)
                    .await?;
                row.map(|row| integers(&row)).transpose()
            }

            async fn integers(
                &self,
                sql: &str,
                args: &[Arg<'_>],
            ) -> sqlx::Result<Option<Vec<i64>>> {
                let row = bound!(sqlx::query(sql), args)
                    .fetch_optional(self.pool())
                    .await?;
                row.map(|row| integers(&row)).transpose()
            }

            async fn execute(&self, sql: &str, args: &[Arg<'_>]) -> sqlx::Result<u64> {
                let done = bound!(sqlx::query(sql), args).execute(self.pool()).await?;
                Ok(done.rows_affected())
            }

            async fn strings(
                &self,
                sql: &str,
                args: &[Arg<'_>],
            ) -> sqlx::Result<Vec<Vec<Option<String>>>> {
                let rows = bound!(sqlx::query(sql), args)
                    .fetch_all(self.pool())
                    .await?;
                rows.iter().map(strings).collect()
            }
        }
    };
}

impl_business!(SqliteStore, Sqlite);
impl_business!(PostgresStore, Postgres, {
    async fn named_integers_of_arrays_in(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        sql: &str,
        args: &[ArrayArg<'_>],
    ) -> sqlx::Result<Vec<(String, i64)>> {
        bound_arrays!(sqlx::query_as(sql), args)
            .fetch_all(&mut **tx)
            .await
    }

    async fn integers_of_arrays_in(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        sql: &str,
        args: &[ArrayArg<'_>],
    ) -> sqlx::Result<Option<Vec<i64>>> {
        let row = bound_arrays!(sqlx::query(sql), args)
            .fetch_optional(&mut **tx)
            .await?;
        row.map(|row| integers(&row)).transpose()
    }
});
impl_business!(MySqlStore, MySql);
