//! The layer's own cost: requests per second of a trivial handler over real HTTP on
//! loopback, with and without `IdempotencyLayer` (over `idem::MemoryStore`), in one run.
//!
//! Each iteration sends a batch of POSTs, 32 in flight at a time, each with a fresh
//! `Idempotency-Key` (so every guarded request claims, runs and stores). `layer_replay`
//! resends one key, so every request is a replay. The throughput ratio of `layer` to
//! `plain` is the figure in `docs/BENCHMARKS.md`.
//!
//! `layer` keeps its store at a steady size, as a service that purges expired records
//! does: a 1 s TTL and `idem_http::spawn_purger` every 200 ms, so some 50 000 records
//! stay live.
//! `layer_growing_store` keeps every record (24 h TTL, never purged), so the store grows
//! by one record per request to millions by the end of the run: the gap between the two
//! is the cost of a growing in-process heap, not of the layer.
//!
//! The process has a Prometheus recorder installed (`metrics-exporter-prometheus`, with
//! buckets, and its upkeep every 5 s, as `idem serve` and `idem proxy` install it), so the
//! layer's and the store's series are recorded as in production; the handler without the
//! layer records nothing.
//!
//! Run: `cargo bench -p idem-http --bench layer`.

// `criterion_group!` defines an undocumented public function.
#![allow(missing_docs)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::routing::post;
use axum::Router;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use futures::stream::{self, StreamExt};
use http_body_util::BodyExt;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use idem::{MemoryStore, Store};
use idem_http::{spawn_purger, Config, IdempotencyLayer};
use metrics_exporter_prometheus::PrometheusBuilder;

const BATCH: usize = 256;
const IN_FLIGHT: usize = 32;
const BODY: &str = r#"{"item":"book","qty":1}"#;
/// The steady store's TTL and purge period.
const STEADY_TTL: Duration = Duration::from_secs(1);
const PURGE_EVERY: Duration = Duration::from_millis(200);

type HttpClient = Client<HttpConnector, Body>;

async fn trivial() -> (StatusCode, &'static str) {
    (StatusCode::CREATED, "{\"ok\":true}")
}

async fn serve(app: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("bound address");
    tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
    addr
}

/// Sends `BATCH` POSTs, `IN_FLIGHT` at a time; `key(i)` names each one's key.
async fn batch(client: &HttpClient, addr: SocketAddr, key: impl Fn() -> String) {
    let requests = (0..BATCH).map(|_| {
        let request = Request::post(format!("http://{addr}/orders"))
            .header("content-type", "application/json")
            .header("idempotency-key", key())
            .body(Body::from(BODY))
            .expect("a request");
        async move {
            let response = client.request(request).await.expect("answered");
            assert_eq!(response.status(), StatusCode::CREATED);
            response.into_body().collect().await.expect("body");
        }
    });
    stream::iter(requests)
        .buffer_unordered(IN_FLIGHT)
        .collect::<Vec<()>>()
        .await;
}

fn layer_cost(c: &mut Criterion) {
    let exposition = PrometheusBuilder::new()
        .set_buckets(&idem::metrics::LATENCY_BUCKETS_S)
        .expect("buckets")
        .install_recorder()
        .expect("the only recorder of this bench");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    // As `idem serve` does: drains the histograms' samples into buckets between scrapes.
    let upkept = exposition.clone();
    runtime.spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(5));
        loop {
            every.tick().await;
            upkept.run_upkeep();
        }
    });
    let app = || Router::new().route("/orders", post(trivial));
    let (plain, layered, growing) = runtime.block_on(async {
        let plain = serve(app()).await;
        let steady: Arc<dyn Store> = Arc::new(MemoryStore::new());
        spawn_purger(Arc::clone(&steady), PURGE_EVERY);
        let steady = IdempotencyLayer::from_arc(steady, Config::default().ttl(STEADY_TTL));
        let layered = serve(app().layer(steady)).await;
        let growing = IdempotencyLayer::new(MemoryStore::new(), Config::default());
        let growing = serve(app().layer(growing)).await;
        (plain, layered, growing)
    });
    let client: HttpClient = Client::builder(TokioExecutor::new()).build(HttpConnector::new());
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let fresh = || format!("\"bench-{}\"", NEXT.fetch_add(1, Ordering::Relaxed));

    let mut group = c.benchmark_group("http");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function("plain", |b| {
        b.to_async(&runtime).iter(|| batch(&client, plain, fresh));
    });
    group.bench_function("layer", |b| {
        b.to_async(&runtime).iter(|| batch(&client, layered, fresh));
    });
    group.bench_function("layer_growing_store", |b| {
        b.to_async(&runtime).iter(|| batch(&client, growing, fresh));
    });
    // Replays need a record that outlives the run: the growing store's (24 h TTL), first
    // stored by one request alone so no batch ever races to create it.
    let replayed = || "\"bench-replayed\"".to_owned();
    runtime.block_on(async {
        let request = Request::post(format!("http://{growing}/orders"))
            .header("content-type", "application/json")
            .header("idempotency-key", replayed())
            .body(Body::from(BODY))
            .expect("a request");
        let response = client.request(request).await.expect("answered");
        assert_eq!(response.status(), StatusCode::CREATED);
    });
    group.bench_function("layer_replay", |b| {
        b.to_async(&runtime)
            .iter(|| batch(&client, growing, replayed));
    });
    group.finish();
    // The series were recorded: the layer counted its requests.
    assert!(exposition.render().contains("idem_requests_total"));
}

criterion_group!(benches, layer_cost);
criterion_main!(benches);
