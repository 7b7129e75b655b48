//! The nodes: `idem serve` or `idem proxy` processes on one shared store, started, killed
//! with SIGKILL and restarted. Each node listens on a port of its own choosing and says which
//! on stdout.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};

use crate::skew::SkewPlan;
use crate::Error;

/// How long a node may take to say where it listens and to answer `/healthz`.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// Log lines kept per node, shown when it fails to start.
const LOG_LINES_KEPT: usize = 40;

/// How to start a node: the `idem` binary and its arguments, to which `--listen 127.0.0.1:0`
/// is added, and which nodes run with their clock skewed.
#[derive(Debug, Clone)]
pub struct NodeSpec {
    /// The `idem` binary.
    pub bin: PathBuf,
    /// The command and its options, such as `serve --database URL` or
    /// `proxy --upstream URL --database URL`.
    pub args: Vec<String>,
    /// The nodes whose wall clock is skewed, by slot: a restarted node keeps its skew.
    pub skew: SkewPlan,
    /// Arguments of one slot only, by slot (such as `--database` through its own relay);
    /// slots past the end get none.
    pub per_node: Vec<Vec<String>>,
}

impl NodeSpec {
    /// An `idem serve` node on the database `database_urls` name, one URL for every node or
    /// one per node (each through its own relay), with `extra_args` after it (such as
    /// `--unsafe-disable-idempotency`).
    pub fn serve(bin: PathBuf, database_urls: &[String], extra_args: Vec<String>) -> Self {
        let database = |url: &String| vec!["--database".to_owned(), url.clone()];
        let mut args = vec!["serve".to_owned()];
        let mut per_node = Vec::new();
        match database_urls {
            [one] => args.extend(database(one)),
            many => per_node = many.iter().map(database).collect(),
        }
        args.extend(extra_args);
        Self {
            bin,
            args,
            skew: SkewPlan::default(),
            per_node,
        }
    }
}

/// A running node process.
#[derive(Debug)]
pub struct Node {
    child: Child,
    addr: SocketAddr,
}

impl Node {
    /// Where the node listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Kills the node with SIGKILL: no drain, no goodbye, requests in flight are lost.
    pub async fn kill(mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }
}

/// Starts node `index` and waits until it answers `/healthz`. A skewed node gets
/// libfaketime through its own environment (`LD_PRELOAD`, `FAKETIME`), not a wrapper
/// process, so that a kill hits the node itself.
///
/// # Errors
/// [`Error::Node`] when the process cannot start, exits, or stays silent too long.
pub async fn start_node(spec: &NodeSpec, index: usize) -> Result<Node, Error> {
    let mut child = Command::new(&spec.bin)
        .args(&spec.args)
        .args(spec.per_node.get(index).into_iter().flatten())
        .arg("--listen")
        .arg("127.0.0.1:0")
        .envs(spec.skew.env(index))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| Error::Node(format!("starting {}: {e}", spec.bin.display())))?;
    let logs = Arc::new(Mutex::new(VecDeque::new()));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    if let Some(out) = child.stdout.take() {
        drain(out, logs.clone(), Some(tx.clone()));
    }
    if let Some(err) = child.stderr.take() {
        drain(err, logs.clone(), Some(tx));
    }
    let failed = |why: &str| {
        let tail: Vec<String> = logs
            .lock()
            .map(|l| l.iter().cloned().collect())
            .unwrap_or_default();
        Error::Node(format!(
            "node {index} {why}; its last lines:\n{}",
            tail.join("\n")
        ))
    };
    let addr = tokio::time::timeout(START_TIMEOUT, async {
        while let Some(line) = rx.recv().await {
            if let Some(addr) = listen_addr(&line) {
                return Some(addr);
            }
        }
        None
    })
    .await;
    let addr = match addr {
        Ok(Some(addr)) => addr,
        Ok(None) => return Err(failed("exited before saying where it listens")),
        Err(_) => return Err(failed("did not say where it listens in time")),
    };
    let healthy = tokio::time::timeout(START_TIMEOUT, async {
        let client = reqwest::Client::new();
        loop {
            let probe = client
                .get(format!("http://{addr}/healthz"))
                .timeout(Duration::from_secs(2))
                .send()
                .await;
            if probe.is_ok_and(|r| r.status().is_success()) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    if healthy.is_err() {
        return Err(failed("did not answer /healthz in time"));
    }
    Ok(Node { child, addr })
}

/// Reads a node's output to the end, so its pipe never fills, keeping the last lines and
/// passing each line on while someone waits for the listen line.
fn drain(
    stream: impl AsyncRead + Unpin + Send + 'static,
    logs: Arc<Mutex<VecDeque<String>>>,
    tx: Option<tokio::sync::mpsc::UnboundedSender<String>>,
) {
    tokio::spawn(async move {
        let mut lines = BufReader::new(stream).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(tx) = &tx {
                let _ = tx.send(line.clone());
            }
            if let Ok(mut logs) = logs.lock() {
                if logs.len() == LOG_LINES_KEPT {
                    logs.pop_front();
                }
                logs.push_back(line);
            }
        }
    });
}

/// The address in a node's "listening on" log line: the first `127.0.0.1:<port>` after
/// `listening on`, or else the last on a line that mentions listening (other lines may name
/// the database's address). `idem proxy`'s log line names its upstream too, so a line that
/// mentions the upstream counts only through its `listening on`.
pub fn listen_addr(line: &str) -> Option<SocketAddr> {
    const LOOPBACK: &str = "127.0.0.1:";
    let lower = line.to_ascii_lowercase();
    if !lower.contains("listen") {
        return None;
    }
    let at = match lower.find("listening on ") {
        Some(on) => on + line[on..].find(LOOPBACK)?,
        None if lower.contains("upstream") => return None,
        None => line.rfind(LOOPBACK)?,
    };
    let rest = &line[at + LOOPBACK.len()..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    let port: u16 = digits.parse().ok()?;
    (port != 0).then(|| SocketAddr::from(([127, 0, 0, 1], port)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_listen_line_gives_the_port_and_other_lines_do_not() {
        let addr = |l| listen_addr(l).map(|a| a.port());
        assert_eq!(
            addr("INFO idem: listening on http://127.0.0.1:41234"),
            Some(41234)
        );
        assert_eq!(
            addr(r#"{"msg":"listening","addr":"127.0.0.1:5001","db":"x"}"#),
            Some(5001)
        );
        assert_eq!(addr("connected to postgres://p@127.0.0.1:5432/x"), None);
        assert_eq!(
            addr("INFO idem proxy listening addr=127.0.0.1:4001 upstream=http://127.0.0.1:4000"),
            None
        );
        assert_eq!(addr("listening on http://127.0.0.1:4001"), Some(4001));
        assert_eq!(addr("listening on 127.0.0.1:0"), None);
    }
}
