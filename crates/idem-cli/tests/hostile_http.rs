//! Hostile HTTP clients against `idem serve` (on SQLite) and `idem proxy` (its default
//! SQLite store, in front of a counting upstream), each the real `idem` binary: headers or a
//! body trickled a byte at a time, an oversized head, idle connections past the cap. Every
//! case: the client gets its answer or is cut off, other clients are served meanwhile, and
//! nothing runs. (Hostile JSON bodies are in `hostile_json.rs`.)
//!
//! The slow clients are raw TCP streams. Limits are set short (about a second) and every
//! timing assertion has a wide margin.

#[path = "common/serve_harness.rs"]
mod harness;
#[path = "common/hostile_harness.rs"]
mod hostile;
#[path = "common/proxy_harness.rs"]
mod proxy_harness;

use std::time::{Duration, Instant};

use hostile::{Conn, Kind, Subject, PATIENCE};
use idem_http::testing::unique_key;
use serde_json::json;

/// A client trickling its request head one byte every 100 ms is disconnected once the
/// header timeout (1 s) has passed, while other clients are answered throughout.
async fn trickled_headers_are_cut_off_while_others_are_served(kind: Kind) {
    let subject = Subject::start(kind, &["--header-timeout-ms", "1000"]).await;
    let started = Instant::now();
    let mut slow = Conn::open(&subject.addr).await;
    let head = "GET /healthz HTTP/1.1\r\nhost: idem\r\nx-slow: ".bytes();
    let trickle = slow.trickle(
        head.chain(std::iter::repeat(b'a')),
        Duration::from_millis(100),
    );
    let cut = tokio::spawn(async move {
        slow.closed().await;
        started.elapsed()
    });
    let mut probes = 0;
    while !cut.is_finished() {
        subject.assert_serves_others().await;
        probes += 1;
        assert!(
            started.elapsed() < PATIENCE,
            "the trickling client was never cut off"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let cut_after = cut.await.expect("join");
    trickle.abort();
    assert!(
        probes >= 3,
        "others were served while it trickled: {probes}"
    );
    assert!(
        cut_after >= Duration::from_millis(800),
        "cut off only once the header timeout passed, not at {cut_after:?}"
    );
    subject.assert_serves_others().await;
}

/// A request head over `--max-header-bytes` is answered 431, and nothing runs.
async fn oversized_headers_are_431(kind: Kind) {
    let subject = Subject::start(kind, &["--max-header-bytes", "4096"]).await;
    let id = unique_key("big-head");
    let body = subject.guarded_body(&id);
    let head = subject.guarded_head(&id, body.len());
    // One header pushes the head past the limit (the whole head still fits the server's
    // first read, so the answer is not lost to a reset).
    let big = format!("x-big: {}\r\n\r\n", "b".repeat(5000));
    let head = head.replacen("\r\n\r\n", &format!("\r\n{big}"), 1);
    let request = format!("{head}{body}");
    let response = Conn::open(&subject.addr)
        .await
        .exchange(&request, "the oversized head")
        .await;
    assert_eq!(response.status, 431, "{}", response.text());
    subject.assert_nothing_ran(&id).await;
    subject.assert_serves_others().await;
}

/// With `--max-clients 4`: one active client and three idle connections fill the cap; a
/// fifth connection is closed unanswered, while the active client keeps being answered on
/// its connection. The idle ones, and then the kept-alive one, are closed by the header
/// timeout, and the cap frees up.
async fn idle_connections_fill_the_cap_then_new_ones_are_refused(kind: Kind) {
    let subject =
        Subject::start(kind, &["--max-clients", "4", "--header-timeout-ms", "3000"]).await;
    let probe = format!(
        "GET {} HTTP/1.1\r\nhost: idem\r\n\r\n",
        subject.probe_path()
    );
    let mut active = Conn::open(&subject.addr).await;
    assert_eq!(
        active.exchange(&probe, "the active client").await.status,
        200
    );

    let mut idle = Vec::new();
    for _ in 0..3 {
        idle.push(Conn::open(&subject.addr).await);
    }
    // Let the server accept them (the kernel completes a connect before the accept).
    tokio::time::sleep(Duration::from_millis(300)).await;

    let mut refused = Conn::open(&subject.addr).await;
    // The send may already fail on a closed connection; the answer is what counts.
    let _ = refused.try_send(probe.as_bytes()).await;
    assert!(
        refused.response().await.is_none(),
        "a connection past the cap is closed unanswered"
    );

    for _ in 0..3 {
        let response = active.exchange(&probe, "the active client").await;
        assert_eq!(response.status, 200);
    }

    // The idle connections do not hold their slots for ever, nor does the kept-alive one
    // once it has been idle as long after its last answer.
    for conn in &mut idle {
        conn.closed().await;
    }
    active.closed().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut later = Conn::open(&subject.addr).await;
    let response = later.exchange(&probe, "once slots are free").await;
    assert_eq!(response.status, 200);
}

/// A guarded request whose body trickles in slower than `--body-timeout-ms` is answered
/// 408 `request_timeout` and nothing runs; sent whole afterwards, the same request runs.
async fn a_body_slower_than_its_deadline_is_408_and_nothing_runs(kind: Kind) {
    let subject = Subject::start(kind, &["--body-timeout-ms", "1000"]).await;
    let id = unique_key("slow-body");
    let body = subject.guarded_body(&id);
    // At 100 ms a byte the body would take several seconds.
    assert!(body.len() >= 40, "{body}");
    let started = Instant::now();
    let mut conn = Conn::open(&subject.addr).await;
    conn.send(subject.guarded_head(&id, body.len()).as_bytes())
        .await;
    let whole_body_after = Duration::from_millis(100 * body.len() as u64);
    let trickle = conn.trickle(body.into_bytes().into_iter(), Duration::from_millis(100));
    let response = conn
        .response()
        .await
        .expect("answered before the body is complete");
    let answered_after = started.elapsed();
    response.assert_problem(408, "request_timeout");
    assert!(
        answered_after >= Duration::from_millis(800),
        "answered once the deadline passed, not at {answered_after:?}"
    );
    assert!(
        answered_after < whole_body_after,
        "answered at {answered_after:?}, while the body was still coming"
    );
    // The server hangs up: the rest of the body has no request to belong to.
    conn.closed().await;
    trickle.abort();
    subject.assert_nothing_ran(&id).await;
    subject.assert_guarded_request_runs(&id).await;
}

/// Ties each scenario to `idem serve` and `idem proxy`.
macro_rules! on_serve_and_proxy {
    ($($scenario:ident),* $(,)?) => {
        mod serve {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    super::$scenario(super::Kind::Serve).await;
                }
            )*
        }
        mod proxy {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    super::$scenario(super::Kind::Proxy).await;
                }
            )*
        }
    };
}

on_serve_and_proxy!(
    trickled_headers_are_cut_off_while_others_are_served,
    oversized_headers_are_431,
    idle_connections_fill_the_cap_then_new_ones_are_refused,
    a_body_slower_than_its_deadline_is_408_and_nothing_runs,
);

/// A body `idem proxy` streams to the upstream unguarded (`--key-optional`, no key) that
/// misses its deadline is 408 `request_timeout` too, not the upstream's failure (502).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_streams_an_unguarded_slow_body_into_a_408() {
    let subject = Subject::start(
        Kind::Proxy,
        &["--key-optional", "--body-timeout-ms", "1000"],
    )
    .await;
    let body = json!({"unguarded": "x".repeat(60)}).to_string();
    let mut conn = Conn::open(&subject.addr).await;
    conn.send(
        format!(
            "POST /orders HTTP/1.1\r\nhost: idem\r\ncontent-type: application/json\r\n\
             content-length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    )
    .await;
    let trickle = conn.trickle(body.into_bytes().into_iter(), Duration::from_millis(100));
    let response = conn.response().await.expect("answered");
    trickle.abort();
    response.assert_problem(408, "request_timeout");
    subject.assert_nothing_ran("-").await;
}
