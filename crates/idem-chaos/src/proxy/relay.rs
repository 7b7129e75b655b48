//! A TCP relay between the proxies and their Redis server, so that the run can cut the
//! proxies' store connections, as a failing network would, without touching any other
//! client of a shared server.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::net::TcpStream;
use tokio::task::{AbortHandle, JoinHandle};

use crate::Error;

/// A running relay; stops when dropped.
#[derive(Debug)]
pub struct Relay {
    addr: SocketAddr,
    url: String,
    open: Arc<Mutex<Vec<AbortHandle>>>,
    task: JoinHandle<()>,
}

/// Copies bytes both ways between `inbound` and a new connection to `target` until either
/// side closes; drops `inbound` when `target` cannot be reached.
async fn pipe(mut inbound: TcpStream, target: String) {
    if let Ok(mut outbound) = TcpStream::connect(&target).await {
        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
    }
}

impl Relay {
    /// Listens on `127.0.0.1:0` and relays every connection to the Redis server `url` names
    /// (`redis://[user:password@]host:port[/db]`).
    ///
    /// # Errors
    /// [`Error::Config`] for a URL of another form, [`Error::Io`] when no port binds.
    pub async fn start(url: &str) -> Result<Self, Error> {
        let (userinfo, target, rest) = split_redis_url(url)?;
        let (listener, addr) = crate::bind_loopback("Redis relay").await?;
        let open: Arc<Mutex<Vec<AbortHandle>>> = Arc::default();
        let conns = open.clone();
        let task = tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                let pipe = tokio::spawn(pipe(inbound, target.clone()));
                if let Ok(mut open) = conns.lock() {
                    open.retain(|h| !h.is_finished());
                    open.push(pipe.abort_handle());
                }
            }
        });
        Ok(Self {
            addr,
            url: format!("redis://{userinfo}{addr}{rest}"),
            open,
            task,
        })
    }

    /// The URL the proxies connect to: the server's, through the relay.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The relay's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Closes every relayed connection now and returns how many there were.
    pub fn cut(&self) -> u64 {
        let Ok(mut open) = self.open.lock() else {
            return 0;
        };
        let n = open.iter().filter(|h| !h.is_finished()).count() as u64;
        for h in open.drain(..) {
            h.abort();
        }
        n
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
        self.cut();
    }
}

/// `redis://user:pw@host:port/2` as (`user:pw@`, `host:port`, `/2`).
fn split_redis_url(url: &str) -> Result<(String, String, String), Error> {
    let bad = || Error::Config(format!("--redis {url:?}: expected redis://host:port[/db]"));
    let rest = url.strip_prefix("redis://").ok_or_else(bad)?;
    let (authority, path) = rest.split_at(rest.find(['/', '?']).unwrap_or(rest.len()));
    let (userinfo, host) = match authority.rfind('@') {
        Some(at) => (&authority[..=at], &authority[at + 1..]),
        None => ("", authority),
    };
    if host.is_empty() {
        return Err(bad());
    }
    let host = if host.contains(':') {
        host.to_owned()
    } else {
        format!("{host}:6379")
    };
    Ok((userinfo.to_owned(), host, path.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_urls_split_into_credentials_server_and_database() {
        let split = |u| split_redis_url(u).ok();
        assert_eq!(
            split("redis://127.0.0.1:6379"),
            Some(("".into(), "127.0.0.1:6379".into(), "".into()))
        );
        assert_eq!(
            split("redis://u:p@h/2"),
            Some(("u:p@".into(), "h:6379".into(), "/2".into()))
        );
        assert!(split("rediss://h:1").is_none());
    }
}
