//! The one error type of this crate.

use std::path::PathBuf;

/// What can stop a benchmark run. A request that gets an unexpected answer is not an
/// error of the run: it is counted in the report's errors.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BenchError {
    /// A command-line value could not be understood.
    #[error("invalid {what}: {reason}")]
    InvalidArgument {
        /// Which option or value.
        what: &'static str,
        /// Why it was refused.
        reason: String,
    },
    /// The target URL could not be resolved to an address.
    #[error("cannot resolve {url}: {reason}")]
    Resolve {
        /// The URL given.
        url: String,
        /// Why it failed.
        reason: String,
    },
    /// `idem serve` could not be started, or did not say where it listens.
    #[error("cannot start {bin}: {reason}")]
    Spawn {
        /// The binary that was started.
        bin: PathBuf,
        /// Why it failed, with the server's last log lines.
        reason: String,
    },
    /// `--baseline-unsafe` with an `idem` that lacks the test guard's switch.
    #[error(
        "--baseline-unsafe: {bin} has no --unsafe-disable-idempotency; build an idem with the \
         test guard (`cargo build --release -p idem-cli --features unsafe-disable-idempotency`) \
         and pass it as --idem-bin"
    )]
    NoTestGuard {
        /// The binary that lacks it.
        bin: PathBuf,
    },
    /// The run's stream, queues or publishers could not be set up on the broker.
    #[error("broker: {0}")]
    Broker(#[from] idem_chaos::Error),
    /// The accounts the workload needs could not be opened.
    #[error("setting up the workload failed: {0}")]
    Setup(String),
    /// A database statement of the bench itself (fresh database, SQL baseline) failed.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// The run's own database could not be created or dropped.
    #[error("fresh database: {0}")]
    FreshDatabase(#[from] idem_sql_admin::Error),
    /// Writing the plot failed.
    #[error("plot {path}: {reason}")]
    Plot {
        /// The file being written.
        path: PathBuf,
        /// Why it failed.
        reason: String,
    },
    /// An I/O error of the bench itself.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

/// A result with [`BenchError`] as its error.
pub type Result<T, E = BenchError> = std::result::Result<T, E>;
