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

use crate::db::Db;
use crate::metrics::Metrics;
use crate::service::Service;

/// The database used when none is given: a file created on first run.
pub const DEFAULT_DATABASE: &str = "sqlite://./idem-data/idem.db";
/// The address used when none is given.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

/// Settled answers a node remembers unless `--replay-memory` says otherwise (about 300
/// bytes each).
pub const DEFAULT_REPLAY_MEMORY: usize = 100_000;

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
    /// The test guard's switch; it has none unless built with the feature.
    #[command(flatten)]
    pub guard: TestGuard,
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
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(serve(args, limits, shutdown))?;
    Ok(ExitCode::SUCCESS)
}

/// Serves until `shutdown` resolves (the `idem` binary passes SIGTERM or ctrl-c), then
/// drains in-flight requests and returns. `limits` bound what one client may take (the
/// `idem` binary reads them from its options). Logs through `tracing`; the caller installs
/// the subscriber.
///
/// # Errors
/// When the database, the Redis URL or the listen address cannot be used.
pub async fn serve(
    args: ServeArgs,
    limits: Limits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let db = Db::connect(&args.database, args.max_connections)
        .await
        .with_context(|| format!("opening the database {}", redact(&args.database)))?;
    tracing::info!(backend = db.backend().name(), "database ready");
    let metrics = Arc::new(Metrics::default());
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
    let service = Service::new(db.clone(), cache, metrics).with_replay_memory(args.replay_memory);
    #[cfg(feature = "unsafe-disable-idempotency")]
    let service = {
        if args.guard.idempotency_disabled() {
            tracing::warn!("--unsafe-disable-idempotency: orders may be paid twice (test guard)");
        }
        service.with_unsafe_disable_idempotency(args.guard.idempotency_disabled())
    };
    let listener = TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    let addr = listener.local_addr().context("reading the bound address")?;
    tracing::info!("listening on {addr}");
    idem_http::server::serve(listener, limits, crate::api::router(service), shutdown).await;
    db.close().await;
    tracing::info!("stopped");
    Ok(())
}

/// A URL without its password, for logs and errors.
fn redact(url: &str) -> String {
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
    fn passwords_are_not_logged() {
        assert_eq!(redact("postgres://u:secret@h/db"), "postgres://u:***@h/db");
        assert_eq!(redact("sqlite://./x.db"), "sqlite://./x.db");
        assert_eq!(redact("mysql://root@h/db"), "mysql://root@h/db");
    }
}
