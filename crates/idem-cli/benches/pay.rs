//! A quick load run of `idem serve` (not a criterion bench: a fixed workload timed end to
//! end). One node per backend, started as a process from the release binary; 32 concurrent
//! clients pay 4 000 fresh orders between 100 accounts, then send the same 4 000 again
//! (all replays). The baseline, measured in the same run, is `GET /healthz`: the HTTP
//! round trip with no database.
//!
//! Run: `cargo bench -p idem-cli --bench pay` (PostgreSQL and Redis rows need
//! `IDEM_TEST_POSTGRES` and `IDEM_TEST_REDIS`). Figures: docs/BENCHMARKS.md.

#[path = "../tests/common/serve_harness.rs"]
mod harness;

use std::time::{Duration, Instant};

use harness::{Cluster, Endpoint};
use rand::{Rng, SeedableRng};
use serde_json::json;

const CLIENTS: usize = 32;
const PAYMENTS: usize = 4_000;
const ACCOUNTS: usize = 100;

struct Rate {
    per_s: f64,
    median: Duration,
}

/// Runs `requests` split over `CLIENTS` tasks; each request must answer `status`.
async fn run(
    node: &Endpoint,
    requests: Vec<(reqwest::Method, String, Option<serde_json::Value>)>,
    status: u16,
    replayed: Option<bool>,
) -> Rate {
    let chunks: Vec<Vec<_>> = (0..CLIENTS)
        .map(|c| requests.iter().skip(c).step_by(CLIENTS).cloned().collect())
        .collect();
    let started = Instant::now();
    let tasks: Vec<_> = chunks
        .into_iter()
        .map(|chunk| {
            let node = node.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(chunk.len());
                for (method, path, body) in chunk {
                    let t = Instant::now();
                    let reply = match body {
                        Some(body) => node.post(&path, &body).await,
                        None => node.send(method, &path, None, &[]).await,
                    };
                    latencies.push(t.elapsed());
                    assert_eq!(reply.status, status, "{}", reply.text());
                    if let Some(replayed) = replayed {
                        assert_eq!(reply.replayed, replayed);
                    }
                }
                latencies
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.expect("client task"));
    }
    let elapsed = started.elapsed();
    latencies.sort();
    Rate {
        per_s: requests.len() as f64 / elapsed.as_secs_f64(),
        median: latencies[latencies.len() / 2],
    }
}

async fn measure(name: &str, cluster: Cluster) {
    let node = cluster.endpoint(0);
    for a in 0..ACCOUNTS {
        cluster.open(&format!("acct-{a}"), 1_000_000_000).await;
    }
    let health: Vec<_> = (0..PAYMENTS)
        .map(|_| (reqwest::Method::GET, "/healthz".to_owned(), None))
        .collect();
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let payments: Vec<_> = (0..PAYMENTS)
        .map(|n| {
            let payer = rng.gen_range(0..ACCOUNTS);
            let payee = (payer + rng.gen_range(1..ACCOUNTS)) % ACCOUNTS;
            let body = json!({
                "order_id": format!("bench-{n}"),
                "payer": format!("acct-{payer}"),
                "payee": format!("acct-{payee}"),
                "amount": rng.gen_range(1..1000),
            });
            (reqwest::Method::POST, "/v1/payments".to_owned(), Some(body))
        })
        .collect();
    let baseline = run(&node, health, 200, None).await;
    let fresh = run(&node, payments.clone(), 201, Some(false)).await;
    let replayed = run(&node, payments, 201, Some(true)).await;
    cluster.assert_books_balance().await;
    println!(
        "| {name} | {:.0} | {:.0} ({:.2} ms) | {:.0} ({:.2} ms) | {:.3} | {:.3} |",
        baseline.per_s,
        fresh.per_s,
        fresh.median.as_secs_f64() * 1e3,
        replayed.per_s,
        replayed.median.as_secs_f64() * 1e3,
        fresh.per_s / baseline.per_s,
        replayed.per_s / baseline.per_s,
    );
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing: run only then.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        println!("| backend (1 node) | GET /healthz/s (baseline) | fresh payments/s (median) | replayed payments/s (median) | fresh / baseline | replayed / baseline |");
        println!("|---|---|---|---|---|---|");
        if let Some(cluster) = Cluster::sqlite(&[]).await {
            measure("SQLite", cluster).await;
        }
        if std::env::var("IDEM_TEST_POSTGRES").is_ok() {
            if let Some(cluster) = Cluster::postgres_nodes(1, &[]).await {
                measure("PostgreSQL", cluster).await;
            }
            if std::env::var("IDEM_TEST_REDIS").is_ok() {
                if let Some(cluster) = Cluster::postgres_redis_nodes(1).await {
                    measure("PostgreSQL + Redis", cluster).await;
                }
            }
        }
        if std::env::var("IDEM_TEST_MYSQL").is_ok() {
            if let Some(cluster) = Cluster::mysql_nodes(1, &[]).await {
                measure("MariaDB", cluster).await;
            }
        }
    });
}
