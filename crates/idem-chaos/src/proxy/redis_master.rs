//! `--kill-redis-master-every`: SIGKILL a master of the proxies' Redis Cluster and restart
//! it, on a cluster that `scripts/redis-cluster.sh` started (the run reads each master's
//! pid from its directory and restarts it with the same port and node config file, so it
//! rejoins with its slots, empty: the cluster has no replicas and keeps nothing on disk).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

use crate::faults::Ticker;
use crate::Error;

/// How long a killed master stays down before the run restarts it: longer than the
/// cluster's node timeout (2 s in the script), so the others mark it failed.
const DOWN_FOR: Duration = Duration::from_millis(2500);

/// One kill of a master, in the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct MasterKill {
    /// The master's port.
    pub port: u16,
    /// When it was killed, in milliseconds since the run's start.
    pub at_ms: u64,
    /// When it answered again after its restart (0 if it did not within 10 s).
    pub back_ms: u64,
}

/// The cluster's masters as the script laid them out: `<dir>/<port>/` for each port of
/// the `redis+cluster://` URL.
#[derive(Debug, Clone)]
pub(crate) struct ClusterNodes {
    dir: PathBuf,
    ports: Vec<u16>,
}

impl ClusterNodes {
    /// The nodes of `url` (`redis+cluster://127.0.0.1:port,…`) under `dir`.
    ///
    /// # Errors
    /// [`Error::Config`] for another URL, a node not on this machine, or a port without
    /// its pid file under `dir`.
    pub(crate) fn new(url: &str, dir: &Path) -> Result<Self, Error> {
        let bad = |why: &str| Error::Config(format!("--kill-redis-master-every: {why}"));
        let nodes = url
            .strip_prefix("redis+cluster://")
            .ok_or_else(|| bad("--redis must be a redis+cluster:// URL"))?;
        let mut ports = Vec::new();
        for node in nodes.split(',') {
            let port = node
                .trim()
                .strip_prefix("127.0.0.1:")
                .and_then(|p| p.trim_end_matches('/').parse::<u16>().ok())
                .ok_or_else(|| bad("every cluster node must be 127.0.0.1:<port>"))?;
            if !dir.join(port.to_string()).join("redis.pid").is_file() {
                return Err(bad(&format!(
                    "no {}/{port}/redis.pid: start the cluster with scripts/redis-cluster.sh",
                    dir.display()
                )));
            }
            ports.push(port);
        }
        Ok(Self {
            dir: dir.to_owned(),
            ports,
        })
    }

    /// The master holding the most keys: the one with the run's records (a run's keys
    /// share one scope, so one hash slot).
    async fn busiest(&self) -> Option<u16> {
        let mut best: Option<(u16, u64)> = None;
        for &port in &self.ports {
            if let Ok(size) = dbsize(port).await {
                if best.is_none_or(|(_, most)| size > most) {
                    best = Some((port, size));
                }
            }
        }
        best.map(|(port, _)| port)
    }

    /// SIGKILLs the master on `port`, waits [`DOWN_FOR`], restarts it as the script
    /// starts it, and waits (up to 10 s) until it answers. Returns when it was killed and
    /// when it was back, in ms since `start`.
    async fn kill_and_restart(&self, port: u16, start: Instant) -> Result<MasterKill, Error> {
        let node_dir = self.dir.join(port.to_string());
        let pid_file = node_dir.join("redis.pid");
        let pid = std::fs::read_to_string(&pid_file)
            .map_err(|e| Error::Io(format!("reading {}", pid_file.display()), e))?;
        let killed = tokio::process::Command::new("kill")
            .args(["-KILL", pid.trim()])
            .status()
            .await
            .map_err(|e| Error::Io("running kill".into(), e))?;
        if !killed.success() {
            return Err(Error::Node(format!(
                "could not kill the Redis master on port {port}"
            )));
        }
        let at_ms = start.elapsed().as_millis() as u64;
        tokio::time::sleep(DOWN_FOR).await;
        let conf = node_dir.join("nodes.conf");
        let log = node_dir.join("redis.log");
        let status = tokio::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--daemonize", "yes", "--cluster-enabled", "yes"])
            .arg("--cluster-config-file")
            .arg(&conf)
            .args(["--cluster-node-timeout", "2000"])
            .args(["--cluster-require-full-coverage", "no"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&node_dir)
            .arg("--pidfile")
            .arg(&pid_file)
            .arg("--logfile")
            .arg(&log)
            .status()
            .await
            .map_err(|e| Error::Io("starting redis-server".into(), e))?;
        if !status.success() {
            return Err(Error::Node(format!(
                "could not restart the Redis master on port {port}"
            )));
        }
        let mut back_ms = 0;
        for _ in 0..100 {
            if dbsize(port).await.is_ok() {
                back_ms = start.elapsed().as_millis() as u64;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(MasterKill {
            port,
            at_ms,
            back_ms,
        })
    }
}

async fn dbsize(port: u16) -> redis::RedisResult<u64> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}"))?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    redis::cmd("DBSIZE").query_async(&mut conn).await
}

/// The kills of one run, made by a task until [`MasterKiller::stop`].
pub(crate) struct MasterKiller {
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<Result<Vec<MasterKill>, Error>>,
}

impl MasterKiller {
    /// Kills the busiest master about every `every` (the schedule from `seed`), each time
    /// restarting it before the next.
    pub(crate) fn start(nodes: ClusterNodes, seed: u64, every: Duration, start: Instant) -> Self {
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(async move {
            let mut ticker = Ticker::new(seed, "redis-master", every);
            let mut kills = Vec::new();
            loop {
                let (gap, _) = ticker.next_event(1);
                // Stops only between kills: a killed master is always restarted.
                tokio::select! {
                    () = tokio::time::sleep(gap) => {}
                    _ = stopped.changed() => return Ok(kills),
                }
                if let Some(port) = nodes.busiest().await {
                    kills.push(nodes.kill_and_restart(port, start).await?);
                }
            }
        });
        Self { stop, task }
    }

    /// Stops the kills (a kill under way finishes: its master is restarted first) and
    /// returns them.
    ///
    /// # Errors
    /// The first failure to kill or restart a master.
    pub(crate) async fn stop(self) -> Result<Vec<MasterKill>, Error> {
        let _ = self.stop.send(true);
        self.task
            .await
            .map_err(|e| Error::Node(format!("the Redis master killer failed: {e}")))?
    }
}
