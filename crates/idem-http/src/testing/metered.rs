//! One request of each idempotency outcome through a layer in front of [`counting_app`]
//! (`crate::testing::counting_app`), and the check that a scrape of `/metrics` counts each
//! once under `idem::metrics::REQUESTS_TOTAL`: the same check for an axum app with the
//! layer, `idem proxy`'s admin listener, and (with its own series) `idem serve`.

use std::time::Duration;

use super::unique_key;

/// How long the first request's handler runs, so that its duplicate arrives meanwhile.
const FIRST_RUNS_FOR: Duration = Duration::from_millis(1_500);

/// Through the layer at `base` (in its default 409 mode): a fresh `POST /orders` whose
/// handler runs [`FIRST_RUNS_FOR`], a duplicate of it while it runs (409), its replay once
/// it is done, and its key with another body (422): executed, in flight, replayed and
/// mismatch, once each.
///
/// # Panics
/// When an answer is not the one expected (a test helper).
pub async fn one_request_of_each_outcome(base: &str) {
    let client = reqwest::Client::new();
    let key = format!("\"{}\"", unique_key("metered"));
    let post = |body: &'static str, delay: Option<Duration>| {
        let mut request = client
            .post(format!("{base}/orders"))
            .header("idempotency-key", key.clone())
            .header("content-type", "application/json")
            .body(body);
        if let Some(delay) = delay {
            request = request.header("x-delay-ms", delay.as_millis().to_string());
        }
        request.send()
    };
    let first = tokio::spawn(post(r#"{"n":1}"#, Some(FIRST_RUNS_FOR)));
    // Let the first claim the key before its duplicate comes.
    tokio::time::sleep(FIRST_RUNS_FOR / 3).await;
    let duplicate = post(r#"{"n":1}"#, None).await.expect("duplicate answered");
    assert_eq!(
        duplicate.status(),
        409,
        "the duplicate of a running request"
    );
    let first = first.await.expect("task").expect("first answered");
    assert_eq!(first.status(), 201, "the first request");
    let replay = post(r#"{"n":1}"#, None).await.expect("replay answered");
    assert_eq!(replay.status(), 201);
    assert_eq!(replay.headers()["idempotent-replayed"], "true");
    let mismatch = post(r#"{"n":2}"#, None).await.expect("mismatch answered");
    assert_eq!(mismatch.status(), 422, "the key with another body");
}

/// The value of the sample `series` (its name and labels exactly as rendered, such as
/// `idem_requests_total{outcome="executed"}`) in the Prometheus text `text`.
pub fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        let value = line.strip_prefix(series)?.strip_prefix(' ')?;
        value.trim().parse().ok()
    })
}

/// Asserts that `text` counts what [`one_request_of_each_outcome`] sent: each outcome
/// once, and no request refused for its key.
///
/// # Panics
/// When a count is not 1 (a test helper).
pub fn assert_one_of_each_outcome(text: &str) {
    for outcome in ["executed", "in_flight", "replayed", "mismatch"] {
        let series = format!("{}{{outcome=\"{outcome}\"}}", idem::metrics::REQUESTS_TOTAL);
        assert_eq!(sample(text, &series), Some(1.0), "{series} in\n{text}");
    }
    for outcome in ["missing_key", "invalid_key", "store_error"] {
        let series = format!("{}{{outcome=\"{outcome}\"}}", idem::metrics::REQUESTS_TOTAL);
        assert!(
            sample(text, &series).unwrap_or(0.0) == 0.0,
            "{series} in\n{text}"
        );
    }
}
