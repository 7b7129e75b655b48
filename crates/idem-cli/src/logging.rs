//! Where `idem serve` and `idem proxy` write their logs: stdout, as text or JSON lines,
//! filtered by `RUST_LOG` (default [`FILTER_DEFAULT`]). The libraries only emit events;
//! the binary installs the one subscriber. Every line written within a request carries its
//! `trace_id` (the `http_request` span of `idem_http::server`). With the `otel` feature,
//! the same spans are also exported over OTLP (`crate::otel`).

use clap::{Args, ValueEnum};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

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

    /// Export the request spans over OTLP/HTTP to this collector: a base URL such as
    /// `http://127.0.0.1:4318`, spans going to its `/v1/traces` (build feature `otel`).
    #[cfg(feature = "otel")]
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT")]
    pub(crate) otlp_endpoint: Option<String>,
}

/// What must outlive the serving: with the `otel` feature, the span exporter, flushed when
/// this is dropped.
pub(crate) struct Logging {
    #[cfg(feature = "otel")]
    _export: Option<crate::otel::Export>,
}

/// Installs the process's subscriber.
///
/// # Errors
/// When a subscriber is already installed (this is called once, by `run`), or the OTLP
/// exporter cannot be built.
pub(crate) fn init(args: &LogArgs) -> anyhow::Result<Logging> {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(FILTER_DEFAULT));
    let lines = tracing_subscriber::fmt::layer()
        .with_ansi(false)
        .with_writer(std::io::stdout);
    let lines = match args.log_format {
        LogFormat::Text => lines.boxed(),
        LogFormat::Json => lines.json().boxed(),
    };
    let registry = tracing_subscriber::registry().with(filter).with(lines);
    #[cfg(feature = "otel")]
    let (registry, export) = {
        let (layer, export) = crate::otel::layer(args.otlp_endpoint.as_deref())?.unzip();
        (registry.with(layer), export)
    };
    registry
        .try_init()
        .map_err(|error| anyhow::anyhow!("installing the log subscriber: {error}"))?;
    Ok(Logging {
        #[cfg(feature = "otel")]
        _export: export,
    })
}
