//! The database: one `sqlx::Any` pool, and per backend (`sqlite`, `postgres`, `mysql`) its
//! dialect: how a write transaction begins, how rows are locked, how a duplicate insert is
//! skipped, which errors a retry may cure, and its embedded migrations.
//!
//! Queries are runtime-checked (`sqlx::query`), written once with `?` placeholders and
//! rewritten to `$n` for PostgreSQL when the statements are built.

mod mysql;
mod postgres;
mod sqlite;

use std::sync::Arc;
use std::time::Duration;

use sqlx::any::{AnyPoolOptions, AnyQueryResult};
use sqlx::{Any, AnyPool, Transaction};
use tokio::sync::{Mutex, OwnedMutexGuard};

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
}

/// The SQL of one dialect, built once at connect.
#[derive(Debug)]
pub(crate) struct Sql {
    pub(crate) begin_write: &'static str,
    pub(crate) insert_account: String,
    pub(crate) select_account_opening: String,
    pub(crate) select_balance: String,
    pub(crate) lock_pair: String,
    pub(crate) insert_payment: String,
    pub(crate) select_payment_by_key: String,
    pub(crate) select_payment_by_order: String,
    pub(crate) lock_payment_by_order: String,
    pub(crate) move_between: String,
    pub(crate) insert_ledger_pair: String,
    /// Debit, credit and both ledger rows in one statement, where the dialect has
    /// data-modifying CTEs (PostgreSQL); binds `move_between`'s five, then payer, -amount,
    /// amount (each row's delta), movement id, created_at.
    pub(crate) move_and_record: Option<String>,
    /// The payment row's insert and the lock of both accounts in one statement, where the
    /// dialect has data-modifying CTEs: binds the nine payment columns, payer, payee; returns
    /// `(account_id, balance)` per account found, and no row unless the payment was inserted.
    pub(crate) insert_payment_and_lock: Option<String>,
    pub(crate) insert_refund: String,
    pub(crate) select_refund: String,
    pub(crate) add_refunded: String,
    pub(crate) ledger_totals: String,
    pub(crate) ledger_mismatched_accounts: String,
    pub(crate) ledger_unbalanced_movements: String,
}

/// How one dialect spells the few things that differ.
pub(crate) struct Dialect {
    /// The statement that opens a write transaction.
    pub(crate) begin_write: &'static str,
    /// Appended to a `SELECT` that must lock its rows until commit (empty on SQLite,
    /// whose `BEGIN IMMEDIATE` already holds the one write lock).
    pub(crate) for_update: &'static str,
    /// `INSERT <this> INTO`: skips a duplicate key on MySQL.
    pub(crate) insert_ignore: &'static str,
    /// Appended to an insert: skips a duplicate key on SQLite and PostgreSQL.
    pub(crate) on_conflict_nothing: &'static str,
    /// The integer type a `SUM` is cast to, so `Any` can decode it.
    pub(crate) int_type: &'static str,
    /// `$1, $2, …` instead of `?`.
    pub(crate) numbered_params: bool,
    /// `WITH x AS (UPDATE … RETURNING …) INSERT …` is one statement.
    pub(crate) data_modifying_cte: bool,
}

impl Sql {
    fn new(d: &Dialect) -> Self {
        let q = |text: String| {
            if d.numbered_params {
                numbered(&text)
            } else {
                text
            }
        };
        let (ignore, nothing, lock, int) = (
            d.insert_ignore,
            d.on_conflict_nothing,
            d.for_update,
            d.int_type,
        );
        let payment_cols =
            "payment_id, payer, payee, amount, refunded, response_status, response_body";
        Self {
            begin_write: d.begin_write,
            insert_account: q(format!(
                "INSERT {ignore} INTO pay_accounts (account_id, balance, opening_balance, response_body, created_at) VALUES (?, ?, ?, ?, ?) {nothing}"
            )),
            select_account_opening: q(
                "SELECT opening_balance, response_body FROM pay_accounts WHERE account_id = ?".into(),
            ),
            select_balance: q("SELECT balance FROM pay_accounts WHERE account_id = ?".into()),
            // One statement locks both accounts, in the database's own key order: every
            // transaction takes them in the same order, so two opposite transfers cannot
            // deadlock.
            lock_pair: q(format!(
                "SELECT account_id, balance FROM pay_accounts WHERE account_id IN (?, ?) ORDER BY account_id{lock}"
            )),
            insert_payment: q(format!(
                "INSERT {ignore} INTO pay_payments (payment_id, order_key, order_id, payer, payee, amount, response_status, response_body, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) {nothing}"
            )),
            select_payment_by_key: q(format!(
                "SELECT {payment_cols} FROM pay_payments WHERE order_key = ?"
            )),
            // One row per order; in the unsafe test mode the first one.
            select_payment_by_order: q(format!(
                "SELECT {payment_cols} FROM pay_payments WHERE order_id = ? ORDER BY created_at, payment_id LIMIT 1"
            )),
            lock_payment_by_order: q(format!(
                "SELECT {payment_cols} FROM pay_payments WHERE order_id = ? ORDER BY created_at, payment_id LIMIT 1{lock}"
            )),
            // Debit and credit in one statement: binds payer, -amount, amount, payer, payee.
            move_between: q(
                "UPDATE pay_accounts SET balance = balance + CASE WHEN account_id = ? THEN ? ELSE ? END WHERE account_id IN (?, ?)".into(),
            ),
            insert_ledger_pair: q(
                "INSERT INTO pay_ledger (movement_id, account_id, delta, created_at) VALUES (?, ?, ?, ?), (?, ?, ?, ?)".into(),
            ),
            insert_payment_and_lock: d.data_modifying_cte.then(|| {
                q(format!(
                    "WITH claimed AS (INSERT INTO pay_payments (payment_id, order_key, order_id, payer, payee, amount, response_status, response_body, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) {nothing} RETURNING 1) \
                     SELECT a.account_id, a.balance FROM pay_accounts a WHERE a.account_id IN (?, ?) AND EXISTS (SELECT 1 FROM claimed) ORDER BY a.account_id{lock}"
                ))
            }),
            move_and_record: d.data_modifying_cte.then(|| {
                q(concat!(
                    "WITH moved AS (UPDATE pay_accounts SET balance = balance + CASE WHEN account_id = ? THEN ? ELSE ? END ",
                    "WHERE account_id IN (?, ?) RETURNING account_id, CASE WHEN account_id = ? THEN ? ELSE ? END AS delta) ",
                    "INSERT INTO pay_ledger (movement_id, account_id, delta, created_at) SELECT ?, account_id, delta, ? FROM moved"
                ).into())
            }),
            insert_refund: q(format!(
                "INSERT {ignore} INTO pay_refunds (payment_id, refund_id, amount, response_status, response_body, created_at) VALUES (?, ?, ?, ?, ?, ?) {nothing}"
            )),
            select_refund: q(
                "SELECT amount, response_status, response_body FROM pay_refunds WHERE payment_id = ? AND refund_id = ?".into(),
            ),
            add_refunded: q("UPDATE pay_payments SET refunded = refunded + ? WHERE payment_id = ?".into()),
            ledger_totals: format!(
                "SELECT COUNT(*), CAST(COALESCE(SUM(balance), 0) AS {int}), CAST(COALESCE(SUM(opening_balance), 0) AS {int}), CAST(COALESCE(MIN(balance), 0) AS {int}) FROM pay_accounts"
            ),
            // One pass over the ledger (it has no index by account): sums per account, joined.
            ledger_mismatched_accounts: "SELECT COUNT(*) FROM pay_accounts a LEFT JOIN (SELECT account_id, SUM(delta) AS total FROM pay_ledger GROUP BY account_id) l ON l.account_id = a.account_id WHERE a.balance <> a.opening_balance + COALESCE(l.total, 0)".into(),
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

/// A connection pool on one database, with its dialect's SQL.
#[derive(Debug, Clone)]
pub struct Db {
    pub(crate) pool: AnyPool,
    pub(crate) sql: Arc<Sql>,
    backend: Backend,
    // SQLite has one writer per file; queueing writers here is cheaper than letting them
    // spin in SQLite's busy handler. Other processes are still kept out by BEGIN IMMEDIATE.
    writer: Option<Arc<Mutex<()>>>,
}

/// A write transaction, holding the node's SQLite writer slot when there is one.
pub(crate) struct WriteTx {
    pub(crate) tx: Transaction<'static, Any>,
    _writer: Option<OwnedMutexGuard<()>>,
}

impl Db {
    /// Connects to `url` (`sqlite:PATH`, `postgres://…`, `mysql://…`) and brings the schema up
    /// to date with the backend's embedded migrations. A SQLite file and its directory are
    /// created when missing. Several nodes may start at once: PostgreSQL and MySQL
    /// migrations run under an advisory lock.
    ///
    /// # Errors
    /// [`Error::UnsupportedDatabase`], [`Error::Database`] when the server cannot be reached,
    /// [`Error::Migrate`] when the schema cannot be created.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self> {
        sqlx::any::install_default_drivers();
        let backend = Backend::of_url(url)?;
        let options = AnyPoolOptions::new()
            .max_connections(max_connections.max(1))
            .acquire_timeout(Duration::from_secs(10));
        let (pool, dialect, mut migrator) = match backend {
            Backend::Sqlite => {
                let url = sqlite::prepare(url)?;
                let pool = options
                    .after_connect(|conn, _| Box::pin(sqlite::after_connect(conn)))
                    .connect(&url)
                    .await?;
                (pool, sqlite::DIALECT, sqlite::migrator())
            }
            Backend::Postgres => (
                options.connect(url).await?,
                postgres::DIALECT,
                postgres::migrator(),
            ),
            Backend::MySql => {
                let pool = options
                    .after_connect(|conn, _| Box::pin(mysql::after_connect(conn)))
                    .connect(url)
                    .await?;
                (pool, mysql::DIALECT, mysql::migrator())
            }
        };
        // Other crates (idem-sql's stores) may keep their migrations in the same database.
        migrator.set_ignore_missing(true);
        if backend == Backend::MySql {
            mysql::migrate(&pool, migrator).await?;
        } else {
            migrator.run(&pool).await?;
        }
        Ok(Self {
            pool,
            sql: Arc::new(Sql::new(&dialect)),
            backend,
            writer: (backend == Backend::Sqlite).then(|| Arc::new(Mutex::new(()))),
        })
    }

    /// The engine behind this pool.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Closes the pool, waiting for connections in use to come back.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    pub(crate) async fn begin_write(&self) -> Result<WriteTx> {
        let writer = match &self.writer {
            Some(lock) => Some(lock.clone().lock_owned().await),
            None => None,
        };
        let tx = self.pool.begin_with(self.sql.begin_write).await?;
        Ok(WriteTx {
            tx,
            _writer: writer,
        })
    }
}

/// Whether an error is one a retry of the whole transaction may cure.
pub(crate) fn is_transient(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Database(db) => {
            sqlite::is_transient(db.as_ref())
                || postgres::is_transient(db.as_ref())
                || mysql::is_transient(db.as_ref())
        }
        // A lost connection: the transaction was rolled back, or committed and then the
        // retry finds its row and replays. Either way a retry is safe.
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::Protocol(_) => true,
        _ => false,
    }
}

/// Rows a statement changed, as the insert-or-skip statements report it.
pub(crate) fn inserted(result: &AnyQueryResult) -> bool {
    result.rows_affected() > 0
}

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
        assert!(sql.insert_payment.contains("$9") && !sql.insert_payment.contains('?'));
        assert!(sql.lock_pair.ends_with("FOR UPDATE"));
        assert!(Sql::new(&sqlite::DIALECT)
            .insert_payment
            .contains("ON CONFLICT DO NOTHING"));
        assert!(Sql::new(&mysql::DIALECT)
            .insert_payment
            .starts_with("INSERT IGNORE"));
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
