//! `idem serve` end to end, as processes: the same scenarios on one SQLite node, on three
//! PostgreSQL nodes and on three MySQL nodes sharing one database, on three PostgreSQL nodes
//! with the Redis replay cache, and on a node whose Redis is down. One body per scenario,
//! expanded per backend by `serve_tests!` (as ripgrep's tests/macros.rs does).
//!
//! PostgreSQL, MySQL and Redis come from `IDEM_TEST_POSTGRES`, `IDEM_TEST_MYSQL` and
//! `IDEM_TEST_REDIS`; without them those tests are skipped (or fail with
//! `IDEM_REQUIRE_BACKENDS=1`). Each test gets a fresh database, dropped after it.

#[path = "common/serve_harness.rs"]
mod harness;
#[path = "common/serve_scenarios.rs"]
mod scenarios;

use harness::Cluster;

/// Expands every scenario as a test on the cluster `$cluster` builds.
macro_rules! serve_tests {
    ($backend:ident => $cluster:expr) => {
        serve_tests!(@each $backend => $cluster;
            fifty_duplicates_on_all_nodes_pay_once,
            same_order_other_parameters_conflicts,
            insufficient_funds_is_not_final,
            refunds_never_exceed_the_payment,
            random_transfers_keep_the_books,
            bad_inputs_are_refused_and_change_nothing,
            accounts_replay_and_service_endpoints_answer,
        );
    };
    (@each $backend:ident => $cluster:expr; $($scenario:ident),+ $(,)?) => {
        mod $backend {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $scenario() {
                    let Some(cluster) = $cluster.await else { return };
                    scenarios::$scenario(&cluster).await;
                }
            )+
        }
    };
}

serve_tests!(sqlite => Cluster::sqlite(&[]));
serve_tests!(postgres => Cluster::postgres(&[]));
serve_tests!(mysql => Cluster::mysql(&[]));
serve_tests!(postgres_redis => Cluster::postgres_redis());
serve_tests!(sqlite_dead_redis => Cluster::sqlite_dead_redis());
