//! `idem serve` and `idem proxy` read `Idempotency-Key` alike: one table of header values
//! is sent to both (real processes), and both accept the same ones, refuse the others with
//! 400 and a problem+json `type` of `urn:idem:problem:<code>`, and give the same reason.
//!
//! They once parsed the header each its own way (a bare `a b`, an escaped quote and a
//! repeated header were accepted by one and refused by the other); both now call
//! [`idem::key_from_header`]. Where the key itself is observable — the proxy keys its
//! records by it — the test also checks it is the unescaped value the table expects.

#[path = "common/serve_harness.rs"]
mod serve_harness;

#[path = "common/proxy_harness.rs"]
mod proxy_harness;

use proxy_harness::{spawn_proxy_in, TempDir};
use reqwest::header::{HeaderValue, CONTENT_TYPE};
use serde_json::Value;

/// One row: the header's values as sent (none, one, or repeated), and the key they mean,
/// or `None` when they must be refused.
struct Case {
    values: Vec<Vec<u8>>,
    key: Option<String>,
}

impl Case {
    /// The values as they go on the wire, for failure messages.
    fn describe(&self) -> String {
        let values: Vec<String> = self
            .values
            .iter()
            .map(|v| format!("Idempotency-Key: {}", v.escape_ascii()))
            .collect();
        values.join(" + ")
    }
}

fn valid(value: impl Into<Vec<u8>>, key: impl Into<String>) -> Case {
    Case {
        values: vec![value.into()],
        key: Some(key.into()),
    }
}

fn invalid(values: &[&[u8]]) -> Case {
    Case {
        values: values.iter().map(|v| v.to_vec()).collect(),
        key: None,
    }
}

/// The one table both surfaces are held to.
fn table() -> Vec<Case> {
    vec![
        valid(r#""abc""#, "abc"),
        valid("abc", "abc"),
        valid(r#""a b""#, "a b"),
        valid(r#""a\"b""#, r#"a"b"#),
        valid(r#""a\\b""#, r"a\b"),
        // A bare backslash is no escape: the same key as the sf-string above.
        valid(r"a\b", r"a\b"),
        valid("k".repeat(255), "k".repeat(255)),
        valid(format!("\"{}\"", "q".repeat(255)), "q".repeat(255)),
        invalid(&[b"a b"]),
        invalid(&[br#""abc"#]),
        invalid(&[br#""a\qb""#]),
        invalid(&[br#""""#]),
        invalid(&["k".repeat(256).as_bytes()]),
        invalid(&[format!("\"{}\"", "q".repeat(256)).as_bytes()]),
        invalid(&[b"caf\xe9"]),
        invalid(&[br#""abc""#, br#""abc""#]),
    ]
}

/// How `key` is written as an sf-string: what a client that always quotes would send.
fn sf_string(key: &str) -> Vec<u8> {
    format!("\"{}\"", key.replace('\\', r"\\").replace('"', r#"\""#)).into_bytes()
}

/// An answer, read whole.
struct Answer {
    status: u16,
    content_type: String,
    replayed: bool,
    body: Vec<u8>,
}

impl Answer {
    /// Checks a 400 problem+json whose `type` is `urn:idem:problem:<code>` with the body's
    /// own `code`, and whose `detail` carries `reason`; returns the problem.
    fn assert_refused(&self, reason: &str, what: &str) -> Value {
        let text = String::from_utf8_lossy(&self.body);
        assert_eq!(self.status, 400, "{what}: {text}");
        assert_eq!(self.content_type, "application/problem+json", "{what}");
        let problem: Value = serde_json::from_slice(&self.body).expect("a JSON problem");
        let code = problem["code"].as_str().expect("a code member");
        assert_eq!(
            problem["type"],
            format!("urn:idem:problem:{code}"),
            "{what}: {problem}"
        );
        assert_eq!(problem["status"], 400, "{what}");
        let detail = problem["detail"].as_str().expect("a detail member");
        assert!(
            detail.contains(reason),
            "{what}: {detail:?} lacks {reason:?}"
        );
        problem
    }
}

async fn post(client: &reqwest::Client, url: &str, body: String, values: &[Vec<u8>]) -> Answer {
    let mut request = client
        .post(url)
        .header(CONTENT_TYPE, "application/json")
        .body(body);
    for value in values {
        let value = HeaderValue::from_bytes(value).expect("a header value the table can send");
        // `header` appends: a repeated row sends the header twice.
        request = request.header("idempotency-key", value);
    }
    let response = request.send().await.expect("answered");
    let status = response.status().as_u16();
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let (content_type, replayed) = (header("content-type"), header("idempotent-replayed"));
    Answer {
        status,
        content_type,
        replayed: replayed == "true",
        body: response.bytes().await.expect("a body").to_vec(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_and_proxy_accept_and_refuse_the_same_idempotency_keys() {
    let table = table();
    // The table says what the one parser says, so both surfaces are held to it.
    for case in &table {
        let parsed = idem::key_from_header(case.values.iter().map(Vec::as_slice));
        let parsed = parsed.map(|key| key.map(|k| k.as_str().to_owned()));
        assert_eq!(parsed.ok().flatten(), case.key, "{}", case.describe());
    }

    let serve = serve_harness::Cluster::sqlite(&[]).await.expect("SQLite");
    let upstream = idem_http::testing::serve_counting_app(idem_http::testing::counting_app()).await;
    let upstream_url = format!("http://{}", upstream.addr);
    let dir = TempDir::new();
    let (_proxy, proxy_url) = spawn_proxy_in(&dir.0, &upstream_url, &["--memory".to_owned()]);
    let client = reqwest::Client::new();

    for (i, case) in table.iter().enumerate() {
        let what = case.describe();
        let account = format!(r#"{{"account_id":"key-{i}","balance":1}}"#);
        let at_serve = post(
            &client,
            &format!("{}/v1/accounts", serve.node(0)),
            account,
            &case.values,
        )
        .await;
        let at_proxy = post(
            &client,
            &format!("{proxy_url}/orders"),
            "{}".to_owned(),
            &case.values,
        )
        .await;
        match &case.key {
            Some(key) => {
                assert_eq!(at_serve.status, 201, "serve accepts {what}");
                assert_eq!(at_proxy.status, 201, "proxy accepts {what}");
                // The proxy keyed the request by the unescaped key: sent again as a plain
                // sf-string of that key, it is the same request, answered from the store.
                let again = post(
                    &client,
                    &format!("{proxy_url}/orders"),
                    "{}".to_owned(),
                    &[sf_string(key)],
                )
                .await;
                assert_eq!(again.status, 201, "{what}");
                assert!(again.replayed, "{what} is the key {key:?} at the proxy");
            }
            None => {
                let reason = idem::key_from_header(case.values.iter().map(Vec::as_slice))
                    .expect_err("refused by the parser")
                    .to_string();
                let problem = at_serve.assert_refused(&reason, &format!("serve, {what}"));
                assert_eq!(problem["code"], "invalid_request", "{problem}");
                assert_eq!(problem["field"], "Idempotency-Key", "{problem}");
                let problem = at_proxy.assert_refused(&reason, &format!("proxy, {what}"));
                assert_eq!(problem["code"], "idempotency_key_invalid", "{problem}");
            }
        }
    }
    // Each distinct key ran once at the upstream (`"abc"` and `abc` are one key, as are
    // `"a\\b"` and `a\b`); refused requests never reached it.
    let keys: std::collections::BTreeSet<_> = table.iter().filter_map(|c| c.key.clone()).collect();
    let runs = idem_http::testing::Target::new(upstream_url).runs().await;
    assert_eq!(runs, keys.len());
}
