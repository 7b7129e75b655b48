//! [`run`]: start `idem proxy`, serve until told to stop (the `idem` binary: SIGTERM or
//! ctrl-c), drain, stop.

use std::io::Write;

use axum::Router;
use idem_http::server::Limits;
use idem_http::IdempotencyLayer;
use tokio::net::TcpListener;

use crate::forward::{forward, Forwarder};
use crate::{open_store, Error, ProxyArgs};

/// Runs `idem proxy` with `args` until `shutdown` resolves, then lets in-flight requests
/// finish and returns. `limits` bound what one client may take (the `idem` binary reads
/// them from its options). Prints `listening on http://ADDR` on stdout once it accepts.
/// Logs through `tracing`; the caller installs the subscriber.
///
/// # Errors
/// [`Error::Config`] for unusable options, [`Error::StoreOpen`] when the store cannot be
/// opened, [`Error::Io`] when the address cannot be bound or served.
pub async fn run(
    args: ProxyArgs,
    limits: Limits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let listener = TcpListener::bind(&args.listen)
        .await
        .map_err(|source| Error::Io {
            what: format!("bind {}", args.listen),
            source,
        })?;
    serve(args, limits, listener, shutdown).await
}

/// Serves `idem proxy` on `listener` until `shutdown` resolves (for embedding and tests).
///
/// # Errors
/// As [`run`].
pub async fn serve(
    args: ProxyArgs,
    limits: Limits,
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

    let purger = (args.purge_every_secs > 0).then(|| {
        idem_http::spawn_purger(store, std::time::Duration::from_secs(args.purge_every_secs))
    });
    idem_http::server::serve(listener, limits, app, shutdown).await;
    if let Some(purger) = purger {
        purger.abort();
    }
    tracing::info!("idem proxy stopped");
    Ok(())
}
