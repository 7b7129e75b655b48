//! [`run`]: start `idem proxy`, serve until SIGTERM or ctrl-c, drain, stop.

use std::io::Write;
use std::net::SocketAddr;

use axum::Router;
use tokio::net::TcpListener;
use tracing_subscriber::EnvFilter;

use super::forward::{forward, Forwarder};
use super::{open_store, LogFormat, ProxyArgs};
use crate::{Error, IdempotencyLayer};

/// Runs `idem proxy` with `args` until SIGTERM or ctrl-c, then lets in-flight requests
/// finish and returns. Prints `listening on http://ADDR` on stdout once it accepts.
///
/// # Errors
/// [`Error::Config`] for unusable options or an unreachable store, [`Error::Io`] when
/// the address cannot be bound.
pub async fn run(args: ProxyArgs) -> Result<(), Error> {
    init_logging(args.log_format);
    let listener = TcpListener::bind(&args.listen)
        .await
        .map_err(|source| Error::Io {
            what: format!("bind {}", args.listen),
            source,
        })?;
    serve(args, listener, shutdown_signal()).await
}

/// Serves `idem proxy` on `listener` until `shutdown` resolves (for embedding and tests).
///
/// # Errors
/// As [`run`].
pub async fn serve(
    args: ProxyArgs,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let config = args.layer_config()?;
    let forwarder = Forwarder::new(&args.upstream)?;
    let store = open_store(&args).await?;
    let app =
        Router::new()
            .fallback(forward)
            .with_state(forwarder)
            .layer(IdempotencyLayer::from_arc(
                std::sync::Arc::clone(&store),
                config,
            ));

    let addr = listener.local_addr().map_err(|source| Error::Io {
        what: format!("bind {}", args.listen),
        source,
    })?;
    tracing::info!(%addr, upstream = %args.upstream, "idem proxy listening");
    let mut stdout = std::io::stdout();
    // Tests and scripts read the bound address (port 0 picks one) from this line.
    let _ = writeln!(stdout, "listening on http://{addr}");
    let _ = stdout.flush();

    let app = app.into_make_service_with_connect_info::<SocketAddr>();
    let purger = (args.purge_every_secs > 0)
        .then(|| crate::spawn_purger(store, std::time::Duration::from_secs(args.purge_every_secs)));
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await;
    if let Some(purger) = purger {
        purger.abort();
    }
    served.map_err(|source| Error::Io {
        what: format!("serve on {addr}"),
        source,
    })?;
    tracing::info!("idem proxy stopped");
    Ok(())
}

fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // A second init (embedding, tests) keeps the first subscriber.
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// Resolves on ctrl-c or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down: draining in-flight requests");
}
