//! The database: one of idem-sql's stores (SQLite, PostgreSQL, MySQL/MariaDB), whose
//! transactional mode claims every order, refund and account, and beside it the payment
//! service's business tables, created by their own embedded migrations. Per backend
//! (`sqlite`, `postgres`, `mysql`) only its dialect differs: how rows are locked, how
//! strings and sums are cast, how the pool is opened.
//!
//! Queries are runtime-checked (`sqlx::query`), written once with `?` placeholders and
//! rewritten to `$n` for PostgreSQL when the statements are built; they run through
//! [`Business`], implemented once for the three stores.

mod business;
mod mysql;
mod postgres;
mod sets;
mod sqlite;

use std::sync::Arc;

use idem_sql::{MySqlStore, PostgresStore, SqliteStore};

pub(crate) use business::{Arg, ArrayArg, Business, PaymentRow};
pub(crate) use sets::{SetWrite, ARRAY_LOCK_BALANCES, ARRAY_WRITES};

use crate::{Error, Result};

/// Which database engine a URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Backend {
    /// SQLite: one file, one writer at a time (`BEGIN IMMEDIATE`).
    Sqlite,
    /// PostgreSQL (and compatible engines): row locks with `FOR UPDATE`.
    Postgres,
    /// MySQL or MariaDB (InnoDB): row locks with `FOR UPDATE`, `READ COMMITTED`.
    MySql,
}

impl Backend {
    /// The backend a database URL names.
    ///
    /// # Errors
    /// [`Error::UnsupportedDatabase`] for any other scheme.
    pub fn of_url(url: &str) -> Result<Self> {
        let scheme = url.split(':').next().unwrap_or_default();
        match scheme {
            "sqlite" => Ok(Backend::Sqlite),
            "postgres" | "postgresql" => Ok(Backend::Postgres),
            "mysql" | "mariadb" => Ok(Backend::MySql),
            _ => Err(Error::UnsupportedDatabase(url.to_owned())),
        }
    }

    /// The backend's name in logs and metrics.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
            Backend::MySql => "mysql",
        }
    }

    /// How the backend spells what differs, for statements built outside [`Sql`].
    pub(crate) fn dialect(self) -> &'static Dialect {
        match self {
            Backend::Sqlite => &sqlite::DIALECT,
            Backend::Postgres => &postgres::DIALECT,
            Backend::MySql => &mysql::DIALECT,
        }
    }
}

/// The business SQL of one dialect, built once at connect.
#[derive(Debug)]
pub(crate) struct Sql {
    pub(crate) insert_account: String,
    pub(crate) select_balance: String,
    pub(crate) insert_payment: String,
    pub(crate) select_payment_by_order: String,
    pub(crate) lock_payment_by_order: String,
    /// Debit and credit in one statement, applied only where both accounts exist, the
    /// payer has the funds and the payee's balance stays an `i64`; binds from, -amount,
    /// amount, tenant, from, to, from, amount, to, `i64::MAX` - amount. Two rows change, or the
    /// transfer is refused and the caller rolls back and finds out why.
    pub(crate) move_checked: String,
    pub(crate) insert_ledger_pair: String,
    /// `move_checked` and both ledger rows in one statement, where the dialect has
    /// data-modifying CTEs (PostgreSQL), the rows locked first in account-id order; binds
    /// tenant, from, to (the lock), from, -amount, amount (the move), from, amount, to,
    /// `i64::MAX` - amount (its conditions), from, -amount, amount (each row's delta),
    /// movement id, created_at; returns the rows moved.
    pub(crate) move_and_record: Option<String>,
    /// `move_and_record` and the payment row's insert in one statement; binds
    /// `move_and_record`'s fifteen, then the payment's seven.
    pub(crate) pay_and_record: Option<String>,
    /// A whole payment as one statement on its own, where the dialect has data-modifying
    /// CTEs (PostgreSQL): the accounts locked in id order, and only when both exist and
    /// the funds are there, the order claimed (idem-sql's [`idem_sql::InlineClaim`]), the
    /// money moved, its ledger rows and the payment row written; returns the rows moved
    /// (2, or 0 with nothing written). Binds tenant, from, to (the lock), from, amount,
    /// to, `i64::MAX` - amount (the conditions), from, -amount, amount (the move), from,
    /// -amount, amount (each row's delta), movement id, created_at, the payment's seven,
    /// then the claim's values.
    pub(crate) pay_inline: Option<String>,
    /// How the multi-row statements of [`Sql::lock_balances`] and its siblings (`sets`)
    /// spell their placeholders and casts.
    dialect: &'static Dialect,
    pub(crate) insert_refund: String,
    pub(crate) add_refunded: String,
    pub(crate) ledger_totals: String,
    pub(crate) ledger_mismatched_accounts: String,
    pub(crate) ledger_unbalanced_movements: String,
}

/// How one dialect spells the few things that differ.
#[derive(Debug)]
pub(crate) struct Dialect {
    /// Appended to a `SELECT` that must lock its rows until commit (empty on SQLite,
    /// whose `BEGIN IMMEDIATE` already holds the one write lock).
    pub(crate) for_update: &'static str,
    /// The integer type a `SUM` is cast to, so it decodes as an `i64`.
    pub(crate) int_type: &'static str,
    /// The text type an identifier is cast to when read back (MySQL reports `ascii_bin`
    /// columns as binary).
    pub(crate) text_type: &'static str,
    /// `$1, $2, …` instead of `?`.
    pub(crate) numbered_params: bool,
    /// `WITH x AS (UPDATE … RETURNING …) INSERT …` is one statement.
    pub(crate) data_modifying_cte: bool,
    /// Arrays bind as one value (`= ANY($1)`, `unnest($1, $2)`), so a set's statements
    /// have one text whatever the set's size ([`Business::integers_of_arrays_in`]).
    pub(crate) arrays: bool,
}

impl Dialect {
    /// `text`, written with `?` placeholders, in this dialect's.
    pub(crate) fn statement(&self, text: String) -> String {
        if self.numbered_params {
            numbered(&text)
        } else {
            text
        }
    }
}

impl Sql {
    fn new(d: &'static Dialect) -> Self {
        let q = |text: String| d.statement(text);
        let (lock, int, text) = (d.for_update, d.int_type, d.text_type);
        let payment_cols = format!(
            "CAST(payment_id AS {text}), CAST(payer AS {text}), CAST(payee AS {text}), amount, refunded, CAST(created_at AS {text})"
        );
        let insert_payment = "INSERT INTO pay_payments (payment_id, tenant, order_id, payer, payee, amount, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)";
        let move_checked = "UPDATE pay_accounts SET balance = balance + CASE WHEN account_id = ? THEN ? ELSE ? END \
            WHERE tenant = ? AND account_id IN (?, ?) AND (account_id <> ? OR balance >= ?) AND (account_id <> ? OR balance <= ?)";
        // PostgreSQL's UPDATE of an `IN` list may visit the two rows in any order; the
        // locked CTE takes their locks in account-id order first.
        let move_and_record = format!(
            "WITH locked AS (SELECT tenant, account_id FROM pay_accounts WHERE tenant = ? AND account_id IN (?, ?) ORDER BY account_id{lock}), \
             moved AS (UPDATE pay_accounts AS a SET balance = a.balance + CASE WHEN a.account_id = ? THEN ? ELSE ? END \
             FROM locked WHERE a.tenant = locked.tenant AND a.account_id = locked.account_id \
             AND (a.account_id <> ? OR a.balance >= ?) AND (a.account_id <> ? OR a.balance <= ?) \
             RETURNING a.tenant, a.account_id, CASE WHEN a.account_id = ? THEN ? ELSE ? END AS delta), \
             recorded AS (INSERT INTO pay_ledger (movement_id, tenant, account_id, delta, created_at) SELECT ?, tenant, account_id, delta, ? FROM moved)"
        );
        let pay_inline = |claim_first: usize| {
            format!(
                "WITH locked AS (SELECT tenant, account_id, balance FROM pay_accounts WHERE tenant = ? AND account_id IN (?, ?) ORDER BY account_id{lock}), \
                 ok AS (SELECT 1 FROM locked HAVING COUNT(*) = 2 AND bool_and((account_id <> ? OR balance >= ?) AND (account_id <> ? OR balance <= ?))), \
                 claimed AS ({claim}), \
                 moved AS (UPDATE pay_accounts AS a SET balance = a.balance + CASE WHEN a.account_id = ? THEN ? ELSE ? END \
                 FROM locked, claimed WHERE a.tenant = locked.tenant AND a.account_id = locked.account_id \
                 RETURNING a.tenant, a.account_id, CASE WHEN a.account_id = ? THEN ? ELSE ? END AS delta), \
                 recorded AS (INSERT INTO pay_ledger (movement_id, tenant, account_id, delta, created_at) SELECT ?, tenant, account_id, delta, ? FROM moved), \
                 paid AS (INSERT INTO pay_payments (payment_id, tenant, order_id, payer, payee, amount, created_at) SELECT ?, ?, ?, ?, ?, ?, ? FROM claimed) \
                 SELECT COUNT(*) FROM moved",
                claim = idem_sql::InlineClaim::insert_sql("ok", claim_first),
            )
        };
        Self {
            pay_inline: d.data_modifying_cte.then(|| {
                // The claim's placeholders are numbered already; they follow the
                // statement's own.
                let own = pay_inline(0).matches('?').count();
                q(pay_inline(own + 1))
            }),
            insert_account: q(
                "INSERT INTO pay_accounts (tenant, account_id, balance, opening_balance, created_at) VALUES (?, ?, ?, ?, ?)".into(),
            ),
            select_balance: q("SELECT balance FROM pay_accounts WHERE tenant = ? AND account_id = ?".into()),
            insert_payment: q(insert_payment.into()),
            // One row per order; in the unsafe test mode the first one.
            select_payment_by_order: q(format!(
                "SELECT {payment_cols} FROM pay_payments WHERE tenant = ? AND order_id = ? ORDER BY created_at, payment_id LIMIT 1"
            )),
            lock_payment_by_order: q(format!(
                "SELECT {payment_cols} FROM pay_payments WHERE tenant = ? AND order_id = ? ORDER BY created_at, payment_id LIMIT 1{lock}"
            )),
            // The UPDATE takes the two rows' locks in the primary key's order, so two
            // opposite transfers do not deadlock.
            move_checked: q(move_checked.into()),
            insert_ledger_pair: q(
                "INSERT INTO pay_ledger (movement_id, tenant, account_id, delta, created_at) VALUES (?, ?, ?, ?, ?), (?, ?, ?, ?, ?)".into(),
            ),
            move_and_record: d.data_modifying_cte.then(|| {
                q(format!("{move_and_record} SELECT COUNT(*) FROM moved"))
            }),
            pay_and_record: d.data_modifying_cte.then(|| {
                q(format!(
                    "{move_and_record}, paid AS ({insert_payment}) SELECT COUNT(*) FROM moved"
                ))
            }),
            dialect: d,
            insert_refund: q(
                "INSERT INTO pay_refunds (payment_id, refund_id, amount, created_at) VALUES (?, ?, ?, ?)".into(),
            ),
            add_refunded: q("UPDATE pay_payments SET refunded = refunded + ? WHERE payment_id = ?".into()),
            ledger_totals: format!(
                "SELECT COUNT(*), CAST(COALESCE(SUM(balance), 0) AS {int}), CAST(COALESCE(SUM(opening_balance), 0) AS {int}), CAST(COALESCE(MIN(balance), 0) AS {int}) FROM pay_accounts"
            ),
            // One pass over the ledger (it has no index by account): sums per account, joined.
            ledger_mismatched_accounts: "SELECT COUNT(*) FROM pay_accounts a LEFT JOIN (SELECT tenant, account_id, SUM(delta) AS total FROM pay_ledger GROUP BY tenant, account_id) l ON l.tenant = a.tenant AND l.account_id = a.account_id WHERE a.balance <> a.opening_balance + COALESCE(l.total, 0)".into(),
            ledger_unbalanced_movements: "SELECT COUNT(*) FROM (SELECT movement_id FROM pay_ledger GROUP BY movement_id HAVING COUNT(*) <> 2 OR SUM(delta) <> 0) m".into(),
        }
    }
}

/// Rewrites `?` placeholders as `$1, $2, …` (no statement here has a `?` in a literal).
fn numbered(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    let mut n = 0;
    for c in text.chars() {
        if c == '?' {
            n += 1;
            out.push('$');
            out.push_str(&n.to_string());
        } else {
            out.push(c);
        }
    }
    out
}

/// The store of one backend: idem-sql's, whose pool the business tables share.
#[derive(Debug, Clone)]
pub(crate) enum Engine {
    Sqlite(SqliteStore),
    Postgres(PostgresStore),
    MySql(MySqlStore),
}

/// Runs `$body` with `$store` bound to the engine's store, whatever its backend: the body
/// is written once and type-checked per backend.
macro_rules! on_engine {
    ($engine:expr, $store:ident => $body:expr) => {
        match $engine {
            $crate::db::Engine::Sqlite($store) => $body,
            $crate::db::Engine::Postgres($store) => $body,
            $crate::db::Engine::MySql($store) => $body,
        }
    };
}
pub(crate) use on_engine;

/// A connection pool on one database: the idempotency store and the business SQL.
#[derive(Debug, Clone)]
pub struct Db {
    pub(crate) engine: Engine,
    pub(crate) sql: Arc<Sql>,
    backend: Backend,
}

impl Db {
    /// Connects to `url` (`sqlite:PATH`, `postgres://…`, `mysql://…`) and brings the schema up
    /// to date: the store's records table and the service's tables, each from its embedded
    /// migrations. A SQLite file and its directory are created when missing. Several nodes
    /// may start at once: PostgreSQL and MySQL migrations run under a lock.
    ///
    /// # Errors
    /// [`Error::UnsupportedDatabase`], [`Error::Database`] when the server cannot be reached,
    /// [`Error::Migrate`] when the schema cannot be created.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self> {
        let backend = Backend::of_url(url)?;
        let max_connections = max_connections.max(1);
        let engine = match backend {
            Backend::Sqlite => Engine::Sqlite(sqlite::open(url, max_connections).await?),
            Backend::Postgres => Engine::Postgres(postgres::open(url, max_connections).await?),
            Backend::MySql => Engine::MySql(mysql::open(url, max_connections).await?),
        };
        on_engine!(&engine, store => {
            idem_sql::TransactionalStore::run_migrations(store, migrator(backend)).await?
        });
        Ok(Self {
            engine,
            sql: Arc::new(Sql::new(backend.dialect())),
            backend,
        })
    }

    /// The engine behind this pool.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Closes the pool, waiting for connections in use to come back.
    pub async fn close(&self) {
        on_engine!(&self.engine, store => idem_sql::TransactionalStore::pool(store).close().await);
    }
}

fn migrator(backend: Backend) -> sqlx::migrate::Migrator {
    match backend {
        Backend::Sqlite => sqlx::migrate!("migrations/sqlite"),
        Backend::Postgres => sqlx::migrate!("migrations/postgres"),
        Backend::MySql => sqlx::migrate!("migrations/mysql"),
    }
}

/// How long a call waits for a free connection of the pool before failing.
const ACQUIRE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// How long a statement waits for a row lock before the server fails it (PostgreSQL
/// `lock_timeout`, InnoDB `innodb_lock_wait_timeout`; a retried contention). Rows stay
/// locked by a transaction whose node went silent until the server ends it, and no other
/// payment of those accounts should wait longer than this for it.
pub(crate) const LOCK_WAIT_MAX: std::time::Duration = std::time::Duration::from_secs(3);

/// How long the server keeps a transaction whose client went silent (a node partitioned
/// from the database, or killed without its connections closing) before it ends the
/// session, rolls back and frees its row locks (PostgreSQL
/// `idle_in_transaction_session_timeout`, MariaDB `idle_transaction_timeout`). A healthy
/// node never idles inside a transaction: its statements follow each other at once.
pub(crate) const IDLE_IN_TRANSACTION_MAX: std::time::Duration = std::time::Duration::from_secs(5);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_numbered_for_postgres() {
        assert_eq!(
            numbered("a = ? AND b IN (?, ?)"),
            "a = $1 AND b IN ($2, $3)"
        );
        let sql = Sql::new(&postgres::DIALECT);
        assert!(sql.insert_payment.contains("$7") && !sql.insert_payment.contains('?'));
        assert!(sql.lock_payment_by_order.ends_with("FOR UPDATE"));
        let paid = sql
            .pay_and_record
            .expect("postgres has data-modifying CTEs");
        assert!(paid.contains("$22") && !paid.contains("$23") && !paid.contains('?'));
        let moved = sql
            .move_and_record
            .expect("postgres has data-modifying CTEs");
        assert!(moved.contains("$15") && !moved.contains("$16"));
        assert!(Sql::new(&sqlite::DIALECT).pay_and_record.is_none());
        assert!(Sql::new(&mysql::DIALECT)
            .select_payment_by_order
            .contains("AS CHAR"));
    }

    #[test]
    fn urls_name_their_backend() {
        assert_eq!(Backend::of_url("sqlite:x.db").ok(), Some(Backend::Sqlite));
        assert_eq!(
            Backend::of_url("postgresql://h/db").ok(),
            Some(Backend::Postgres)
        );
        assert_eq!(Backend::of_url("mysql://h/db").ok(), Some(Backend::MySql));
        assert!(Backend::of_url("oracle://h").is_err());
    }
}
