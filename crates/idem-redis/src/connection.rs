//! The lazily opened, self-reconnecting connection both the store and the cache use, to
//! one server or to a Redis Cluster.

use std::sync::Arc;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use redis::{Client, Cmd, RedisError, RedisFuture, RedisResult, Value};
use tokio::sync::OnceCell;

use crate::options::Target;
use crate::{Error, RedisOptions};

/// How often the cluster client sends one command again after a redirection (`MOVED`,
/// `ASK`), a refused or dropped node connection or `TRYAGAIN`/`CLUSTERDOWN`, before the
/// call fails as unavailable.
///
/// A dropped connection may have carried the call before it dropped, so a retried script
/// may run twice; its second run answers as a second call would (`begin` in flight,
/// `complete` or `release` fenced), never granting a key twice.
const CLUSTER_RETRIES: u32 = 3;

/// The shortest and longest wait before such a retry, in ms: a slot moving or a failover
/// is noticed within a few tens of ms, and a node that is down fails the call quickly.
const CLUSTER_RETRY_WAIT_MS: (u64, u64) = (10, 100);

/// One multiplexed connection, opened on first use and reopened whenever it drops (by
/// [`ConnectionManager`] on one server, by the cluster client per node on a cluster).
/// Clones share it.
///
/// Opening lazily lets a node start while Redis is down: the two-tier store then answers
/// from its truth store until Redis comes back.
#[derive(Clone)]
pub(crate) struct Connection {
    client: Clients,
    open: Arc<OnceCell<Conn>>,
}

#[derive(Clone)]
enum Clients {
    Server {
        client: Client,
        config: ConnectionManagerConfig,
    },
    Cluster(ClusterClient),
}

/// An open connection: every command of the crate goes through it, to one server or to
/// the cluster node owning the command's key.
// Unboxed: each call clones the connection it uses, and a box would add an allocation to
// every call on the common variant.
#[allow(clippy::large_enum_variant)]
#[derive(Clone)]
pub(crate) enum Conn {
    Server(ConnectionManager),
    Cluster(ClusterConnection),
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut out = f.debug_struct("Connection");
        match &self.client {
            Clients::Server { client, .. } => {
                out.field("server", &client.get_connection_info().addr)
            }
            Clients::Cluster(_) => out.field("server", &"cluster"),
        };
        out.field("open", &self.open.initialized()).finish()
    }
}

impl Connection {
    pub(crate) fn new(options: &RedisOptions) -> Result<Self, Error> {
        let (connection_timeout, response_timeout) = options.timeouts();
        let client = match options.target() {
            Target::Server(url) => {
                let client = Client::open(url.as_str()).map_err(Error::Url)?;
                // One attempt per reconnect: the manager tries again on the next call, so
                // a down server costs each call one refused connect instead of a backoff
                // schedule of seconds (the crate's default first delay is 1 s).
                let config = ConnectionManagerConfig::new()
                    .set_number_of_retries(0)
                    .set_connection_timeout(connection_timeout)
                    .set_response_timeout(response_timeout);
                Clients::Server { client, config }
            }
            Target::Cluster(nodes) => {
                let (min_wait, max_wait) = CLUSTER_RETRY_WAIT_MS;
                let client = ClusterClientBuilder::new(nodes.iter().map(String::as_str))
                    .connection_timeout(connection_timeout)
                    .response_timeout(response_timeout)
                    .retries(CLUSTER_RETRIES)
                    .min_retry_wait(min_wait)
                    .max_retry_wait(max_wait)
                    .build()
                    .map_err(Error::Url)?;
                Clients::Cluster(client)
            }
        };
        Ok(Self {
            client,
            open: Arc::new(OnceCell::new()),
        })
    }

    /// A second, independent connection to the same server (a second "node").
    pub(crate) fn independent(&self) -> Self {
        Self {
            client: self.client.clone(),
            open: Arc::new(OnceCell::new()),
        }
    }

    /// The connection, opening it if this is the first use (or every earlier attempt failed).
    pub(crate) async fn get(&self) -> Result<Conn, RedisError> {
        self.open
            .get_or_try_init(|| async {
                match &self.client {
                    Clients::Server { client, config } => {
                        ConnectionManager::new_with_config(client.clone(), config.clone())
                            .await
                            .map(Conn::Server)
                    }
                    Clients::Cluster(client) => {
                        client.get_async_connection().await.map(Conn::Cluster)
                    }
                }
            })
            .await
            .cloned()
    }
}

impl Conn {
    /// Runs a command that names no key (`INFO`, `TIME`) on one node: the server, or any
    /// node of the cluster (where the client would otherwise ask every master).
    pub(crate) async fn on_any_node(&mut self, cmd: &Cmd) -> RedisResult<Value> {
        match self {
            Self::Server(conn) => cmd.query_async(conn).await,
            Self::Cluster(conn) => {
                conn.route_command(cmd, RoutingInfo::SingleNode(SingleNodeRoutingInfo::Random))
                    .await
            }
        }
    }

    /// The `host:port` of every master the keys live on: the server itself (`None`, its
    /// own connection), or each master of the cluster (`CLUSTER SLOTS`), so that a walk of
    /// the keyspace (`SCAN`) can visit each.
    #[cfg(feature = "test-clock")]
    pub(crate) async fn masters(&mut self) -> RedisResult<Vec<Option<(String, u16)>>> {
        let Self::Cluster(conn) = self else {
            return Ok(vec![None]);
        };
        let slots: Vec<Value> = redis::from_redis_value(
            &conn
                .route_command(
                    redis::cmd("CLUSTER").arg("SLOTS"),
                    RoutingInfo::SingleNode(SingleNodeRoutingInfo::Random),
                )
                .await?,
        )?;
        let mut masters = Vec::new();
        for range in slots {
            // [start, end, [host, port, id, …], replicas…]
            let range: Vec<Value> = redis::from_redis_value(&range)?;
            if let Some(master) = range.get(2) {
                let node: Vec<Value> = redis::from_redis_value(master)?;
                if let (Some(host), Some(port)) = (node.first(), node.get(1)) {
                    let node = (
                        redis::from_redis_value::<String>(host)?,
                        redis::from_redis_value::<u16>(port)?,
                    );
                    if !masters.contains(&Some(node.clone())) {
                        masters.push(Some(node));
                    }
                }
            }
        }
        Ok(masters)
    }

    /// Runs `cmd` on one master as [`Conn::masters`] names it.
    #[cfg(feature = "test-clock")]
    pub(crate) async fn on_master(
        &mut self,
        master: &Option<(String, u16)>,
        cmd: &Cmd,
    ) -> RedisResult<Value> {
        match (self, master) {
            (Self::Cluster(conn), Some((host, port))) => {
                let routing = SingleNodeRoutingInfo::ByAddress {
                    host: host.clone(),
                    port: *port,
                };
                conn.route_command(cmd, RoutingInfo::SingleNode(routing))
                    .await
            }
            (conn, _) => cmd.query_async(conn).await,
        }
    }
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Server(conn) => conn.req_packed_command(cmd),
            Self::Cluster(conn) => conn.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Server(conn) => conn.req_packed_commands(cmd, offset, count),
            Self::Cluster(conn) => conn.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Server(conn) => conn.get_db(),
            Self::Cluster(conn) => conn.get_db(),
        }
    }
}
