//! What idem-pay's backend tests share: a fresh database per case, and the macro that
//! expands each case once per backend.

use idem_test_support::TestDatabase;

/// A fresh database for one test on `backend` (a temp SQLite file, or a PostgreSQL/MySQL
/// database), or `None` (skipped) without its server. The test drops it at its end.
pub(crate) async fn fresh(backend: &str) -> Option<TestDatabase> {
    let var = match backend {
        "sqlite" => "sqlite",
        "postgres" => "IDEM_TEST_POSTGRES",
        _ => "IDEM_TEST_MYSQL",
    };
    TestDatabase::create(var, "idem_pay").await
}

/// `backend_tests!(sqlite, postgres => { case: workers, … })`: a module per backend with a
/// test per case, each `case(url)` on its own fresh database (dropped after) and a runtime
/// of `workers` threads.
macro_rules! backend_tests {
    ($($backend:ident),+ => $cases:tt) => {
        $(
            mod $backend {
                $crate::common::backend_tests!(@cases $backend; $cases);
            }
        )+
    };
    (@cases $backend:ident; { $($case:ident: $workers:tt),+ $(,)? }) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = $workers)]
            async fn $case() {
                let Some(db) = $crate::common::fresh(stringify!($backend)).await else {
                    return;
                };
                super::$case(db.url()).await;
                db.drop_database().await;
            }
        )+
    };
}
pub(crate) use backend_tests;
