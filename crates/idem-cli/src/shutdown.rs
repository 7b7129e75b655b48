//! The signal that stops a serving command: SIGTERM (what orchestrators send) or ctrl-c.

use std::future::Future;

use anyhow::Context;

/// Starts listening for SIGTERM and ctrl-c at once, so that a signal sent as soon as the
/// server announces its address is not missed; the future resolves on the first, after
/// logging that in-flight requests are being drained.
///
/// Call it inside the runtime, before serving.
///
/// # Errors
/// When the process cannot listen for a signal.
pub(crate) fn listen() -> anyhow::Result<impl Future<Output = ()> + Send + 'static> {
    #[cfg(unix)]
    let signalled = {
        use tokio::signal::unix::{signal, SignalKind};
        let mut terminate = signal(SignalKind::terminate()).context("listening for SIGTERM")?;
        let mut interrupt = signal(SignalKind::interrupt()).context("listening for ctrl-c")?;
        async move {
            tokio::select! {
                _ = terminate.recv() => {},
                _ = interrupt.recv() => {},
            }
        }
    };
    #[cfg(not(unix))]
    let signalled = {
        let mut ctrl_c = tokio::signal::windows::ctrl_c().context("listening for ctrl-c")?;
        async move {
            ctrl_c.recv().await;
        }
    };
    Ok(async move {
        signalled.await;
        tracing::info!("shutting down: draining in-flight requests");
    })
}
