//! The one-statement-per-payment baseline does the whole payment's work: run briefly on a
//! real database with a hot-account mix, its tables are then read back with SQL of the
//! test's own — every reported payment has its payment row and its two ledger rows, every
//! balance is its opening plus its ledger, and no money appeared or vanished.

use std::time::Duration;

use idem_bench::baseline::{self, Shape, OPENING_BALANCE};
use idem_bench::{Pace, Skew};
use idem_test_support::{Engine, TestDatabase};

const ACCOUNTS: usize = 40;

/// The counts the checks read, each 0 when the baseline did its work.
struct Found {
    payments: i64,
    ledger_rows: i64,
    balance_total: i64,
    /// Payment rows without the payer's debit or the payee's credit in the ledger.
    unmatched_payments: i64,
    /// Accounts whose balance is not their opening balance plus their ledger.
    unmatched_accounts: i64,
    /// Accounts whose balance moved.
    moved_accounts: i64,
    /// Payments to the hot payees a0, a1, a2.
    to_hot: i64,
}

/// Runs the same read-back queries on any engine's pool.
macro_rules! read_back {
    ($pool:expr, $int:literal) => {{
        let pool = $pool;
        // The opening balance is a constant of the bench, written into the SQL as a number.
        let opening = OPENING_BALANCE;
        let count = |sql: String| async move {
            let (n,): (i64,) = sqlx::query_as(&sql)
                .fetch_one(pool)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
            n
        };
        Found {
            payments: count("SELECT COUNT(*) FROM payments".to_owned()).await,
            ledger_rows: count("SELECT COUNT(*) FROM ledger".to_owned()).await,
            balance_total: count(format!(
                "SELECT CAST(SUM(balance) AS {}) FROM accounts",
                $int
            ))
            .await,
            unmatched_payments: count(

                "SELECT COUNT(*) FROM payments p WHERE (\
                 NOT EXISTS (SELECT 1 FROM ledger l WHERE l.payment_id = p.payment_id AND l.account_id = p.payer AND l.delta = -p.amount) \
                 OR NOT EXISTS (SELECT 1 FROM ledger l WHERE l.payment_id = p.payment_id AND l.account_id = p.payee AND l.delta = p.amount) \
                 OR (SELECT COUNT(*) FROM ledger l WHERE l.payment_id = p.payment_id) <> 2)".to_owned()
            )
            .await,
            unmatched_accounts: count(format!(
                "SELECT COUNT(*) FROM accounts a WHERE a.balance <> {opening} + COALESCE((SELECT SUM(l.delta) FROM ledger l WHERE l.account_id = a.id), 0)"
            ))
            .await,
            moved_accounts: count(format!(
                "SELECT COUNT(*) FROM accounts WHERE balance <> {opening}"
            ))
            .await,
            to_hot: count(
                "SELECT COUNT(*) FROM payments WHERE payee IN ('a0', 'a1', 'a2')".to_owned()
            )
            .await,
        }
    }};
}

async fn statement_baseline_writes_every_row_and_conserves_money(var: &str) {
    let Some(db) = TestDatabase::create(var, "idem_bench_stmt_test").await else {
        return;
    };
    let pace = Pace {
        clients: 8,
        rate: None,
        duration: Duration::from_secs(2),
        requests: None,
    };
    let skew = Skew::Hot {
        payees: 3,
        share: 0.8,
    };
    let report = baseline::run_on(db.url(), Shape::Statement, ACCOUNTS, skew, pace, true)
        .await
        .unwrap_or_else(|e| panic!("the statement baseline runs on {var}: {e}"));
    assert_eq!(report.shape, Shape::Statement);
    assert!(
        report.errors.is_empty(),
        "no failed payment, no shortfall: {:?}",
        report.errors
    );
    let paid = i64::try_from(report.figures.requests).expect("a count");
    assert!(paid >= 50, "some payments were made on {var}: {paid}");

    let found = match db.engine() {
        Engine::Postgres => {
            let pool = sqlx::PgPool::connect(db.url()).await.expect("connect");
            let found = read_back!(&pool, "BIGINT");
            pool.close().await;
            found
        }
        Engine::MySql => {
            let pool = sqlx::MySqlPool::connect(db.url()).await.expect("connect");
            let found = read_back!(&pool, "SIGNED");
            pool.close().await;
            found
        }
        Engine::Sqlite => {
            let pool = sqlx::SqlitePool::connect(db.url()).await.expect("connect");
            let found = read_back!(&pool, "BIGINT");
            pool.close().await;
            found
        }
    };
    assert_eq!(found.payments, paid, "one payment row per payment on {var}");
    assert_eq!(
        found.ledger_rows,
        2 * paid,
        "two ledger rows per payment on {var}"
    );
    assert_eq!(
        found.unmatched_payments, 0,
        "each payment's rows are its own on {var}"
    );
    assert_eq!(
        found.balance_total,
        i64::try_from(ACCOUNTS).expect("small") * OPENING_BALANCE,
        "no money appeared or vanished on {var}"
    );
    assert_eq!(
        found.unmatched_accounts, 0,
        "balances follow the ledger on {var}"
    );
    assert!(found.moved_accounts >= 3, "money moved on {var}");
    let hot_share = found.to_hot as f64 / paid as f64;
    assert!(
        (0.65..0.95).contains(&hot_share),
        "about 80 % of payments went to the 3 hot payees on {var}: {hot_share:.2}"
    );
    db.drop_database().await;
}

#[tokio::test]
async fn statement_baseline_on_postgres() {
    statement_baseline_writes_every_row_and_conserves_money("IDEM_TEST_POSTGRES").await;
}

#[tokio::test]
async fn statement_baseline_on_mysql() {
    statement_baseline_writes_every_row_and_conserves_money("IDEM_TEST_MYSQL").await;
}

#[tokio::test]
async fn statement_baseline_on_sqlite() {
    statement_baseline_writes_every_row_and_conserves_money("sqlite").await;
}
