//! The proxy target's upstream: a small HTTP service, in this process on a loopback port,
//! that moves money between the run's accounts in its own tables of the run's database, one
//! transaction per request, and records every execution with the `Idempotency-Key` and the
//! fencing token the proxy sent and the node that sent it.
//!
//! `POST /v1/transfers` takes the clients' order body (`payer`, `payee`, `amount`) and
//! answers 201 with a body naming the execution (`transfer_id`), so an answer from a second
//! execution differs from the first and a replay of the wrong one is seen.
//!
//! Fencing-aware (`--upstream-fencing`), it also records per key the token it executed
//! under and executes a key at most once: a later request with a higher token (a take-over:
//! the first holder died before storing the answer) gets the recorded answer, one with the
//! same or a lower token (a stale holder) 409 `stale_fencing_token`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use sqlx::mysql::MySqlPool;
use sqlx::pool::PoolOptions;
use sqlx::postgres::PgPool;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::balancer::NODE_HEADER;
use crate::checker::AccountRow;
use crate::db::Backend;
use crate::Error;

/// Tries of one execution's transaction (a cut connection, a deadlock) before it answers 503.
const EXECUTE_TRIES: u32 = 50;
/// The pause between two tries.
const EXECUTE_PAUSE: Duration = Duration::from_millis(100);

/// One execution of a transfer, as the upstream recorded it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Execution {
    /// The upstream's id for it (`x<n>`), in its answer's `transfer_id`.
    pub exec_id: String,
    /// The `Idempotency-Key` it came with (empty when none).
    pub key: String,
    /// The proxy's fencing token, when one came.
    pub token: Option<i64>,
    /// The node that forwarded it: `<slot>.<incarnation>` (see [`NODE_HEADER`]).
    pub node: String,
    /// Paying account.
    pub payer: String,
    /// Paid account.
    pub payee: String,
    /// Minor units.
    pub amount: i64,
    /// When it arrived, in milliseconds since the run's start.
    pub started_ms: i64,
}

/// What the upstream's tables hold at the end.
#[derive(Debug, Clone, Default)]
pub struct UpstreamState {
    /// Every account.
    pub accounts: Vec<AccountRow>,
    /// Every execution.
    pub executions: Vec<Execution>,
    /// Requests refused with 409 for a stale or repeated fencing token.
    pub refused_stale: u64,
    /// Requests for an executed key answered with the recorded answer, nothing run.
    pub answered_recorded: u64,
}

#[derive(Debug, Clone)]
enum Pool {
    Postgres(PgPool),
    Mysql(MySqlPool),
}

/// Runs `$body` with `$p` bound to the pool, whichever engine it is: the statements are the
/// same, each engine's row types decoded by its own driver.
macro_rules! with_pool {
    ($pool:expr, |$p:ident| $body:expr) => {
        match $pool {
            Pool::Postgres($p) => $body,
            Pool::Mysql($p) => $body,
        }
    };
}

#[derive(Debug)]
struct Shared {
    pool: Pool,
    backend: Backend,
    fencing: bool,
    start: Instant,
    next_id: AtomicU64,
    refused_stale: AtomicU64,
    answered_recorded: AtomicU64,
}

/// The running upstream; stops when dropped.
#[derive(Debug)]
pub struct Upstream {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

/// What one request's transaction came to.
enum Executed {
    /// This request ran (now or on an earlier try whose commit was cut): its answer.
    Ran(String),
    /// The key was executed before: the recorded answer, nothing run.
    Recorded(String),
    /// The key was executed under a token at least this one.
    Stale,
    /// Nothing ran: the payer lacks the funds (this problem body, 402).
    Refused(&'static str),
}

/// The 402 body of a transfer whose payer lacks the funds.
const INSUFFICIENT_FUNDS: &str = r#"{"code":"insufficient_funds","status":402}"#;

impl Upstream {
    /// Creates the upstream's tables in the run's database at `url`, opens `accounts`
    /// accounts `acct-0` … with `balance` each, and serves on `127.0.0.1:0`. `start` is the
    /// run's time zero.
    ///
    /// # Errors
    /// [`Error::Database`] when the tables cannot be made, [`Error::Io`] when no port binds,
    /// [`Error::Config`] on SQLite.
    pub async fn start(
        url: &str,
        backend: Backend,
        (accounts, balance): (usize, i64),
        fencing: bool,
        start: Instant,
    ) -> Result<Self, Error> {
        let err = |e| Error::Database("preparing the upstream's tables".into(), e);
        let pool = match backend {
            Backend::Postgres => Pool::Postgres(connect(url).await.map_err(err)?),
            Backend::Mysql => Pool::Mysql(connect(url).await.map_err(err)?),
            Backend::Sqlite => {
                return Err(Error::Config(
                    "--target proxy needs postgres:// or mysql://".into(),
                ))
            }
        };
        let tables = [
            "CREATE TABLE up_accounts (account_id VARCHAR(64) PRIMARY KEY, \
             balance BIGINT NOT NULL, opening_balance BIGINT NOT NULL)",
            "CREATE TABLE up_executions (exec_id VARCHAR(32) PRIMARY KEY, \
             idem_key VARCHAR(255) NOT NULL, token BIGINT NULL, node VARCHAR(32) NOT NULL, \
             payer VARCHAR(64) NOT NULL, payee VARCHAR(64) NOT NULL, amount BIGINT NOT NULL, \
             started_ms BIGINT NOT NULL)",
            "CREATE TABLE up_fence (idem_key VARCHAR(255) PRIMARY KEY, token BIGINT NOT NULL, \
             exec_id VARCHAR(32) NOT NULL, answer TEXT NOT NULL)",
        ];
        let open = sql(backend, "INSERT INTO up_accounts VALUES (?, ?, ?)");
        with_pool!(&pool, |p| {
            for ddl in tables {
                sqlx::query(ddl).execute(p).await.map_err(err)?;
            }
            for i in 0..accounts {
                sqlx::query(&open)
                    .bind(format!("acct-{i}"))
                    .bind(balance)
                    .bind(balance)
                    .execute(p)
                    .await
                    .map_err(err)?;
            }
        });
        let (listener, addr) = crate::bind_loopback("upstream").await?;
        let shared = Arc::new(Shared {
            pool,
            backend,
            fencing,
            start,
            next_id: AtomicU64::new(1),
            refused_stale: AtomicU64::new(0),
            answered_recorded: AtomicU64::new(0),
        });
        let app = Router::new()
            .route("/healthz", get(|| async { "ok" }))
            .route("/v1/transfers", post(transfer))
            .with_state(shared.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { addr, shared, task })
    }

    /// Where the proxies forward to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Reads every account and execution, for the checker, and closes the pool.
    ///
    /// # Errors
    /// [`Error::Database`] when the tables cannot be read.
    pub async fn read(&self) -> Result<UpstreamState, Error> {
        let err = |e| Error::Database("reading the upstream's tables".into(), e);
        type Row = (
            String,
            String,
            Option<i64>,
            String,
            String,
            String,
            i64,
            i64,
        );
        let (accounts, executions) = with_pool!(&self.shared.pool, |p| {
            let accounts: Vec<(String, i64, i64)> =
                sqlx::query_as("SELECT account_id, balance, opening_balance FROM up_accounts")
                    .fetch_all(p)
                    .await
                    .map_err(err)?;
            let executions: Vec<Row> = sqlx::query_as(
                "SELECT exec_id, idem_key, token, node, payer, payee, amount, started_ms \
                 FROM up_executions ORDER BY started_ms, exec_id",
            )
            .fetch_all(p)
            .await
            .map_err(err)?;
            p.close().await;
            (accounts, executions)
        });
        Ok(UpstreamState {
            accounts: accounts.into_iter().map(AccountRow::from).collect(),
            executions: executions
                .into_iter()
                .map(
                    |(exec_id, key, token, node, payer, payee, amount, started_ms)| Execution {
                        exec_id,
                        key,
                        token,
                        node,
                        payer,
                        payee,
                        amount,
                        started_ms,
                    },
                )
                .collect(),
            refused_stale: self.shared.refused_stale.load(Ordering::Relaxed),
            answered_recorded: self.shared.answered_recorded.load(Ordering::Relaxed),
        })
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A pool of the upstream's connections to the run's database.
async fn connect<DB: sqlx::Database>(url: &str) -> Result<sqlx::Pool<DB>, sqlx::Error> {
    PoolOptions::<DB>::new()
        .max_connections(16)
        .connect(url)
        .await
}

/// `POST /v1/transfers`: the execution runs in a task of its own, so a proxy that dies
/// mid-request does not cancel it, as a real service finishes what it started.
async fn transfer(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: String) -> Response {
    let text = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let token = text(idem_proxy::FENCING_TOKEN_HEADER.as_str())
        .parse::<i64>()
        .ok();
    let Ok(order) = serde_json::from_str::<serde_json::Value>(&body) else {
        return (StatusCode::BAD_REQUEST, "bad JSON").into_response();
    };
    let field = |name: &str| order.get(name).and_then(|v| v.as_str()).map(str::to_owned);
    let (Some(payer), Some(payee), Some(amount)) = (
        field("payer"),
        field("payee"),
        order.get("amount").and_then(serde_json::Value::as_i64),
    ) else {
        return (StatusCode::BAD_REQUEST, "payer, payee and amount wanted").into_response();
    };
    let exec_id = format!("x{}", shared.next_id.fetch_add(1, Ordering::Relaxed));
    let started_ms = shared.start.elapsed().as_millis() as i64;
    let execution = Execution {
        exec_id,
        key: text("idempotency-key"),
        token,
        node: text(NODE_HEADER),
        payer,
        payee,
        amount,
        started_ms,
    };
    let done = tokio::spawn(async move { execute(&shared, &execution).await }).await;
    match done {
        Ok(Some(Executed::Ran(answer) | Executed::Recorded(answer))) => (
            StatusCode::CREATED,
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            answer,
        )
            .into_response(),
        Ok(Some(Executed::Refused(body))) => (
            StatusCode::PAYMENT_REQUIRED,
            [(axum::http::header::CONTENT_TYPE, "application/problem+json")],
            body,
        )
            .into_response(),
        Ok(Some(Executed::Stale)) => (
            StatusCode::CONFLICT,
            [(axum::http::header::CONTENT_TYPE, "application/problem+json")],
            r#"{"code":"stale_fencing_token","status":409}"#,
        )
            .into_response(),
        _ => (
            StatusCode::SERVICE_UNAVAILABLE,
            "the upstream's database failed",
        )
            .into_response(),
    }
}

/// Runs one execution's transaction until it commits (or shows it committed on an earlier
/// try: the execution's id is its primary key), or gives up after [`EXECUTE_TRIES`].
async fn execute(shared: &Shared, x: &Execution) -> Option<Executed> {
    let answer = serde_json::json!({
        "transfer_id": x.exec_id,
        "key": x.key,
        "payer": x.payer,
        "payee": x.payee,
        "amount": x.amount,
        "token": x.token,
    })
    .to_string();
    for _ in 0..EXECUTE_TRIES {
        match try_execute(shared, x, &answer).await {
            Ok(done) => {
                match done {
                    Executed::Stale => shared.refused_stale.fetch_add(1, Ordering::Relaxed),
                    Executed::Recorded(_) => {
                        shared.answered_recorded.fetch_add(1, Ordering::Relaxed)
                    }
                    Executed::Ran(_) | Executed::Refused(_) => 0,
                };
                return Some(done);
            }
            Err(_) => tokio::time::sleep(EXECUTE_PAUSE).await,
        }
    }
    None
}

/// One try of the transaction: the fence (when fencing), the execution's row, both balances
/// (in id order, so two transfers never deadlock), commit.
async fn try_execute(
    shared: &Shared,
    x: &Execution,
    answer: &str,
) -> Result<Executed, sqlx::Error> {
    let b = shared.backend;
    let insert = |table: &str, columns: usize| {
        let marks = vec!["?"; columns].join(", ");
        let text = match b {
            Backend::Mysql => format!("INSERT IGNORE INTO {table} VALUES ({marks})"),
            _ => format!("INSERT INTO {table} VALUES ({marks}) ON CONFLICT DO NOTHING"),
        };
        sql(b, &text)
    };
    let (fence, record) = (insert("up_fence", 4), insert("up_executions", 8));
    let read_fence = sql(
        b,
        "SELECT token, exec_id, answer FROM up_fence WHERE idem_key = ?",
    );
    // The payer's row changes only when it holds the amount (`-delta` is 0 for the payee).
    let moved = sql(
        b,
        "UPDATE up_accounts SET balance = balance + ? WHERE account_id = ? AND balance >= ?",
    );
    let mut moves = [(x.payer.as_str(), -x.amount), (x.payee.as_str(), x.amount)];
    moves.sort_unstable();
    with_pool!(&shared.pool, |p| {
        let mut tx = p.begin().await?;
        if shared.fencing {
            let token = x.token.unwrap_or(0);
            let claimed = sqlx::query(&fence)
                .bind(&x.key)
                .bind(token)
                .bind(&x.exec_id)
                .bind(answer)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if claimed == 0 {
                let (held, by, recorded): (i64, String, String) = sqlx::query_as(&read_fence)
                    .bind(&x.key)
                    .fetch_one(&mut *tx)
                    .await?;
                tx.rollback().await?;
                return Ok(if by == x.exec_id {
                    Executed::Ran(recorded)
                } else if token > held {
                    Executed::Recorded(recorded)
                } else {
                    Executed::Stale
                });
            }
        }
        let fresh = sqlx::query(&record)
            .bind(&x.exec_id)
            .bind(&x.key)
            .bind(x.token)
            .bind(&x.node)
            .bind(&x.payer)
            .bind(&x.payee)
            .bind(x.amount)
            .bind(x.started_ms)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if fresh == 0 {
            // An earlier try committed and only its answer was lost.
            tx.rollback().await?;
            return Ok(Executed::Ran(answer.to_owned()));
        }
        for (account, delta) in moves {
            let changed = sqlx::query(&moved)
                .bind(delta)
                .bind(account)
                .bind(-delta)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if changed == 0 {
                tx.rollback().await?;
                return Ok(Executed::Refused(INSUFFICIENT_FUNDS));
            }
        }
        tx.commit().await?;
        Ok(Executed::Ran(answer.to_owned()))
    })
}

/// `text` with its `?` placeholders as the engine wants them: `$1`, `$2`, … on PostgreSQL.
fn sql(backend: Backend, text: &str) -> String {
    if backend != Backend::Postgres {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len() + 8);
    let mut n = 0;
    for c in text.chars() {
        if c == '?' {
            n += 1;
            out.push_str(&format!("${n}"));
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_numbered_on_postgres_only() {
        let text = "UPDATE t SET a = ? WHERE b = ?";
        assert_eq!(
            sql(Backend::Postgres, text),
            "UPDATE t SET a = $1 WHERE b = $2"
        );
        assert_eq!(sql(Backend::Mysql, text), text);
    }
}
