//! `idem serve`: one node of the payment service. With no flags, 127.0.0.1:8080 on the
//! SQLite file `./idem-data/idem.db`; any number of nodes may share one PostgreSQL or
//! MySQL database. SIGTERM or ctrl-c (the shutdown future the `idem` binary passes) stops
//! accepting, lets in-flight requests finish, and exits 0.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use tokio::net::TcpListener;

use idem_http::server::Limits;
use idem_redis::{RedisOptions, ReplayCache};

use crate::api::Auth;
use crate::db::Db;
use crate::keys::ApiKeys;
use crate::metrics::Metrics;
use crate::service::Service;

/// The database used when none is given: a file created on first run.
pub const DEFAULT_DATABASE: &str = "sqlite://./idem-data/idem.db";
/// The address used when none is given.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

/// Settled answers a node remembers unless `--replay-memory` says otherwise (about 300
/// bytes each).
pub const DEFAULT_REPLAY_MEMORY: usize = 100_000;

/// `--batch-max`'s default: 1, batching off. On, fresh payments run about 2× faster at 64
/// clients and no slower at one (docs/BENCHMARKS.md, "Group commit"), but a node whose
/// batches wait on a slow or dead database connection slows down more than one that
/// commits each payment alone (chaos run 41), so it stays a choice.
pub const DEFAULT_BATCH_MAX: u16 = 1;

/// `--batch-workers`'s default: batches in flight per node.
pub const DEFAULT_BATCH_WORKERS: u16 = 4;

/// A Redis call slower than this is abandoned for SQL.
const REDIS_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(250);

/// The options of `idem serve`; each has an `IDEM_*` environment variable.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Database URL: sqlite://PATH, postgres://…, or mysql://…
    #[arg(long, env = "IDEM_DATABASE", default_value = DEFAULT_DATABASE)]
    pub database: String,
    /// Redis URL for the replay cache (optional; SQL stays the truth).
    #[arg(long, env = "IDEM_REDIS")]
    pub redis: Option<String>,
    /// Prefix of this service's Redis keys.
    #[arg(long, env = "IDEM_REDIS_PREFIX", default_value = "idem:pay")]
    pub redis_prefix: String,
    /// Address to listen on; port 0 picks a free port (the log line `listening on ADDR` says which).
    #[arg(long, env = "IDEM_LISTEN", default_value = DEFAULT_LISTEN)]
    pub listen: String,
    /// Settled payments (and as many refunds) each node remembers, so that their replays
    /// skip the database; 0 remembers none. A settled answer never changes, so this is
    /// safe on any number of nodes.
    #[arg(long, env = "IDEM_REPLAY_MEMORY", default_value_t = DEFAULT_REPLAY_MEMORY)]
    pub replay_memory: usize,
    /// Database connections per node.
    #[arg(long, env = "IDEM_MAX_CONNECTIONS", default_value_t = 16)]
    pub max_connections: u32,
    /// Payments and refunds committed together in one transaction at most (group commit:
    /// concurrent calls share a commit, a lone call goes at once); 1 commits each alone.
    #[arg(long, env = "IDEM_BATCH_MAX", default_value_t = DEFAULT_BATCH_MAX, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub batch_max: u16,
    /// Microseconds a batch that is not full waits for more calls before it starts; 0
    /// waits for nothing (a batch closes when a worker's previous commit returns).
    #[arg(long, env = "IDEM_BATCH_WAIT_US", default_value_t = 0)]
    pub batch_wait_us: u64,
    /// Batches in flight at once per node, each on its own database connection.
    #[arg(long, env = "IDEM_BATCH_WORKERS", default_value_t = DEFAULT_BATCH_WORKERS, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub batch_workers: u16,
    /// How /v1 requests are authenticated: api-keys (`Authorization: Bearer`, keys from
    /// `idem keys create`) or none. Default: none on a loopback address, api-keys otherwise.
    #[arg(long, env = "IDEM_AUTH", value_enum)]
    pub auth: Option<AuthMode>,
    /// Allow `--auth none` on an address that is not loopback (something in front must
    /// authenticate: without it anyone who reaches the port moves any money).
    #[arg(long, env = "IDEM_INSECURE_NO_AUTH")]
    pub insecure_no_auth: bool,
    /// Payment requests from NATS JetStream or RabbitMQ.
    #[command(flatten)]
    pub brokers: crate::brokers::BrokerArgs,
    /// The test guard's switch; it has none unless built with the feature.
    #[command(flatten)]
    pub guard: TestGuard,
}

/// How `/v1` requests are authenticated (DESIGN §5a).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AuthMode {
    /// Every request carries a live API key, which names its tenant.
    ApiKeys,
    /// No key: every request belongs to the tenant `default`.
    None,
}

/// Why `idem serve` refused to start without authentication.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "refusing --auth none on {listen}, which is not a loopback address: anyone who reaches \
     it could move any money. Run with --auth api-keys (keys from `idem keys create`), or \
     add --insecure-no-auth if something in front of idem authenticates every request"
)]
pub struct InsecureNoAuth {
    /// The listen address asked for.
    pub listen: String,
}

/// The mode `idem serve` runs with: the one asked for, else none when every address the
/// listen address names is loopback and api-keys otherwise. `none` on a reachable address
/// needs `insecure_no_auth`: a payment API open to the network is refused, not warned about.
///
/// # Errors
/// [`InsecureNoAuth`] for `none` on a reachable address without `insecure_no_auth`.
pub fn auth_mode(
    asked: Option<AuthMode>,
    listen: &str,
    loopback_only: bool,
    insecure_no_auth: bool,
) -> Result<AuthMode, InsecureNoAuth> {
    match asked {
        Some(AuthMode::None) if !loopback_only && !insecure_no_auth => Err(InsecureNoAuth {
            listen: listen.to_owned(),
        }),
        Some(mode) => Ok(mode),
        None if loopback_only => Ok(AuthMode::None),
        None => Ok(AuthMode::ApiKeys),
    }
}

/// Whether every address `listen` names is a loopback one (`127.0.0.1:8080`, `[::1]:0`,
/// `localhost:8080`); an address that does not resolve is not.
async fn loopback_only(listen: &str) -> bool {
    match tokio::net::lookup_host(listen).await {
        Ok(addrs) => {
            let addrs: Vec<_> = addrs.collect();
            !addrs.is_empty() && addrs.iter().all(|a| a.ip().is_loopback())
        }
        Err(_) => false,
    }
}

/// `--unsafe-disable-idempotency`, TEST GUARD, NEVER FOR REAL USE: pays a retried order
/// again, so that the chaos checker can prove it detects double payments. Only in builds
/// with the cargo feature `unsafe-disable-idempotency` (the test builds), hidden, and with
/// no variable, so that no shipped binary or environment can switch it on.
#[cfg(feature = "unsafe-disable-idempotency")]
#[derive(Debug, Clone, Copy, Default, Args)]
pub struct TestGuard {
    /// TEST GUARD, NEVER FOR REAL USE: pays a retried order again.
    #[arg(long, hide = true)]
    pub unsafe_disable_idempotency: bool,
}

#[cfg(feature = "unsafe-disable-idempotency")]
impl TestGuard {
    /// Whether the service runs without idempotency.
    pub fn idempotency_disabled(&self) -> bool {
        self.unsafe_disable_idempotency
    }
}

/// The test guard's switch, absent from this build: without the test-guard cargo feature
/// (see Cargo.toml), `idem serve` has no way to turn idempotency off. (clap keeps this
/// text in the binary, so it does not spell the flag.)
#[cfg(not(feature = "unsafe-disable-idempotency"))]
#[derive(Debug, Clone, Copy, Default, Args)]
pub struct TestGuard {}

#[cfg(not(feature = "unsafe-disable-idempotency"))]
impl TestGuard {
    /// Whether the service runs without idempotency: never, in this build.
    pub fn idempotency_disabled(&self) -> bool {
        false
    }
}

/// Runs `idem serve` to completion on its own runtime, until `shutdown` resolves.
///
/// # Errors
/// When the database, the Redis URL or the listen address cannot be used.
pub fn run(
    args: ServeArgs,
    limits: Limits,
    metrics: Metrics,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(serve(args, limits, metrics, shutdown))?;
    Ok(ExitCode::SUCCESS)
}

/// Serves until `shutdown` resolves (the `idem` binary passes SIGTERM or ctrl-c), then
/// drains in-flight requests and returns. `limits` bound what one client may take (the
/// `idem` binary reads them from its options). Logs through `tracing` and records through
/// `metrics`; the caller installs the subscriber and the recorder, and gives `metrics` the
/// handle `GET /metrics` renders ([`Metrics::global`]).
///
/// # Errors
/// When the database, the Redis URL or the listen address cannot be used.
pub async fn serve(
    args: ServeArgs,
    limits: Limits,
    metrics: Metrics,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let loopback = loopback_only(&args.listen).await;
    let mode = auth_mode(args.auth, &args.listen, loopback, args.insecure_no_auth)?;
    let db = Db::connect(&args.database, args.max_connections)
        .await
        .with_context(|| format!("opening the database {}", redact(&args.database)))?;
    tracing::info!(backend = db.backend().name(), "database ready");
    let auth = match mode {
        AuthMode::ApiKeys => Auth::ApiKeys(ApiKeys::new(db.clone())),
        AuthMode::None => Auth::None,
    };
    match mode {
        AuthMode::ApiKeys => tracing::info!("auth: api-keys (Authorization: Bearer)"),
        AuthMode::None if loopback => tracing::info!("auth: none (loopback address)"),
        AuthMode::None => {
            tracing::warn!("auth: none on a reachable address (--insecure-no-auth)");
        }
    }
    let cache = match &args.redis {
        Some(url) => {
            let options = RedisOptions::from_url(url)
                .with_context(|| format!("the Redis URL {}", redact(url)))?
                .prefix(args.redis_prefix.as_str())
                .connection_timeout(REDIS_TIMEOUT)
                .response_timeout(REDIS_TIMEOUT);
            Some(ReplayCache::lazy(&options).context("the Redis options")?)
        }
        None => None,
    };
    let batching = idem_sql::BatchOptions {
        items_max: usize::from(args.batch_max),
        wait: std::time::Duration::from_micros(args.batch_wait_us),
        workers: usize::from(args.batch_workers),
        ..idem_sql::BatchOptions::default()
    };
    let service = Service::new(db.clone(), cache, Arc::new(metrics))
        .with_replay_memory(args.replay_memory)
        .with_batching(batching);
    #[cfg(feature = "unsafe-disable-idempotency")]
    let service = {
        if args.guard.idempotency_disabled() {
            tracing::warn!("--unsafe-disable-idempotency: orders may be paid twice (test guard)");
        }
        service.with_unsafe_disable_idempotency(args.guard.idempotency_disabled())
    };
    let router = crate::api::router(service, auth);
    let brokers = crate::brokers::start(&args.brokers, router.clone()).await?;
    let listener = TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    let addr = listener.local_addr().context("reading the bound address")?;
    tracing::info!("listening on {addr}");
    idem_http::server::serve(listener, limits, router, shutdown).await;
    // Deliveries cut short here were not acked: the broker hands them to another node,
    // which replays what was paid.
    for task in brokers {
        task.abort();
    }
    db.close().await;
    tracing::info!("stopped");
    Ok(())
}

/// A URL without its password, for logs and errors.
pub(crate) fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            match url[scheme_end + 3..at].split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme_end + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        serve: ServeArgs,
    }

    #[test]
    fn defaults_are_the_embedded_single_node() {
        let cli = Cli::try_parse_from(["idem"]).expect("no flags parse");
        assert_eq!(cli.serve.database, DEFAULT_DATABASE);
        assert_eq!(cli.serve.listen, DEFAULT_LISTEN);
        assert!(!cli.serve.guard.idempotency_disabled());
    }

    #[cfg(feature = "unsafe-disable-idempotency")]
    #[test]
    fn the_test_guard_parses_in_builds_with_the_feature() {
        let cli =
            Cli::try_parse_from(["idem", "--unsafe-disable-idempotency"]).expect("flags parse");
        assert!(cli.serve.guard.idempotency_disabled());
    }

    #[cfg(not(feature = "unsafe-disable-idempotency"))]
    #[test]
    fn without_the_feature_the_test_guard_is_an_unknown_argument() {
        let err = Cli::try_parse_from(["idem", "--unsafe-disable-idempotency"])
            .expect_err("no such flag");
        assert_eq!(err.kind(), clap::error::ErrorKind::UnknownArgument);
    }

    #[test]
    fn auth_defaults_to_keys_off_loopback_and_refuses_none_there() {
        let mode = |asked, loopback, insecure| auth_mode(asked, "x", loopback, insecure);
        assert_eq!(mode(None, true, false), Ok(AuthMode::None));
        assert_eq!(mode(None, false, false), Ok(AuthMode::ApiKeys));
        assert_eq!(
            mode(Some(AuthMode::ApiKeys), true, false),
            Ok(AuthMode::ApiKeys)
        );
        assert_eq!(mode(Some(AuthMode::None), true, false), Ok(AuthMode::None));
        assert!(mode(Some(AuthMode::None), false, false).is_err());
        assert_eq!(mode(Some(AuthMode::None), false, true), Ok(AuthMode::None));
        let cli = Cli::try_parse_from(["idem", "--auth", "api-keys"]).expect("parses");
        assert_eq!(cli.serve.auth, Some(AuthMode::ApiKeys));
        assert!(Cli::try_parse_from(["idem", "--auth", "basic"]).is_err());
    }

    #[tokio::test]
    async fn loopback_is_read_from_what_the_address_names() {
        assert!(loopback_only("127.0.0.1:8080").await);
        assert!(loopback_only("[::1]:0").await);
        assert!(loopback_only("localhost:0").await);
        assert!(!loopback_only("0.0.0.0:8080").await);
        assert!(!loopback_only("[::]:8080").await);
        assert!(!loopback_only("not an address").await);
    }

    #[test]
    fn passwords_are_not_logged() {
        assert_eq!(redact("postgres://u:secret@h/db"), "postgres://u:***@h/db");
        assert_eq!(redact("sqlite://./x.db"), "sqlite://./x.db");
        assert_eq!(redact("mysql://root@h/db"), "mysql://root@h/db");
    }
}
