//! The layer's options, each over real sockets: key from a JSON field, optional keys,
//! fingerprint fields, guarded methods, what is stored, and a store that is down.

use std::time::Duration;

use idem::{FieldSelection, MemoryStore};
use idem_http::testing::{layer_config, unique_key, Target};
use idem_http::{Config, KeySource};
use reqwest::StatusCode;

use super::target;

async fn memory(config: Config) -> Target {
    target(MemoryStore::new(), config).await
}

fn post(target: &Target, body: &str) -> reqwest::RequestBuilder {
    reqwest::Client::new()
        .post(target.url("/orders"))
        .header("content-type", "application/json")
        .body(body.to_owned())
}

#[tokio::test]
async fn key_from_a_json_field_needs_no_header() {
    let app = memory(layer_config().key_source(KeySource::json_field("order_id"))).await;
    let order = format!(r#"{{"order_id":"{}","amount":5}}"#, unique_key("order"));
    let first = post(&app, &order).send().await.expect("answered");
    let again = post(&app, &order).send().await.expect("answered");
    assert_eq!(
        (first.status(), again.status()),
        (StatusCode::CREATED, StatusCode::CREATED)
    );
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(app.runs().await, 1);

    let no_field = post(&app, r#"{"amount":5}"#)
        .send()
        .await
        .expect("answered");
    assert_eq!(
        no_field.status(),
        StatusCode::BAD_REQUEST,
        "the field is required"
    );
    let long = format!(r#"{{"order_id":"{}"}}"#, "x".repeat(300));
    let invalid = post(&app, &long).send().await.expect("answered");
    assert_eq!(invalid.status(), StatusCode::BAD_REQUEST);
    assert_eq!(app.runs().await, 1);
}

#[tokio::test]
async fn optional_key_lets_keyless_requests_run_every_time() {
    let app = memory(layer_config().key_required(false)).await;
    for _ in 0..2 {
        let answer = post(&app, "{}").send().await.expect("answered");
        assert_eq!(answer.status(), StatusCode::CREATED);
        assert!(answer.headers().get("idempotent-replayed").is_none());
    }
    assert_eq!(app.runs().await, 2);
}

#[tokio::test]
async fn only_the_selected_fields_make_the_fingerprint() {
    let fields = FieldSelection::Only(vec!["amount".to_owned()]);
    let app = memory(layer_config().fingerprint_fields(fields)).await;
    let key = format!("\"{}\"", unique_key("fields"));
    let send = |body: &'static str| {
        post(&app, body)
            .header("idempotency-key", key.clone())
            .send()
    };
    let first = send(r#"{"amount":5,"note":"first"}"#)
        .await
        .expect("answered");
    assert_eq!(first.status(), StatusCode::CREATED);
    let other_note = send(r#"{"amount":5,"note":"second"}"#)
        .await
        .expect("answered");
    assert_eq!(other_note.headers()["idempotent-replayed"], "true");
    let other_amount = send(r#"{"amount":6,"note":"first"}"#)
        .await
        .expect("answered");
    assert_eq!(other_amount.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(app.runs().await, 1);
}

#[tokio::test]
async fn unlisted_methods_are_not_guarded() {
    let app = memory(layer_config().methods([http::Method::PUT])).await;
    let key = format!("\"{}\"", unique_key("methods"));
    for _ in 0..2 {
        let answer = post(&app, "{}")
            .header("idempotency-key", key.clone())
            .send();
        assert_eq!(
            answer.await.expect("answered").status(),
            StatusCode::CREATED
        );
    }
    assert_eq!(app.runs().await, 2, "POST is not guarded when only PUT is");
}

#[tokio::test]
async fn storing_server_errors_replays_them() {
    let app = memory(layer_config().store_status(|_| true)).await;
    let key = format!("\"{}\"", unique_key("store-5xx"));
    for _ in 0..2 {
        let answer = reqwest::Client::new()
            .post(app.url("/flaky"))
            .header("idempotency-key", key.clone())
            .send()
            .await
            .expect("answered");
        assert_eq!(answer.status(), StatusCode::SERVICE_UNAVAILABLE);
    }
    assert_eq!(
        app.runs().await,
        1,
        "the stored 503 was replayed, not rerun"
    );
}

#[tokio::test]
async fn wait_mode_gives_up_with_409_after_its_bound() {
    let config = layer_config().in_flight(idem_http::InFlight::Wait {
        max: Duration::from_millis(200),
    });
    let app = memory(config).await;
    let key = format!("\"{}\"", unique_key("wait-bound"));
    let slow = post(&app, "{}")
        .header("idempotency-key", key.clone())
        .header("x-delay-ms", "3000")
        .send();
    let slow = tokio::spawn(slow);
    while app.runs().await == 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let waited = post(&app, "{}").header("idempotency-key", key).send().await;
    assert_eq!(waited.expect("answered").status(), StatusCode::CONFLICT);
    slow.abort();
}

#[tokio::test]
async fn store_down_is_503_and_runs_nothing() {
    // A real Redis store pointed at a port nothing listens on: every call fails.
    let options = idem_redis::RedisOptions::from_url("redis://127.0.0.1:1")
        .expect("a Redis URL")
        .connection_timeout(Duration::from_millis(500));
    let store = idem_redis::RedisStore::lazy(&options).expect("a lazy store");
    let app = target(store, layer_config()).await;
    let key = format!("\"{}\"", unique_key("down"));
    let answer = post(&app, "{}").header("idempotency-key", key).send().await;
    let answer = answer.expect("answered");
    assert_eq!(answer.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(answer.headers()["retry-after"], "1");
    let body = answer.text().await.expect("body");
    assert!(
        body.contains("\"urn:idem:problem:store_unavailable\""),
        "{body}"
    );
    assert!(
        !body.contains("127.0.0.1:1"),
        "internals are not shown: {body}"
    );
    assert_eq!(app.runs().await, 0);
}

#[tokio::test]
async fn the_handler_finds_the_holder_s_fencing_token() {
    use axum::{routing::post, Extension, Router};
    use tower::ServiceExt;

    async fn token(Extension(token): Extension<idem::FencingToken>) -> String {
        token.0.to_string()
    }
    let store = MemoryStore::new();
    let app = Router::new()
        .route("/orders", post(token))
        .layer(idem_http::IdempotencyLayer::new(store, Config::default()));
    let request = http::Request::post("/orders")
        .header("idempotency-key", format!("\"{}\"", unique_key("token")))
        .body(axum::body::Body::from("{}"))
        .expect("a request");
    let answer = app.oneshot(request).await.expect("answered");
    assert_eq!(answer.status(), StatusCode::OK);
    let body = axum::body::to_bytes(answer.into_body(), 1024)
        .await
        .expect("body");
    let token: u64 = std::str::from_utf8(&body)
        .expect("utf-8")
        .parse()
        .expect("a decimal token");
    assert!(token >= 1);
}
