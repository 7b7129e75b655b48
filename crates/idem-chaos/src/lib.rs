//! # idem-chaos — prove that no order is paid twice
//!
//! `idem chaos` shows, rather than claims, that the payment service moves money once per
//! order when everything around it fails. In the spirit of Jepsen's bank test, it
//!
//! 1. creates a fresh database on the server given by `--database` (PostgreSQL, MySQL, or
//!    an SQLite file for one node) and starts `--nodes` `idem serve` processes on it;
//! 2. puts a load balancer of its own in front of them that injects faults: answers
//!    dropped after the node did the work (`--drop-response-rate`), one request sent to two
//!    nodes at once (`--duplicate-rate`), requests or answers held past the client's
//!    timeout (`--delay-rate`), nodes killed with SIGKILL and restarted (`--kill-every`),
//!    and database connections cut from the server side (`--cut-db-every`); between each
//!    node and the database it puts a fault relay of its own ([`relay`]) that adds delay,
//!    jitter and loss (`--net-delay`, `--net-jitter`, `--net-loss`) and partitions one node
//!    at a time, packets silently dropped, connections left open (`--partition-every`,
//!    `--partition-for`); with `--own-database-server postgres|mysql` it runs a database
//!    server of its own ([`server`]) and restarts it (`--restart-db-every`); and it may
//!    start the first `--skew-nodes` nodes with their wall clock hours off and drifting,
//!    through libfaketime preloaded into each such node ([`skew`]): idem decides with the
//!    store's clock, so skew must change nothing. `--all-faults` turns every kind on at
//!    sensible rates, skew on one node when there are two or more and libfaketime is
//!    installed (else it says it could not inject skew and goes on);
//! 3. runs `--clients` careful clients that open `--accounts` accounts and pay random
//!    orders between them, retrying on timeouts, connection errors, 5xx and 409 with
//!    exponential backoff and jitter, the same `order_id` and bytes each time, until a
//!    final answer; some paid orders are re-sent later unchanged (expect the first answer
//!    replayed) or with another amount (expect 422 `order_id_conflict`);
//! 4. stops by itself (`--duration`, `--orders`), lets the last orders settle with the
//!    faults off, and checks from the database and the API: no order paid twice, every
//!    201 stored, every replay the first answer byte for byte, every expected 422 a 422,
//!    the ledger equal to the balances, no balance below zero, the total unchanged;
//! 5. prints a report (`--json` for machines), naming the skewed nodes and their clocks, and
//!    exits 1 on any violation.
//!
//! `--seed` repeats the schedule: each request's fault is drawn from its order id and
//! attempt number, and the kill and cut timelines from seeded streams.
//!
//! A green run proves nothing unless the checker can fail: the hidden flag
//! `--unsafe-disable-idempotency` is passed to every node, which then pays a retried order
//! twice, and the checker must report double payments. The flag exists only in builds with
//! the cargo feature `unsafe-disable-idempotency` (idem-cli's tests build with it).
//!
//! ## The proxy target
//!
//! `--target proxy` puts `idem proxy` (DESIGN §4) under the same faults. The run starts an
//! upstream of its own on a loopback port ([`proxy::Upstream`]): it moves money between the
//! run's accounts in its own tables of the run's database, one transaction per request, and
//! records every execution with the `Idempotency-Key`, the `Idempotency-Fencing-Token` the
//! proxy sent, and the node process that forwarded it (the balancer names it in
//! [`balancer::NODE_HEADER`]). `--nodes` proxies keep their records in the run's database
//! (`--proxy-store sql`, PostgreSQL or MySQL), in Redis (`redis`, with `--redis`), or in both
//! (`tiered`); a store cut kills the database's connections, and the Redis ones through a
//! relay of the run's own ([`relay::Relay`]) per proxy. The network faults reach the
//! proxies' store as they reach the payment nodes' database: each proxy's connections to the
//! database and to a Redis server pass relays of its own, and a partition cuts one proxy off
//! from both at once (a Redis Cluster's connections pass no relay: its client goes to the
//! addresses the cluster gives). The upstream's own connection to the database is never
//! faulted: it observes, it is not under test. The clients send the same orders to
//! `/v1/transfers` with the order id as the key.
//!
//! The checker ([`proxy::check`]) reports per key the upstream's executions, the answers
//! acknowledged and the replays: every replay must be the first acknowledged answer byte for
//! byte, and a key may run twice only within the proxy's documented limit — after a take-over
//! (a higher token) of a holder that was killed between the two executions or whose lease
//! had ended (fenced). Each such case is listed with its kill; any other is a violation.
//! With `--upstream-fencing` the upstream executes a key at most once (a higher token gets
//! the recorded answer, a stale one 409), and no second execution may exist at all. The
//! guard run's proxies guard only PUT, which the clients never send, so every retry reaches
//! the upstream: the checker must report unexplained executions.
//!
//! ## The broker targets
//!
//! `--target nats` and `--target amqp` run the same payment nodes with `idem serve --nats`
//! or `--amqp` on a stream and subject, or a queue, of the run's own on `--broker`, each node
//! through a relay of its own whose connections are cut (`--cut-broker-every`). The clients
//! publish each order (the body of `POST /v1/payments`, the order id as `Nats-Msg-Id` or
//! `message_id`) and wait for the reply (the `Idem-Reply-To` subject, or `reply_to` with a
//! `correlation_id`); on a timeout they publish the same message again, and at
//! `--duplicate-rate` they publish it twice. The nodes hold each answer `--settle-delay`
//! between the effect and the ack, so that kills land there. The checker is the payment
//! target's, plus every reply of an order: each the first answer, byte for byte, and at most
//! one not a replay ([`broker::check_replies`]). JetStream's own deduplication is narrowed
//! to [`broker::NATS_DUPLICATE_WINDOW`] so that re-publications reach the nodes, and the
//! nodes' consumer is made with a short ack wait so that a killed node's messages come
//! again within the run.
//!
//! ## Example
//!
//! ```text
//! idem chaos --database postgres://postgres@127.0.0.1:5432/postgres \
//!     --nodes 3 --clients 16 --duration 60s --all-faults --seed 7
//! idem chaos --target proxy --database postgres://postgres@127.0.0.1:5432/postgres \
//!     --proxy-store redis --redis redis://127.0.0.1:6379 --orders 10000 --all-faults --seed 8
//! idem chaos --own-database-server postgres --restart-db-every 10s --partition-every 5s \
//!     --net-delay 1ms --net-jitter 2ms --net-loss 0.001 --duration 60s --all-faults
//! idem chaos --target nats --broker nats://127.0.0.1:4222 \
//!     --database postgres://postgres@127.0.0.1:5432/postgres --orders 10000 --all-faults
//! ```
//!
//! The modules follow the run: [`cluster`] (node processes), [`balancer`] (the faulty
//! load balancer), [`faults`] (the schedule and its counters), [`client`] (the retrying
//! clients), [`skew`] (node clocks), [`relay`] (the network between nodes and their
//! store), [`server`] (the run's own database server), [`db`] (the run's database),
//! [`checker`] and [`report`]; [`proxy`] holds the proxy target's upstream and checker.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

pub mod balancer;
pub mod broker;
pub mod checker;
pub mod client;
pub mod cluster;
pub mod db;
pub mod faults;
mod harness;
pub mod proxy;
pub mod relay;
pub mod report;
mod runner;
pub mod server;
pub mod skew;

pub use harness::Kill;
pub use report::Report;
pub use runner::chaos;

/// Everything that can stop a run before it has a verdict.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The command line asks for something impossible.
    #[error("{0}")]
    Config(String),
    /// A local resource (socket, file, runtime) failed.
    #[error("{0}: {1}")]
    Io(String, #[source] std::io::Error),
    /// The database server refused or failed.
    #[error("{0}: {1}")]
    Database(String, #[source] sqlx::Error),
    /// A node would not start or answer.
    #[error("{0}")]
    Node(String),
    /// Setting up the run's accounts failed.
    #[error("{0}")]
    Setup(String),
    /// A program the run needs is not installed (a private database server's).
    #[error("{0}")]
    Missing(String),
    /// The run's own database server would not be created, started or restarted.
    #[error("{0}")]
    Server(String),
}

/// Binds a listener on a free loopback port for `what` (a balancer, a relay, an upstream)
/// and returns it with its address.
///
/// # Errors
/// [`Error::Io`] when no port binds or the address cannot be read.
pub(crate) async fn bind_loopback(
    what: &str,
) -> Result<(tokio::net::TcpListener, std::net::SocketAddr), Error> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| Error::Io(format!("binding the {what}"), e))?;
    let addr = listener
        .local_addr()
        .map_err(|e| Error::Io(format!("reading the {what}'s address"), e))?;
    Ok((listener, addr))
}

/// What a run puts under faults.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    /// `idem serve` nodes: no order paid twice (DESIGN §5, §7).
    #[default]
    Payments,
    /// `idem proxy` nodes in front of an upstream that moves money and records every
    /// execution: each key executed once, but for the proxy's documented limit (DESIGN §4).
    Proxy,
    /// `idem serve --nats` nodes taking payment requests from a JetStream stream of the
    /// run's own: no order paid twice, every reply consistent.
    Nats,
    /// `idem serve --amqp` nodes taking payment requests from a RabbitMQ queue of the run's
    /// own: no order paid twice, every reply consistent.
    Amqp,
}

impl Target {
    /// The broker a target's payment requests come through, if any.
    pub fn broker(self) -> Option<broker::BrokerKind> {
        match self {
            Self::Nats => Some(broker::BrokerKind::Nats),
            Self::Amqp => Some(broker::BrokerKind::Amqp),
            Self::Payments | Self::Proxy => None,
        }
    }
}

/// Where the proxy target's `idem proxy` nodes keep their records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ProxyStore {
    /// The run's database (`--database`).
    #[default]
    Sql,
    /// Redis (`--redis`) alone.
    Redis,
    /// Redis in front answering replays, the run's database the truth.
    Tiered,
}

/// `idem chaos`: run the payment service, or `idem proxy` in front of an upstream, under
/// faults and check that it held.
#[derive(Debug, Clone, clap::Args)]
pub struct ChaosArgs {
    /// What to put under faults: the payment service, or `idem proxy` in front of an
    /// upstream of the run's own.
    #[arg(long, env = "IDEM_CHAOS_TARGET", value_enum, default_value_t = Target::Payments)]
    pub target: Target,
    /// Broker targets: the NATS server (`--target nats`, nats://127.0.0.1:4222) or RabbitMQ
    /// (`--target amqp`, amqp://guest:guest@127.0.0.1:5672/%2f). The run makes a stream and
    /// subject, or queues, of its own there, named after its database, and deletes them at
    /// the end; the nodes reach the broker through relays of the run's own.
    #[arg(long, env = "IDEM_CHAOS_BROKER")]
    pub broker: Option<String>,
    /// Broker targets: cut every node's broker connections (through its relay) about this
    /// often [--all-faults: 4s].
    #[arg(long, env = "IDEM_CHAOS_CUT_BROKER_EVERY", value_parser = parse_duration)]
    pub cut_broker_every: Option<Duration>,
    /// Broker targets: how long each node holds an answer between the payment's effect and
    /// its reply and ack (`idem serve`'s hidden chaos switch), so that kills and cuts land
    /// in that window [--all-faults: 20ms; else 0].
    #[arg(long, env = "IDEM_CHAOS_SETTLE_DELAY", value_parser = parse_duration)]
    pub settle_delay: Option<Duration>,
    /// Proxy target: where the proxies keep their records (`redis` and `tiered` need
    /// `--redis`). The upstream's tables are always in the run's database.
    #[arg(long, env = "IDEM_CHAOS_PROXY_STORE", value_enum, default_value_t = ProxyStore::Sql)]
    pub proxy_store: ProxyStore,
    /// Proxy target: the Redis server of `--proxy-store redis|tiered`, such as
    /// redis://127.0.0.1:6379 (each proxy reaches it through a relay of the run's own, which
    /// cuts and network faults act on), or a Redis Cluster, redis+cluster://127.0.0.1:30001,…
    /// (the proxies connect to it directly: cuts and network faults then reach the
    /// database only).
    #[arg(long, env = "IDEM_CHAOS_REDIS")]
    pub redis: Option<String>,
    /// Proxy target: SIGKILL the Redis Cluster master holding the run's records about this
    /// often, and restart it 2.5 s later with the same port and node config (it rejoins
    /// empty). Needs a `--redis redis+cluster://` cluster that `scripts/redis-cluster.sh`
    /// started under `--redis-cluster-dir`.
    #[arg(long, env = "IDEM_CHAOS_KILL_REDIS_MASTER_EVERY", value_parser = parse_duration)]
    pub kill_redis_master_every: Option<Duration>,
    /// The directory `scripts/redis-cluster.sh` keeps each master's pid file and node
    /// config in (its `IDEM_CLUSTER_DIR`).
    #[arg(
        long,
        env = "IDEM_CHAOS_REDIS_CLUSTER_DIR",
        default_value = "/tmp/idem-redis-cluster"
    )]
    pub redis_cluster_dir: PathBuf,
    /// Proxy target: the proxies' lease (`idem proxy --lease-ms`): how long a killed
    /// proxy's key stays held before another proxy takes it over.
    #[arg(long, env = "IDEM_CHAOS_LEASE_MS", default_value_t = 3000)]
    pub lease_ms: u64,
    /// Proxy target: the upstream records key and fencing token and executes a key at most
    /// once, refusing (409) a stale or repeated token; the run must then show no second
    /// execution at all.
    #[arg(long, env = "IDEM_CHAOS_UPSTREAM_FENCING")]
    pub upstream_fencing: bool,
    /// Database server: postgres://… or mysql://… (a fresh database is created on it and
    /// dropped at the end), or sqlite (a temporary file, one node). Default: sqlite.
    #[arg(long, env = "IDEM_CHAOS_DATABASE")]
    pub database: Option<String>,
    /// Run a database server of the run's own instead of `--database`: a fresh PostgreSQL
    /// cluster or MariaDB server (its programs must be installed) on a free port and a
    /// temporary data dir, removed at the end. Only such a server is restarted
    /// (`--restart-db-every`), never a shared one.
    #[arg(
        long,
        env = "IDEM_CHAOS_OWN_DATABASE_SERVER",
        value_enum,
        conflicts_with = "database"
    )]
    pub own_database_server: Option<server::ServerKind>,
    /// Restart the run's own database server (`--own-database-server`) about this often, as
    /// its operator would: PostgreSQL `pg_ctl restart -m fast`, MariaDB SIGTERM and start.
    #[arg(long, env = "IDEM_CHAOS_RESTART_DB_EVERY", value_parser = parse_duration)]
    pub restart_db_every: Option<Duration>,
    /// Number of `idem serve` nodes [default: 3, or 1 on SQLite].
    #[arg(long, env = "IDEM_CHAOS_NODES")]
    pub nodes: Option<usize>,
    /// Concurrent clients.
    #[arg(long, env = "IDEM_CHAOS_CLIENTS", default_value_t = 16)]
    pub clients: usize,
    /// Accounts the clients pay between.
    #[arg(long, env = "IDEM_CHAOS_ACCOUNTS", default_value_t = 20)]
    pub accounts: usize,
    /// Opening balance of each account, in minor units.
    #[arg(long, env = "IDEM_CHAOS_BALANCE", default_value_t = 10_000)]
    pub balance: i64,
    /// Largest amount of one order (amounts are 1 to this).
    #[arg(long, env = "IDEM_CHAOS_AMOUNT_MAX", default_value_t = 500)]
    pub amount_max: i64,
    /// How long the load runs (such as 60s, 10m) [default: 30s unless --orders is given].
    #[arg(long, env = "IDEM_CHAOS_DURATION", value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Stop after this many orders.
    #[arg(long, env = "IDEM_CHAOS_ORDERS")]
    pub orders: Option<u64>,
    /// How long the last orders may take to settle, faults off, after the load stops.
    #[arg(long, env = "IDEM_CHAOS_DRAIN_TIMEOUT", value_parser = parse_duration, default_value = "60s")]
    pub drain_timeout: Duration,
    /// How long a client waits for one attempt before retrying.
    #[arg(long, env = "IDEM_CHAOS_CLIENT_TIMEOUT", value_parser = parse_duration, default_value = "2s")]
    pub client_timeout: Duration,
    /// Share of requests whose answer is dropped after the node did the work.
    #[arg(long, env = "IDEM_CHAOS_DROP_RESPONSE_RATE")]
    pub drop_response_rate: Option<f64>,
    /// Share of requests sent to two nodes at once (broker targets: messages published
    /// twice, back to back, with the same message id).
    #[arg(long, env = "IDEM_CHAOS_DUPLICATE_RATE")]
    pub duplicate_rate: Option<f64>,
    /// Share of requests delivered, or answered, past the client's timeout.
    #[arg(long, env = "IDEM_CHAOS_DELAY_RATE")]
    pub delay_rate: Option<f64>,
    /// How long a delayed request is held [default: the client timeout + 500ms].
    #[arg(long, env = "IDEM_CHAOS_DELAY", value_parser = parse_duration)]
    pub delay: Option<Duration>,
    /// Kill a random node with SIGKILL about this often, then restart it.
    #[arg(long, env = "IDEM_CHAOS_KILL_EVERY", value_parser = parse_duration)]
    pub kill_every: Option<Duration>,
    /// Cut every database connection of the run about this often (not on SQLite, which
    /// has no server to cut).
    #[arg(long, env = "IDEM_CHAOS_CUT_DB_EVERY", value_parser = parse_duration)]
    pub cut_db_every: Option<Duration>,
    /// Partition one node at a time from its store about this often: its packets silently
    /// dropped both ways through the node's own relays, connections left open (PostgreSQL,
    /// MySQL, and a proxy's Redis server).
    #[arg(long, env = "IDEM_CHAOS_PARTITION_EVERY", value_parser = parse_duration)]
    pub partition_every: Option<Duration>,
    /// How long a partition lasts, give or take half; then it heals, and at even odds the
    /// connections it caught resume or stay dead, half-open.
    #[arg(long, env = "IDEM_CHAOS_PARTITION_FOR", value_parser = parse_duration, default_value = "3s")]
    pub partition_for: Duration,
    /// Delay added to every chunk between a node and its store, each way (netem's `delay`,
    /// in user space).
    #[arg(long, env = "IDEM_CHAOS_NET_DELAY", value_parser = parse_duration)]
    pub net_delay: Option<Duration>,
    /// A further delay per chunk drawn from zero to this; bytes keep their order, so
    /// reordering shows as head-of-line blocking, as over TCP.
    #[arg(long, env = "IDEM_CHAOS_NET_JITTER", value_parser = parse_duration)]
    pub net_jitter: Option<Duration>,
    /// Share of chunks held 200 ms more, as a lost packet's retransmission is.
    #[arg(long, env = "IDEM_CHAOS_NET_LOSS")]
    pub net_loss: Option<f64>,
    /// Run this many nodes (the first ones) with their wall clock skewed and drifting
    /// through libfaketime: -3 h ×1.001, +5 h ×0.999, -26 h ×1.002, +49 h ×0.998, repeating
    /// [default: 1 under --all-faults with 2 or more nodes, when libfaketime is installed;
    /// else 0].
    #[arg(long, env = "IDEM_CHAOS_SKEW_NODES")]
    pub skew_nodes: Option<usize>,
    /// libfaketime's shared object [default: searched where Debian and others put it].
    #[arg(long, env = "IDEM_CHAOS_LIBFAKETIME")]
    pub libfaketime: Option<PathBuf>,
    /// Turn every fault kind on at sensible rates (explicit flags still win); clock skew
    /// only when libfaketime is installed.
    #[arg(long, env = "IDEM_CHAOS_ALL_FAULTS")]
    pub all_faults: bool,
    /// Share of paid orders re-sent later unchanged (expect the first answer replayed).
    #[arg(long, env = "IDEM_CHAOS_REPLAY_RATE", default_value_t = 0.05)]
    pub replay_rate: f64,
    /// Share of paid orders re-sent later with another amount (expect 422).
    #[arg(long, env = "IDEM_CHAOS_CONFLICT_RATE", default_value_t = 0.02)]
    pub conflict_rate: f64,
    /// Seed of the fault schedule and the orders [default: from the clock; printed].
    #[arg(long, env = "IDEM_CHAOS_SEED")]
    pub seed: Option<u64>,
    /// The `idem` binary to start nodes from [default: the `idem` running this command].
    #[arg(long, env = "IDEM_CHAOS_IDEM_BIN")]
    pub idem_bin: Option<PathBuf>,
    /// Keep the run's database instead of dropping it.
    #[arg(long, env = "IDEM_CHAOS_KEEP")]
    pub keep: bool,
    /// Print the report as JSON.
    #[arg(long, env = "IDEM_CHAOS_JSON")]
    pub json: bool,
    /// The guard run's switch; it has none unless built with the feature.
    #[command(flatten)]
    pub guard: GuardArgs,
}

impl ChaosArgs {
    /// `--redis` when a relay of the run's can stand between it and the proxies: a single
    /// server. A Redis Cluster's client learns the nodes' own addresses from the cluster and
    /// connects to them past any relay.
    pub(crate) fn relayable_redis(&self) -> Option<&str> {
        self.redis
            .as_deref()
            .filter(|url| !url.starts_with("redis+cluster://"))
    }
}

/// `--unsafe-disable-idempotency`: run the nodes without idempotency, to show the checker
/// catches double payments. Only in builds with the cargo feature
/// `unsafe-disable-idempotency` (the test builds), whose `idem serve` has the switch too.
#[cfg(feature = "unsafe-disable-idempotency")]
#[derive(Debug, Clone, Copy, Default, clap::Args)]
pub struct GuardArgs {
    /// Run the nodes without idempotency, to show the checker catches double payments.
    #[arg(long, hide = true)]
    pub unsafe_disable_idempotency: bool,
}

#[cfg(feature = "unsafe-disable-idempotency")]
impl GuardArgs {
    /// Whether the nodes run without idempotency.
    pub fn idempotency_disabled(&self) -> bool {
        self.unsafe_disable_idempotency
    }

    /// The arguments that tell a node to run without idempotency, when asked to.
    pub(crate) fn node_args(&self) -> Vec<String> {
        if self.unsafe_disable_idempotency {
            vec!["--unsafe-disable-idempotency".to_owned()]
        } else {
            Vec::new()
        }
    }

    /// The arguments that make a proxy guard nothing the load sends (only PUT, the clients
    /// POST), when asked to: every request reaches the upstream unguarded.
    pub(crate) fn proxy_args(&self) -> Vec<String> {
        if self.unsafe_disable_idempotency {
            vec!["--methods".to_owned(), "PUT".to_owned()]
        } else {
            Vec::new()
        }
    }
}

/// The guard run's switch, absent from this build: without the test-guard cargo feature
/// (see Cargo.toml), every node keeps idempotency on. (clap keeps this text in the
/// binary, so it does not spell the flag.)
#[cfg(not(feature = "unsafe-disable-idempotency"))]
#[derive(Debug, Clone, Copy, Default, clap::Args)]
pub struct GuardArgs {}

#[cfg(not(feature = "unsafe-disable-idempotency"))]
impl GuardArgs {
    /// Whether the nodes run without idempotency: never, in this build.
    pub fn idempotency_disabled(&self) -> bool {
        false
    }

    /// The arguments that tell a node to run without idempotency: none, in this build.
    pub(crate) fn node_args(&self) -> Vec<String> {
        Vec::new()
    }

    /// The arguments that make a proxy guard nothing: none, in this build.
    pub(crate) fn proxy_args(&self) -> Vec<String> {
        Vec::new()
    }
}

/// Runs `idem chaos` on a runtime of its own, prints the report, and returns the exit code:
/// 0 when every check held, 1 on any violation. Nodes start from `--idem-bin`, or else from
/// `default_bin` (the `idem` binary passes its own path).
///
/// # Errors
/// Any [`Error`] that kept the run from reaching a verdict.
pub fn run(args: ChaosArgs, default_bin: &Path) -> Result<ExitCode, Error> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Io("starting the runtime".into(), e))?;
    let json = args.json;
    let report = runtime.block_on(chaos(args, default_bin))?;
    if json {
        let text = serde_json::to_string_pretty(&report)
            .map_err(|e| Error::Config(format!("serialising the report: {e}")))?;
        println!("{text}");
    } else {
        print!("{report}");
    }
    Ok(if report.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Parses `500ms`, `5s`, `2m`, `1h`, or a bare number of seconds.
///
/// # Errors
/// A message naming the bad value.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let n: f64 = number
        .parse()
        .map_err(|_| format!("{text:?}: expected a duration such as 500ms, 5s, 2m"))?;
    let seconds = match unit {
        "ms" => n / 1000.0,
        "" | "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("{text:?}: unknown unit {unit:?} (ms, s, m, h)")),
    };
    Duration::try_from_secs_f64(seconds).map_err(|e| format!("{text:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("7"), Ok(Duration::from_secs(7)));
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("-1s").is_err());
    }
}
