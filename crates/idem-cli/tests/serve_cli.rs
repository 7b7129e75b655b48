//! `idem serve` as an operator meets it: the defaults, the `IDEM_*` variables, SIGTERM, the
//! hidden test guard. Each test runs the real binary in a temp directory.

#[path = "common/serve_harness.rs"]
mod harness;

use harness::{idem, Cluster, Node};
use idem_test_support::unique_name;
use serde_json::json;

fn temp_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(unique_name("idem_cli"));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

#[tokio::test]
async fn no_flags_creates_the_sqlite_file_under_idem_data() {
    let dir = temp_dir();
    let mut command = idem();
    // Only the port is moved off 8080, through its variable; everything else is default.
    command
        .arg("serve")
        .env("IDEM_LISTEN", "127.0.0.1:0")
        .current_dir(&dir);
    let node = Node::spawn(command);
    assert!(
        dir.join("idem-data/idem.db").is_file(),
        "./idem-data/idem.db created on first run"
    );
    let client = reqwest::Client::new();
    let reply = client
        .post(format!("{}/v1/accounts", node.base))
        .json(&json!({"account_id": "a", "balance": 1}))
        .send()
        .await
        .expect("request");
    assert_eq!(reply.status(), 201);
    assert!(node.terminate().success());
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn variables_configure_database_and_log_format() {
    let dir = temp_dir();
    let database = format!("sqlite://{}/env.db", dir.display());
    let mut command = idem();
    command
        .arg("serve")
        .env("IDEM_DATABASE", &database)
        .env("IDEM_LISTEN", "127.0.0.1:0")
        .env("IDEM_LOG_FORMAT", "json");
    let mut child = command.spawn().expect("start");
    let stdout = child.stdout.take().expect("piped");
    let mut first_line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut first_line)
        .expect("a log line");
    let _ = child.kill();
    let _ = child.wait();
    let event: serde_json::Value =
        serde_json::from_str(&first_line).expect("--log-format json writes JSON lines");
    assert!(event["level"].is_string(), "{event}");
    assert!(dir.join("env.db").is_file(), "IDEM_DATABASE was used");
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn sigterm_drains_and_exits_zero() {
    let cluster = Cluster::sqlite(&[]).await.expect("sqlite always runs");
    // Enough for all 20 payments: any answer but 201 would be a request cut short.
    cluster.open("x", 20).await;
    cluster.open("y", 0).await;
    // Requests in flight when SIGTERM lands are finished, not cut.
    let sends: Vec<_> = (0..20)
        .map(|i| {
            let node = cluster.endpoint(0);
            async move {
                let body =
                    json!({"order_id": format!("t-{i}"), "payer": "x", "payee": "y", "amount": 1});
                node.post("/v1/payments", &body).await
            }
        })
        .collect();
    let handles: Vec<_> = sends.into_iter().map(tokio::spawn).collect();
    let mut cluster = cluster;
    let node = cluster.nodes.remove(0);
    let status = tokio::task::spawn_blocking(move || node.terminate())
        .await
        .expect("terminate");
    assert_eq!(status.code(), Some(0), "SIGTERM exits 0");
    let mut answered = 0;
    for handle in handles {
        // A request that had not reached the node before it stopped listening fails to
        // connect; one that reached it is answered in full.
        if let Ok(Ok(reply)) =
            tokio::time::timeout(std::time::Duration::from_secs(30), handle).await
        {
            assert_eq!(reply.status, 201);
            answered += 1;
        }
    }
    let report = cluster.assert_books_balance().await;
    assert_eq!(report.total_balance, 20);
    let _ = answered;
}

#[test]
fn help_hides_the_test_guard() {
    let output = idem()
        .args(["serve", "--help"])
        .output()
        .expect("run --help");
    let help = String::from_utf8_lossy(&output.stdout);
    assert!(
        help.contains("--database") && help.contains("IDEM_DATABASE"),
        "{help}"
    );
    assert!(help.contains("--redis") && help.contains("--listen") && help.contains("--log-format"));
    assert!(!help.contains("unsafe"), "the test guard is hidden: {help}");
}

/// The guard exists so the chaos checker can prove it catches a double payment: with it, a
/// retried order really is paid twice.
#[tokio::test]
async fn unsafe_test_guard_pays_a_retried_order_twice() {
    let cluster = Cluster::sqlite(&["--unsafe-disable-idempotency"])
        .await
        .expect("sqlite");
    cluster.open("u1", 100).await;
    cluster.open("u2", 0).await;
    let body = json!({"order_id": "twice", "payer": "u1", "payee": "u2", "amount": 30});
    for _ in 0..2 {
        let reply = cluster.post(0, "/v1/payments", &body).await;
        assert_eq!((reply.status, reply.replayed), (201, false));
    }
    assert_eq!(
        cluster.balance("u1").await,
        40,
        "paid twice, as the guard intends"
    );
}
