//! The trace id in `idem serve`'s JSON logs, as an operator reads them: every line written
//! within a request carries the request's `trace_id`, the one of the client's W3C
//! `traceparent` when it sent a valid one, else a fresh one of its own; a payment's lines
//! carry its order's `key_hash`, the store and never the order id itself.

#[path = "common/serve_harness.rs"]
mod harness;

use std::io::{BufRead, BufReader};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use harness::{idem, listening_addr};
use idem_test_support::unique_name;
use serde_json::{json, Value};

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
/// How long a line may take to reach stdout after its request was answered.
const LINE_MAX: Duration = Duration::from_secs(10);

/// The `trace_id` of the request span a JSON log line was written in, if any.
fn trace_id(line: &Value) -> Option<&str> {
    span(line, "http_request")?["trace_id"].as_str()
}

/// The fields of the span named `name` that a JSON log line was written in, if any.
fn span<'a>(line: &'a Value, name: &str) -> Option<&'a Value> {
    line["spans"]
        .as_array()?
        .iter()
        .find(|span| span["name"] == name)
}

/// The log lines written within the next request (up to its `finished processing request`
/// line, which tower-http writes at `debug` as each request ends).
fn lines_of_one_request(lines: &Receiver<String>) -> Vec<Value> {
    let deadline = Instant::now() + LINE_MAX;
    let mut within = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = lines
            .recv_timeout(left)
            .expect("a log line before the deadline");
        let event: Value = serde_json::from_str(&line).expect("a JSON log line");
        if event["spans"].is_array() {
            let finished = event["fields"]["message"] == "finished processing request";
            within.push(event);
            if finished {
                return within;
            }
        }
    }
}

#[tokio::test]
async fn every_line_within_a_request_carries_its_trace_id() {
    let dir = std::env::temp_dir().join(unique_name("idem_trace_logs"));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let database = format!("sqlite://{}/trace.db", dir.display());
    let mut command = idem();
    command
        .args(["serve", "--database", &database, "--listen", "127.0.0.1:0"])
        .args(["--log-format", "json"])
        .env("RUST_LOG", "info,sqlx=warn,tower_http=debug,idem_pay=debug");
    let mut child = command.spawn().expect("start idem serve");
    let stdout = child.stdout.take().expect("stdout is piped");
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let addr = loop {
        let line = lines
            .recv_timeout(Duration::from_secs(60))
            .expect("idem serve started");
        if let Some(addr) = listening_addr(&line) {
            break addr;
        }
    };
    let client = reqwest::Client::new();
    let open = |account: &'static str, traceparent: Option<&'static str>| {
        let mut request = client
            .post(format!("http://{addr}/v1/accounts"))
            .json(&json!({"account_id": account, "balance": 1}));
        if let Some(traceparent) = traceparent {
            request = request.header("traceparent", traceparent);
        }
        request.send()
    };

    // The client's trace id, on every line of its request.
    assert_eq!(
        open("a", Some(TRACEPARENT))
            .await
            .expect("answered")
            .status(),
        201
    );
    let within = lines_of_one_request(&lines);
    assert!(within.len() >= 2, "the request's start and end: {within:?}");
    for line in &within {
        assert_eq!(trace_id(line), Some(TRACE_ID), "{line}");
    }

    // No traceparent, then an invalid one: an id of the server's own, new for each request.
    let mut own = Vec::new();
    for (account, traceparent) in [("b", None), ("c", Some("00-not-a-trace-01"))] {
        assert_eq!(
            open(account, traceparent).await.expect("answered").status(),
            201
        );
        let within = lines_of_one_request(&lines);
        let id = trace_id(&within[0]).expect("a trace id").to_owned();
        assert_eq!(id.len(), 32, "{id}");
        assert!(id.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
        assert_ne!(id, TRACE_ID);
        for line in &within {
            assert_eq!(trace_id(line), Some(id.as_str()), "{line}");
        }
        own.push(id);
    }
    assert_ne!(own[0], own[1], "each request its own trace id");

    // A payment refused (402: the payer lacks the funds) logs its refusal within its
    // `pay_request` span: the order as a hash, the store, and the client's trace id.
    let order = "order-secret-7";
    let refused = client
        .post(format!("http://{addr}/v1/payments"))
        .header("traceparent", TRACEPARENT)
        .json(&json!({"order_id": order, "payer": "a", "payee": "b", "amount": 5}))
        .send()
        .await
        .expect("answered");
    assert_eq!(refused.status(), 402);
    let within = lines_of_one_request(&lines);
    let refusal = within
        .iter()
        .find(|line| span(line, "pay_request").is_some())
        .expect("a line within the payment's span");
    let pay = span(refusal, "pay_request").expect("the payment's span");
    assert_eq!(pay["key_hash"], idem::key_hash(order).as_str(), "{refusal}");
    assert_eq!(pay["store"], "sqlite", "{refusal}");
    assert_eq!(trace_id(refusal), Some(TRACE_ID), "{refusal}");
    for line in &within {
        assert!(
            !line.to_string().contains(order),
            "the order id in a log line: {line}"
        );
    }

    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(dir);
}
