//! `idem proxy` end to end: the proxy runs as a separate process (the real `idem` binary)
//! in front of an upstream that is a separate process too — this test binary re-run as
//! the counting app — and the layer's own scenarios run through both.

#[path = "common/proxy_harness.rs"]
mod harness;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use harness::{announced, proxy_command, spawn_proxy_in, Process, TempDir};
use idem_http::testing::{counting_app, serve_counting_app, unique_key, Target, WAIT_MAX};
use idem_test_support::backend_url;

/// Set in the environment of the upstream child process.
const UPSTREAM_ENV: &str = "IDEM_TEST_COUNTING_UPSTREAM";

/// The counting app in a process of its own: this test binary, running only
/// [`counting_upstream_process`].
fn spawn_upstream() -> (Process, String) {
    let exe = std::env::current_exe().expect("the test binary's path");
    let mut child = Command::new(exe)
        .args([
            "counting_upstream_process",
            "--exact",
            "--ignored",
            "--nocapture",
        ])
        .env(UPSTREAM_ENV, "1")
        .env("RUST_BACKTRACE", "0")
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the upstream process");
    let url = announced(&mut child, "UPSTREAM ");
    (Process(child), url)
}

/// Which store the proxy under test uses.
#[derive(Clone, Copy)]
enum Backend {
    Memory,
    /// No store option at all: the default SQLite file `./idem-data/proxy.db`.
    DefaultSqlite,
    Redis,
    /// `--database sqlite://… --redis …`: Redis in front, SQLite the truth.
    Tiered,
}

/// The proxy (in front of a fresh upstream) on `backend`, in the reject or the wait mode;
/// `None` when the backend's server is not configured (the test is skipped).
async fn proxied(backend: Backend, wait_mode: bool) -> Option<Target> {
    let dir = TempDir::new();
    let mut extra: Vec<String> = Vec::new();
    // Records in the shared Redis expire soon after the test.
    let redis_flags = |extra: &mut Vec<String>, url: String| {
        extra.extend([
            "--redis".to_owned(),
            url,
            "--ttl-secs".to_owned(),
            "120".to_owned(),
        ]);
    };
    match backend {
        Backend::Memory => extra.push("--memory".to_owned()),
        Backend::DefaultSqlite => {}
        Backend::Redis => redis_flags(&mut extra, backend_url("IDEM_TEST_REDIS")?),
        Backend::Tiered => {
            redis_flags(&mut extra, backend_url("IDEM_TEST_REDIS")?);
            let db = dir.0.join("truth.db");
            extra.extend([
                "--database".to_owned(),
                format!("sqlite://{}", db.display()),
            ]);
        }
    }
    if wait_mode {
        extra.extend([
            "--in-flight-wait-ms".to_owned(),
            WAIT_MAX.as_millis().to_string(),
        ]);
    }
    let (upstream, upstream_url) = spawn_upstream();
    let (proxy, proxy_url) = spawn_proxy_in(&dir.0, &upstream_url, &extra);
    // The proxy passes GET through, so `GET /count` reaches the upstream's counter.
    Some(Target::new(proxy_url).keep(proxy).keep(upstream).keep(dir))
}

mod memory {
    use super::*;
    idem_http::scenario_tests!(
        reject: proxied(Backend::Memory, false),
        wait: proxied(Backend::Memory, true),
    );
}

mod default_sqlite {
    use super::*;
    idem_http::scenario_tests!(
        reject: proxied(Backend::DefaultSqlite, false),
        wait: proxied(Backend::DefaultSqlite, true),
    );
}

mod redis {
    use super::*;
    idem_http::scenario_tests!(
        reject: proxied(Backend::Redis, false),
        wait: proxied(Backend::Redis, true),
    );
}

mod tiered {
    use super::*;
    idem_http::scenario_tests!(
        reject: proxied(Backend::Tiered, false),
        wait: proxied(Backend::Tiered, true),
    );
}

/// With no store option the proxy keeps its records in `./idem-data/proxy.db`, so they
/// outlive a restart: the replay comes from the file, not from memory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_store_is_a_sqlite_file_that_survives_a_restart() {
    let dir = TempDir::new();
    let (_upstream, upstream_url) = spawn_upstream();
    let key = unique_key("restart");
    let post = |proxy_url: &str| {
        reqwest::Client::new()
            .post(format!("{proxy_url}/orders"))
            .header("idempotency-key", format!("\"{key}\""))
            .body("{}")
            .send()
    };
    let (proxy, proxy_url) = spawn_proxy_in(&dir.0, &upstream_url, &[]);
    let first = post(&proxy_url).await.expect("answered");
    assert_eq!(first.status(), 201);
    let first = first.bytes().await.expect("body");
    assert!(
        dir.0.join("idem-data/proxy.db").exists(),
        "the default SQLite file"
    );
    drop(proxy);

    let (_proxy, proxy_url) = spawn_proxy_in(&dir.0, &upstream_url, &[]);
    let again = post(&proxy_url).await.expect("answered");
    assert_eq!(again.status(), 201);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(again.bytes().await.expect("body"), first);
    assert_eq!(
        Target::new(upstream_url).runs().await,
        1,
        "ran once across the restart"
    );
}

/// An upstream that answers in HTTP/1.0 does not make the proxy answer its own client in
/// HTTP/1.0 (which would also end keep-alive): each hop speaks its own version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_answers_in_its_own_http_version() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the upstream");
    let upstream_url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut request = vec![0u8; 16 * 1024];
                let mut read = 0;
                // Read until the end of the request's head and its 2-byte body.
                while read < request.len() {
                    match socket.read(&mut request[read..]).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => read += n,
                    }
                    if let Some(at) = request[..read].windows(4).position(|w| w == b"\r\n\r\n") {
                        if read >= at + 4 + 2 {
                            break;
                        }
                    }
                }
                let _ = socket
                    .write_all(b"HTTP/1.0 201 Created\r\ncontent-length: 2\r\n\r\nok")
                    .await;
            });
        }
    });
    let dir = TempDir::new();
    let (_proxy, proxy_url) = spawn_proxy_in(&dir.0, &upstream_url, &["--memory".to_owned()]);
    let key = unique_key("version");
    for replayed in [false, true] {
        let response = reqwest::Client::new()
            .post(format!("{proxy_url}/orders"))
            .header("idempotency-key", format!("\"{key}\""))
            .body("{}")
            .send()
            .await
            .expect("answered");
        assert_eq!(response.status(), 201);
        assert_eq!(response.version(), reqwest::Version::HTTP_11);
        assert_eq!(
            response.headers().contains_key("idempotent-replayed"),
            replayed
        );
        assert_eq!(response.bytes().await.expect("body"), "ok");
    }
}

/// Not a test: the upstream process the tests above start. Does nothing unless started
/// by them.
#[test]
#[ignore = "the counting upstream, run as a child process by the proxy tests"]
fn counting_upstream_process() {
    if std::env::var_os(UPSTREAM_ENV).is_none() {
        return;
    }
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    runtime.block_on(async {
        let served = serve_counting_app(counting_app()).await;
        println!("UPSTREAM http://{}", served.addr);
        std::future::pending::<()>().await;
    });
}

/// SIGTERM lets a request in flight finish, then the proxy exits with success.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_requests_then_exits() {
    let (_upstream, upstream_url) = spawn_upstream();
    let dir = TempDir::new();
    let (mut proxy, proxy_url) = spawn_proxy_in(&dir.0, &upstream_url, &["--memory".to_owned()]);
    let client = reqwest::Client::new();
    let key = unique_key("drain");
    let slow = tokio::spawn(
        client
            .post(format!("{proxy_url}/orders"))
            .header("idempotency-key", format!("\"{key}\""))
            .header("x-delay-ms", "1500")
            .body("{}")
            .send(),
    );
    // Wait until the upstream is running the request, then ask the proxy to stop.
    let upstream = Target::new(upstream_url.clone());
    while upstream.runs().await == 0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let pid = proxy.0.id().to_string();
    let killed = Command::new("kill").args(["-TERM", &pid]).status();
    assert!(killed.expect("run kill").success());

    let response = slow
        .await
        .expect("join")
        .expect("the in-flight request is answered");
    assert_eq!(response.status(), 201);
    let status = tokio::task::spawn_blocking(move || proxy.0.wait())
        .await
        .expect("join")
        .expect("wait for the proxy");
    assert!(
        status.success(),
        "idem proxy exits 0 after SIGTERM: {status}"
    );
}

/// `idem proxy` logs as `idem serve` does (the binary sets both up the same way): to
/// stdout, at `info` when `RUST_LOG` is unset, JSON lines under `IDEM_LOG_FORMAT=json`; it
/// still announces its address, and SIGTERM logs the drain and exits 0.
#[cfg(unix)]
#[test]
fn logs_go_to_stdout_like_serve_and_sigterm_is_logged() {
    let dir = TempDir::new();
    let mut child = proxy_command(&dir.0, "http://127.0.0.1:1", &["--memory".to_owned()])
        .env_remove("RUST_LOG")
        .env("IDEM_LOG_FORMAT", "json")
        .spawn()
        .expect("start idem proxy");
    let stdout = child.stdout.take().expect("stdout is piped");
    let mut proxy = Process(child);
    let mut lines = BufReader::new(stdout)
        .lines()
        .map(|l| l.expect("read stdout"));
    let mut events = Vec::new();
    for line in lines.by_ref() {
        if line.starts_with("listening on http://127.0.0.1:") {
            break;
        }
        let event: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        events.push(event);
    }
    assert!(
        events
            .iter()
            .any(|e| e["level"] == "INFO" && e["fields"]["message"] == "idem proxy listening"),
        "an info event before the announcement: {events:?}"
    );

    let pid = proxy.0.id().to_string();
    let killed = Command::new("kill").args(["-TERM", &pid]).status();
    assert!(killed.expect("run kill").success());
    let rest: Vec<serde_json::Value> = lines
        .map(|line| {
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
        })
        .collect();
    assert!(
        rest.iter()
            .any(|e| e["fields"]["message"] == "shutting down: draining in-flight requests"),
        "{rest:?}"
    );
    let status = proxy.0.wait().expect("wait for the proxy");
    assert!(
        status.success(),
        "idem proxy exits 0 after SIGTERM: {status}"
    );
}
