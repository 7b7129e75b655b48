//! Scenarios about what the service refuses and what it serves besides payments: every bad
//! input of DESIGN §5, account replays, health, metrics, OpenAPI.

use reqwest::Method;
use serde_json::json;

use super::super::harness::Cluster;
use super::payment;

/// Every bad input of DESIGN §5 is answered as written, and changes nothing.
pub async fn bad_inputs_are_refused_and_change_nothing(c: &Cluster) {
    c.open("a1", 100).await;
    c.open("b1", 100).await;
    let long_id = "x".repeat(129);
    let huge = format!(
        r#"{{"order_id":"big","payer":"a1","payee":"b1","amount":1,"pad":"{}"}}"#,
        "p".repeat(70 * 1024)
    );
    // (path, content type, raw body, status, code, field)
    type Case<'a> = (&'a str, &'a str, String, u16, &'a str, Option<&'a str>);
    let cases: Vec<Case> = vec![
        (
            "/v1/payments",
            "application/json",
            "{".into(),
            400,
            "invalid_request",
            Some("body"),
        ),
        (
            "/v1/payments",
            "application/json",
            "".into(),
            400,
            "invalid_request",
            Some("body"),
        ),
        (
            "/v1/payments",
            "application/json",
            "[1,2]".into(),
            400,
            "invalid_request",
            Some("body"),
        ),
        (
            "/v1/payments",
            "application/json",
            r#"{"payer":"a1","payee":"b1","amount":1}"#.into(),
            400,
            "invalid_request",
            Some("order_id"),
        ),
        (
            "/v1/payments",
            "application/json",
            r#"{"order_id":"","payer":"a1","payee":"b1","amount":1}"#.into(),
            400,
            "invalid_request",
            Some("order_id"),
        ),
        (
            "/v1/payments",
            "application/json",
            format!(r#"{{"order_id":"{long_id}","payer":"a1","payee":"b1","amount":1}}"#),
            400,
            "invalid_request",
            Some("order_id"),
        ),
        (
            "/v1/payments",
            "application/json",
            r#"{"order_id":"a b","payer":"a1","payee":"b1","amount":1}"#.into(),
            400,
            "invalid_request",
            Some("order_id"),
        ),
        (
            "/v1/payments",
            "application/json",
            r#"{"order_id":"é","payer":"a1","payee":"b1","amount":1}"#.into(),
            400,
            "invalid_request",
            Some("order_id"),
        ),
        (
            "/v1/payments",
            "application/json",
            r#"{"order_id":7,"payer":"a1","payee":"b1","amount":1}"#.into(),
            400,
            "invalid_request",
            Some("order_id"),
        ),
        (
            "/v1/payments",
            "application/json",
            r#"{"order_id":"o","payee":"b1","amount":1}"#.into(),
            400,
            "invalid_request",
            Some("payer"),
        ),
        (
            "/v1/payments",
            "application/json",
            r#"{"order_id":"o","payer":"a1","payee":"a/1","amount":1}"#.into(),
            400,
            "invalid_request",
            Some("payee"),
        ),
        (
            "/v1/payments",
            "application/json",
            r#"{"order_id":"o","payer":"a1","payee":"a1","amount":1}"#.into(),
            400,
            "invalid_request",
            Some("payee"),
        ),
        (
            "/v1/payments",
            "application/json",
            r#"{"order_id":"o","payer":"a1","payee":"b1"}"#.into(),
            400,
            "invalid_request",
            Some("amount"),
        ),
        (
            "/v1/payments",
            "application/json",
            r#"{"order_id":"o","payer":"a1","payee":"b1","amount":0}"#.into(),
            400,
            "invalid_request",
            Some("amount"),
        ),
        (
            "/v1/payments",
            "application/json",
            r#"{"order_id":"o","payer":"a1","payee":"b1","amount":-5}"#.into(),
            400,
            "invalid_request",
            Some("amount"),
        ),
        (
            "/v1/payments",
            "application/json",
            r#"{"order_id":"o","payer":"a1","payee":"b1","amount":1.5}"#.into(),
            400,
            "invalid_request",
            Some("amount"),
        ),
        (
            "/v1/payments",
            "application/json",
            r#"{"order_id":"o","payer":"a1","payee":"b1","amount":1.0}"#.into(),
            400,
            "invalid_request",
            Some("amount"),
        ),
        (
            "/v1/payments",
            "application/json",
            r#"{"order_id":"o","payer":"a1","payee":"b1","amount":"1"}"#.into(),
            400,
            "invalid_request",
            Some("amount"),
        ),
        (
            "/v1/payments",
            "application/json",
            r#"{"order_id":"o","payer":"a1","payee":"b1","amount":1e2}"#.into(),
            400,
            "invalid_request",
            Some("amount"),
        ),
        (
            "/v1/payments",
            "application/json",
            r#"{"order_id":"o","payer":"a1","payee":"b1","amount":9223372036854775808}"#.into(),
            400,
            "invalid_request",
            Some("amount"),
        ),
        (
            "/v1/payments",
            "application/json",
            r#"{"order_id":"o","payer":"a1","payee":"b1","amount":null}"#.into(),
            400,
            "invalid_request",
            Some("amount"),
        ),
        (
            "/v1/payments",
            "application/json",
            r#"{"order_id":"o","payer":"a1","payee":"b1","amount":1,"currency":"EUR"}"#.into(),
            400,
            "invalid_request",
            Some("currency"),
        ),
        (
            "/v1/payments",
            "application/json",
            r#"{"order_id":"o","payer":"ghost","payee":"b1","amount":1}"#.into(),
            404,
            "account_not_found",
            None,
        ),
        (
            "/v1/payments",
            "application/json",
            r#"{"order_id":"o","payer":"a1","payee":"ghost","amount":1}"#.into(),
            404,
            "account_not_found",
            None,
        ),
        (
            "/v1/payments",
            "application/json",
            huge,
            413,
            "payload_too_large",
            None,
        ),
        (
            "/v1/payments",
            "application/json",
            r#"{"order_id":"o","payer":"a1","payee":"b1","amount":1,"amount":2}"#.into(),
            400,
            "invalid_request",
            Some("amount"),
        ),
        (
            "/v1/payments",
            "text/plain",
            r#"{"order_id":"o","payer":"a1","payee":"b1","amount":1}"#.into(),
            415,
            "unsupported_media_type",
            None,
        ),
        (
            "/v1/payments",
            "",
            r#"{"order_id":"o","payer":"a1","payee":"b1","amount":0}"#.into(),
            400,
            "invalid_request",
            Some("amount"),
        ),
        (
            "/v1/accounts",
            "application/json",
            r#"{"account_id":"c1","balance":-1}"#.into(),
            400,
            "invalid_request",
            Some("balance"),
        ),
        (
            "/v1/accounts",
            "application/json",
            r#"{"account_id":"c1","balance":1.5}"#.into(),
            400,
            "invalid_request",
            Some("balance"),
        ),
        (
            "/v1/accounts",
            "application/json",
            r#"{"account_id":"c 1","balance":1}"#.into(),
            400,
            "invalid_request",
            Some("account_id"),
        ),
        (
            "/v1/accounts",
            "application/json",
            r#"{"balance":1}"#.into(),
            400,
            "invalid_request",
            Some("account_id"),
        ),
        (
            "/v1/accounts",
            "application/json",
            r#"{"account_id":"a1","balance":5}"#.into(),
            422,
            "account_conflict",
            None,
        ),
        (
            "/v1/payments/o/refunds",
            "application/json",
            r#"{"refund_id":"r","amount":1}"#.into(),
            404,
            "payment_not_found",
            None,
        ),
        (
            "/v1/payments/o/refunds",
            "application/json",
            r#"{"refund_id":"r","amount":0}"#.into(),
            400,
            "invalid_request",
            Some("amount"),
        ),
        (
            "/v1/payments/o/refunds",
            "application/json",
            r#"{"refund_id":"r r","amount":1}"#.into(),
            400,
            "invalid_request",
            Some("refund_id"),
        ),
        (
            "/v1/payments/o/refunds",
            "application/json",
            r#"{"amount":1}"#.into(),
            400,
            "invalid_request",
            Some("refund_id"),
        ),
        (
            "/v1/payments/o%20o/refunds",
            "application/json",
            r#"{"refund_id":"r","amount":1}"#.into(),
            400,
            "invalid_request",
            Some("order_id"),
        ),
    ];
    for (i, (path, content_type, body, status, code, field)) in cases.into_iter().enumerate() {
        let reply = c
            .endpoint(i)
            .send(
                Method::POST,
                path,
                Some((content_type, body.clone().into_bytes())),
                &[],
            )
            .await;
        let problem = reply.assert_problem(status, code);
        if let Some(field) = field {
            assert_eq!(problem["field"], field, "field of {problem} for {body:.80}");
            assert!(
                problem["detail"].as_str().expect("detail").contains(field),
                "detail names {field}: {problem}"
            );
        }
    }
    // Reads.
    let long_path = format!("/v1/payments/{long_id}");
    assert_get_problems(
        c,
        &[
            ("/v1/accounts/ghost", 404, "account_not_found"),
            ("/v1/accounts/gh%20ost", 400, "invalid_request"),
            ("/v1/payments/ghost", 404, "payment_not_found"),
            (&long_path, 400, "invalid_request"),
            ("/v1/nothing-here", 404, "not_found"),
        ],
    )
    .await;
    // Wrong methods.
    for (method, path) in [
        (Method::DELETE, "/v1/payments"),
        (Method::GET, "/v1/payments"),
        (Method::PUT, "/v1/accounts"),
        (Method::POST, "/v1/accounts/a1"),
        (Method::DELETE, "/v1/payments/o"),
        (Method::GET, "/v1/payments/o/refunds"),
    ] {
        c.endpoint(0)
            .send(method, path, None, &[])
            .await
            .assert_problem(405, "method_not_allowed");
    }
    // An invalid Idempotency-Key is refused even though payments do not need one.
    let body = payment("o-key", "a1", "b1", 1).to_string().into_bytes();
    let long_key = "k".repeat(300);
    for key in [long_key.as_str(), "caf\u{e9}"] {
        c.endpoint(0)
            .send(
                Method::POST,
                "/v1/payments",
                Some(("application/json", body.clone())),
                &[("Idempotency-Key", key)],
            )
            .await
            .assert_problem(400, "invalid_request");
    }
    // Nothing moved; no payment exists.
    assert_eq!((c.balance("a1").await, c.balance("b1").await), (100, 100));
    assert_get_problems(
        c,
        &[
            ("/v1/payments/o", 404, "payment_not_found"),
            ("/v1/payments/o-key", 404, "payment_not_found"),
            ("/v1/accounts/c1", 404, "account_not_found"),
        ],
    )
    .await;
    // A valid key, any key, does not change which order is paid.
    for key in ["\"k-1\"", "k-2"] {
        let reply = c
            .endpoint(0)
            .send(
                Method::POST,
                "/v1/payments",
                Some(("application/json", body.clone())),
                &[("Idempotency-Key", key)],
            )
            .await;
        assert_eq!(reply.status, 201, "{}", reply.text());
    }
    assert_eq!(
        (c.balance("a1").await, c.balance("b1").await),
        (99, 101),
        "paid once"
    );
    c.assert_books_balance().await;
}

/// Accounts: the same call replays its first answer; health, metrics and the OpenAPI
/// document answer.
pub async fn accounts_replay_and_service_endpoints_answer(c: &Cluster) {
    let open = json!({"account_id": "acc.1:x_y-z", "balance": 0});
    let first = c.post(0, "/v1/accounts", &open).await;
    assert_eq!((first.status, first.replayed), (201, false));
    assert_eq!(first.json(), open);
    for i in 0..c.nodes.len() {
        let again = c.post(i, "/v1/accounts", &open).await;
        assert!(again.status == 201 && again.replayed && again.body == first.body);
    }
    let read = c.get(0, "/v1/accounts/acc.1:x_y-z").await;
    assert_eq!((read.status, read.json()), (200, open));
    let health = c.get(0, "/healthz").await;
    assert_eq!(health.status, 200);
    let metrics = c.get(0, "/metrics").await;
    assert_eq!(metrics.status, 200);
    let text = metrics.text();
    assert!(
        text.contains(
            "idem_pay_requests_total{method=\"POST\",route=\"/v1/accounts\",outcome=\"executed\"} 1"
        ),
        "{text}"
    );
    assert!(
        text.contains("idem_pay_request_duration_seconds_bucket"),
        "{text}"
    );
    assert!(text.contains("idem_pay_db_retries_total"), "{text}");
    let doc = c.get(0, "/openapi.json").await;
    assert_eq!(doc.status, 200);
    let doc = doc.json();
    assert!(doc["openapi"].as_str().expect("version").starts_with("3."));
    for path in [
        "/v1/accounts",
        "/v1/payments",
        "/v1/payments/{order_id}",
        "/v1/payments/{order_id}/refunds",
        "/v1/accounts/{account_id}",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} documented");
    }
}

/// `GET path` on node 0 answers each problem `(path, status, code)`.
async fn assert_get_problems(c: &Cluster, cases: &[(&str, u16, &str)]) {
    for (path, status, code) in cases {
        c.get(0, path).await.assert_problem(*status, code);
    }
}
