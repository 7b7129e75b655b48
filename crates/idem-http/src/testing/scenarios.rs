//! The scenarios: each sends real requests to a [`Target`] and checks status, headers,
//! body and — through `GET /count` — how many times the handler ran.

use std::any::Any;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use reqwest::header::HeaderMap;
use reqwest::RequestBuilder;

use crate::{Config, InFlight};

/// The body limit [`layer_config`] sets and [`body_too_large_is_413`] expects.
pub const BODY_LIMIT_BYTES: usize = 4096;

/// How long [`wait_config`] lets a duplicate wait.
pub const WAIT_MAX: Duration = Duration::from_secs(20);

/// The layer configuration the scenarios expect: principal from `Authorization`, a
/// [`BODY_LIMIT_BYTES`] body limit, 409 for in-flight duplicates.
pub fn layer_config() -> Config {
    Config::default()
        .principal(|parts| {
            parts
                .headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        })
        .body_limit_bytes(BODY_LIMIT_BYTES)
}

/// [`layer_config`] in the wait mode.
pub fn wait_config() -> Config {
    layer_config().in_flight(InFlight::Wait { max: WAIT_MAX })
}

/// Anything that puts the layer in front of [`super::counting_app`], by base URL.
pub struct Target {
    base: String,
    client: reqwest::Client,
    _keep: Vec<Box<dyn Any + Send + Sync>>,
}

impl Target {
    /// A target at `base`, such as `http://127.0.0.1:4000`.
    pub fn new(base: impl Into<String>) -> Self {
        Self {
            base: base.into().trim_end_matches('/').to_owned(),
            client: reqwest::Client::new(),
            _keep: Vec::new(),
        }
    }

    /// Keeps `thing` (a server, a child process) alive as long as the target.
    pub fn keep(mut self, thing: impl Any + Send + Sync) -> Self {
        self._keep.push(Box::new(thing));
        self
    }

    /// The URL of `path` on the target.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// How many times the counting app's handlers ran.
    ///
    /// # Panics
    /// When `GET /count` fails.
    pub async fn runs(&self) -> usize {
        let text = self
            .client
            .get(self.url("/count"))
            .send()
            .await
            .expect("GET /count answers")
            .text()
            .await
            .expect("GET /count has a body");
        text.trim().parse().expect("GET /count is a number")
    }

    fn post(&self, path: &str, key: Option<&str>) -> RequestBuilder {
        let request = self
            .client
            .post(self.url(path))
            .header("content-type", "application/json");
        match key {
            Some(key) => request.header("idempotency-key", format!("\"{key}\"")),
            None => request,
        }
    }
}

/// One response, read whole.
#[derive(Debug, Clone)]
pub struct Answer {
    /// Its status.
    pub status: u16,
    /// Its headers.
    pub headers: HeaderMap,
    /// Its body.
    pub body: Bytes,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    fn replayed(&self) -> bool {
        self.header("idempotent-replayed") == Some("true")
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }

    /// Checks this is the problem+json `code` with `status`, of type
    /// `urn:idem:problem:<code>`.
    fn assert_problem(&self, status: u16, code: &str) {
        assert_eq!(self.status, status, "status of {:?}", self.body);
        assert_eq!(
            self.header("content-type"),
            Some("application/problem+json")
        );
        let json = self.json();
        assert_eq!(json["type"], format!("urn:idem:problem:{code}"));
        assert_eq!(json["code"], code);
        assert_eq!(json["status"], status);
        assert!(json["detail"].is_string(), "{json}");
    }
}

async fn send(request: RequestBuilder) -> Answer {
    let response = request.send().await.expect("the request is answered");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.bytes().await.expect("the body is read");
    Answer {
        status,
        headers,
        body,
    }
}

/// A key no other scenario, test or run uses.
pub fn unique_key(what: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{what}-{}-{n}-{nanos:x}", std::process::id())
}

/// Sends `request` again until it is not answered 409 (a release is spawned when a
/// request is abandoned, so it may land a moment after the client saw the failure).
async fn until_not_in_flight(request: impl Fn() -> RequestBuilder) -> Answer {
    for _ in 0..100 {
        let answer = send(request()).await;
        if answer.status != 409 {
            return answer;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the key stayed in flight: the abandoned request's key was not released");
}

/// 100 concurrent identical requests: the handler runs once and every request gets the
/// same answer — or, in the reject mode, 409 with `Retry-After` while the first runs.
pub async fn concurrent_duplicates_run_once(target: &Target, wait_mode: bool) {
    let key = unique_key("concurrent");
    let body = r#"{"item":"book","qty":1}"#;
    let requests = (0..100).map(|_| {
        send(
            target
                .post("/orders", Some(&key))
                .header("x-delay-ms", "800")
                .body(body),
        )
    });
    let answers = futures::future::join_all(requests).await;
    assert_eq!(
        target.runs().await,
        1,
        "100 duplicates ran the handler once"
    );

    let done: Vec<&Answer> = answers.iter().filter(|a| a.status == 201).collect();
    let busy: Vec<&Answer> = answers.iter().filter(|a| a.status == 409).collect();
    assert_eq!(done.len() + busy.len(), 100, "only 201 or 409 answers");
    assert!(!done.is_empty(), "the first request got its 201");
    for answer in &done {
        assert_eq!(answer.body, done[0].body, "every 201 is the same answer");
        assert_eq!(answer.header("location"), Some("/orders/1"));
    }
    if wait_mode {
        assert!(
            busy.is_empty(),
            "in the wait mode every duplicate waits for the answer"
        );
    } else {
        assert!(
            !busy.is_empty(),
            "in the reject mode duplicates get 409 at once"
        );
        for answer in busy {
            answer.assert_problem(409, "request_in_flight");
            let secs: u64 = answer
                .header("retry-after")
                .and_then(|v| v.parse().ok())
                .expect("409 has a Retry-After in seconds");
            assert!(secs >= 1);
        }
    }
}

/// The same key with another body is 422 and runs nothing; the same JSON with its members
/// reordered is the same request.
pub async fn other_payload_is_422_and_does_not_run(target: &Target) {
    let key = unique_key("payload");
    let first = send(target.post("/orders", Some(&key)).body(r#"{"a":1,"b":2}"#)).await;
    assert_eq!(first.status, 201);
    let other = send(target.post("/orders", Some(&key)).body(r#"{"a":1,"b":3}"#)).await;
    other.assert_problem(422, "idempotency_key_reused");
    assert_eq!(
        target.runs().await,
        1,
        "a reused key with another payload runs nothing"
    );
    let reordered = send(
        target
            .post("/orders", Some(&key))
            .body(r#"{ "b": 2, "a": 1 }"#),
    )
    .await;
    assert_eq!((reordered.status, &reordered.body), (201, &first.body));
    assert!(reordered.replayed());
    assert_eq!(target.runs().await, 1);
}

/// A 5xx is not stored: the retry runs the handler again, and its 201 is then replayed.
pub async fn server_error_releases_the_key(target: &Target) {
    let key = unique_key("flaky");
    let failed = send(target.post("/flaky", Some(&key))).await;
    assert_eq!(failed.status, 503);
    let retried = send(target.post("/flaky", Some(&key))).await;
    assert_eq!(retried.status, 201);
    assert!(!retried.replayed());
    assert_eq!(target.runs().await, 2, "the retry after a 5xx ran again");
    let replayed = send(target.post("/flaky", Some(&key))).await;
    assert_eq!((replayed.status, &replayed.body), (201, &retried.body));
    assert!(replayed.replayed());
    assert_eq!(target.runs().await, 2);
}

/// A handler that panics leaves no held key behind: the retry runs.
pub async fn panic_releases_the_key(target: &Target) {
    let key = unique_key("panic");
    // The first attempt fails one way or another: a dropped connection, or a 5xx from a proxy.
    if let Ok(response) = target.post("/panic", Some(&key)).send().await {
        assert!(response.status().is_server_error(), "{}", response.status());
    }
    let retried = until_not_in_flight(|| target.post("/panic", Some(&key))).await;
    assert_eq!(retried.status, 201, "{:?}", retried.body);
    assert_eq!(target.runs().await, 2);
}

/// Two principals using one key each get their own answer, never the other's, and one's
/// key in flight never holds up the other's.
pub async fn principals_never_share_responses(target: &Target) {
    let key = unique_key("tenant");
    let as_user = |user: &str| {
        target
            .post("/orders", Some(&key))
            .header("authorization", format!("Bearer {user}"))
            .body(r#"{"item":"same"}"#)
    };
    let alice = send(as_user("alice")).await;
    let bob = send(as_user("bob")).await;
    assert_eq!((alice.status, bob.status), (201, 201));
    assert_eq!(alice.json()["user"], "Bearer alice");
    assert_eq!(bob.json()["user"], "Bearer bob");
    assert!(!bob.replayed(), "bob's request ran for bob");
    assert_eq!(target.runs().await, 2);
    let alice_again = send(as_user("alice")).await;
    assert!(alice_again.replayed());
    assert_eq!(alice_again.body, alice.body);
    assert_eq!(target.runs().await, 2);

    // A key of alice's in flight never holds up bob's request under the same key.
    let key = unique_key("tenant-in-flight");
    let slow_alice = target
        .post("/orders", Some(&key))
        .header("authorization", "Bearer alice")
        .header("x-delay-ms", "1500")
        .body(r#"{"item":"same"}"#);
    let alice = tokio::spawn(send(slow_alice));
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let started = std::time::Instant::now();
    let bob = send(
        target
            .post("/orders", Some(&key))
            .header("authorization", "Bearer bob")
            .body(r#"{"item":"same"}"#),
    )
    .await;
    assert_eq!(bob.status, 201, "bob ran while alice's key was in flight");
    assert!(
        !alice.is_finished(),
        "bob answered after {:?}, before alice's request ended",
        started.elapsed()
    );
    let alice = alice.await.expect("alice's request");
    assert_eq!((alice.status, alice.replayed()), (201, false));
    assert_eq!(target.runs().await, 4);
}

/// A guarded request without a key is 400 and runs nothing.
pub async fn missing_key_is_400(target: &Target) {
    let answer = send(target.post("/orders", None).body("{}")).await;
    answer.assert_problem(400, "idempotency_key_missing");
    assert_eq!(target.runs().await, 0);
}

/// Over-long, non-ASCII and malformed keys are 400 and run nothing.
pub async fn invalid_keys_are_400(target: &Target) {
    let long = format!("\"{}\"", "k".repeat(300));
    let bare_long = "k".repeat(300);
    let values: [&[u8]; 5] = [
        long.as_bytes(),
        bare_long.as_bytes(),
        b"\"unterminated",
        b"\"a\"b",
        b"caf\xe9",
    ];
    for value in values {
        let header = reqwest::header::HeaderValue::from_bytes(value).expect("a header value");
        let request = target
            .client
            .post(target.url("/orders"))
            .header("idempotency-key", header)
            .body("{}");
        send(request)
            .await
            .assert_problem(400, "idempotency_key_invalid");
    }
    assert_eq!(target.runs().await, 0);
}

/// A replay is the first status, stored headers and body byte for byte, marked replayed;
/// `set-cookie` and unlisted headers are not replayed.
pub async fn replay_is_byte_for_byte(target: &Target) {
    let key = unique_key("replay");
    let body = r#"{"item":"pen","note":"héllo \u0000"}"#;
    let first = send(target.post("/orders", Some(&key)).body(body)).await;
    let again = send(target.post("/orders", Some(&key)).body(body)).await;
    assert_eq!(first.status, 201);
    assert!(!first.replayed());
    assert!(first.header("set-cookie").is_some());
    assert_eq!(again.status, first.status);
    assert_eq!(
        again.body, first.body,
        "the replayed body is byte for byte the first"
    );
    assert!(again.replayed(), "a replay says Idempotent-Replayed: true");
    for name in ["content-type", "location"] {
        assert_eq!(again.header(name), first.header(name), "{name} is replayed");
    }
    assert_eq!(
        again.header("set-cookie"),
        None,
        "set-cookie is never replayed"
    );
    assert_eq!(
        again.header("x-unstored"),
        None,
        "unlisted headers are not replayed"
    );
    assert_eq!(target.runs().await, 1);
}

/// A guarded body over the limit is 413 and runs nothing.
pub async fn body_too_large_is_413(target: &Target) {
    let key = unique_key("large");
    let body = format!("\"{}\"", "x".repeat(BODY_LIMIT_BYTES * 2));
    send(target.post("/orders", Some(&key)).body(body))
        .await
        .assert_problem(413, "body_too_large");
    assert_eq!(target.runs().await, 0);
    let fits = format!("\"{}\"", "x".repeat(BODY_LIMIT_BYTES - 10));
    let ok = send(target.post("/orders", Some(&key)).body(fits)).await;
    assert_eq!(ok.status, 201);
}

/// GET is not guarded: it runs every time, key or no key, and nothing is replayed.
pub async fn unguarded_get_passes_through(target: &Target) {
    let key = unique_key("get");
    for n in 1..=3 {
        let request = target
            .client
            .get(target.url("/orders"))
            .header("idempotency-key", format!("\"{key}\""));
        let answer = send(request).await;
        assert_eq!(answer.status, 200);
        assert_eq!(answer.body, format!("list {n}"));
        assert!(!answer.replayed());
    }
    let answer = send(target.client.get(target.url("/orders"))).await;
    assert_eq!((answer.status, answer.body), (200, Bytes::from("list 4")));
    assert_eq!(target.runs().await, 4);
}

/// A client that gives up mid-request does not leave its key held until the lease ends:
/// its retry runs at once.
pub async fn client_disconnect_releases_the_key(target: &Target) {
    let key = unique_key("disconnect");
    let body = r#"{"item":"slow"}"#;
    let gave_up = target
        .post("/orders", Some(&key))
        .header("x-delay-ms", "5000")
        .timeout(Duration::from_millis(500))
        .body(body)
        .send()
        .await;
    assert!(gave_up.is_err(), "the client timed out");
    let retried = until_not_in_flight(|| target.post("/orders", Some(&key)).body(body)).await;
    assert_eq!(retried.status, 201);
    assert!(!retried.replayed());
    assert_eq!(retried.json()["run"], 2, "the retry ran the handler again");
}
