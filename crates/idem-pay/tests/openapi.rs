//! `/openapi.json` against the router that serves it: the document served is the one the
//! code derives, it names every route of DESIGN §5 and the service endpoints and nothing
//! else, each documented operation is routed, and every other method on a documented path
//! is 405. Its patterns accept exactly what the server reads.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, Method, Request};
use http_body_util::BodyExt;
use idem_pay::api::{router, Auth};
use idem_pay::metrics::Metrics;
use idem_pay::{Db, Service};
use idem_test_support::sqlite_url;
use serde_json::Value;
use tower::ServiceExt;

/// Every route served: DESIGN §5, §5a's `/openapi.json`, and the service endpoints.
const ROUTES: [(&str, &str); 8] = [
    ("get", "/healthz"),
    ("get", "/metrics"),
    ("get", "/openapi.json"),
    ("get", "/v1/accounts/{account_id}"),
    ("get", "/v1/payments/{order_id}"),
    ("post", "/v1/accounts"),
    ("post", "/v1/payments"),
    ("post", "/v1/payments/{order_id}/refunds"),
];

async fn send(app: &axum::Router, method: &str, path: &str) -> (u16, Value) {
    let method = Method::from_bytes(method.to_ascii_uppercase().as_bytes()).expect("a method");
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from("{}"))
        .expect("a request");
    let response = app.clone().oneshot(request).await.expect("an answer");
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("the body")
        .to_bytes();
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

#[tokio::test]
async fn the_document_names_every_route_and_every_documented_operation_is_routed() {
    let db = Db::connect(&sqlite_url("idem_openapi"), 2)
        .await
        .expect("open SQLite");
    let app = router(
        Service::new(db, None, Arc::new(Metrics::default())),
        Auth::None,
    );
    let (status, served) = send(&app, "get", "/openapi.json").await;
    assert_eq!(status, 200);
    assert_eq!(served, idem_pay::openapi::document());

    let paths = served["paths"].as_object().expect("paths");
    let documented: BTreeSet<(String, String)> = paths
        .iter()
        .flat_map(|(path, item)| {
            let methods = item.as_object().expect("a path item").keys();
            methods.map(move |method| (method.clone(), path.clone()))
        })
        .collect();
    let routes: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    assert_eq!(documented, routes);

    for (path, item) in paths {
        let concrete = path
            .replace("{account_id}", "acc-1")
            .replace("{order_id}", "order-1");
        for method in ["get", "post", "put", "patch", "delete"] {
            let (status, body) = send(&app, method, &concrete).await;
            if item.get(method).is_some() {
                // Routed: whatever the answer, it is not the fallback's nor a 405.
                assert_ne!(status, 405, "{method} {path}");
                assert_ne!(body["code"], "not_found", "{method} {path} is not routed");
            } else {
                assert_eq!(
                    (status, body["code"].as_str()),
                    (405, Some("method_not_allowed")),
                    "{method} {path} is not documented, so it must not be served"
                );
            }
        }
    }
}

/// A schema's `pattern` as a regex (the document's patterns are in the common subset of
/// ECMA-262 and the `regex` crate).
fn pattern(schema: &Value) -> regex::Regex {
    regex::Regex::new(schema["pattern"].as_str().expect("a pattern")).expect("a valid regex")
}

#[test]
fn the_patterns_accept_what_the_server_reads() {
    let doc = idem_pay::openapi::document();
    let id = &doc["components"]["schemas"]["Id"];
    let id_pattern = pattern(id);
    let id_max = id["maxLength"].as_u64().expect("maxLength") as usize;
    let long = "x".repeat(id_max);
    let too_long = "x".repeat(id_max + 1);
    for value in [
        "a", "A-z_0.9:", "order-1", &long, &too_long, "", "a b", "a/b", "ü", "a\"", "a%20",
    ] {
        let documented = id_pattern.is_match(value) && !value.is_empty() && value.len() <= id_max;
        assert_eq!(
            documented,
            idem_pay::validate::id("order_id", value).is_ok(),
            "{value:?}"
        );
    }

    let pay = &doc["paths"]["/v1/payments"]["post"]["parameters"];
    let key = pay
        .as_array()
        .expect("parameters")
        .iter()
        .find(|p| p["name"] == idem::KEY_HEADER)
        .expect("the Idempotency-Key header");
    let key_pattern = pattern(&key["schema"]);
    let quoted_max = format!("\"{}\"", "k".repeat(255));
    let quoted_over = format!("\"{}\"", "k".repeat(256));
    let bare_max = "k".repeat(255);
    let bare_over = "k".repeat(256);
    for value in [
        "abc",
        "\"abc\"",
        "\"a b\"",
        "\"a \\\"b\\\"\"",
        "\"a\\\\b\"",
        "idem_sk_0123:x/y+z=",
        &quoted_max,
        &bare_max,
        &quoted_over,
        &bare_over,
        "",
        "\"\"",
        "a b",
        "a,b",
        "\"abc",
        "\"abc\"x",
        "\"a\\nb\"",
        "a\"b",
        "\"a\tb\"",
        "a\tb",
    ] {
        assert_eq!(
            key_pattern.is_match(value),
            idem::parse_key_header_value(value.as_bytes()).is_ok(),
            "{value:?}"
        );
    }
}
