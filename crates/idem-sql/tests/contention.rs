//! Regression guard for MySQL/InnoDB's duplicate-key locking (and its equivalents): many
//! rounds of 64 racers on one fresh key, over two pools, never surface a deadlock,
//! serialization failure or BUSY to the caller, and each round has exactly one winner.
//! The stores' `retries()` says how often contention was absorbed inside.

mod support;

use std::sync::Arc;
use std::time::Duration;

use idem::{Claim, Fingerprint, Key, Outcome, Scope, Store};
#[cfg(any(feature = "postgres", feature = "mysql"))]
use idem_test_support::backend_url;

const RACERS: usize = 64;
const ROUNDS: usize = 8;
const LEASE: Duration = Duration::from_secs(30);
const TTL: Duration = Duration::from_secs(3600);

/// Runs the rounds on two nodes and returns how many racers won in total.
async fn race<S: Store + 'static>(node_a: Arc<S>, node_b: Arc<S>) -> usize {
    let scope = Scope::new("race").expect("scope");
    let fp = Fingerprint::of_bytes("POST", "/race", b"same");
    let mut winners = 0;
    for round in 0..ROUNDS {
        let key = Key::new(format!("round-{round}")).expect("key");
        let barrier = Arc::new(tokio::sync::Barrier::new(RACERS));
        let tasks: Vec<_> = (0..RACERS)
            .map(|i| {
                let node = Arc::clone(if i % 2 == 0 { &node_a } else { &node_b });
                let (scope, key, barrier) = (scope.clone(), key.clone(), Arc::clone(&barrier));
                tokio::spawn(async move {
                    barrier.wait().await;
                    node.begin(Claim::new(&scope, &key, &fp, LEASE, TTL)).await
                })
            })
            .collect();
        let mut round_winners = 0;
        for task in tasks {
            match task.await.expect("racer") {
                Ok(Outcome::Acquired { .. }) => round_winners += 1,
                Ok(Outcome::InFlight { .. }) => {}
                Ok(other) => panic!("a loser of a running race is InFlight, got {other:?}"),
                Err(err) => panic!("contention surfaced to a caller: {err:?}"),
            }
        }
        assert_eq!(round_winners, 1, "round {round}: exactly one winner");
        winners += round_winners;
    }
    winners
}

/// Races on two nodes of one store and reports how much contention their retries absorbed.
async fn race_and_report<S: Store + 'static>(backend: &str, a: S, b: S, retries: fn(&S) -> u64) {
    let (a, b) = (Arc::new(a), Arc::new(b));
    assert_eq!(race(Arc::clone(&a), Arc::clone(&b)).await, ROUNDS);
    eprintln!(
        "{backend}: contention retries absorbed: {}",
        retries(&a) + retries(&b)
    );
}

/// Expands the race on each backend: `$url` gives the server's URL (`None` when it is not
/// configured), `$open(url)` the first node and `$peer(url, node)` a second one on the
/// same records.
macro_rules! contention_tests {
    ($($feature:literal $name:ident: $store:ty = $url:expr, $open:path, $peer:path;)+) => {$(
        #[cfg(feature = $feature)]
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn $name() {
            let Some(url) = $url else { return };
            let a = $open(&url).await;
            let b = $peer(&url, &a).await;
            race_and_report($feature, a, b, <$store>::retries).await;
        }
    )+};
}

contention_tests! {
    "mysql" mysql_racers_never_see_a_deadlock: idem_sql::MySqlStore = backend_url("IDEM_TEST_MYSQL"), support::mysql_store, support::mysql_peer;
    "postgres" postgres_racers_never_see_contention: idem_sql::PostgresStore = backend_url("IDEM_TEST_POSTGRES"), support::pg_store, support::pg_peer;
    "sqlite" sqlite_racers_never_see_busy: idem_sql::SqliteStore = Some(()), sqlite_store, sqlite_peer;
}

// SQLite needs no server: its store makes its own file, and the peer finds it from the store.
#[cfg(feature = "sqlite")]
async fn sqlite_store(_: &()) -> idem_sql::SqliteStore {
    support::sqlite_store().await
}

#[cfg(feature = "sqlite")]
async fn sqlite_peer(_: &(), store: &idem_sql::SqliteStore) -> idem_sql::SqliteStore {
    support::sqlite_peer(store).await
}
