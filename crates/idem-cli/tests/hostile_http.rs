//! Hostile HTTP clients against `idem serve` (on SQLite) and `idem proxy` (its default
//! SQLite store, in front of a counting upstream), each the real `idem` binary: headers or a
//! body trickled a byte at a time, an oversized head, idle connections past the cap, and —
//! for `idem serve` — JSON that is deep, huge, not UTF-8 or mislabelled. Every case: the
//! client gets its answer or is cut off, other clients are served meanwhile, and nothing
//! runs or changes.
//!
//! The slow clients are raw TCP streams. Limits are set short (about a second) and every
//! timing assertion has a wide margin.

#[path = "common/serve_harness.rs"]
mod harness;
#[path = "common/proxy_harness.rs"]
mod proxy_harness;

use std::time::{Duration, Instant};

use harness::Cluster;
use idem_http::testing::{counting_app, serve_counting_app, unique_key, Served, Target};
use proxy_harness::{spawn_proxy_in, Process, TempDir};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

/// The longest any single wait in these tests may take before the test fails.
const PATIENCE: Duration = Duration::from_secs(20);

/// What a test runs against.
#[derive(Debug, Clone, Copy)]
enum Kind {
    /// `idem serve` on a fresh SQLite file, accounts `payer` (100) and `payee` (0) open.
    Serve,
    /// `idem proxy` with its default store, in front of the counting app.
    Proxy,
}

/// A running server under test and what it needs kept alive.
struct Subject {
    kind: Kind,
    /// `127.0.0.1:PORT`.
    addr: String,
    /// `http://127.0.0.1:PORT`.
    base: String,
    cluster: Option<Cluster>,
    upstream: Option<Target>,
    _proxy: Option<(Process, TempDir, Served)>,
}

impl Subject {
    /// Starts the server of `kind` with `flags` (the limits under test).
    async fn start(kind: Kind, flags: &[&str]) -> Subject {
        match kind {
            Kind::Serve => {
                let cluster = Cluster::sqlite(flags).await.expect("sqlite always runs");
                cluster.open("payer", 100).await;
                cluster.open("payee", 0).await;
                let base = cluster.node(0).to_owned();
                Subject {
                    kind,
                    addr: base.trim_start_matches("http://").to_owned(),
                    base,
                    cluster: Some(cluster),
                    upstream: None,
                    _proxy: None,
                }
            }
            Kind::Proxy => {
                let upstream = serve_counting_app(counting_app()).await;
                let upstream_url = format!("http://{}", upstream.addr);
                let dir = TempDir::new();
                let flags: Vec<String> = flags.iter().map(|f| f.to_string()).collect();
                let (process, base) = spawn_proxy_in(&dir.0, &upstream_url, &flags);
                Subject {
                    kind,
                    addr: base.trim_start_matches("http://").to_owned(),
                    base,
                    cluster: None,
                    upstream: Some(Target::new(upstream_url)),
                    _proxy: Some((process, dir, upstream)),
                }
            }
        }
    }

    /// A cheap request every server answers 200 without changing anything.
    fn probe_path(&self) -> &'static str {
        match self.kind {
            Kind::Serve => "/healthz",
            // Passed through unguarded to the upstream's counter, which it does not count.
            Kind::Proxy => "/count",
        }
    }

    /// `GET` [`Self::probe_path`] on a fresh connection; asserts 200.
    async fn assert_serves_others(&self) {
        let url = format!("{}{}", self.base, self.probe_path());
        let response = tokio::time::timeout(PATIENCE, reqwest::get(&url))
            .await
            .expect("the probe is answered in time")
            .expect("the probe is answered");
        assert_eq!(response.status(), 200, "GET {url}");
    }

    /// The head of a guarded request that would change something, `id` naming the order
    /// (serve) or the key (proxy), with `body_len` bytes of body to follow.
    fn guarded_head(&self, id: &str, body_len: usize) -> String {
        match self.kind {
            Kind::Serve => format!(
                "POST /v1/payments HTTP/1.1\r\nhost: idem\r\ncontent-type: application/json\r\n\
                 content-length: {body_len}\r\n\r\n"
            ),
            Kind::Proxy => format!(
                "POST /orders HTTP/1.1\r\nhost: idem\r\ncontent-type: application/json\r\n\
                 idempotency-key: \"{id}\"\r\ncontent-length: {body_len}\r\n\r\n"
            ),
        }
    }

    /// The body of the guarded request for `id`.
    fn guarded_body(&self, id: &str) -> String {
        match self.kind {
            Kind::Serve => {
                json!({"order_id": id, "payer": "payer", "payee": "payee", "amount": 7}).to_string()
            }
            Kind::Proxy => json!({"order": id, "padding": "x".repeat(40)}).to_string(),
        }
    }

    /// Asserts that the guarded request for `id` never ran: no payment and balances as
    /// opened (serve), the upstream never reached (proxy).
    async fn assert_nothing_ran(&self, id: &str) {
        match self.kind {
            Kind::Serve => {
                let cluster = self.cluster.as_ref().expect("serve has a cluster");
                let reply = cluster.get(0, &format!("/v1/payments/{id}")).await;
                reply.assert_problem(404, "payment_not_found");
                assert_eq!(cluster.balance("payer").await, 100);
                assert_eq!(cluster.balance("payee").await, 0);
            }
            Kind::Proxy => {
                let upstream = self.upstream.as_ref().expect("proxy has an upstream");
                assert_eq!(upstream.runs().await, 0, "the upstream never saw a request");
            }
        }
    }

    /// Sends the guarded request for `id` whole and fast; asserts it runs (201).
    async fn assert_guarded_request_runs(&self, id: &str) {
        let body = self.guarded_body(id);
        let mut conn = Conn::open(&self.addr).await;
        conn.send(format!("{}{body}", self.guarded_head(id, body.len())).as_bytes())
            .await;
        let response = conn.response().await.expect("answered");
        assert_eq!(response.status, 201, "{}", response.text());
        if let Some(upstream) = &self.upstream {
            assert_eq!(upstream.runs().await, 1, "ran once");
        }
    }
}

/// One raw HTTP/1.1 connection: bytes in, answers parsed out.
struct Conn {
    reader: OwnedReadHalf,
    /// `None` once handed to a trickling task.
    writer: Option<OwnedWriteHalf>,
    read: Vec<u8>,
}

/// An answer read off a raw connection.
#[derive(Debug)]
struct RawResponse {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl RawResponse {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Asserts a problem+json answer with `status` and `code`.
    fn assert_problem(&self, status: u16, code: &str) {
        assert_eq!(self.status, status, "{}", self.text());
        assert_eq!(
            self.header("content-type"),
            Some("application/problem+json"),
            "{}",
            self.text()
        );
        let problem: Value = serde_json::from_slice(&self.body).expect("a JSON problem");
        assert_eq!(problem["code"], code, "{problem}");
        assert_eq!(problem["status"], status, "{problem}");
        assert_eq!(
            problem["type"],
            format!("urn:idem:problem:{code}"),
            "{problem}"
        );
    }
}

impl Conn {
    async fn open(addr: &str) -> Conn {
        let stream = TcpStream::connect(addr).await.expect("connect");
        // Each trickled byte its own packet.
        stream.set_nodelay(true).expect("nodelay");
        let (reader, writer) = stream.into_split();
        Conn {
            reader,
            writer: Some(writer),
            read: Vec::new(),
        }
    }

    async fn send(&mut self, bytes: &[u8]) {
        assert!(self.try_send(bytes).await, "send");
    }

    /// Sends `bytes`; `false` when the connection is already closed.
    async fn try_send(&mut self, bytes: &[u8]) -> bool {
        let writer = self.writer.as_mut().expect("the writer is not trickling");
        writer.write_all(bytes).await.is_ok()
    }

    /// Writes `bytes` one at a time, `every` apart, on a task of their own, until done or
    /// the connection closes; the answer is read from `self` meanwhile.
    fn trickle(
        &mut self,
        bytes: impl Iterator<Item = u8> + Send + 'static,
        every: Duration,
    ) -> JoinHandle<()> {
        let mut writer = self.writer.take().expect("one trickle per connection");
        tokio::spawn(async move {
            for byte in bytes {
                if writer.write_all(&[byte]).await.is_err() {
                    return;
                }
                tokio::time::sleep(every).await;
            }
        })
    }

    /// Reads more bytes; `false` when the server closed or reset the connection.
    async fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 16 * 1024];
        match tokio::time::timeout(PATIENCE, self.reader.read(&mut chunk)).await {
            Err(_) => panic!("no answer and no close within {PATIENCE:?}"),
            Ok(Ok(0)) | Ok(Err(_)) => false,
            Ok(Ok(n)) => {
                self.read.extend_from_slice(&chunk[..n]);
                true
            }
        }
    }

    /// The next answer, or `None` when the connection closes before a whole one.
    async fn response(&mut self) -> Option<RawResponse> {
        let head_len = loop {
            if let Some(at) = self.read.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            if !self.fill().await {
                return None;
            }
        };
        let head = String::from_utf8_lossy(&self.read[..head_len]).into_owned();
        self.read.drain(..head_len);
        let mut lines = head.split("\r\n");
        let status = lines
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|s| s.parse().ok())
            .expect("a status line");
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let mut response = RawResponse {
            status,
            headers,
            body: Vec::new(),
        };
        if response
            .header("transfer-encoding")
            .is_some_and(|v| v.contains("chunked"))
        {
            loop {
                let line_end = loop {
                    if let Some(at) = self.read.windows(2).position(|w| w == b"\r\n") {
                        break at;
                    }
                    if !self.fill().await {
                        return None;
                    }
                };
                let size_text = String::from_utf8_lossy(&self.read[..line_end]).into_owned();
                let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
                while self.read.len() < line_end + 2 + size + 2 {
                    if !self.fill().await {
                        return None;
                    }
                }
                let start = line_end + 2;
                response
                    .body
                    .extend_from_slice(&self.read[start..start + size]);
                self.read.drain(..start + size + 2);
                if size == 0 {
                    return Some(response);
                }
            }
        }
        let len: usize = response
            .header("content-length")
            .map_or(0, |v| v.parse().expect("a content-length"));
        while self.read.len() < len {
            if !self.fill().await {
                return None;
            }
        }
        response.body = self.read.drain(..len).collect();
        Some(response)
    }

    /// Waits until the server closes the connection, discarding anything it sends.
    async fn closed(&mut self) {
        while self.fill().await {}
    }
}

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
    let mut conn = Conn::open(&subject.addr).await;
    conn.send(format!("{head}{body}").as_bytes()).await;
    let response = conn.response().await.expect("answered");
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
    active.send(probe.as_bytes()).await;
    assert_eq!(active.response().await.expect("answered").status, 200);

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
        active.send(probe.as_bytes()).await;
        let response = active
            .response()
            .await
            .expect("the active client is answered");
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
    later.send(probe.as_bytes()).await;
    let response = later
        .response()
        .await
        .expect("answered once slots are free");
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

/// `idem serve` refuses JSON it cannot take — nested thousands deep, numbers past `i64` or
/// past any float, invalid UTF-8, a byte order mark, a `Content-Type` that is not JSON —
/// with a problem+json 4xx and a stable code; it does not panic, and nothing changes. A body
/// with no `Content-Type` at all is still read as JSON.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_refuses_hostile_json_and_changes_nothing() {
    let subject = Subject::start(Kind::Serve, &[]).await;
    let cluster = subject.cluster.as_ref().expect("serve has a cluster");
    let node = cluster.endpoint(0);
    let payment = |order_id: &str, amount: &str| {
        format!(r#"{{"order_id":"{order_id}","payer":"payer","payee":"payee","amount":{amount}}}"#)
    };
    let deep = |depth: usize| format!("{}1{}", "[".repeat(depth), "]".repeat(depth));
    let mut with_bom = b"\xEF\xBB\xBF".to_vec();
    with_bom.extend_from_slice(payment("j-bom", "1").as_bytes());
    let cases: Vec<(&str, &str, Vec<u8>, u16, &str)> = vec![
        // (what, content type, body, status, code)
        (
            "an array 30 000 deep",
            "application/json",
            deep(30_000).into_bytes(),
            400,
            "invalid_request",
        ),
        (
            "a member nested 10 000 deep",
            "application/json",
            format!(
                r#"{{"order_id":"j-deep","payer":"payer","payee":"payee","amount":1,"x":{}}}"#,
                deep(10_000)
            )
            .into_bytes(),
            400,
            "invalid_request",
        ),
        (
            "objects 5 000 deep",
            "application/json",
            format!("{}1{}", r#"{"a":"#.repeat(5_000), "}".repeat(5_000)).into_bytes(),
            400,
            "invalid_request",
        ),
        (
            "an amount one past i64",
            "application/json",
            payment("j-i64", "9223372036854775808").into_bytes(),
            400,
            "invalid_request",
        ),
        (
            "an amount far past u64",
            "application/json",
            payment("j-u64", "184467440737095516160000").into_bytes(),
            400,
            "invalid_request",
        ),
        (
            "an amount one below i64",
            "application/json",
            payment("j-neg", "-9223372036854775809").into_bytes(),
            400,
            "invalid_request",
        ),
        (
            "an amount past any float",
            "application/json",
            payment("j-1e400", "1e400").into_bytes(),
            400,
            "invalid_request",
        ),
        (
            "invalid UTF-8 in a string",
            "application/json",
            {
                let mut body = payment("j-utf8", "1").into_bytes();
                body.splice(15..15, [0xff, 0xfe]);
                body
            },
            400,
            "invalid_request",
        ),
        (
            "invalid UTF-8 outside strings",
            "application/json",
            b"{\xc3\x28: 1}".to_vec(),
            400,
            "invalid_request",
        ),
        (
            "a byte order mark",
            "application/json",
            with_bom,
            400,
            "invalid_request",
        ),
        (
            "bad JSON with no Content-Type",
            "",
            b"{\"order_id\":".to_vec(),
            400,
            "invalid_request",
        ),
        (
            "text/plain",
            "text/plain",
            payment("j-text", "1").into_bytes(),
            415,
            "unsupported_media_type",
        ),
        (
            "a form",
            "application/x-www-form-urlencoded",
            b"order_id=j-form&amount=1".to_vec(),
            415,
            "unsupported_media_type",
        ),
        (
            "JSON's name misspelt",
            "application/jsonx",
            payment("j-jsonx", "1").into_bytes(),
            415,
            "unsupported_media_type",
        ),
    ];
    for (what, content_type, body, status, code) in cases {
        let reply = node
            .send(
                reqwest::Method::POST,
                "/v1/payments",
                Some((content_type, body)),
                &[],
            )
            .await;
        let problem = reply.assert_problem(status, code);
        println!("{what}: {status} {code}: {}", problem["detail"]);
    }
    // An account opened with a byte order mark is not opened either.
    let mut account = b"\xEF\xBB\xBF".to_vec();
    account.extend_from_slice(br#"{"account_id":"bom","balance":5}"#);
    node.send(
        reqwest::Method::POST,
        "/v1/accounts",
        Some(("application/json", account)),
        &[],
    )
    .await
    .assert_problem(400, "invalid_request");
    cluster
        .get(0, "/v1/accounts/bom")
        .await
        .assert_problem(404, "account_not_found");
    for order_id in [
        "j-deep", "j-i64", "j-u64", "j-neg", "j-1e400", "j-utf8", "j-bom", "j-text", "j-form",
        "j-jsonx",
    ] {
        cluster
            .get(0, &format!("/v1/payments/{order_id}"))
            .await
            .assert_problem(404, "payment_not_found");
    }
    assert_eq!(cluster.balance("payer").await, 100);
    assert_eq!(cluster.balance("payee").await, 0);

    // No `Content-Type` and good JSON: read as JSON, as before.
    let reply = node
        .send(
            reqwest::Method::POST,
            "/v1/payments",
            Some(("", payment("j-bare", "3").into_bytes())),
            &[],
        )
        .await;
    assert_eq!(reply.status, 201, "{}", reply.text());
    assert_eq!(cluster.balance("payer").await, 97);
    cluster.assert_books_balance().await;
    subject.assert_serves_others().await;
}

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
