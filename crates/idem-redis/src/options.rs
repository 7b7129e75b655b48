//! [`RedisOptions`]: which server or cluster, the key prefix and the timeouts.

use std::time::Duration;

use redis::Client;

use crate::Error;

/// The key prefix used unless [`RedisOptions::prefix`] says otherwise.
pub const DEFAULT_PREFIX: &str = "idem";

/// The scheme of a Redis Cluster URL: `redis+cluster://[user:pass@]host:port[,host:port…]`.
pub const CLUSTER_SCHEME: &str = "redis+cluster";

/// Where and how to reach Redis, and under which key prefix to keep records.
///
/// The URL names one server (`redis://…`, `rediss://…`) or a Redis Cluster
/// (`redis+cluster://host:port,host:port,…`, see [`RedisOptions::from_url`]); the stores
/// work the same on both.
///
/// ```
/// use std::time::Duration;
/// use idem_redis::RedisOptions;
///
/// let options = RedisOptions::from_url("redis://127.0.0.1:6379")?
///     .prefix("payments")
///     .response_timeout(Duration::from_millis(500));
/// assert_eq!(options.key_prefix(), "payments");
/// let cluster = RedisOptions::from_url("redis+cluster://127.0.0.1:30001,127.0.0.1:30002")?;
/// assert!(cluster.is_cluster());
/// # Ok::<(), idem_redis::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct RedisOptions {
    url: String,
    target: Target,
    prefix: String,
    connection_timeout: Duration,
    response_timeout: Duration,
}

/// One server's URL, or the URLs (`redis://…`) of a cluster's seed nodes.
#[derive(Debug, Clone)]
pub(crate) enum Target {
    Server(String),
    Cluster(Vec<String>),
}

impl RedisOptions {
    /// Options for the server at `url` (`redis://[user:pass@]host:port[/db]`, `rediss://`
    /// for TLS) or the cluster at `redis+cluster://[user:pass@]host:port[,host:port…]`
    /// (some of its nodes, masters or replicas: the client learns the rest from them;
    /// a cluster has database 0 only, so no `/db`). Prefix `idem`, a 1 s connection
    /// timeout and a 2 s response timeout.
    ///
    /// # Errors
    /// [`Error::Url`] for a URL the client rejects, [`Error::ClusterUrl`] for a cluster URL
    /// without nodes or with a database.
    pub fn from_url(url: &str) -> Result<Self, Error> {
        let target = match url
            .strip_prefix(CLUSTER_SCHEME)
            .and_then(|rest| rest.strip_prefix("://"))
        {
            Some(rest) => Target::Cluster(cluster_nodes(rest)?),
            None => {
                Client::open(url).map_err(Error::Url)?;
                Target::Server(url.to_owned())
            }
        };
        Ok(Self {
            url: url.to_owned(),
            target,
            prefix: DEFAULT_PREFIX.to_owned(),
            connection_timeout: Duration::from_secs(1),
            response_timeout: Duration::from_secs(2),
        })
    }

    /// Keeps every key under `prefix` (checked when the store is opened): several services,
    /// or tests, can share one server without meeting.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// How long one connection attempt may take before it fails as unavailable.
    pub fn connection_timeout(mut self, timeout: Duration) -> Self {
        self.connection_timeout = timeout;
        self
    }

    /// How long one script call may wait for its answer before it fails as unavailable.
    pub fn response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = timeout;
        self
    }

    /// The URL, as given.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// True for a Redis Cluster URL (`redis+cluster://`).
    pub fn is_cluster(&self) -> bool {
        matches!(self.target, Target::Cluster(_))
    }

    /// The key prefix.
    pub fn key_prefix(&self) -> &str {
        &self.prefix
    }

    pub(crate) fn target(&self) -> &Target {
        &self.target
    }

    pub(crate) fn timeouts(&self) -> (Duration, Duration) {
        (self.connection_timeout, self.response_timeout)
    }

    pub(crate) fn checked_prefix(&self) -> Result<String, Error> {
        let ok = !self.prefix.is_empty()
            && self
                .prefix
                .bytes()
                .all(|b| (0x21..=0x7e).contains(&b) && b != b'{' && b != b'}');
        if ok {
            Ok(self.prefix.clone())
        } else {
            Err(Error::Prefix(self.prefix.clone()))
        }
    }
}

impl std::str::FromStr for RedisOptions {
    type Err = Error;

    fn from_str(url: &str) -> Result<Self, Error> {
        Self::from_url(url)
    }
}

/// The `redis://` URL of each node of a cluster URL after its scheme:
/// `[user:pass@]host:port[,host:port…]`, the credentials shared by every node.
fn cluster_nodes(rest: &str) -> Result<Vec<String>, Error> {
    let (userinfo, hosts) = match rest.rsplit_once('@') {
        Some((userinfo, hosts)) => (format!("{userinfo}@"), hosts),
        None => (String::new(), rest),
    };
    let hosts = match hosts.split_once('/') {
        Some((hosts, "" | "0")) => hosts,
        Some(_) => return Err(Error::ClusterUrl("a cluster has database 0 only")),
        None => hosts,
    };
    if hosts.contains('?') {
        return Err(Error::ClusterUrl("a cluster URL takes no parameters"));
    }
    let mut nodes = Vec::new();
    for host in hosts.split(',').map(str::trim) {
        if host.is_empty() {
            return Err(Error::ClusterUrl("a node is empty"));
        }
        let node = format!("redis://{userinfo}{host}");
        Client::open(node.as_str()).map_err(Error::Url)?;
        nodes.push(node);
    }
    Ok(nodes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_with_braces_or_spaces_are_refused() {
        for bad in ["", "a{b", "a}b", "a b"] {
            assert!(RedisOptions::from_url("redis://x")
                .expect("a Redis URL")
                .prefix(bad)
                .checked_prefix()
                .is_err());
        }
        let options = RedisOptions::from_url("redis://x").expect("a Redis URL");
        assert!(options.checked_prefix().is_ok());
        assert!("http://x".parse::<RedisOptions>().is_err());
    }

    #[test]
    fn cluster_urls_name_each_node_with_shared_credentials() {
        let options = RedisOptions::from_url("redis+cluster://u:p@10.0.0.1:7000, 10.0.0.2:7001/")
            .expect("a cluster URL");
        assert!(options.is_cluster());
        let Target::Cluster(nodes) = options.target() else {
            panic!("a cluster target");
        };
        assert_eq!(
            nodes,
            &["redis://u:p@10.0.0.1:7000", "redis://u:p@10.0.0.2:7001"]
        );
        assert!(!RedisOptions::from_url("redis://x")
            .expect("a server URL")
            .is_cluster());
        for bad in [
            "redis+cluster://",
            "redis+cluster://a:1,,b:2",
            "redis+cluster://a:1/2",
            "redis+cluster://a:1?x=y",
        ] {
            assert!(
                matches!(RedisOptions::from_url(bad), Err(Error::ClusterUrl(_))),
                "{bad}"
            );
        }
        assert!(matches!(
            RedisOptions::from_url("redis+cluster://a:notaport"),
            Err(Error::Url(_))
        ));
    }
}
