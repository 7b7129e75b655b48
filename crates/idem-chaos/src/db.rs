//! The run's own database: created fresh on the given server, cut from the server side
//! while the run goes on, read by the checker at the end, dropped unless `--keep`.

use std::time::Duration;

use sqlx::mysql::{MySqlPool, MySqlPoolOptions};
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::SqlitePoolOptions;
use sqlx::Row;

use idem_sql_admin::{Engine, ScratchDatabase};

use crate::checker::{AccountRow, Observed, PaymentRow};
use crate::Error;

/// The database engines a run can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// PostgreSQL (or a compatible engine).
    Postgres,
    /// MySQL or MariaDB.
    Mysql,
    /// An SQLite file: one node only.
    Sqlite,
}

impl Backend {
    /// The engine a URL names by its scheme.
    ///
    /// # Errors
    /// [`Error::Config`] for any other scheme.
    pub fn of(url: &str) -> Result<Self, Error> {
        match Engine::of(url) {
            Ok(Engine::Postgres) => Ok(Self::Postgres),
            Ok(Engine::MySql) => Ok(Self::Mysql),
            Ok(Engine::Sqlite) => Ok(Self::Sqlite),
            Err(_) => Err(Error::Config(format!(
                "--database {url}: expected postgres://, mysql:// or sqlite://"
            ))),
        }
    }
}

/// The server connection that creates, cuts and drops the run's database.
#[derive(Debug)]
enum Admin {
    Postgres(PgPool),
    Mysql(MySqlPool),
    Sqlite,
}

/// A database created for one run.
#[derive(Debug)]
pub struct RunDatabase {
    backend: Backend,
    scratch: ScratchDatabase,
    admin: Admin,
}

impl RunDatabase {
    /// Creates a fresh database for the run on the server `server_url` names (for SQLite, a
    /// new file in a temporary folder).
    ///
    /// # Errors
    /// [`Error::Database`] when the server refuses; [`Error::Config`] for a bad URL.
    pub async fn create(server_url: &str) -> Result<Self, Error> {
        let backend = Backend::of(server_url)?;
        let admin_error = |e| Error::Database("creating the run's database".into(), e);
        // The admin pool outlives the run, for cutting its connections and dropping it.
        let admin = match backend {
            Backend::Postgres => {
                Admin::Postgres(admin_pool(server_url).await.map_err(admin_error)?)
            }
            Backend::Mysql => Admin::Mysql(admin_pool(server_url).await.map_err(admin_error)?),
            Backend::Sqlite => Admin::Sqlite,
        };
        let scratch = ScratchDatabase::create(server_url, "idem_chaos")
            .await
            .map_err(|e| admin_failure("creating the run's database", e))?;
        Ok(Self {
            backend,
            scratch,
            admin,
        })
    }

    /// The engine.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The run database's name.
    pub fn name(&self) -> &str {
        self.scratch.name()
    }

    /// The URL the nodes and the checker connect to.
    pub fn url(&self) -> &str {
        self.scratch.url()
    }

    /// Kills every server connection to the run's database, as a failing network or a
    /// restarting server would, and returns how many died. SQLite has no server: 0.
    ///
    /// # Errors
    /// [`Error::Database`] when the admin connection fails.
    pub async fn cut_connections(&self) -> Result<u64, Error> {
        let err = |e| Error::Database("cutting the run's connections".into(), e);
        match &self.admin {
            Admin::Postgres(pool) => {
                let rows = sqlx::query(
                    "SELECT pg_terminate_backend(pid) AS killed FROM pg_stat_activity \
                     WHERE datname = $1 AND pid <> pg_backend_pid()",
                )
                .bind(self.scratch.name())
                .fetch_all(pool)
                .await
                .map_err(err)?;
                Ok(rows
                    .iter()
                    .filter(|r| r.try_get::<bool, _>("killed").unwrap_or(false))
                    .count() as u64)
            }
            Admin::Mysql(pool) => {
                let rows = sqlx::query(
                    "SELECT CAST(ID AS SIGNED) AS id FROM information_schema.PROCESSLIST \
                     WHERE DB = ? AND ID <> CONNECTION_ID()",
                )
                .bind(self.scratch.name())
                .fetch_all(pool)
                .await
                .map_err(err)?;
                let mut killed = 0;
                for row in rows {
                    let id: i64 = row.try_get("id").map_err(err)?;
                    // The connection may have closed since the list was read.
                    if sqlx::raw_sql(&format!("KILL {id}"))
                        .execute(pool)
                        .await
                        .is_ok()
                    {
                        killed += 1;
                    }
                }
                Ok(killed)
            }
            Admin::Sqlite => Ok(0),
        }
    }

    /// Reads every account, payment and the ledger's sum per account, for the checker.
    ///
    /// # Errors
    /// [`Error::Database`] when the tables cannot be read.
    pub async fn read(&self) -> Result<Observed, Error> {
        let err = |e| Error::Database("reading the run's tables".into(), e);
        // MySQL ids are ascii_bin, which the driver sees as binary: cast them to text.
        let (text, int) = match self.backend {
            Backend::Postgres => ("TEXT", "BIGINT"),
            Backend::Mysql => ("CHAR", "SIGNED"),
            Backend::Sqlite => ("TEXT", "INTEGER"),
        };
        let t = |col: &str| format!("CAST({col} AS {text})");
        let accounts_sql = format!(
            "SELECT {}, balance, opening_balance FROM pay_accounts",
            t("account_id")
        );
        let payments_sql = format!(
            "SELECT {}, {}, {}, {}, amount FROM pay_payments",
            t("payment_id"),
            t("order_id"),
            t("payer"),
            t("payee")
        );
        // SUM is a DECIMAL on MySQL and a NUMERIC on PostgreSQL: back to a 64-bit integer.
        let ledger_sql = format!(
            "SELECT {}, CAST(SUM(delta) AS {int}) FROM pay_ledger GROUP BY account_id",
            t("account_id")
        );
        // One short-lived pool of the backend's kind over the scratch database: the same
        // three reads, each backend's row types decoded by its own driver.
        macro_rules! read_all {
            ($pool_options:ty) => {{
                let pool = <$pool_options>::new()
                    .max_connections(1)
                    .connect(self.scratch.url())
                    .await
                    .map_err(err)?;
                let accounts: Vec<(String, i64, i64)> = sqlx::query_as(&accounts_sql)
                    .fetch_all(&pool)
                    .await
                    .map_err(err)?;
                let payments: Vec<(String, String, String, String, i64)> =
                    sqlx::query_as(&payments_sql)
                        .fetch_all(&pool)
                        .await
                        .map_err(err)?;
                let ledger: Vec<(String, i64)> = sqlx::query_as(&ledger_sql)
                    .fetch_all(&pool)
                    .await
                    .map_err(err)?;
                pool.close().await;
                (accounts, payments, ledger)
            }};
        }
        let (accounts, payments, ledger) = match &self.admin {
            Admin::Postgres(_) => read_all!(PgPoolOptions),
            Admin::Mysql(_) => read_all!(MySqlPoolOptions),
            Admin::Sqlite => read_all!(SqlitePoolOptions),
        };
        Ok(Observed {
            accounts: accounts.into_iter().map(AccountRow::from).collect(),
            payments: payments
                .into_iter()
                .map(|(payment_id, order_id, payer, payee, amount)| PaymentRow {
                    payment_id,
                    order_id,
                    payer,
                    payee,
                    amount,
                })
                .collect(),
            ledger: ledger.into_iter().collect(),
            served: Default::default(),
        })
    }

    /// Drops the run's database (or removes the SQLite folder).
    ///
    /// # Errors
    /// [`Error::Database`] or [`Error::Io`] when it cannot be removed.
    pub async fn drop_database(&self) -> Result<(), Error> {
        self.scratch
            .drop_database()
            .await
            .map_err(|e| admin_failure("dropping the run's database", e))
    }
}

/// The run's [`Error`] for a failure of `idem-sql-admin` while `doing` something.
fn admin_failure(doing: &str, e: idem_sql_admin::Error) -> Error {
    match e {
        idem_sql_admin::Error::Database(e) => Error::Database(doing.into(), e),
        idem_sql_admin::Error::Io { path, source } => {
            Error::Io(format!("{doing}: {}", path.display()), source)
        }
        other => Error::Config(format!("{doing}: {other}")),
    }
}

/// The run's admin pool on the server `server_url` connects to: two connections, each
/// waited for at most 10 s.
async fn admin_pool<DB: sqlx::Database>(server_url: &str) -> Result<sqlx::Pool<DB>, sqlx::Error> {
    sqlx::pool::PoolOptions::<DB>::new()
        .max_connections(2)
        .acquire_timeout(Duration::from_secs(10))
        .connect(server_url)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engines_are_known_by_scheme() {
        assert!(Backend::of("redis://x").is_err());
        assert_eq!(
            Backend::of("postgresql://x/y").ok(),
            Some(Backend::Postgres)
        );
    }
}
