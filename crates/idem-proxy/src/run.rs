//! [`run`]: start `idem proxy`, serve until told to stop (the `idem` binary: SIGTERM or
//! ctrl-c), drain, stop.

use std::io::Write;
use std::time::Duration;

use axum::Router;
use idem_http::server::Limits;
use idem_http::IdempotencyLayer;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;

use crate::forward::{forward, Forwarder};
use crate::{open_store, Error, ProxyArgs};

/// Runs `idem proxy` with `args` until `shutdown` resolves, then lets in-flight requests
/// finish and returns. `limits` bound what one client may take (the `idem` binary reads
/// them from its options). Prints `listening on http://ADDR` on stdout once it accepts, and
/// `admin listening on http://ADDR` with `--admin-listen`. Logs through `tracing` and
/// records through `metrics`; the caller installs the subscriber and the recorder, whose
/// handle `exposition` the admin `/metrics` renders.
///
/// # Errors
/// [`Error::Config`] for unusable options, [`Error::StoreOpen`] when the store cannot be
/// opened, [`Error::Io`] when the address cannot be bound or served.
pub async fn run(
    args: ProxyArgs,
    limits: Limits,
    exposition: Option<PrometheusHandle>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let listener = TcpListener::bind(&args.listen)
        .await
        .map_err(|source| Error::Io {
            what: format!("bind {}", args.listen),
            source,
        })?;
    serve(args, limits, listener, exposition, shutdown).await
}

/// Serves `idem proxy` on `listener` until `shutdown` resolves (for embedding and tests).
///
/// # Errors
/// As [`run`].
pub async fn serve(
    args: ProxyArgs,
    limits: Limits,
    listener: TcpListener,
    exposition: Option<PrometheusHandle>,
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

    let admin = match &args.admin_listen {
        Some(admin_listen) => {
            let admin_listener =
                TcpListener::bind(admin_listen)
                    .await
                    .map_err(|source| Error::Io {
                        what: format!("bind {admin_listen}"),
                        source,
                    })?;
            let admin_addr = admin_listener.local_addr().map_err(|source| Error::Io {
                what: format!("bind {admin_listen}"),
                source,
            })?;
            let routes = crate::admin::router(
                std::sync::Arc::clone(&store),
                exposition,
                Duration::from_millis(args.ready_timeout_ms),
            );
            tracing::info!(%admin_addr, "idem proxy admin listening");
            let _ = writeln!(stdout, "admin listening on http://{admin_addr}");
            let _ = stdout.flush();
            // Stopped with the proxy: nothing on it needs draining.
            Some(tokio::spawn(idem_http::server::serve(
                admin_listener,
                limits,
                routes,
                std::future::pending(),
            )))
        }
        None => None,
    };

    let purger = (args.purge_every_secs > 0).then(|| {
        idem_http::spawn_purger(store, std::time::Duration::from_secs(args.purge_every_secs))
    });
    idem_http::server::serve(listener, limits, app, shutdown).await;
    for task in [purger, admin].into_iter().flatten() {
        task.abort();
    }
    tracing::info!("idem proxy stopped");
    Ok(())
}
