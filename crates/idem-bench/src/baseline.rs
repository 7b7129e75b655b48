//! The database's own limit: the money movement of one payment as a bare SQL transaction
//! (lock both accounts in a fixed order, update both, write two ledger rows, commit),
//! driven straight from Rust with the same concurrency as the HTTP load, with no HTTP, no
//! JSON and no idempotency. `idem serve` can at best approach this rate.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use sqlx::pool::PoolOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use tokio::sync::Mutex;

use crate::error::Result;
use crate::load::{drive, LoadClient, Pace, Step};
use crate::stats::Figures;
use idem_sql_admin::{Engine, ScratchDatabase};

/// Opening balance of every baseline account.
const OPENING_BALANCE: i64 = 1_000_000_000_000;

/// The baseline's result.
#[derive(Debug, Clone, Serialize)]
pub struct BaselineReport {
    /// Engine of the database it ran on.
    pub engine: &'static str,
    /// Concurrent transactions (pool connections).
    pub clients: usize,
    /// Seconds it ran.
    pub elapsed_s: f64,
    /// Transactions per second and their latency.
    pub figures: Figures,
    /// Failed transactions by cause.
    pub errors: std::collections::BTreeMap<String, u64>,
}

/// Runs the bare transaction on a fresh database beside `base_url` under `pace`, with
/// `accounts` accounts, then drops that database.
///
/// # Errors
/// The fresh database could not be created, set up or dropped. Failed transactions are
/// counted in the report instead.
pub async fn run(
    base_url: &str,
    accounts: usize,
    pace: Pace,
    quiet: bool,
) -> Result<BaselineReport> {
    let fresh = ScratchDatabase::create(base_url, "idem_bench_sql").await?;
    let result = on(fresh.url(), fresh.engine(), accounts, pace, quiet).await;
    let dropped = fresh.drop_database().await;
    let report = result?;
    dropped?;
    Ok(report)
}

/// The statements of one engine.
struct Dialect {
    schema: &'static [&'static str],
    insert_account: &'static str,
    begin: &'static str,
    lock: &'static str,
    debit: &'static str,
    credit: &'static str,
    ledger: &'static str,
}

fn dialect(engine: Engine) -> Dialect {
    match engine {
        Engine::Postgres => Dialect {
            schema: &[
                "CREATE TABLE accounts (id TEXT PRIMARY KEY, balance BIGINT NOT NULL CHECK (balance >= 0))",
                "CREATE TABLE ledger (id BIGSERIAL PRIMARY KEY, payment_id TEXT NOT NULL, account_id TEXT NOT NULL, delta BIGINT NOT NULL)",
            ],
            insert_account: "INSERT INTO accounts (id, balance) VALUES ($1, $2)",
            begin: "BEGIN",
            lock: "SELECT id, balance FROM accounts WHERE id IN ($1, $2) ORDER BY id FOR UPDATE",
            debit: "UPDATE accounts SET balance = balance - $1 WHERE id = $2",
            credit: "UPDATE accounts SET balance = balance + $1 WHERE id = $2",
            ledger: "INSERT INTO ledger (payment_id, account_id, delta) VALUES ($1, $2, $3), ($4, $5, $6)",
        },
        Engine::MySql => Dialect {
            schema: &[
                "CREATE TABLE accounts (id VARCHAR(128) PRIMARY KEY, balance BIGINT NOT NULL) ENGINE=InnoDB",
                "CREATE TABLE ledger (id BIGINT AUTO_INCREMENT PRIMARY KEY, payment_id VARCHAR(128) NOT NULL, account_id VARCHAR(128) NOT NULL, delta BIGINT NOT NULL) ENGINE=InnoDB",
            ],
            insert_account: "INSERT INTO accounts (id, balance) VALUES (?, ?)",
            begin: "BEGIN",
            lock: "SELECT id, balance FROM accounts WHERE id IN (?, ?) ORDER BY id FOR UPDATE",
            debit: "UPDATE accounts SET balance = balance - ? WHERE id = ?",
            credit: "UPDATE accounts SET balance = balance + ? WHERE id = ?",
            ledger: "INSERT INTO ledger (payment_id, account_id, delta) VALUES (?, ?, ?), (?, ?, ?)",
        },
        Engine::Sqlite => Dialect {
            schema: &[
                "CREATE TABLE accounts (id TEXT PRIMARY KEY, balance INTEGER NOT NULL CHECK (balance >= 0))",
                "CREATE TABLE ledger (id INTEGER PRIMARY KEY AUTOINCREMENT, payment_id TEXT NOT NULL, account_id TEXT NOT NULL, delta INTEGER NOT NULL)",
            ],
            insert_account: "INSERT INTO accounts (id, balance) VALUES (?, ?)",
            // SQLite has no row locks: the write lock, taken up front, is the lock on both accounts.
            begin: "BEGIN IMMEDIATE",
            lock: "SELECT id, balance FROM accounts WHERE id IN (?, ?) ORDER BY id",
            debit: "UPDATE accounts SET balance = balance - ? WHERE id = ?",
            credit: "UPDATE accounts SET balance = balance + ? WHERE id = ?",
            ledger: "INSERT INTO ledger (payment_id, account_id, delta) VALUES (?, ?, ?), (?, ?, ?)",
        },
    }
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

async fn on(
    url: &str,
    engine: Engine,
    accounts: usize,
    pace: Pace,
    quiet: bool,
) -> Result<BaselineReport> {
    let clients = pace.clients.max(1);
    let pool = connect(url, engine, clients).await?;
    let sql = dialect(engine);
    let ids: Vec<String> = (0..accounts.max(2)).map(|i| format!("a{i}")).collect();
    with_pool!(&pool, pool => {
        for statement in sql.schema {
            sqlx::query(statement).execute(pool).await?;
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
    let transfers: Vec<Transfer> = (0..clients)
        .map(|index| Transfer {
            pool: pool.clone(),
            writer: writer.clone(),
            sql: dialect(engine),
            ids: ids.clone(),
            index,
            seq: 0,
            rng: StdRng::seed_from_u64(index as u64 ^ 0xba5e),
        })
        .collect();
    let (tally, elapsed) = drive(pace, "bare SQL", quiet, transfers).await;
    with_pool!(&pool, pool => pool.close().await);
    Ok(BaselineReport {
        engine: engine.name(),
        clients,
        elapsed_s: elapsed.as_secs_f64(),
        figures: tally.total().figures(elapsed),
        errors: tally.errors,
    })
}

/// One client of the baseline: one transfer transaction per step.
struct Transfer {
    pool: AnyPool,
    writer: Option<Arc<Mutex<()>>>,
    sql: Dialect,
    ids: Vec<String>,
    index: usize,
    seq: u64,
    rng: StdRng,
}

impl Transfer {
    async fn transfer(&mut self) -> std::result::Result<(), sqlx::Error> {
        self.seq += 1;
        let payment = format!("p{}-{}", self.index, self.seq);
        let n = self.ids.len();
        let payer = self.rng.gen_range(0..n);
        let payee = (payer + self.rng.gen_range(1..n)) % n;
        let amount: i64 = self.rng.gen_range(1..=100);
        let (payer, payee) = (&self.ids[payer], &self.ids[payee]);
        let sql = &self.sql;
        let _writer = match &self.writer {
            Some(writer) => Some(writer.lock().await),
            None => None,
        };
        with_pool!(&self.pool, pool => {
            let mut conn = pool.acquire().await?;
            sqlx::query(sql.begin).execute(&mut *conn).await?;
            let work = async {
                sqlx::query(sql.lock).bind(payer).bind(payee).fetch_all(&mut *conn).await?;
                sqlx::query(sql.debit).bind(amount).bind(payer).execute(&mut *conn).await?;
                sqlx::query(sql.credit).bind(amount).bind(payee).execute(&mut *conn).await?;
                sqlx::query(sql.ledger)
                    .bind(&payment)
                    .bind(payer)
                    .bind(-amount)
                    .bind(&payment)
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
}

impl LoadClient for Transfer {
    async fn step(&mut self) -> Step {
        let error = self.transfer().await.err().map(|e| match e {
            sqlx::Error::Database(db) => {
                format!("database error {}", db.code().unwrap_or_default())
            }
            other => other.to_string(),
        });
        Step { kind: "sql", error }
    }
}
