//! Helpers shared by the integration tests: the test server, fresh prefixes, deleting a
//! prefix's keys, SQLite files, and a TCP proxy that can be cut.
#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use idem_redis::RedisOptions;
use idem_test_support::{backend_url, unique_name};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// The test server's URL, or `None` (skip, with the reason printed).
pub fn redis_url() -> Option<String> {
    backend_url("IDEM_TEST_REDIS")
}

/// Options on `url` with a prefix no other test uses.
pub fn fresh_options(url: &str) -> RedisOptions {
    RedisOptions::from_url(url)
        .expect("a Redis URL")
        .prefix(unique_name("idemtest"))
}

/// A plain connection for checking what the store left in Redis.
pub async fn raw(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .expect("redis url")
        .get_multiplexed_async_connection()
        .await
        .expect("raw redis connection")
}

/// Deletes every key under `prefix` (SCAN + DEL; never FLUSHALL: the server is shared) and
/// says how many it deleted.
pub async fn delete_prefix(url: &str, prefix: &str) -> usize {
    let mut conn = raw(url).await;
    let mut cursor: u64 = 0;
    let mut deleted = 0;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{prefix}:*"))
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut conn)
            .await
            .expect("SCAN");
        if !keys.is_empty() {
            let n: usize = redis::cmd("DEL")
                .arg(&keys)
                .query_async(&mut conn)
                .await
                .expect("DEL");
            deleted += n;
        }
        if next == 0 {
            return deleted;
        }
        cursor = next;
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
