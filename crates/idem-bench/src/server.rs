//! Starting `idem serve` for a run: on a free loopback port, its address read from its own
//! log, ready once `/healthz` answers, killed when dropped.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Method, StatusCode};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

use crate::client::{Conn, Target};
use crate::error::{BenchError, Result};

/// Log lines kept to explain a server that failed.
const TAIL_LINES: usize = 30;
/// How long a server may take to say where it listens and to answer `/healthz`.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Creates an API key of the tenant `bench` in `database` with `bin keys create`; the secret.
///
/// # Errors
/// The command did not run, failed, or printed no key.
pub(crate) async fn create_api_key(bin: &Path, database: &str) -> Result<String> {
    let fail = |reason: String| BenchError::Spawn {
        bin: PathBuf::from(bin),
        reason,
    };
    let output = Command::new(bin)
        .args([
            "keys",
            "create",
            "--tenant",
            "bench",
            "--database",
            database,
        ])
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|e| fail(e.to_string()))?;
    let key = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    if !output.status.success() || key.is_empty() {
        return Err(fail(format!(
            "`keys create` failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    Ok(key)
}

/// A running `idem serve`, killed when dropped.
#[derive(Debug)]
pub struct Server {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
}

impl Server {
    /// Starts `bin serve --listen 127.0.0.1:0 --database database extra…` and waits until it
    /// answers `/healthz`.
    ///
    /// # Errors
    /// The binary did not start, exited, never logged an address, or never became healthy;
    /// the error carries its last log lines.
    pub async fn spawn(bin: &Path, database: &str, extra: &[String]) -> Result<Self> {
        let fail = |reason: String| BenchError::Spawn {
            bin: PathBuf::from(bin),
            reason,
        };
        let mut child = Command::new(bin)
            .args(["serve", "--listen", "127.0.0.1:0", "--database", database])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| fail(e.to_string()))?;
        let tail = Arc::new(Mutex::new(VecDeque::new()));
        let (found_tx, mut found_rx) = mpsc::unbounded_channel();
        // Both streams are read to the end, always: a full pipe would stall the server.
        if let Some(out) = child.stdout.take() {
            tokio::spawn(watch(out, tail.clone(), found_tx.clone()));
        }
        if let Some(err) = child.stderr.take() {
            tokio::spawn(watch(err, tail.clone(), found_tx));
        }
        let last_lines = |tail: &Arc<Mutex<VecDeque<String>>>| {
            tail.lock()
                .map(|t| t.iter().cloned().collect::<Vec<_>>().join("\n"))
                .unwrap_or_default()
        };
        let addr = match tokio::time::timeout(START_TIMEOUT, found_rx.recv()).await {
            Ok(Some(addr)) => addr,
            Ok(None) => {
                return Err(fail(format!(
                    "exited without an address; its log:\n{}",
                    last_lines(&tail)
                )))
            }
            Err(_) => {
                return Err(fail(format!(
                    "logged no address in {START_TIMEOUT:?}; its log:\n{}",
                    last_lines(&tail)
                )))
            }
        };
        let mut conn = Conn::new(Target::at(addr, Vec::new()));
        let deadline = tokio::time::Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(answer) = conn.send(Method::GET, "/healthz", None, None).await {
                if answer.status == StatusCode::OK {
                    break;
                }
            }
            if let Ok(Some(status)) = child.try_wait() {
                return Err(fail(format!(
                    "exited with {status}; its log:\n{}",
                    last_lines(&tail)
                )));
            }
            if tokio::time::Instant::now() > deadline {
                return Err(fail(format!(
                    "/healthz never answered 200; its log:\n{}",
                    last_lines(&tail)
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(Server { child, addr })
    }

    /// Stops the server and waits for it to exit.
    pub async fn stop(mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }
}

/// Reads log lines to the end, keeps the last few, and reports the first socket address seen.
async fn watch(
    stream: impl AsyncRead + Unpin,
    tail: Arc<Mutex<VecDeque<String>>>,
    found: mpsc::UnboundedSender<SocketAddr>,
) {
    let mut lines = BufReader::new(stream).lines();
    let mut reported = false;
    while let Ok(Some(line)) = lines.next_line().await {
        if !reported {
            if let Some(addr) = address_in(&line) {
                reported = found.send(addr).is_ok();
            }
        }
        if let Ok(mut tail) = tail.lock() {
            if tail.len() == TAIL_LINES {
                tail.pop_front();
            }
            tail.push_back(line);
        }
    }
}

/// The first loopback or wildcard socket address with a non-zero port in a log line,
/// whatever the log's format (plain, key=value or JSON).
pub fn address_in(line: &str) -> Option<SocketAddr> {
    line.split(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '.' | ':' | '[' | ']')))
        .filter_map(|token| token.trim_matches('.').parse::<SocketAddr>().ok())
        .find(|addr| addr.port() != 0)
        .map(|addr| {
            if addr.ip().is_unspecified() {
                SocketAddr::from(([127, 0, 0, 1], addr.port()))
            } else {
                addr
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_is_found_in_any_log_format() {
        let want: SocketAddr = "127.0.0.1:41234".parse().expect("addr");
        assert_eq!(address_in("listening on 127.0.0.1:41234"), Some(want));
        assert_eq!(
            address_in("2026-11-23T11:12:13Z INFO idem: listening addr=http://127.0.0.1:41234/"),
            Some(want)
        );
        assert_eq!(
            address_in(r#"{"message":"listening","addr":"127.0.0.1:41234"}"#),
            Some(want)
        );
        assert_eq!(address_in("bound 0.0.0.0:41234."), Some(want));
        assert_eq!(address_in("starting on 127.0.0.1:0"), None);
        assert_eq!(address_in("11:12:13 nothing here"), None);
    }
}
