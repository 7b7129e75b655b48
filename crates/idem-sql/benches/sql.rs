//! idem against the raw primitive it is built on, per SQL backend, in one run.
//!
//! - fresh key: `begin` + `complete` against two raw round trips of the same kind (an
//!   insert that ignores a duplicate, then an update of that row);
//! - replay: `begin` on a completed key against one raw read of the row;
//!
//! each at 1 and at 32 concurrent callers sharing one pool. A measurement is the wall time
//! of a batch of operations split over the callers, divided by the batch: time per
//! operation, so idem/raw throughput is raw time / idem time.
//!
//! SQLite always runs (a temporary file); PostgreSQL and MySQL run when
//! `IDEM_TEST_POSTGRES` / `IDEM_TEST_MYSQL` are set, each in a schema or database of its
//! own that is dropped at the end. Run: `cargo bench -p idem-sql`.

// criterion_group! makes an undocumented pub fn.
#![allow(missing_docs)]

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use idem::{Claim, Fingerprint, Hold, Key, Outcome, Scope, Store, StoredResponse};
use idem_sql::{
    MySqlOptions, MySqlStore, PostgresOptions, PostgresStore, SqliteOptions, SqliteStore,
};
use idem_test_support::unique_name;
use sqlx::Executor;

const CALLERS: [usize; 2] = [1, 32];
const LEASE: Duration = Duration::from_secs(30);
const TTL: Duration = Duration::from_secs(86_400);
const REPLAY_KEYS: u64 = 256;

type BoxFut = Pin<Box<dyn Future<Output = ()> + Send>>;

/// One backend under test: the idem store and raw statements on the same pool and table.
trait Backend: Send + Sync + 'static {
    fn name(&self) -> &'static str;
    fn store(&self) -> Arc<dyn Store>;
    /// Two raw round trips for a fresh key: insert-or-ignore, then update.
    fn raw_fresh(self: Arc<Self>, key: String) -> BoxFut;
    /// One raw read of a row.
    fn raw_read(self: Arc<Self>, key: String) -> BoxFut;
}

fn fp() -> Fingerprint {
    Fingerprint::of_bytes("POST", "/bench", b"{\"amount\":1}")
}

fn response() -> StoredResponse {
    StoredResponse::new(201, "{\"status\":\"succeeded\",\"amount\":1}")
        .with_header("content-type", "application/json")
}

fn encoded() -> Vec<u8> {
    response().encode()
}

/// `begin` on `key` in the idem side's scope, with the outcome the scope and key it used.
async fn idem_begin(store: &dyn Store, key: String) -> (Scope, Key, Outcome) {
    let (scope, key) = (
        Scope::new("idem").expect("scope"),
        Key::new(key).expect("key"),
    );
    let fingerprint = fp();
    let claim = Claim::new(&scope, &key, &fingerprint, LEASE, TTL);
    let outcome = store.begin(claim).await.expect("begin");
    (scope, key, outcome)
}

async fn idem_fresh(store: Arc<dyn Store>, key: String) {
    match idem_begin(store.as_ref(), key).await {
        (scope, key, Outcome::Acquired { token, .. }) => store
            .complete(Hold::new(&scope, &key, token), &response())
            .await
            .expect("complete"),
        (_, _, other) => panic!("a fresh key acquires, got {other:?}"),
    }
}

async fn idem_replay(store: Arc<dyn Store>, key: String) {
    match idem_begin(store.as_ref(), key).await {
        (_, _, Outcome::Replay(_)) => {}
        (_, _, other) => panic!("a completed key replays, got {other:?}"),
    }
}

/// Runs `iters` operations over `callers` tasks and returns the wall time.
async fn run_batch<F>(iters: u64, callers: usize, op: F) -> Duration
where
    F: Fn(u64) -> BoxFut + Send + Sync + 'static,
{
    let op = Arc::new(op);
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let tasks: Vec<_> = (0..callers)
        .map(|_| {
            let (op, next) = (Arc::clone(&op), Arc::clone(&next));
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= iters {
                        break;
                    }
                    op(i).await;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("bench caller");
    }
    start.elapsed()
}

fn bench_backend(c: &mut Criterion, rt: &tokio::runtime::Runtime, backend: Arc<dyn Backend>) {
    static FRESH: AtomicU64 = AtomicU64::new(0);
    let run = unique_name("b");
    // Completed keys for the replays, on both sides.
    rt.block_on(async {
        let store = backend.store();
        for i in 0..REPLAY_KEYS {
            idem_fresh(Arc::clone(&store), format!("replay-{i}")).await;
            Arc::clone(&backend).raw_fresh(format!("replay-{i}")).await;
        }
    });

    let mut group = c.benchmark_group(format!("{}/fresh", backend.name()));
    for callers in CALLERS {
        let (b1, run1) = (Arc::clone(&backend), run.clone());
        group.bench_function(BenchmarkId::new("idem", callers), |b| {
            b.to_async(rt).iter_custom(|iters| {
                let (store, run) = (b1.store(), run1.clone());
                run_batch(iters, callers, move |_| {
                    let n = FRESH.fetch_add(1, Ordering::Relaxed);
                    Box::pin(idem_fresh(Arc::clone(&store), format!("{run}-f-{n}")))
                })
            })
        });
        let (b2, run2) = (Arc::clone(&backend), run.clone());
        group.bench_function(BenchmarkId::new("raw", callers), |b| {
            b.to_async(rt).iter_custom(|iters| {
                let (backend, run) = (Arc::clone(&b2), run2.clone());
                run_batch(iters, callers, move |_| {
                    let n = FRESH.fetch_add(1, Ordering::Relaxed);
                    Arc::clone(&backend).raw_fresh(format!("{run}-f-{n}"))
                })
            })
        });
    }
    group.finish();

    let mut group = c.benchmark_group(format!("{}/replay", backend.name()));
    for callers in CALLERS {
        let b1 = Arc::clone(&backend);
        group.bench_function(BenchmarkId::new("idem", callers), |b| {
            b.to_async(rt).iter_custom(|iters| {
                let store = b1.store();
                run_batch(iters, callers, move |i| {
                    Box::pin(idem_replay(
                        Arc::clone(&store),
                        format!("replay-{}", i % REPLAY_KEYS),
                    ))
                })
            })
        });
        let b2 = Arc::clone(&backend);
        group.bench_function(BenchmarkId::new("raw", callers), |b| {
            b.to_async(rt).iter_custom(|iters| {
                let backend = Arc::clone(&b2);
                run_batch(iters, callers, move |i| {
                    Arc::clone(&backend).raw_read(format!("replay-{}", i % REPLAY_KEYS))
                })
            })
        });
    }
    group.finish();
}

// The raw side writes rows of the same table in the same shape, under scope "raw".

/// A benchmarked backend over `$store`, with the raw side's statements in its dialect: the
/// insert binds the key then the fingerprint, the update the response then the key, the
/// read the key.
macro_rules! sql_backend {
    ($backend:ident($store:ty), $name:literal, $insert:literal, $update:literal, $read:literal) => {
        struct $backend($store);

        impl Backend for $backend {
            fn name(&self) -> &'static str {
                $name
            }
            fn store(&self) -> Arc<dyn Store> {
                Arc::new(self.0.clone())
            }
            fn raw_fresh(self: Arc<Self>, key: String) -> BoxFut {
                Box::pin(async move {
                    let pool = self.0.pool();
                    sqlx::query($insert)
                        .bind(&key)
                        .bind(&fp().as_bytes()[..])
                        .execute(pool)
                        .await
                        .expect("raw insert");
                    sqlx::query($update)
                        .bind(encoded())
                        .bind(&key)
                        .execute(pool)
                        .await
                        .expect("raw update");
                })
            }
            fn raw_read(self: Arc<Self>, key: String) -> BoxFut {
                Box::pin(async move {
                    let row: Option<Vec<u8>> = sqlx::query_scalar($read)
                        .bind(&key)
                        .fetch_optional(self.0.pool())
                        .await
                        .expect("raw read")
                        .flatten();
                    assert!(row.is_some(), "raw row exists");
                })
            }
        }
    };
}

sql_backend!(
    Sqlite(SqliteStore),
    "sqlite",
    "INSERT INTO idem_records (scope, idem_key, fingerprint, token, state, lease_until, response, created_at, expires_at) VALUES ('raw', ?1, ?2, 1, 0, 0, NULL, 0, 9000000000000) ON CONFLICT (scope, idem_key) DO NOTHING",
    "UPDATE idem_records SET state = 1, response = ?1 WHERE scope = 'raw' AND idem_key = ?2",
    "SELECT response FROM idem_records WHERE scope = 'raw' AND idem_key = ?1"
);

sql_backend!(
    Postgres(PostgresStore),
    "postgres",
    "INSERT INTO idem_records (scope, idem_key, fingerprint, token, state, lease_until, response, created_at, expires_at) VALUES ('raw', $1, $2, 1, 0, 0, NULL, 0, 9000000000000) ON CONFLICT (scope, idem_key) DO NOTHING",
    "UPDATE idem_records SET state = 1, response = $1 WHERE scope = 'raw' AND idem_key = $2",
    "SELECT response FROM idem_records WHERE scope = 'raw' AND idem_key = $1"
);

sql_backend!(
    MySql(MySqlStore),
    "mysql",
    "INSERT IGNORE INTO idem_records (scope, idem_key, fingerprint, token, state, lease_until, response, created_at, expires_at) VALUES ('raw', ?, ?, 1, 0, 0, NULL, 0, 9000000000000)",
    "UPDATE idem_records SET state = 1, response = ? WHERE scope = 'raw' AND idem_key = ?",
    "SELECT response FROM idem_records WHERE scope = 'raw' AND idem_key = ?"
);

/// Benches `$backend` on the server whose URL is in `$env`, in a fresh namespace (set by
/// the options' `$namespace` method, named after `$prefix`) that `$drop` removes after.
macro_rules! bench_on_server {
    ($c:expr, $rt:expr, $env:literal, $backend:ident($store:ty, $options:ty),
        $namespace:ident($prefix:literal), $drop:literal) => {
        match std::env::var($env) {
            Ok(url) if !url.is_empty() => {
                let name = unique_name($prefix);
                let options = <$options>::from_url(&url)
                    .expect("a database URL")
                    .max_connections(MAX_CONNECTIONS)
                    .$namespace(name.clone());
                let store = $rt
                    .block_on(<$store>::connect_with(&options))
                    .expect("open the store");
                let pool = store.pool().clone();
                bench_backend($c, &$rt, Arc::new($backend(store)));
                $rt.block_on(async {
                    let _ = pool.execute(format!($drop, name).as_str()).await;
                    pool.close().await;
                });
            }
            _ => eprintln!("skipped {}: {} is not set", stringify!($backend), $env),
        }
    };
}

/// The pool size of every benchmarked store.
const MAX_CONNECTIONS: u32 = 32;

fn benches(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");

    let dir = std::env::temp_dir().join(unique_name("idem_sql_bench"));
    std::fs::create_dir_all(&dir).expect("bench dir");
    let url = format!("sqlite://{}?mode=rwc", dir.join("bench.db").display());
    let sqlite = rt
        .block_on(SqliteStore::connect_with(
            &SqliteOptions::from_url(&url)
                .expect("a SQLite URL")
                .max_connections(MAX_CONNECTIONS),
        ))
        .expect("open SQLite");
    bench_backend(c, &rt, Arc::new(Sqlite(sqlite)));
    let _ = std::fs::remove_dir_all(&dir);

    bench_on_server!(
        c,
        rt,
        "IDEM_TEST_POSTGRES",
        Postgres(PostgresStore, PostgresOptions),
        schema("idem_sql_bench_pg"),
        "DROP SCHEMA \"{}\" CASCADE"
    );
    bench_on_server!(
        c,
        rt,
        "IDEM_TEST_MYSQL",
        MySql(MySqlStore, MySqlOptions),
        database("idem_sql_bench_my"),
        "DROP DATABASE `{}`"
    );
}

criterion_group! {
    name = sql;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = benches
}
criterion_main!(sql);
