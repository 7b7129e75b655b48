//! What an operator scrapes: `idem serve`'s `/metrics`, and `idem proxy`'s admin listener
//! (`/metrics`, `/healthz`, `/readyz`, apart from the guarded listener), each after one
//! request of each idempotency outcome, counted once under the names the README lists.

#[path = "common/proxy_harness.rs"]
mod proxy_harness;
#[path = "common/serve_harness.rs"]
mod serve_harness;

use std::io::{BufRead, BufReader, Read};

use idem_http::testing::{
    assert_one_of_each_outcome, counting_app, one_request_of_each_outcome, sample,
    serve_counting_app, Target,
};
use proxy_harness::{proxy_command, Process, TempDir};
use serde_json::json;
use serve_harness::Node;

async fn scrape(url: &str) -> String {
    let response = reqwest::get(url).await.expect("scraped");
    assert_eq!(response.status(), 200, "{url}");
    response.text().await.expect("the exposition")
}

/// `idem serve`: a fresh payment, a duplicate sent while it runs, a replay and the same
/// `order_id` with another amount. A duplicate in flight waits on the order's row and
/// replays (DESIGN §2, transactional mode), so it counts as `replayed`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_counts_each_outcome_under_the_documented_names() {
    let dir = TempDir::new();
    let database = format!("sqlite://{}", dir.0.join("pay.db").display());
    let node = Node::start(&database, &[], None);
    let client = reqwest::Client::new();
    for (account, balance) in [("alice", 1_000), ("bob", 0)] {
        let opened = client
            .post(format!("{}/v1/accounts", node.base))
            .json(&json!({"account_id": account, "balance": balance}))
            .send()
            .await
            .expect("opened");
        assert_eq!(opened.status(), 201);
    }
    let pay = |amount: i64| {
        client
            .post(format!("{}/v1/payments", node.base))
            .json(&json!({"order_id": "o-1", "payer": "alice", "payee": "bob", "amount": amount}))
            .send()
    };
    let (first, duplicate) = tokio::join!(pay(10), pay(10));
    let mut statuses = [first, duplicate].map(|r| r.expect("answered").status().as_u16());
    statuses.sort_unstable();
    assert_eq!(statuses, [201, 201]);
    assert_eq!(pay(10).await.expect("replayed").status(), 201);
    assert_eq!(pay(11).await.expect("refused").status(), 422);

    let text = scrape(&format!("{}/metrics", node.base)).await;
    let payments = |outcome: &str| {
        let series = format!(
            "idem_pay_requests_total{{method=\"POST\",route=\"/v1/payments\",outcome=\"{outcome}\"}}"
        );
        sample(&text, &series).unwrap_or(0.0)
    };
    assert_eq!(payments("executed"), 1.0, "{text}");
    assert_eq!(payments("replayed"), 2.0, "{text}");
    assert_eq!(payments("mismatch"), 1.0, "{text}");
    assert_eq!(payments("in_flight"), 0.0, "{text}");
    // The store's own series, through the same recorder.
    assert!(
        text.contains("idem_store_operation_duration_seconds_bucket{store=\"sqlite\",op=\"begin_answered_in\""),
        "{text}"
    );
    assert_eq!(
        sample(&text, "idem_pay_db_retries_total"),
        Some(0.0),
        "{text}"
    );
    assert!(node.terminate().success());
}

/// `idem proxy --admin-listen`: the four outcomes counted once on the admin `/metrics`;
/// `/healthz` and `/readyz` answer there; neither listener serves the other's routes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxys_admin_listener_counts_each_outcome_and_stays_apart() {
    let upstream = serve_counting_app(counting_app()).await;
    let upstream_url = format!("http://{}", upstream.addr);
    let dir = TempDir::new();
    let extra = ["--memory", "--admin-listen", "127.0.0.1:0"].map(str::to_owned);
    let mut child = proxy_command(&dir.0, &upstream_url, &extra)
        .env("RUST_LOG", "warn")
        .spawn()
        .expect("start idem proxy");
    let (proxy_url, admin_url) = both_addresses(&mut child);
    let _proxy = Process(child);

    one_request_of_each_outcome(&proxy_url).await;
    let text = scrape(&format!("{admin_url}/metrics")).await;
    assert_one_of_each_outcome(&text);

    let get = |url: String| async move { reqwest::get(url).await.expect("answered") };
    assert_eq!(get(format!("{admin_url}/healthz")).await.status(), 200);
    assert_eq!(get(format!("{admin_url}/readyz")).await.status(), 200);
    let runs = Target::new(upstream_url.clone()).runs().await;
    // The guarded listener forwards `/metrics` to the upstream, which has no such route.
    assert_eq!(get(format!("{proxy_url}/metrics")).await.status(), 404);
    // The admin listener forwards nothing.
    let admin_post = reqwest::Client::new()
        .post(format!("{admin_url}/orders"))
        .header("idempotency-key", "\"admin\"")
        .body("{}")
        .send()
        .await
        .expect("answered");
    assert_eq!(admin_post.status(), 404);
    assert_eq!(Target::new(upstream_url).runs().await, runs, "nothing ran");
}

/// Reads the proxy's `listening on URL` and `admin listening on URL` lines.
fn both_addresses(child: &mut std::process::Child) -> (String, String) {
    let stdout = child.stdout.take().expect("stdout is piped");
    let mut lines = BufReader::new(stdout);
    let (mut proxy, mut admin) = (None, None);
    let mut line = String::new();
    while proxy.is_none() || admin.is_none() {
        line.clear();
        let read = lines.read_line(&mut line).expect("read the proxy's stdout");
        assert!(read > 0, "the proxy exited before printing its addresses");
        let line = line.trim();
        if let Some(url) = line.strip_prefix("admin listening on ") {
            admin = Some(url.to_owned());
        } else if let Some(url) = line.strip_prefix("listening on ") {
            proxy = Some(url.to_owned());
        }
    }
    // Keep draining stdout so the proxy never blocks on a full pipe.
    std::thread::spawn(move || {
        let _ = lines.read_to_end(&mut Vec::new());
    });
    (proxy.unwrap_or_default(), admin.unwrap_or_default())
}

/// `/readyz` follows the store: 200 while Redis answers, 503 `not_ready` once the proxy's
/// connections to it are cut and nothing listens any more; `/healthz` stays 200.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_is_503_when_the_store_does_not_answer() {
    let Some(redis_url) = idem_test_support::backend_url("IDEM_TEST_REDIS") else {
        return;
    };
    let relay = idem_chaos::relay::Relay::start(&redis_url)
        .await
        .expect("a relay to Redis");
    let dir = TempDir::new();
    let extra = [
        "--redis",
        relay.url(),
        "--ttl-secs",
        "60",
        "--admin-listen",
        "127.0.0.1:0",
        "--ready-timeout-ms",
        "500",
    ]
    .map(str::to_owned);
    let mut child = proxy_command(&dir.0, "http://127.0.0.1:9", &extra)
        .env("RUST_LOG", "error")
        .spawn()
        .expect("start idem proxy");
    let (_proxy_url, admin_url) = both_addresses(&mut child);
    let _proxy = Process(child);
    let status = |path: &'static str| {
        let url = format!("{admin_url}{path}");
        async move { reqwest::get(url).await.expect("answered") }
    };
    assert_eq!(status("/readyz").await.status(), 200);
    drop(relay);
    let refused = status("/readyz").await;
    assert_eq!(refused.status(), 503);
    let problem: serde_json::Value = refused.json().await.expect("problem+json");
    assert_eq!(problem["code"], "not_ready");
    assert_eq!(status("/healthz").await.status(), 200);
}
