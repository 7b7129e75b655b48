//! Where `idem serve` and `idem proxy` write their logs: stdout, as text or JSON lines,
//! filtered by `RUST_LOG` (default [`FILTER_DEFAULT`]). The libraries only emit events;
//! the binary installs the one subscriber.

use clap::{Args, ValueEnum};
use tracing_subscriber::EnvFilter;

/// The filter used when `RUST_LOG` is unset or unusable.
pub(crate) const FILTER_DEFAULT: &str = "info,sqlx=warn";

/// How log lines are written to stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum LogFormat {
    /// One human-readable line per event.
    Text,
    /// One JSON object per event, for log collectors.
    Json,
}

/// The logging options, shared by every command that serves.
#[derive(Debug, Clone, Args)]
pub(crate) struct LogArgs {
    /// Log format on stdout (`RUST_LOG` filters the events; default `info,sqlx=warn`).
    #[arg(long, env = "IDEM_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub(crate) log_format: LogFormat,
}

/// Installs the process's subscriber.
///
/// # Errors
/// When a subscriber is already installed (this is called once, by `run`).
pub(crate) fn init(args: &LogArgs) -> anyhow::Result<()> {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(FILTER_DEFAULT));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(std::io::stdout);
    match args.log_format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    }
    .map_err(|error| anyhow::anyhow!("installing the log subscriber: {error}"))
}
