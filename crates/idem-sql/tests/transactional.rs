//! The transactional mode (DESIGN §2) on every backend: `begin_in` and `complete_in` inside
//! the caller's transaction, beside a business write in the same transaction.
//!
//! - a rolled-back transaction leaves no record and no business row (and frees the key);
//! - a committed one leaves both, and a retry replays;
//! - a concurrent duplicate in another transaction blocks until the first commits, then
//!   sees `Replay` — and the business row exists once;
//! - an answered claim (`begin_answered_in`) is born completed, vanishes on rollback, and
//!   N racers on one key in N transactions see one `Acquired` and N − 1 replays — written
//!   once, generic over [`TransactionalStore`], and run on every backend.

mod support;

use std::sync::Arc;
use std::time::Duration;

use idem::{Claim, Fingerprint, Hold, Key, Outcome, Scope, Store, StoredResponse, TTL_FOREVER};
use idem_sql::TransactionalStore;
#[cfg(any(feature = "postgres", feature = "mysql"))]
use idem_test_support::backend_url;
use sqlx::Executor;

const LEASE: Duration = Duration::from_secs(30);
const TTL: Duration = Duration::from_secs(3600);
const BUSINESS_TABLE: &str =
    "CREATE TABLE payments (order_id VARCHAR(64) PRIMARY KEY, amount BIGINT NOT NULL)";

fn scope() -> Scope {
    Scope::new("tenant|POST /v1/payments").expect("valid scope")
}

fn key(raw: &str) -> Key {
    Key::new(raw).expect("valid key")
}

fn fp() -> Fingerprint {
    Fingerprint::of_bytes("POST", "/v1/payments", b"{\"amount\":500}")
}

fn response() -> StoredResponse {
    StoredResponse::new(201, "{\"status\":\"succeeded\"}")
        .with_header("content-type", "application/json")
}

fn other_fp() -> Fingerprint {
    Fingerprint::of_bytes("POST", "/v1/payments", b"{\"amount\":999}")
}

/// The claim the cases make on `k` with the fingerprint `f`, under the usual lease and ttl.
fn claim<'a>(s: &'a Scope, k: &'a Key, f: &'a Fingerprint) -> Claim<'a> {
    Claim::new(s, k, f, LEASE, TTL)
}

/// `begin_answered_in` on a business key (kept forever, no lease) with the usual answer.
async fn begin_answered<S: TransactionalStore>(
    store: &S,
    tx: &mut sqlx::Transaction<'_, S::Database>,
    (s, k, f): (&Scope, &Key, &Fingerprint),
) -> Outcome {
    store
        .begin_answered_in(
            tx,
            Claim::new(s, k, f, Duration::ZERO, TTL_FOREVER),
            &response(),
        )
        .await
        .expect("begin_answered_in")
}

async fn assert_absent<S: Store>(store: &S, s: &Scope, k: &Key, why: &str) {
    assert!(store.get(s, k).await.expect("get").is_none(), "{why}");
}

/// An answered claim is born completed, exists only once committed, and a rollback
/// leaves the key free; afterwards the same request replays and another one mismatches.
async fn answered_claim_commits_or_vanishes<S: TransactionalStore>(store: S) {
    let (s, k) = (scope(), key("order-answered"));
    let mut tx = store.begin_write().await.expect("begin_write");
    let outcome = begin_answered(&store, &mut tx, (&s, &k, &fp())).await;
    assert!(
        matches!(
            outcome,
            Outcome::Acquired {
                recovered: false,
                ..
            }
        ),
        "{outcome:?}"
    );
    tx.rollback().await.expect("rollback");
    assert_absent(&store, &s, &k, "rolled back: no record").await;

    let mut tx = store.begin_write().await.expect("begin_write");
    let outcome = begin_answered(&store, &mut tx, (&s, &k, &fp())).await;
    assert!(
        matches!(outcome, Outcome::Acquired { .. }),
        "the key was free: {outcome:?}"
    );
    tx.commit().await.expect("commit");
    let record = store
        .get(&s, &k)
        .await
        .expect("get")
        .expect("committed: a record");
    assert!(
        matches!(record.state, idem::RecordState::Completed { .. }),
        "born completed: {record:?}"
    );

    for (fingerprint, expected) in [
        (fp(), Outcome::Replay(response())),
        (other_fp(), Outcome::Mismatch),
    ] {
        let mut tx = store.begin_write().await.expect("begin_write");
        let outcome = begin_answered(&store, &mut tx, (&s, &k, &fingerprint)).await;
        assert_eq!(outcome, expected);
        tx.rollback().await.expect("rollback");
        // Store::begin, outside any transaction, sees the same record.
        assert_eq!(
            store
                .begin(claim(&s, &k, &fingerprint))
                .await
                .expect("begin"),
            expected
        );
    }
}

/// N tasks, one key, each in its own transaction that holds its claim a moment before
/// committing: exactly one `Acquired`, every other one replays the winner's answer.
async fn answered_racers_have_one_winner<S: TransactionalStore>(store: S) {
    const RACERS: usize = 8;
    let (s, k) = (scope(), key("order-answered-race"));
    let barrier = Arc::new(tokio::sync::Barrier::new(RACERS));
    let tasks: Vec<_> = (0..RACERS)
        .map(|_| {
            let (store, s, k, barrier) = (store.clone(), s.clone(), k.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                let mut tx = store.begin_write().await.expect("begin_write");
                let outcome = begin_answered(&store, &mut tx, (&s, &k, &fp())).await;
                tokio::time::sleep(Duration::from_millis(20)).await;
                tx.commit().await.expect("commit");
                outcome
            })
        })
        .collect();
    let mut acquired = 0;
    for task in tasks {
        match task.await.expect("racer") {
            Outcome::Acquired { .. } => acquired += 1,
            Outcome::Replay(answer) => assert_eq!(answer, response()),
            other => panic!("a racer got {other:?}"),
        }
    }
    assert_eq!(acquired, 1, "exactly one racer claims the key");
}

/// Runs the generic cases against one backend.
macro_rules! generic_tests {
    ($backend:ident, $open:path) => {
        mod $backend {
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn answered_claim_commits_or_vanishes() {
                let Some(store) = $open().await else { return };
                super::answered_claim_commits_or_vanishes(store).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn answered_racers_have_one_winner() {
                let Some(store) = $open().await else { return };
                super::answered_racers_have_one_winner(store).await;
            }
        }
    };
}

mod generic {
    use super::*;
    #[cfg(feature = "sqlite")]
    generic_tests!(sqlite, crate::open_sqlite);
    #[cfg(feature = "postgres")]
    generic_tests!(postgres, crate::open_postgres);
    #[cfg(feature = "mysql")]
    generic_tests!(mysql, crate::open_mysql);
}

/// Expands the three cases for one backend.
macro_rules! transactional_tests {
    ($backend:ident, $store:ty, $open:path, $insert_sql:expr, $count_sql:expr, $session_id:path, $waiting:path) => {
        mod $backend {
            use super::*;

            async fn count(store: &$store, order_id: &str) -> i64 {
                sqlx::query_scalar($count_sql)
                    .bind(order_id)
                    .fetch_one(store.pool())
                    .await
                    .expect("count business rows")
            }

            /// A fresh store with the business table beside the records.
            async fn open() -> Option<$store> {
                let store = $open().await?;
                store
                    .pool()
                    .execute(BUSINESS_TABLE)
                    .await
                    .expect("business table");
                Some(store)
            }

            /// The business write: the payment row of order `k`.
            async fn pay(
                tx: &mut sqlx::Transaction<'_, <$store as TransactionalStore>::Database>,
                k: &Key,
            ) {
                sqlx::query($insert_sql)
                    .bind(k.as_str())
                    .bind(500i64)
                    .execute(&mut **tx)
                    .await
                    .expect("business write");
            }

            /// The whole request inside `tx`: claims the fresh key `k`, pays, completes.
            async fn claim_pay_complete(
                store: &$store,
                tx: &mut sqlx::Transaction<'_, <$store as TransactionalStore>::Database>,
                s: &Scope,
                k: &Key,
            ) {
                let Outcome::Acquired { token, .. } = store
                    .begin_in(tx, claim(s, k, &fp()))
                    .await
                    .expect("begin_in")
                else {
                    panic!("a fresh key is acquired inside the transaction")
                };
                pay(tx, k).await;
                store
                    .complete_in(tx, Hold::new(s, k, token), &response())
                    .await
                    .expect("complete_in");
            }

            /// A fresh store and an open transaction that has claimed, paid for and
            /// completed `order`, left for the case to commit or roll back.
            async fn paid_in_open_transaction(
                order: &str,
            ) -> Option<(
                $store,
                Scope,
                Key,
                sqlx::Transaction<'static, <$store as TransactionalStore>::Database>,
            )> {
                let store = open().await?;
                let (s, k) = (scope(), key(order));
                let mut tx = store.pool().begin().await.expect("begin a transaction");
                claim_pay_complete(&store, &mut tx, &s, &k).await;
                Some((store, s, k, tx))
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn rolled_back_transaction_leaves_no_record_and_no_business_row() {
                let Some((store, s, k, tx)) = paid_in_open_transaction("order-rolled-back").await
                else {
                    return;
                };
                tx.rollback().await.expect("rollback");
                assert_absent(&store, &s, &k, "a rolled-back transaction leaves no record").await;
                assert_eq!(count(&store, k.as_str()).await, 0, "and no business row");
                assert!(
                    matches!(
                        store.begin(claim(&s, &k, &fp())).await.expect("begin"),
                        Outcome::Acquired {
                            recovered: false,
                            ..
                        }
                    ),
                    "the key is free for a retry"
                );
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn committed_transaction_leaves_record_and_business_row() {
                let Some((store, s, k, tx)) = paid_in_open_transaction("order-committed").await
                else {
                    return;
                };
                tx.commit().await.expect("commit");
                assert_eq!(
                    count(&store, k.as_str()).await,
                    1,
                    "the business row is there"
                );
                assert_eq!(
                    store.begin(claim(&s, &k, &fp())).await.expect("begin"),
                    Outcome::Replay(response()),
                    "the record is there and replays"
                );
                let mut again = store.pool().begin().await.expect("begin a transaction");
                assert_eq!(
                    store
                        .begin_in(&mut again, claim(&s, &k, &fp()))
                        .await
                        .expect("begin_in"),
                    Outcome::Replay(response()),
                    "inside a transaction too"
                );
                again.rollback().await.expect("rollback");
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn concurrent_duplicate_blocks_then_replays() {
                let Some((store, s, k, first)) = paid_in_open_transaction("order-raced").await
                else {
                    return;
                };
                let store = Arc::new(store);

                let (id_tx, id_rx) = tokio::sync::oneshot::channel();
                let duplicate = {
                    let (store, s, k) = (Arc::clone(&store), s.clone(), k.clone());
                    tokio::spawn(async move {
                        let mut tx = store.pool().begin().await.expect("begin a transaction");
                        let _ = id_tx.send($session_id(&mut tx).await);
                        let outcome = store
                            .begin_in(&mut tx, claim(&s, &k, &fp()))
                            .await
                            .expect("the duplicate's begin_in");
                        if let Outcome::Acquired { .. } = outcome {
                            // The bug this test guards: a second payment.
                            pay(&mut tx, &k).await;
                        }
                        tx.commit().await.expect("commit");
                        outcome
                    })
                };
                let session = id_rx.await.expect("the duplicate started");
                $waiting(&store, session).await;
                assert!(
                    !duplicate.is_finished(),
                    "the duplicate waits while the first transaction is open"
                );
                first.commit().await.expect("commit the first");
                let outcome = duplicate.await.expect("duplicate task");
                assert_eq!(
                    outcome,
                    Outcome::Replay(response()),
                    "after the first commits, the duplicate replays"
                );
                assert_eq!(count(&store, k.as_str()).await, 1, "one business row");
            }
        }
    };
}

#[cfg(feature = "sqlite")]
async fn open_sqlite() -> Option<idem_sql::SqliteStore> {
    Some(support::sqlite_store().await)
}

#[cfg(feature = "postgres")]
async fn open_postgres() -> Option<idem_sql::PostgresStore> {
    Some(support::pg_store(&backend_url("IDEM_TEST_POSTGRES")?).await)
}

#[cfg(feature = "mysql")]
async fn open_mysql() -> Option<idem_sql::MySqlStore> {
    Some(support::mysql_store(&backend_url("IDEM_TEST_MYSQL")?).await)
}

// SQLite shows no waiter from outside (it sleeps in its busy handler), and reading a
// session id would start a snapshot the duplicate could not write from: wait a moment.
#[cfg(feature = "sqlite")]
async fn sqlite_session(_tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>) -> i64 {
    0
}

#[cfg(feature = "sqlite")]
async fn sqlite_waiting(_store: &Arc<idem_sql::SqliteStore>, _session: i64) {
    tokio::time::sleep(Duration::from_millis(500)).await;
}

#[cfg(feature = "postgres")]
async fn postgres_session(tx: &mut sqlx::Transaction<'_, sqlx::Postgres>) -> i64 {
    let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut **tx)
        .await
        .expect("backend pid");
    i64::from(pid)
}

/// Waits until the duplicate's backend waits on a lock (the primary key's).
#[cfg(feature = "postgres")]
async fn postgres_waiting(store: &Arc<idem_sql::PostgresStore>, pid: i64) {
    for _ in 0..200 {
        let waiting: Option<String> =
            sqlx::query_scalar("SELECT wait_event_type FROM pg_stat_activity WHERE pid = $1")
                .bind(i32::try_from(pid).expect("pid"))
                .fetch_optional(store.pool())
                .await
                .expect("pg_stat_activity")
                .flatten();
        if waiting.as_deref() == Some("Lock") {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the duplicate never waited on a lock");
}

#[cfg(feature = "mysql")]
async fn mysql_session(tx: &mut sqlx::Transaction<'_, sqlx::MySql>) -> i64 {
    let id: u64 = sqlx::query_scalar("SELECT CONNECTION_ID()")
        .fetch_one(&mut **tx)
        .await
        .expect("connection id");
    i64::try_from(id).expect("connection id fits")
}

/// Waits until the duplicate's transaction is in LOCK WAIT (on the primary key), or has
/// been inside one statement on the records for a second: on a loaded server MariaDB at
/// times leaves a waiting transaction out of `INNODB_TRX` while its `PROCESSLIST` row
/// shows the statement blocked for seconds.
#[cfg(feature = "mysql")]
async fn mysql_waiting(store: &Arc<idem_sql::MySqlStore>, id: i64) {
    for _ in 0..200 {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT (SELECT COUNT(*) FROM information_schema.INNODB_TRX \
                     WHERE trx_mysql_thread_id = ? AND trx_state = 'LOCK WAIT') \
                  + (SELECT COUNT(*) FROM information_schema.PROCESSLIST \
                     WHERE ID = ? AND INFO LIKE '%idem_records%' AND TIME_MS > 1000)",
        )
        .bind(id)
        .bind(id)
        .fetch_one(store.pool())
        .await
        .expect("the duplicate's wait");
        if waiting > 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let session: Option<Vec<u8>> = sqlx::query_scalar(
        "SELECT CAST(CONCAT_WS(' | ', COMMAND, STATE, TIME_MS, INFO) AS BINARY) \
         FROM information_schema.PROCESSLIST WHERE ID = ?",
    )
    .bind(id)
    .fetch_optional(store.pool())
    .await
    .expect("PROCESSLIST");
    let session = session.map(|row| String::from_utf8_lossy(&row).into_owned());
    panic!("the duplicate never waited on a lock; its session: {session:?}");
}

#[cfg(feature = "sqlite")]
transactional_tests!(
    sqlite,
    idem_sql::SqliteStore,
    open_sqlite,
    "INSERT INTO payments (order_id, amount) VALUES (?, ?)",
    "SELECT COUNT(*) FROM payments WHERE order_id = ?",
    sqlite_session,
    sqlite_waiting
);

#[cfg(feature = "postgres")]
transactional_tests!(
    postgres,
    idem_sql::PostgresStore,
    open_postgres,
    "INSERT INTO payments (order_id, amount) VALUES ($1, $2)",
    "SELECT COUNT(*) FROM payments WHERE order_id = $1",
    postgres_session,
    postgres_waiting
);

#[cfg(feature = "mysql")]
transactional_tests!(
    mysql,
    idem_sql::MySqlStore,
    open_mysql,
    "INSERT INTO payments (order_id, amount) VALUES (?, ?)",
    "SELECT COUNT(*) FROM payments WHERE order_id = ?",
    mysql_session,
    mysql_waiting
);
