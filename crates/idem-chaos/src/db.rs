//! The run's own database: created fresh on the given server, cut from the server side
//! while the run goes on, read by the checker at the end, dropped unless `--keep`.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sqlx::mysql::{MySqlPool, MySqlPoolOptions};
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::SqlitePoolOptions;
use sqlx::Row;

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
        let scheme = url.split(':').next().unwrap_or_default();
        match scheme {
            "postgres" | "postgresql" => Ok(Self::Postgres),
            "mysql" | "mariadb" => Ok(Self::Mysql),
            "sqlite" => Ok(Self::Sqlite),
            _ => Err(Error::Config(format!(
                "--database {url}: expected postgres://, mysql:// or sqlite://"
            ))),
        }
    }
}

#[derive(Debug)]
enum Admin {
    Postgres(PgPool),
    Mysql(MySqlPool),
    Sqlite(PathBuf),
}

/// A database created for one run.
#[derive(Debug)]
pub struct RunDatabase {
    backend: Backend,
    name: String,
    url: String,
    admin: Admin,
}

/// A name no other run uses: the pid and the clock in nanoseconds.
pub fn unique_name(prefix: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "{prefix}_{}_{:x}",
        std::process::id(),
        nanos & 0xffff_ffff_ffff
    )
}

/// `url` with its database (the path) replaced by `name`, the query kept.
pub fn with_database(url: &str, name: &str) -> Result<String, Error> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| Error::Config(format!("--database {url}: not a URL")))?;
    let (before_query, query) = match rest.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (rest, None),
    };
    let authority = before_query.split('/').next().unwrap_or_default();
    let mut out = format!("{scheme}://{authority}/{name}");
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    Ok(out)
}

impl RunDatabase {
    /// Creates a fresh database for the run on the server `server_url` names (for SQLite, a
    /// new file in a temporary folder).
    ///
    /// # Errors
    /// [`Error::Database`] when the server refuses; [`Error::Config`] for a bad URL.
    pub async fn create(server_url: &str) -> Result<Self, Error> {
        let backend = Backend::of(server_url)?;
        let name = unique_name("idem_chaos");
        let admin_error = |e| Error::Database("creating the run's database".into(), e);
        match backend {
            Backend::Postgres => {
                let pool = PgPoolOptions::new()
                    .max_connections(2)
                    .acquire_timeout(Duration::from_secs(10))
                    .connect(server_url)
                    .await
                    .map_err(admin_error)?;
                sqlx::raw_sql(&format!("CREATE DATABASE \"{name}\""))
                    .execute(&pool)
                    .await
                    .map_err(admin_error)?;
                Ok(Self {
                    backend,
                    url: with_database(server_url, &name)?,
                    name,
                    admin: Admin::Postgres(pool),
                })
            }
            Backend::Mysql => {
                let pool = MySqlPoolOptions::new()
                    .max_connections(2)
                    .acquire_timeout(Duration::from_secs(10))
                    .connect(server_url)
                    .await
                    .map_err(admin_error)?;
                sqlx::raw_sql(&format!("CREATE DATABASE `{name}`"))
                    .execute(&pool)
                    .await
                    .map_err(admin_error)?;
                Ok(Self {
                    backend,
                    url: with_database(server_url, &name)?,
                    name,
                    admin: Admin::Mysql(pool),
                })
            }
            Backend::Sqlite => {
                let dir = std::env::temp_dir().join(&name);
                std::fs::create_dir_all(&dir)
                    .map_err(|e| Error::Io(format!("creating {}", dir.display()), e))?;
                let file = dir.join("pay.db");
                Ok(Self {
                    backend,
                    url: format!("sqlite://{}?mode=rwc", file.display()),
                    name,
                    admin: Admin::Sqlite(dir),
                })
            }
        }
    }

    /// The engine.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The run database's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The URL the nodes and the checker connect to.
    pub fn url(&self) -> &str {
        &self.url
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
                .bind(&self.name)
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
                .bind(&self.name)
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
            Admin::Sqlite(_) => Ok(0),
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
        macro_rules! read_all {
            ($pool:expr) => {{
                let accounts: Vec<(String, i64, i64)> = sqlx::query_as(&accounts_sql)
                    .fetch_all($pool)
                    .await
                    .map_err(err)?;
                let payments: Vec<(String, String, String, String, i64)> =
                    sqlx::query_as(&payments_sql)
                        .fetch_all($pool)
                        .await
                        .map_err(err)?;
                let ledger: Vec<(String, i64)> = sqlx::query_as(&ledger_sql)
                    .fetch_all($pool)
                    .await
                    .map_err(err)?;
                (accounts, payments, ledger)
            }};
        }
        let (accounts, payments, ledger) = match &self.admin {
            Admin::Postgres(_) => {
                let pool = PgPoolOptions::new()
                    .max_connections(1)
                    .connect(&self.url)
                    .await
                    .map_err(err)?;
                let r = read_all!(&pool);
                pool.close().await;
                r
            }
            Admin::Mysql(_) => {
                let pool = MySqlPoolOptions::new()
                    .max_connections(1)
                    .connect(&self.url)
                    .await
                    .map_err(err)?;
                let r = read_all!(&pool);
                pool.close().await;
                r
            }
            Admin::Sqlite(_) => {
                let pool = SqlitePoolOptions::new()
                    .max_connections(1)
                    .connect(&self.url)
                    .await
                    .map_err(err)?;
                let r = read_all!(&pool);
                pool.close().await;
                r
            }
        };
        Ok(Observed {
            accounts: accounts
                .into_iter()
                .map(|(account_id, balance, opening_balance)| AccountRow {
                    account_id,
                    balance,
                    opening_balance,
                })
                .collect(),
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
        let err = |e| Error::Database("dropping the run's database".into(), e);
        match &self.admin {
            Admin::Postgres(pool) => {
                sqlx::raw_sql(&format!(
                    "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
                    self.name
                ))
                .execute(pool)
                .await
                .map_err(err)?;
            }
            Admin::Mysql(pool) => {
                sqlx::raw_sql(&format!("DROP DATABASE IF EXISTS `{}`", self.name))
                    .execute(pool)
                    .await
                    .map_err(err)?;
            }
            Admin::Sqlite(dir) => std::fs::remove_dir_all(dir)
                .map_err(|e| Error::Io(format!("removing {}", dir.display()), e))?,
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_run_database_replaces_the_path_and_keeps_the_query() {
        let url = with_database(
            "postgres://postgres@127.0.0.1:5432/test?sslmode=disable",
            "r1",
        )
        .expect("a URL");
        assert_eq!(url, "postgres://postgres@127.0.0.1:5432/r1?sslmode=disable");
        let url = with_database("mysql://root@127.0.0.1:3306", "r2").expect("a URL");
        assert_eq!(url, "mysql://root@127.0.0.1:3306/r2");
        assert!(Backend::of("redis://x").is_err());
        assert_eq!(
            Backend::of("postgresql://x/y").ok(),
            Some(Backend::Postgres)
        );
    }
}
