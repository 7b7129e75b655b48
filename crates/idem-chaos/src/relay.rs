//! The fault relay: a TCP relay between the nodes and a server (the database, Redis) that
//! does to the connections what a failing network does, in user space, so that it needs
//! neither root nor the kernel's `netem`.
//!
//! - [`Relay::cut`] closes every relayed connection at once (a reset network path).
//! - [`Relay::set_shape`] adds latency to every chunk each way: a delay, a jitter, and a
//!   share of chunks stalled [`LOSS_STALL`] as a lost packet's retransmission would be.
//!   Bytes keep their order, as TCP keeps them: packet reordering reaches an application as
//!   jitter and head-of-line blocking, which is what the jitter gives.
//! - [`Relay::partition`] stops forwarding both ways and keeps both sockets open: nothing is
//!   refused or reset, packets are silently lost, as behind a firewall's DROP. New
//!   connections are accepted and left unanswered. [`Relay::heal`] either resumes (TCP's
//!   retransmissions get through) or leaves every connection of the partition dead for
//!   good, half-open on both sides, so that only the peers' own timeouts can end them.
//!
//! One relay per node lets one node be partitioned alone, or have its broker connections
//! cut alone.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio::task::{AbortHandle, JoinHandle};
use tokio::time::Instant;

use crate::Error;

/// How long a chunk "lost" by [`NetShape::loss`] is held: Linux's minimum retransmission
/// timeout.
pub const LOSS_STALL: Duration = Duration::from_millis(200);

/// The latency a relay adds to every chunk, each way.
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize)]
pub struct NetShape {
    /// Added to every chunk.
    pub delay: Duration,
    /// A further delay drawn uniformly from zero to this, per chunk.
    pub jitter: Duration,
    /// The share of chunks held [`LOSS_STALL`] more, as if lost and sent again.
    pub loss: f64,
}

impl NetShape {
    /// Whether it adds anything.
    pub fn is_on(&self) -> bool {
        !self.delay.is_zero() || !self.jitter.is_zero() || self.loss > 0.0
    }

    /// When a chunk read now is delivered: never before the chunk before it (`last`).
    fn deliver_at(&self, last: Instant) -> Instant {
        let mut at = Instant::now() + self.delay;
        if self.is_on() {
            let mut rng = rand::thread_rng();
            if !self.jitter.is_zero() {
                at += self.jitter.mul_f64(rng.gen_range(0.0..1.0));
            }
            if self.loss > 0.0 && rng.gen_bool(self.loss.min(1.0)) {
                at += LOSS_STALL;
            }
        }
        at.max(last)
    }
}

/// One relayed connection: its task, and whether a partition left it dead.
#[derive(Debug)]
struct Conn {
    dead: Arc<AtomicBool>,
    task: AbortHandle,
}

#[derive(Debug)]
struct Shared {
    target: String,
    conns: Mutex<Vec<Conn>>,
    partitioned: watch::Sender<bool>,
    shape: Mutex<NetShape>,
}

impl Shared {
    fn shape(&self) -> NetShape {
        self.shape.lock().map(|s| *s).unwrap_or_default()
    }

    /// Returns once bytes may cross: at once, after the partition heals, or never for a
    /// connection a partition left dead.
    async fn pass(&self, dead: &AtomicBool) {
        let mut partitioned = self.partitioned.subscribe();
        loop {
            if dead.load(Ordering::Acquire) {
                std::future::pending::<()>().await;
            }
            if !*partitioned.borrow_and_update() {
                return;
            }
            if partitioned.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }
}

/// A running relay; stops, closing every connection, when dropped.
#[derive(Debug)]
pub struct Relay {
    addr: SocketAddr,
    url: String,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl Relay {
    /// Listens on `127.0.0.1:0` and relays every connection to the server `url` names
    /// (`scheme://[userinfo@]host[:port][/path]`, the port defaulting by scheme for
    /// `redis`, `postgres`, `mysql`, `nats` and `amqp`).
    ///
    /// # Errors
    /// [`Error::Config`] for a URL of another form, [`Error::Io`] when no port binds.
    pub async fn start(url: &str) -> Result<Self, Error> {
        let parts = split_url(url)?;
        let (listener, addr) = crate::bind_loopback("fault relay").await?;
        let (partitioned, _) = watch::channel(false);
        let shared = Arc::new(Shared {
            target: parts.host_port.clone(),
            conns: Mutex::default(),
            partitioned,
            shape: Mutex::default(),
        });
        let accepting = shared.clone();
        let task = tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                let dead = Arc::new(AtomicBool::new(false));
                let task = tokio::spawn(pipe(inbound, accepting.clone(), dead.clone()));
                if let Ok(mut conns) = accepting.conns.lock() {
                    conns.retain(|c| !c.task.is_finished());
                    conns.push(Conn {
                        dead,
                        task: task.abort_handle(),
                    });
                }
            }
        });
        Ok(Self {
            addr,
            url: format!("{}{}{addr}{}", parts.scheme, parts.userinfo, parts.rest),
            shared,
            task,
        })
    }

    /// The URL to connect to: the server's, through the relay.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The relay's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Closes every relayed connection now and returns how many there were.
    pub fn cut(&self) -> u64 {
        let Ok(mut conns) = self.shared.conns.lock() else {
            return 0;
        };
        let n = conns.iter().filter(|c| !c.task.is_finished()).count() as u64;
        for c in conns.drain(..) {
            c.task.abort();
        }
        n
    }

    /// Sets the latency added to every chunk from now on.
    pub fn set_shape(&self, shape: NetShape) {
        if let Ok(mut s) = self.shared.shape.lock() {
            *s = shape;
        }
    }

    /// Stops forwarding both ways, sockets left open; returns the connections caught.
    pub fn partition(&self) -> u64 {
        self.shared.partitioned.send_replace(true);
        self.open()
    }

    /// Ends a partition: forwarding resumes, or, with `leave_dead`, every connection open
    /// now never forwards again (new ones work).
    pub fn heal(&self, leave_dead: bool) {
        if leave_dead {
            if let Ok(conns) = self.shared.conns.lock() {
                for c in conns.iter() {
                    c.dead.store(true, Ordering::Release);
                }
            }
        }
        self.shared.partitioned.send_replace(false);
    }

    /// Connections open now.
    pub fn open(&self) -> u64 {
        self.shared
            .conns
            .lock()
            .map(|c| c.iter().filter(|c| !c.task.is_finished()).count() as u64)
            .unwrap_or(0)
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
        self.cut();
    }
}

/// Relays one connection: both ways, each through the network's shape and partitions.
async fn pipe(inbound: TcpStream, shared: Arc<Shared>, dead: Arc<AtomicBool>) {
    // A connection made during a partition waits, as a SYN sent again would.
    shared.pass(&dead).await;
    let Ok(outbound) = TcpStream::connect(&shared.target).await else {
        return;
    };
    let _ = inbound.set_nodelay(true);
    let _ = outbound.set_nodelay(true);
    let (in_read, in_write) = inbound.into_split();
    let (out_read, out_write) = outbound.into_split();
    tokio::join!(
        one_way(in_read, out_write, &shared, &dead),
        one_way(out_read, in_write, &shared, &dead),
    );
}

/// Copies `from` to `to`: each chunk read is stamped with its delivery time and written
/// then, in order, when the network lets it through; the end of `from` is passed on the
/// same way.
async fn one_way(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    shared: &Shared,
    dead: &AtomicBool,
) {
    let (tx, mut rx) = mpsc::unbounded_channel::<(Instant, Option<Vec<u8>>)>();
    let read = async move {
        let mut last = Instant::now();
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = from.read(&mut buf).await.unwrap_or(0);
            last = shared.shape().deliver_at(last);
            let chunk = (n > 0).then(|| buf[..n].to_vec());
            if tx.send((last, chunk)).is_err() || n == 0 {
                break;
            }
        }
    };
    let write = async {
        while let Some((at, chunk)) = rx.recv().await {
            tokio::time::sleep_until(at).await;
            shared.pass(dead).await;
            let Some(chunk) = chunk else {
                let _ = to.shutdown().await;
                break;
            };
            if to.write_all(&chunk).await.is_err() {
                break;
            }
        }
    };
    tokio::join!(read, write);
}

/// A server URL's parts: `redis://u:pw@host/2` is (`redis://`, `u:pw@`, `host:6379`, `/2`).
#[derive(Debug, PartialEq, Eq)]
struct UrlParts {
    scheme: String,
    userinfo: String,
    host_port: String,
    rest: String,
}

fn split_url(url: &str) -> Result<UrlParts, Error> {
    let bad = || Error::Config(format!("{url:?}: expected scheme://host[:port][/path]"));
    let (scheme, rest) = url.split_once("://").ok_or_else(bad)?;
    let default_port = match scheme {
        "redis" => 6379,
        "postgres" | "postgresql" => 5432,
        "mysql" | "mariadb" => 3306,
        "nats" => 4222,
        "amqp" => 5672,
        _ => return Err(bad()),
    };
    let (authority, path) = rest.split_at(rest.find(['/', '?']).unwrap_or(rest.len()));
    let (userinfo, host) = match authority.rfind('@') {
        Some(at) => (&authority[..=at], &authority[at + 1..]),
        None => ("", authority),
    };
    if host.is_empty() {
        return Err(bad());
    }
    let host_port = if host.contains(':') {
        host.to_owned()
    } else {
        format!("{host}:{default_port}")
    };
    Ok(UrlParts {
        scheme: format!("{scheme}://"),
        userinfo: userinfo.to_owned(),
        host_port,
        rest: path.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_urls_split_into_credentials_server_and_path() {
        let split = |u| split_url(u).ok().map(|p| (p.userinfo, p.host_port, p.rest));
        assert_eq!(
            split("redis://127.0.0.1:6379"),
            Some(("".into(), "127.0.0.1:6379".into(), "".into()))
        );
        assert_eq!(
            split("redis://u:p@h/2"),
            Some(("u:p@".into(), "h:6379".into(), "/2".into()))
        );
        assert_eq!(
            split("postgres://postgres@127.0.0.1/db?sslmode=disable"),
            Some((
                "postgres@".into(),
                "127.0.0.1:5432".into(),
                "/db?sslmode=disable".into()
            ))
        );
        assert_eq!(
            split("amqp://guest:guest@127.0.0.1/%2f"),
            Some((
                "guest:guest@".into(),
                "127.0.0.1:5672".into(),
                "/%2f".into()
            ))
        );
        assert_eq!(
            split("nats://127.0.0.1"),
            Some(("".into(), "127.0.0.1:4222".into(), "".into()))
        );
        assert!(split("rediss://h:1").is_none());
    }

    /// An echo server behind a relay: bytes cross, a partition holds them without closing
    /// anything, a heal delivers them; a heal that leaves the connection dead never does,
    /// while a new connection works.
    #[tokio::test]
    async fn a_partition_holds_bytes_and_a_heal_resumes_or_leaves_the_connection_dead() {
        let echo = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let echo_addr = echo.local_addr().expect("address");
        tokio::spawn(async move {
            while let Ok((mut s, _)) = echo.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = s.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        let relay = Relay::start(&format!("redis://{echo_addr}"))
            .await
            .expect("relay");
        relay.set_shape(NetShape {
            delay: Duration::from_millis(5),
            jitter: Duration::from_millis(5),
            loss: 0.0,
        });
        let mut c = TcpStream::connect(relay.addr()).await.expect("connect");
        c.write_all(b"ping").await.expect("io");
        let mut buf = [0u8; 4];
        c.read_exact(&mut buf).await.expect("io");
        assert_eq!(&buf, b"ping");

        assert_eq!(relay.partition(), 1);
        c.write_all(b"held").await.expect("io");
        let held = tokio::time::timeout(Duration::from_millis(300), c.read_exact(&mut buf)).await;
        assert!(
            held.is_err(),
            "nothing crosses a partition, and nothing closes"
        );
        relay.heal(false);
        c.read_exact(&mut buf).await.expect("io");
        assert_eq!(&buf, b"held", "a heal delivers what was held");

        relay.partition();
        relay.heal(true);
        c.write_all(b"lost").await.expect("io");
        let lost = tokio::time::timeout(Duration::from_millis(300), c.read_exact(&mut buf)).await;
        assert!(lost.is_err(), "a connection left dead never forwards again");
        let mut fresh = TcpStream::connect(relay.addr()).await.expect("connect");
        fresh.write_all(b"anew").await.expect("io");
        fresh.read_exact(&mut buf).await.expect("io");
        assert_eq!(&buf, b"anew", "a new connection works after the heal");
        assert_eq!(relay.cut(), 2);
    }
}
