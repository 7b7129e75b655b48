//! Helpers shared by the integration tests: the test server and cluster, fresh prefixes,
//! deleting a prefix's keys, SQLite files, and a TCP proxy that can be cut.
#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use idem_redis::CLUSTER_SCHEME;

use idem_redis::RedisOptions;
use idem_test_support::{backend_url, unique_name};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// The test server's URL, or `None` (skip, with the reason printed).
pub fn redis_url() -> Option<String> {
    backend_url("IDEM_TEST_REDIS")
}

/// What every test's key prefix starts with.
const TEST_PREFIX: &str = "idemtest";

/// Options on `url` with a prefix no other test uses.
pub fn fresh_options(url: &str) -> RedisOptions {
    RedisOptions::from_url(url)
        .expect("a Redis URL")
        .prefix(unique_name(TEST_PREFIX))
}

/// A plain connection for checking what the store left in Redis.
pub async fn raw(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .expect("redis url")
        .get_multiplexed_async_connection()
        .await
        .expect("raw redis connection")
}

/// The test cluster's URL (`redis+cluster://…`, `scripts/redis-cluster.sh url`), or
/// `None` (skip, with the reason printed).
pub fn redis_cluster_url() -> Option<String> {
    backend_url("IDEM_TEST_REDIS_CLUSTER")
}

/// Deletes every key under `prefix` (SCAN + DEL on each master of a cluster; never
/// FLUSHALL: the servers are shared) and says how many it deleted.
pub async fn delete_prefix(url: &str, prefix: &str) -> usize {
    delete_prefixes(url, &format!("{prefix}:*"), &[prefix.to_owned()]).await
}

/// Deletes every key matching `pattern` whose prefix (up to its first `:`) is one of
/// `prefixes`, in one walk of each node's keyspace.
async fn delete_prefixes(url: &str, pattern: &str, prefixes: &[String]) -> usize {
    let mut deleted = 0;
    for node in master_urls(url).await {
        deleted += delete_prefixes_on(&node, pattern, prefixes).await;
    }
    deleted
}

/// The server's URL, or the `redis://` URL of each master of the cluster at a
/// `redis+cluster://` URL (from its first node's `CLUSTER NODES`).
async fn master_urls(url: &str) -> Vec<String> {
    let Some(nodes) = url
        .strip_prefix(CLUSTER_SCHEME)
        .and_then(|rest| rest.strip_prefix("://"))
    else {
        return vec![url.to_owned()];
    };
    let seed = nodes.split(',').next().expect("a cluster node");
    let mut conn = raw(&format!("redis://{seed}")).await;
    let listing: String = redis::cmd("CLUSTER")
        .arg("NODES")
        .query_async(&mut conn)
        .await
        .expect("CLUSTER NODES");
    listing
        .lines()
        .filter_map(|line| {
            // <id> <host:port@cport> <flags> …
            let mut fields = line.split(' ');
            let addr = fields.nth(1)?;
            let flags = fields.next()?;
            let is_master = flags.split(',').any(|f| f == "master");
            let addr = addr.split('@').next()?;
            is_master.then(|| format!("redis://{addr}"))
        })
        .collect()
}

/// [`delete_prefixes`] on one server: keys one by one, as a cluster node refuses a `DEL` of
/// keys in several slots.
async fn delete_prefixes_on(url: &str, pattern: &str, prefixes: &[String]) -> usize {
    let mut conn = raw(url).await;
    let mut cursor: u64 = 0;
    let mut deleted = 0;
    loop {
        let (next, keys): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut conn)
            .await
            .expect("SCAN");
        let keys: Vec<Vec<u8>> = keys
            .into_iter()
            .filter(|key| {
                let prefix = key.split(|&b| b == b':').next().unwrap_or_default();
                prefixes.iter().any(|p| p.as_bytes() == prefix)
            })
            .collect();
        if !keys.is_empty() {
            let mut pipe = redis::pipe();
            for key in &keys {
                pipe.del(key);
            }
            let counts: Vec<usize> = pipe.query_async(&mut conn).await.expect("DEL");
            deleted += counts.iter().sum::<usize>();
        }
        if next == 0 {
            return deleted;
        }
        cursor = next;
    }
}

/// The key prefixes a test harness handed out on one server or cluster, deleted with
/// their keys when it is dropped (at the end of the test, passed or failed).
pub struct Prefixes {
    url: String,
    made: Mutex<Vec<String>>,
}

impl Prefixes {
    pub fn new(url: &str) -> Self {
        Self {
            url: url.to_owned(),
            made: Mutex::default(),
        }
    }

    /// [`fresh_options`] on the server, remembering the prefix for deletion.
    pub fn fresh(&self) -> RedisOptions {
        let options = fresh_options(&self.url);
        self.made
            .lock()
            .expect("prefixes")
            .push(options.key_prefix().to_owned());
        options
    }

    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Drop for Prefixes {
    fn drop(&mut self) {
        let made = std::mem::take(&mut *self.made.lock().unwrap_or_else(|e| e.into_inner()));
        if made.is_empty() {
            return;
        }
        let url = self.url.clone();
        // Dropped inside or outside a runtime: the deletion gets one of its own, on a
        // thread of its own.
        let cleanup = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime for the clean-up");
            runtime.block_on(delete_prefixes(&url, &format!("{TEST_PREFIX}_*"), &made));
        });
        let _ = cleanup.join();
    }
}

/// The prefix of this crate's SQLite directories and PostgreSQL schemas.
pub const NAMESPACE_PREFIX: &str = "idem_redis_truth";

/// A URL for a new SQLite file in a new temporary directory.
pub fn sqlite_url() -> String {
    idem_test_support::sqlite_url(NAMESPACE_PREFIX)
}

/// A fresh PostgreSQL schema name, after dropping the schemas of exited test processes.
pub async fn pg_schema(url: &str) -> String {
    idem_test_support::pg_schema(url, NAMESPACE_PREFIX).await
}

/// A 127.0.0.1 port nothing listens on (bound, read, released).
pub fn dead_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    drop(listener);
    port
}

/// A TCP proxy between the store and Redis that a test can cut (every connection closed,
/// nothing listening) and bring back on the same port.
pub struct Proxy {
    pub addr: SocketAddr,
    upstream: String,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Proxy {
    /// Starts a proxy on a free port to the `redis://host:port` server at `url`.
    pub async fn start(url: &str) -> Proxy {
        let upstream = url
            .trim_start_matches("redis://")
            .split('/')
            .next()
            .expect("host:port")
            .to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy addr");
        let proxy = Proxy {
            addr,
            upstream,
            tasks: Arc::default(),
        };
        proxy.serve(listener);
        proxy
    }

    /// The URL to give the store.
    pub fn url(&self) -> String {
        format!("redis://{}", self.addr)
    }

    fn serve(&self, listener: TcpListener) {
        let upstream = self.upstream.clone();
        let tasks = Arc::clone(&self.tasks);
        let accept = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let upstream = upstream.clone();
                let conn = tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(&upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                tasks.lock().expect("tasks").push(conn);
            }
        });
        self.tasks.lock().expect("tasks").push(accept);
    }

    /// Closes every connection and stops listening: Redis is gone for the store.
    pub async fn cut(&self) {
        let tasks: Vec<_> = self.tasks.lock().expect("tasks").drain(..).collect();
        for task in tasks {
            task.abort();
            let _ = task.await;
        }
    }

    /// Listens again on the same port.
    pub async fn restore(&self) {
        let listener = TcpListener::bind(self.addr).await.expect("rebind proxy");
        self.serve(listener);
    }
}
