//! Running `idem serve` as real processes for the black-box tests: a [`Cluster`] of nodes on
//! one fresh database (a temp SQLite file, or a PostgreSQL/MySQL database created for the
//! test and dropped after it), an HTTP client, and helpers to read answers.

#![allow(dead_code, unreachable_pub)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use idem_test_support::{backend_url, unique_name, TestDatabase};
use reqwest::header::CONTENT_TYPE;
use serde_json::Value;

/// How long a node may take to migrate and listen.
const START_MAX: Duration = Duration::from_secs(60);

/// The `idem` binary with none of the operator's `IDEM_*` variables (each test says what it
/// sets), stdout piped for the `listening on` line and stderr shown.
pub fn idem() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_idem"));
    for var in [
        "IDEM_DATABASE",
        "IDEM_REDIS",
        "IDEM_LISTEN",
        "IDEM_LOG_FORMAT",
        "IDEM_AUTH",
        "IDEM_INSECURE_NO_AUTH",
        "IDEM_NATS",
        "IDEM_AMQP",
    ] {
        command.env_remove(var);
    }
    command.stdout(Stdio::piped()).stderr(Stdio::inherit());
    command
}

/// One `idem serve` process, killed when dropped.
pub struct Node {
    child: Option<Child>,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
}

impl Node {
    /// Starts `idem serve --database URL --listen 127.0.0.1:0 EXTRA…` and waits for its
    /// `listening on ADDR` line.
    pub fn start(database: &str, extra: &[&str], cwd: Option<&PathBuf>) -> Node {
        Self::start_on(database, "127.0.0.1:0", extra, cwd)
    }

    /// [`Node::start`] listening on `listen`.
    pub fn start_on(database: &str, listen: &str, extra: &[&str], cwd: Option<&PathBuf>) -> Node {
        let mut command = idem();
        command
            .arg("serve")
            .args(["--database", database, "--listen", listen])
            .args(extra)
            .env("RUST_LOG", "info,sqlx=warn");
        if let Some(dir) = cwd {
            command.current_dir(dir);
        }
        Self::spawn(command)
    }

    /// Spawns a prepared command and waits for its `listening on ADDR` line.
    pub fn spawn(mut command: Command) -> Node {
        let mut child = command.spawn().expect("start idem serve");
        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if !sent {
                    if let Some(addr) = listening_addr(&line) {
                        let _ = tx.send(addr);
                        sent = true;
                    }
                }
            }
        });
        let addr = rx
            .recv_timeout(START_MAX)
            .expect("idem serve printed `listening on ADDR`");
        Node {
            child: Some(child),
            base: format!("http://{addr}"),
        }
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(mut self) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM failed");
        let started = Instant::now();
        loop {
            if let Some(status) = child.try_wait().expect("wait for idem serve") {
                return status;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "idem serve did not stop within 30 s of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The address in a `listening on ADDR` log line, text or JSON.
pub fn listening_addr(line: &str) -> Option<String> {
    let rest = &line[line.find("listening on ")? + "listening on ".len()..];
    let addr: String = rest
        .chars()
        .take_while(|c| c.is_ascii_hexdigit() || matches!(c, '.' | ':' | '[' | ']'))
        .collect();
    (!addr.is_empty()).then_some(addr)
}

/// Nodes sharing one fresh database.
pub struct Cluster {
    pub nodes: Vec<Node>,
    pub database: String,
    pub client: reqwest::Client,
    fresh: Option<TestDatabase>,
}

impl Cluster {
    fn new(fresh: TestDatabase, nodes: usize, extra: &[&str]) -> Cluster {
        let database = fresh.url().to_owned();
        let mut cluster = Cluster {
            nodes: Vec::new(),
            database: database.clone(),
            client: reqwest::Client::builder()
                .pool_max_idle_per_host(64)
                .timeout(Duration::from_secs(60))
                .build()
                .expect("http client"),
            fresh: Some(fresh),
        };
        // A shared server and parallel tests: few connections per node.
        let mut extra: Vec<&str> = extra.to_vec();
        if !database.starts_with("sqlite") {
            extra.extend(["--max-connections", "4"]);
        }
        let extra = &extra[..];
        // Started together: the migrations must be safe when nodes race.
        let starting: Vec<_> = (0..nodes)
            .map(|_| {
                let (database, extra) = (
                    database.clone(),
                    extra.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
                );
                std::thread::spawn(move || {
                    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
                    Node::start(&database, &extra, None)
                })
            })
            .collect();
        for node in starting {
            cluster.nodes.push(node.join().expect("node started"));
        }
        cluster
    }

    /// One node on a fresh SQLite file.
    pub async fn sqlite(extra: &[&str]) -> Option<Cluster> {
        let fresh = TestDatabase::create("sqlite", "idem_serve").await?;
        Some(Self::new(fresh, 1, extra))
    }

    /// Three nodes on a fresh PostgreSQL database, or `None` (skipped) without a server.
    pub async fn postgres(extra: &[&str]) -> Option<Cluster> {
        Self::postgres_nodes(3, extra).await
    }

    /// `nodes` nodes on a fresh PostgreSQL database.
    pub async fn postgres_nodes(nodes: usize, extra: &[&str]) -> Option<Cluster> {
        let fresh = TestDatabase::create("IDEM_TEST_POSTGRES", "idem_serve").await?;
        Some(Self::new(fresh, nodes, extra))
    }

    /// Three nodes on a fresh MySQL/MariaDB database, or `None` (skipped) without a server.
    pub async fn mysql(extra: &[&str]) -> Option<Cluster> {
        Self::mysql_nodes(3, extra).await
    }

    /// `nodes` nodes on a fresh MySQL/MariaDB database.
    pub async fn mysql_nodes(nodes: usize, extra: &[&str]) -> Option<Cluster> {
        let fresh = TestDatabase::create("IDEM_TEST_MYSQL", "idem_serve").await?;
        Some(Self::new(fresh, nodes, extra))
    }

    /// Three PostgreSQL nodes with the Redis replay cache under a fresh key prefix.
    pub async fn postgres_redis() -> Option<Cluster> {
        Self::postgres_redis_nodes(3).await
    }

    /// `nodes` PostgreSQL nodes with the Redis replay cache under a fresh key prefix.
    pub async fn postgres_redis_nodes(nodes: usize) -> Option<Cluster> {
        let redis = backend_url("IDEM_TEST_REDIS")?;
        let prefix = format!("{}:", unique_name("idem_serve"));
        Self::postgres_nodes(nodes, &["--redis", &redis, "--redis-prefix", &prefix]).await
    }

    /// One SQLite node told to use a Redis that is not there: answers must not change.
    pub async fn sqlite_dead_redis() -> Option<Cluster> {
        Self::sqlite(&["--redis", "redis://127.0.0.1:1", "--redis-prefix", "dead:"]).await
    }

    /// The base URL of node `i` (round robin).
    pub fn node(&self, i: usize) -> &str {
        &self.nodes[i % self.nodes.len()].base
    }

    /// The library's view of the database, for ledger checks.
    pub async fn db(&self) -> idem_pay::Db {
        idem_pay::Db::connect(&self.database, 2)
            .await
            .expect("open the test database")
    }

    /// A cheap, `'static` handle on node `i` (round robin) for concurrent requests.
    pub fn endpoint(&self, i: usize) -> Endpoint {
        Endpoint {
            client: self.client.clone(),
            base: self.node(i).to_owned(),
        }
    }

    /// `POST path` with a JSON body to node `i`.
    pub async fn post(&self, i: usize, path: &str, body: &Value) -> Reply {
        self.endpoint(i).post(path, body).await
    }

    /// `GET path` on node `i`.
    pub async fn get(&self, i: usize, path: &str) -> Reply {
        self.endpoint(i).get(path).await
    }

    /// Opens an account and asserts it was created.
    pub async fn open(&self, account_id: &str, balance: i64) {
        let reply = self
            .post(
                0,
                "/v1/accounts",
                &serde_json::json!({"account_id": account_id, "balance": balance}),
            )
            .await;
        assert_eq!(reply.status, 201, "open {account_id}: {}", reply.text());
    }

    /// An account's balance read over HTTP.
    pub async fn balance(&self, account_id: &str) -> i64 {
        let reply = self.get(0, &format!("/v1/accounts/{account_id}")).await;
        assert_eq!(reply.status, 200, "read {account_id}: {}", reply.text());
        reply.json()["balance"]
            .as_i64()
            .expect("balance is an integer")
    }

    /// Asserts that balances equal the ledger, the total is unchanged and none is negative.
    pub async fn assert_books_balance(&self) -> idem_pay::LedgerReport {
        let db = self.db().await;
        let report = db.ledger_check().await.expect("ledger check");
        db.close().await;
        assert!(report.is_consistent(), "books do not balance: {report:?}");
        report
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.nodes.clear();
        let Some(fresh) = self.fresh.take() else {
            return;
        };
        // Dropping runs outside any async context we could borrow: a thread of its own.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(fresh.drop_database());
        })
        .join();
    }
}

/// One node's address and a client.
#[derive(Clone)]
pub struct Endpoint {
    pub client: reqwest::Client,
    pub base: String,
}

impl Endpoint {
    /// `POST path` with a JSON body.
    pub async fn post(&self, path: &str, body: &Value) -> Reply {
        let bytes = body.to_string().into_bytes();
        self.send(
            reqwest::Method::POST,
            path,
            Some(("application/json", bytes)),
            &[],
        )
        .await
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> Reply {
        self.send(reqwest::Method::GET, path, None, &[]).await
    }

    /// Any request; an empty content type sends none.
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<(&str, Vec<u8>)>,
        headers: &[(&str, &str)],
    ) -> Reply {
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if let Some((content_type, bytes)) = body {
            if !content_type.is_empty() {
                request = request.header(CONTENT_TYPE, content_type);
            }
            request = request.body(bytes);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.expect("send the request");
        let status = response.status().as_u16();
        let replayed = response
            .headers()
            .get("idempotent-replayed")
            .is_some_and(|v| v == "true");
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let body = response.bytes().await.expect("read the body").to_vec();
        Reply {
            status,
            replayed,
            content_type,
            body,
        }
    }
}

/// An HTTP answer.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub replayed: bool,
    pub content_type: String,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    /// Asserts a problem+json answer with `status` and `code`; returns the problem.
    pub fn assert_problem(&self, status: u16, code: &str) -> Value {
        assert_eq!(self.status, status, "status of {}", self.text());
        assert_eq!(
            self.content_type,
            "application/problem+json",
            "content type of {}",
            self.text()
        );
        let problem = self.json();
        assert_eq!(problem["code"], code, "code of {problem}");
        assert_eq!(problem["status"], status, "status member of {problem}");
        for member in ["type", "title", "detail"] {
            assert!(problem[member].is_string(), "{member} missing in {problem}");
        }
        assert!(!self.replayed, "a problem is never a replay");
        problem
    }
}

#[test]
fn the_listening_address_is_read_from_the_log() {
    assert_eq!(
        listening_addr("INFO idem_pay::serve: listening on 127.0.0.1:4321").as_deref(),
        Some("127.0.0.1:4321")
    );
    assert_eq!(
        listening_addr(r#"{"fields":{"message":"listening on 127.0.0.1:80"}}"#).as_deref(),
        Some("127.0.0.1:80")
    );
}
