//! Criterion benchmarks of the Redis stores, each beside a baseline of the raw primitive
//! measured in the same run, at 1 and at 32 concurrent callers:
//!
//! - `fresh_key`: `begin` + `complete` on a new key, against two raw round trips
//!   (`SET NX` + `SET`);
//! - `replay`: `begin` answering a replay, against one raw `GET` of a value of the same size;
//! - `tiered_replay`: the two-tier store's replay (from Redis) against the SQL store's own
//!   replay, on SQLite and, when `IDEM_TEST_POSTGRES` is set, PostgreSQL.
//!
//! Callers share one multiplexed connection per store, as the tasks of one node do; with
//! 32 callers one iteration is 32 concurrent operations. Run with
//! `IDEM_TEST_REDIS=redis://127.0.0.1:6379 cargo bench -p idem-redis`; without
//! `IDEM_TEST_REDIS` it prints that it skipped. Results: `docs/BENCHMARKS.md`.

// `criterion_group!` generates an undocumented public function.
#![allow(missing_docs)]

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{
    criterion_group, criterion_main, BenchmarkGroup, BenchmarkId, Criterion, Throughput,
};
use futures::future::join_all;
use idem::{Claim, Fingerprint, Hold, Key, Outcome, Scope, Store, StoredResponse};
use idem_redis::{RedisOptions, RedisStore, ReplayCache, TieredStore};
use idem_test_support::unique_name;
use redis::aio::ConnectionManager;
use tokio::runtime::Runtime;

const CALLERS: [usize; 2] = [1, 32];
const LEASE: Duration = Duration::from_secs(30);
/// Short, so the keys a run leaves on the shared server expire soon after.
const TTL: Duration = Duration::from_secs(600);
const TTL_MS: u64 = 600_000;

fn response() -> StoredResponse {
    StoredResponse::new(
        201,
        r#"{"payment_id":"pay_8f3a","order_id":"order-123","payer":"alice","payee":"bob","amount":500,"status":"succeeded","created_at":"2026-11-23T11:00:00Z"}"#,
    )
    .with_header("content-type", "application/json")
}

fn fp() -> Fingerprint {
    Fingerprint::of_bytes("POST", "/v1/payments", b"{\"amount\":500}")
}

fn key(raw: String) -> Key {
    Key::new(raw).expect("bench keys are valid")
}

/// Times `iters` rounds of `callers` concurrent calls of `op(n)`, `n` unique per call.
async fn rounds<F, Fut>(iters: u64, callers: usize, counter: &AtomicU64, op: F) -> Duration
where
    F: Fn(u64) -> Fut,
    Fut: Future<Output = ()>,
{
    let start = Instant::now();
    for _ in 0..iters {
        join_all((0..callers).map(|_| op(counter.fetch_add(1, Ordering::Relaxed)))).await;
    }
    start.elapsed()
}

/// The request's fingerprint and the answer, made once: the caller (the layer) computes
/// them, not the store, and the raw baseline's value is made once too.
static FP: LazyLock<Fingerprint> = LazyLock::new(fp);
static RESPONSE: LazyLock<StoredResponse> = LazyLock::new(response);

async fn acquire_and_complete<S: Store>(store: &S, scope: &Scope, k: &Key) {
    match store.begin(Claim::new(scope, k, &FP, LEASE, TTL)).await {
        Ok(Outcome::Acquired { token, .. }) => store
            .complete(Hold::new(scope, k, token), &RESPONSE)
            .await
            .expect("complete"),
        other => panic!("a fresh key acquires, got {other:?}"),
    }
}

async fn replay<S: Store>(store: &S, scope: &Scope, k: &Key) {
    match store.begin(Claim::new(scope, k, &FP, LEASE, TTL)).await {
        Ok(Outcome::Replay(_)) => {}
        other => panic!("a completed key replays, got {other:?}"),
    }
}

struct Setup {
    rt: Runtime,
    url: String,
    prefix: String,
    store: RedisStore,
    raw: ConnectionManager,
}

fn setup() -> Option<Setup> {
    let Ok(url) = std::env::var("IDEM_TEST_REDIS") else {
        eprintln!("skipped: IDEM_TEST_REDIS is not set, so there is no Redis to benchmark");
        return None;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let prefix = unique_name("idembench");
    let (store, raw) = rt.block_on(async {
        let store = RedisStore::connect_with(
            &RedisOptions::from_url(&url)
                .expect("a Redis URL")
                .prefix(&prefix),
        )
        .await
        .expect("connect the store");
        let raw = redis::Client::open(url.as_str())
            .expect("url")
            .get_connection_manager()
            .await
            .expect("connect the raw baseline");
        (store, raw)
    });
    Some(Setup {
        rt,
        url,
        prefix,
        store,
        raw,
    })
}

/// Benches `replay` of `key_of(n)` (in scope "bench") on `store` over `callers` tasks.
fn bench_replay<S: Store>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    id: BenchmarkId,
    env: &Setup,
    store: &S,
    counter: &AtomicU64,
    callers: usize,
    key_of: impl Fn(u64) -> Key + Copy,
) {
    let scope = Scope::new("bench").expect("scope");
    group.bench_function(id, |b| {
        b.to_async(&env.rt).iter_custom(|iters| {
            let scope = &scope;
            async move {
                rounds(iters, callers, counter, |n| async move {
                    replay(store, scope, &key_of(n)).await
                })
                .await
            }
        })
    });
}

/// `SET key value PX ttl` on the raw side, as idem's completed records are kept.
async fn raw_set(conn: &mut ConnectionManager, key: &str, value: &[u8]) {
    let () = redis::cmd("SET")
        .arg(key)
        .arg(value)
        .arg("PX")
        .arg(TTL_MS)
        .query_async(conn)
        .await
        .expect("SET");
}

fn fresh_key(c: &mut Criterion, env: &Setup) {
    let scope = Scope::new("bench").expect("scope");
    let counter = Arc::new(AtomicU64::new(0));
    let value = response().encode();
    let mut group = c.benchmark_group("fresh_key");
    for callers in CALLERS {
        group.throughput(Throughput::Elements(callers as u64));
        group.bench_function(BenchmarkId::new("idem", callers), |b| {
            b.to_async(&env.rt).iter_custom(|iters| {
                let (store, scope, counter) = (&env.store, &scope, &counter);
                async move {
                    rounds(iters, callers, counter, |n| async move {
                        acquire_and_complete(store, scope, &key(format!("fresh-{n}"))).await
                    })
                    .await
                }
            })
        });
        group.bench_function(BenchmarkId::new("raw_setnx_set", callers), |b| {
            b.to_async(&env.rt).iter_custom(|iters| {
                let (raw, counter, value) = (&env.raw, &counter, &value);
                let prefix = &env.prefix;
                async move {
                    rounds(iters, callers, counter, |n| {
                        let mut conn = raw.clone();
                        async move {
                            let k = format!("{prefix}:raw:fresh-{n}");
                            let claimed: bool = redis::cmd("SET")
                                .arg(&k)
                                .arg("in-progress")
                                .arg("NX")
                                .arg("PX")
                                .arg(TTL_MS)
                                .query_async::<Option<String>>(&mut conn)
                                .await
                                .expect("SET NX")
                                .is_some();
                            assert!(claimed, "a fresh raw key is claimed");
                            raw_set(&mut conn, &k, value).await;
                        }
                    })
                    .await
                }
            })
        });
    }
    group.finish();
}

fn replay_vs_get(c: &mut Criterion, env: &Setup) {
    let scope = Scope::new("bench").expect("scope");
    let counter = AtomicU64::new(0);
    let value = response().encode();
    let keys = 32u64;
    env.rt.block_on(async {
        let mut raw = env.raw.clone();
        for i in 0..keys {
            acquire_and_complete(&env.store, &scope, &key(format!("replay-{i}"))).await;
            raw_set(&mut raw, &format!("{}:raw:replay-{i}", env.prefix), &value).await;
        }
    });
    let mut group = c.benchmark_group("replay");
    for callers in CALLERS {
        group.throughput(Throughput::Elements(callers as u64));
        let id = BenchmarkId::new("idem", callers);
        let key_of = move |n| key(format!("replay-{}", n % keys));
        bench_replay(&mut group, id, env, &env.store, &counter, callers, key_of);
        group.bench_function(BenchmarkId::new("raw_get", callers), |b| {
            b.to_async(&env.rt).iter_custom(|iters| {
                let (raw, counter, prefix) = (&env.raw, &counter, &env.prefix);
                async move {
                    rounds(iters, callers, counter, |n| {
                        let mut conn = raw.clone();
                        async move {
                            let got: Option<Vec<u8>> = redis::cmd("GET")
                                .arg(format!("{prefix}:raw:replay-{}", n % keys))
                                .query_async(&mut conn)
                                .await
                                .expect("GET");
                            assert!(got.is_some(), "the raw value is there");
                        }
                    })
                    .await
                }
            })
        });
    }
    group.finish();
}

/// The two-tier store's replay (from Redis) against the replay of `truth` alone.
fn tiered_vs_sql<S>(c: &mut Criterion, env: &Setup, name: &str, truth: S)
where
    S: Store + Clone + 'static,
{
    let scope = Scope::new("bench").expect("scope");
    let counter = AtomicU64::new(0);
    let keys = 32u64;
    let cache = ReplayCache::lazy(
        &RedisOptions::from_url(&env.url)
            .expect("a Redis URL")
            .prefix(&env.prefix),
    )
    .expect("cache options");
    let tiered = TieredStore::new(truth.clone(), cache);
    env.rt.block_on(async {
        for i in 0..keys {
            acquire_and_complete(&tiered, &scope, &key(format!("tiered-{name}-{i}"))).await;
        }
    });
    let mut group = c.benchmark_group(format!("tiered_replay_{name}"));
    for callers in CALLERS {
        group.throughput(Throughput::Elements(callers as u64));
        let key_of = move |n| key(format!("tiered-{name}-{}", n % keys));
        let id = BenchmarkId::new("tiered", callers);
        bench_replay(&mut group, id, env, &tiered, &counter, callers, key_of);
        let id = BenchmarkId::new(name, callers);
        bench_replay(&mut group, id, env, &truth, &counter, callers, key_of);
    }
    group.finish();
    let stats = tiered.stats();
    assert!(
        stats.hits > stats.misses,
        "tiered replays hit Redis: {stats:?}"
    );
}

fn benches(c: &mut Criterion) {
    let Some(env) = setup() else { return };
    fresh_key(c, &env);
    replay_vs_get(c, &env);

    // The namespaces are named like the tests', whose next run removes them.
    let sqlite_dir = std::env::temp_dir().join(unique_name("idem_redis_truth"));
    std::fs::create_dir_all(&sqlite_dir).expect("temp dir");
    let sqlite_url = format!("sqlite://{}?mode=rwc", sqlite_dir.join("idem.db").display());
    let sqlite = env
        .rt
        .block_on(idem_sql::SqliteStore::connect(&sqlite_url))
        .expect("SQLite store");
    tiered_vs_sql(c, &env, "sqlite", sqlite);

    if let Ok(pg_url) = std::env::var("IDEM_TEST_POSTGRES") {
        let options = idem_sql::PostgresOptions::from_url(&pg_url)
            .expect("a PostgreSQL URL")
            .max_connections(16)
            .schema(unique_name("idem_redis_truth"));
        let pg = env
            .rt
            .block_on(idem_sql::PostgresStore::connect_with(&options))
            .expect("PostgreSQL store");
        tiered_vs_sql(c, &env, "postgres", pg);
    } else {
        eprintln!("skipped tiered_replay_postgres: IDEM_TEST_POSTGRES is not set");
    }
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
}

criterion_group! {
    name = redis_benches;
    config = config();
    targets = benches
}
criterion_main!(redis_benches);
