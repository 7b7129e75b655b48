//! Hostile HTTP clients against `idem serve` (on SQLite) and `idem proxy` (its default
//! SQLite store, in front of a counting upstream), each the real `idem` binary: the server
//! under test ([`Subject`]) and raw HTTP/1.1 connections ([`Conn`]) that can trickle bytes.
#![allow(dead_code, unreachable_pub)] // each test file uses a part of it

use std::time::Duration;

use idem_http::testing::{counting_app, serve_counting_app, Served, Target};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

use super::harness::Cluster;
use super::proxy_harness::{spawn_proxy_in, Process, TempDir};

/// The longest any single wait in these tests may take before the test fails.
pub(crate) const PATIENCE: Duration = Duration::from_secs(20);

/// What a test runs against.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Kind {
    /// `idem serve` on a fresh SQLite file, accounts `payer` (100) and `payee` (0) open.
    Serve,
    /// `idem proxy` with its default store, in front of the counting app.
    Proxy,
}

/// A running server under test and what it needs kept alive.
pub(crate) struct Subject {
    pub(crate) kind: Kind,
    /// `127.0.0.1:PORT`.
    pub(crate) addr: String,
    /// `http://127.0.0.1:PORT`.
    pub(crate) base: String,
    pub(crate) cluster: Option<Cluster>,
    pub(crate) upstream: Option<Target>,
    _proxy: Option<(Process, TempDir, Served)>,
}

impl Subject {
    /// Starts the server of `kind` with `flags` (the limits under test).
    pub(crate) async fn start(kind: Kind, flags: &[&str]) -> Subject {
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
    pub(crate) fn probe_path(&self) -> &'static str {
        match self.kind {
            Kind::Serve => "/healthz",
            // Passed through unguarded to the upstream's counter, which it does not count.
            Kind::Proxy => "/count",
        }
    }

    /// `GET` [`Self::probe_path`] on a fresh connection; asserts 200.
    pub(crate) async fn assert_serves_others(&self) {
        let url = format!("{}{}", self.base, self.probe_path());
        let response = tokio::time::timeout(PATIENCE, reqwest::get(&url))
            .await
            .expect("the probe is answered in time")
            .expect("the probe is answered");
        assert_eq!(response.status(), 200, "GET {url}");
    }

    /// The head of a guarded request that would change something, `id` naming the order
    /// (serve) or the key (proxy), with `body_len` bytes of body to follow.
    pub(crate) fn guarded_head(&self, id: &str, body_len: usize) -> String {
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
    pub(crate) fn guarded_body(&self, id: &str) -> String {
        match self.kind {
            Kind::Serve => {
                json!({"order_id": id, "payer": "payer", "payee": "payee", "amount": 7}).to_string()
            }
            Kind::Proxy => json!({"order": id, "padding": "x".repeat(40)}).to_string(),
        }
    }

    /// Asserts that the guarded request for `id` never ran: no payment and balances as
    /// opened (serve), the upstream never reached (proxy).
    pub(crate) async fn assert_nothing_ran(&self, id: &str) {
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
    pub(crate) async fn assert_guarded_request_runs(&self, id: &str) {
        let body = self.guarded_body(id);
        let request = format!("{}{body}", self.guarded_head(id, body.len()));
        let response = Conn::open(&self.addr)
            .await
            .exchange(&request, "the guarded request")
            .await;
        assert_eq!(response.status, 201, "{}", response.text());
        if let Some(upstream) = &self.upstream {
            assert_eq!(upstream.runs().await, 1, "ran once");
        }
    }
}

/// One raw HTTP/1.1 connection: bytes in, answers parsed out.
pub(crate) struct Conn {
    reader: OwnedReadHalf,
    /// `None` once handed to a trickling task.
    writer: Option<OwnedWriteHalf>,
    read: Vec<u8>,
}

/// An answer read off a raw connection.
#[derive(Debug)]
pub(crate) struct RawResponse {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

impl RawResponse {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Asserts a problem+json answer with `status` and `code`.
    pub(crate) fn assert_problem(&self, status: u16, code: &str) {
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
    pub(crate) async fn open(addr: &str) -> Conn {
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

    pub(crate) async fn send(&mut self, bytes: &[u8]) {
        assert!(self.try_send(bytes).await, "send");
    }

    /// Sends `bytes`; `false` when the connection is already closed.
    pub(crate) async fn try_send(&mut self, bytes: &[u8]) -> bool {
        let writer = self.writer.as_mut().expect("the writer is not trickling");
        writer.write_all(bytes).await.is_ok()
    }

    /// Writes `bytes` one at a time, `every` apart, on a task of their own, until done or
    /// the connection closes; the answer is read from `self` meanwhile.
    pub(crate) fn trickle(
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
    pub(crate) async fn fill(&mut self) -> bool {
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
    pub(crate) async fn response(&mut self) -> Option<RawResponse> {
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

    /// Sends `request` whole and reads its answer; panics, naming `what`, when the server
    /// closes the connection instead.
    pub(crate) async fn exchange(&mut self, request: &str, what: &str) -> RawResponse {
        self.send(request.as_bytes()).await;
        self.response()
            .await
            .unwrap_or_else(|| panic!("{what}: no answer"))
    }

    /// Waits until the server closes the connection, discarding anything it sends.
    pub(crate) async fn closed(&mut self) {
        while self.fill().await {}
    }
}
