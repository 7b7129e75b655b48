//! The database's own limit: the money movement of one payment driven straight from Rust
//! with the same concurrency and the same choice of accounts as the HTTP load, with no
//! HTTP, no JSON and no idempotency, in one of two shapes:
//!
//! - [`Shape::Transaction`]: a bare SQL transaction (lock both accounts in a fixed order,
//!   update both, write two ledger rows, commit): six round trips;
//! - [`Shape::Statement`]: the same money movement and the payment row in ONE statement,
//!   autocommit (see [`dialect`] for how each engine says it): one round trip.
//!
//! `idem serve` can at best approach these rates. After the load, the baseline audits its
//! own database (money conserved, two ledger rows per payment, one payment row per
//! statement) and reports any shortfall as errors, so it cannot have done less work.

mod dialect;

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use sqlx::pool::PoolOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use tokio::sync::Mutex;

use crate::error::{BenchError, Result};
use crate::load::{drive, LoadClient, Pace, Step};
use crate::skew::Skew;
use crate::stats::Figures;
use dialect::{dialect, Dialect, REFUSED};
use idem_sql_admin::{Engine, ScratchDatabase};

/// Opening balance of every baseline account.
pub const OPENING_BALANCE: i64 = 1_000_000_000_000;

/// How the baseline moves the money of one payment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Shape {
    /// `BEGIN`, lock both accounts, debit, credit, two ledger rows, `COMMIT`.
    Transaction,
    /// One statement: lock, move, two ledger rows and the payment row, autocommit.
    Statement,
}

impl Shape {
    /// How the report names it.
    pub fn describe(self) -> &'static str {
        match self {
            Shape::Transaction => "bare SQL transaction",
            Shape::Statement => "one SQL statement per payment",
        }
    }
}

/// The baseline's result.
#[derive(Debug, Clone, Serialize)]
pub struct BaselineReport {
    /// How each payment was done.
    pub shape: Shape,
    /// Engine of the database it ran on.
    pub engine: &'static str,
    /// Who paid whom.
    pub accounts_skew: String,
    /// Concurrent payments (pool connections).
    pub clients: usize,
    /// Seconds it ran.
    pub elapsed_s: f64,
    /// Payments per second and their latency.
    pub figures: Figures,
    /// Failed payments by cause, and any shortfall the audit after the run found.
    pub errors: BTreeMap<String, u64>,
}

/// Runs the baseline of `shape` on a fresh database beside `base_url` under `pace`, with
/// `accounts` accounts picked by `skew`, then drops that database.
///
/// # Errors
/// The fresh database could not be created, set up or dropped. Failed payments are
/// counted in the report instead.
pub async fn run(
    base_url: &str,
    shape: Shape,
    accounts: usize,
    skew: Skew,
    pace: Pace,
    quiet: bool,
) -> Result<BaselineReport> {
    let prefix = match shape {
        Shape::Transaction => "idem_bench_sql",
        Shape::Statement => "idem_bench_stmt",
    };
    let fresh = ScratchDatabase::create(base_url, prefix).await?;
    let result = run_on(fresh.url(), shape, accounts, skew, pace, quiet).await;
    let dropped = fresh.drop_database().await;
    let report = result?;
    dropped?;
    Ok(report)
}

/// A pool on one of the engines: concrete types, so each statement is typed for its driver.
#[derive(Debug, Clone)]
enum AnyPool {
    Postgres(sqlx::PgPool),
    MySql(sqlx::MySqlPool),
    Sqlite(sqlx::SqlitePool),
}

/// Runs `$body` with `$pool` bound to the concrete pool, whatever the engine.
macro_rules! with_pool {
    ($any:expr, $pool:ident => $body:expr) => {
        match $any {
            AnyPool::Postgres($pool) => $body,
            AnyPool::MySql($pool) => $body,
            AnyPool::Sqlite($pool) => $body,
        }
    };
}

async fn connect(
    url: &str,
    engine: Engine,
    clients: usize,
) -> std::result::Result<AnyPool, sqlx::Error> {
    let size = u32::try_from(clients).unwrap_or(u32::MAX);
    macro_rules! options {
        () => {
            PoolOptions::new()
                .max_connections(size)
                .min_connections(size)
                .acquire_timeout(Duration::from_secs(60))
        };
    }
    Ok(match engine {
        Engine::Postgres => AnyPool::Postgres(options!().connect(url).await?),
        Engine::MySql => AnyPool::MySql(options!().connect(url).await?),
        Engine::Sqlite => {
            // As `idem serve` runs SQLite: WAL, and every commit synced.
            let connect = SqliteConnectOptions::from_str(url)?
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Full)
                .busy_timeout(Duration::from_secs(10));
            AnyPool::Sqlite(options!().connect_with(connect).await?)
        }
    })
}

/// Runs the baseline of `shape` on the empty database at `url` (its tables are created
/// here and left there), with `accounts` accounts picked by `skew`, under `pace`.
///
/// # Errors
/// The database could not be reached or set up, or the audit after the run could not read
/// it. Failed payments, and an audit that finds less work done than reported, are counted
/// in the report's errors instead.
pub async fn run_on(
    url: &str,
    shape: Shape,
    accounts: usize,
    skew: Skew,
    pace: Pace,
    quiet: bool,
) -> Result<BaselineReport> {
    let engine = Engine::of(url).map_err(|e| BenchError::InvalidArgument {
        what: "--database",
        reason: e.to_string(),
    })?;
    let clients = pace.clients.max(1);
    let pool = connect(url, engine, clients).await?;
    let sql = dialect(engine);
    let ids: Vec<String> = (0..accounts.max(2)).map(|i| format!("a{i}")).collect();
    with_pool!(&pool, pool => {
        for statement in sql.schema {
            sqlx::raw_sql(statement).execute(pool).await?;
        }
        let mut conn = pool.acquire().await?;
        sqlx::query(sql.begin).execute(&mut *conn).await?;
        for id in &ids {
            sqlx::query(sql.insert_account).bind(id).bind(OPENING_BALANCE).execute(&mut *conn).await?;
        }
        sqlx::query("COMMIT").execute(&mut *conn).await?;
    });

    // SQLite has one writer per file: queueing writers in the process, as `idem serve`
    // does, beats letting them spin in SQLite's busy handler.
    let writer = (engine == Engine::Sqlite).then(|| Arc::new(Mutex::new(())));
    let payers: Vec<Payer> = (0..clients)
        .map(|index| Payer {
            pool: pool.clone(),
            writer: writer.clone(),
            shape,
            sql: dialect(engine),
            ids: ids.clone(),
            skew,
            index,
            seq: 0,
            rng: StdRng::seed_from_u64(index as u64 ^ 0xba5e),
        })
        .collect();
    let label = match shape {
        Shape::Transaction => "bare SQL",
        Shape::Statement => "SQL statement",
    };
    let (tally, elapsed) = drive(pace, label, quiet, payers).await;
    let total = tally.total();
    let paid = total.count().saturating_sub(total.figures(elapsed).errors);
    let mut errors = tally.errors;
    let found = audit(&pool, ids.len()).await;
    with_pool!(&pool, pool => pool.close().await);
    for shortfall in found?.shortfalls(shape, paid) {
        *errors.entry(format!("audit: {shortfall}")).or_default() += 1;
    }
    Ok(BaselineReport {
        shape,
        engine: engine.name(),
        accounts_skew: skew.to_string(),
        clients,
        elapsed_s: elapsed.as_secs_f64(),
        figures: total.figures(elapsed),
        errors,
    })
}

/// What the baseline's tables hold after a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Audit {
    accounts: i64,
    balance_total: i64,
    ledger_rows: i64,
    ledger_total: i64,
    payment_rows: i64,
}

impl Audit {
    /// What does not add up after `paid` payments of `shape` on `accounts` accounts.
    fn shortfalls(&self, shape: Shape, paid: u64) -> Vec<String> {
        let paid = i64::try_from(paid).unwrap_or(i64::MAX);
        let mut found = Vec::new();
        if self.balance_total != self.accounts * OPENING_BALANCE || self.ledger_total != 0 {
            found.push(format!(
                "money not conserved (balances {}, ledger sum {})",
                self.balance_total, self.ledger_total
            ));
        }
        if self.ledger_rows != 2 * paid {
            found.push(format!(
                "{} ledger rows for {paid} payments",
                self.ledger_rows
            ));
        }
        let payment_rows = match shape {
            Shape::Transaction => 0,
            Shape::Statement => paid,
        };
        if self.payment_rows != payment_rows {
            found.push(format!(
                "{} payment rows for {paid} payments",
                self.payment_rows
            ));
        }
        found
    }
}

async fn audit(pool: &AnyPool, accounts: usize) -> std::result::Result<Audit, sqlx::Error> {
    // Sums cast to BIGINT/SIGNED: PostgreSQL and MariaDB widen SUM(BIGINT) to NUMERIC/DECIMAL.
    let (balances, ledger, payments) = match pool {
        AnyPool::MySql(_) => (
            "SELECT CAST(COALESCE(SUM(balance), 0) AS SIGNED) FROM accounts",
            "SELECT COUNT(*), CAST(COALESCE(SUM(delta), 0) AS SIGNED) FROM ledger",
            "SELECT COUNT(*) FROM payments",
        ),
        _ => (
            "SELECT CAST(COALESCE(SUM(balance), 0) AS BIGINT) FROM accounts",
            "SELECT COUNT(*), CAST(COALESCE(SUM(delta), 0) AS BIGINT) FROM ledger",
            "SELECT COUNT(*) FROM payments",
        ),
    };
    with_pool!(pool, pool => {
        let (balance_total,): (i64,) = sqlx::query_as(balances).fetch_one(pool).await?;
        let (ledger_rows, ledger_total): (i64, i64) = sqlx::query_as(ledger).fetch_one(pool).await?;
        let (payment_rows,): (i64,) = sqlx::query_as(payments).fetch_one(pool).await?;
        Ok(Audit {
            accounts: i64::try_from(accounts).unwrap_or(i64::MAX),
            balance_total,
            ledger_rows,
            ledger_total,
            payment_rows,
        })
    })
}

/// One client of the baseline: one payment per step.
struct Payer {
    pool: AnyPool,
    writer: Option<Arc<Mutex<()>>>,
    shape: Shape,
    sql: Dialect,
    ids: Vec<String>,
    skew: Skew,
    index: usize,
    seq: u64,
    rng: StdRng,
}

/// Why a statement that ran moved no money.
#[derive(Debug)]
struct Refused;

impl Payer {
    async fn transaction(
        &self,
        payment: &str,
        payer: &str,
        payee: &str,
        amount: i64,
    ) -> std::result::Result<(), sqlx::Error> {
        let sql = &self.sql;
        with_pool!(&self.pool, pool => {
            let mut conn = pool.acquire().await?;
            sqlx::query(sql.begin).execute(&mut *conn).await?;
            let work = async {
                sqlx::query(sql.lock).bind(payer).bind(payee).fetch_all(&mut *conn).await?;
                sqlx::query(sql.debit).bind(amount).bind(payer).execute(&mut *conn).await?;
                sqlx::query(sql.credit).bind(amount).bind(payee).execute(&mut *conn).await?;
                sqlx::query(sql.ledger)
                    .bind(payment)
                    .bind(payer)
                    .bind(-amount)
                    .bind(payment)
                    .bind(payee)
                    .bind(amount)
                    .execute(&mut *conn)
                    .await?;
                sqlx::query("COMMIT").execute(&mut *conn).await?;
                Ok::<(), sqlx::Error>(())
            }
            .await;
            if work.is_err() {
                let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
            }
            work
        })
    }

    async fn statement(
        &self,
        payment: &str,
        payer: &str,
        payee: &str,
        amount: i64,
    ) -> std::result::Result<std::result::Result<(), Refused>, sqlx::Error> {
        let sql = &self.sql;
        let moved: i64 = with_pool!(&self.pool, pool => {
            let query = sqlx::query(sql.pay).bind(payer).bind(payee).bind(amount).bind(payment);
            if sql.pay_returns_moved {
                let row = query.fetch_one(pool).await?;
                sqlx::Row::try_get(&row, 0)?
            } else {
                query.execute(pool).await?;
                2
            }
        });
        Ok(if moved == 2 { Ok(()) } else { Err(Refused) })
    }

    async fn pay(&mut self) -> Option<String> {
        self.seq += 1;
        let payment = format!("p{}-{}", self.index, self.seq);
        let (payer, payee) = self.skew.pick(&mut self.rng, self.ids.len());
        let amount: i64 = self.rng.gen_range(1..=100);
        let (payer, payee) = (&self.ids[payer], &self.ids[payee]);
        let _writer = match &self.writer {
            Some(writer) => Some(writer.lock().await),
            None => None,
        };
        let done = match self.shape {
            Shape::Transaction => self
                .transaction(&payment, payer, payee, amount)
                .await
                .map(Ok),
            Shape::Statement => self.statement(&payment, payer, payee, amount).await,
        };
        match done {
            Ok(Ok(())) => None,
            Ok(Err(Refused)) => Some(REFUSED.to_owned()),
            Err(sqlx::Error::Database(db)) if db.message().contains(REFUSED) => {
                Some(REFUSED.to_owned())
            }
            Err(sqlx::Error::Database(db)) => {
                Some(format!("database error {}", db.code().unwrap_or_default()))
            }
            Err(other) => Some(other.to_string()),
        }
    }
}

impl LoadClient for Payer {
    async fn step(&mut self) -> Step {
        let kind = match self.shape {
            Shape::Transaction => "sql",
            Shape::Statement => "statement",
        };
        Step {
            kind,
            error: self.pay().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audit_finds_work_not_done() {
        let after = |payments: i64| Audit {
            accounts: 10,
            balance_total: 10 * OPENING_BALANCE,
            ledger_rows: 2 * 50,
            ledger_total: 0,
            payment_rows: payments,
        };
        assert!(after(50).shortfalls(Shape::Statement, 50).is_empty());
        assert!(after(0).shortfalls(Shape::Transaction, 50).is_empty());
        assert_eq!(after(49).shortfalls(Shape::Statement, 50).len(), 1);
        assert_eq!(after(0).shortfalls(Shape::Statement, 50).len(), 1);
        assert_eq!(after(50).shortfalls(Shape::Statement, 51).len(), 2);
        let leaked = Audit {
            balance_total: 10 * OPENING_BALANCE - 3,
            ..after(50)
        };
        assert_eq!(leaked.shortfalls(Shape::Statement, 50).len(), 1);
    }
}
