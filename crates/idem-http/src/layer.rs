//! [`IdempotencyLayer`]: holds the configuration and the store, and builds the service.

use std::fmt;
use std::sync::Arc;

use idem::Store;
use tower_layer::Layer;

use crate::{Config, Idempotency};

/// What every [`Idempotency`] service built by one layer shares.
pub(crate) struct Shared {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) config: Config,
}

/// A tower [`Layer`] giving any axum or hyper service the `Idempotency-Key` semantics of
/// DESIGN §4 over any [`Store`].
///
/// # Example
///
/// ```
/// use axum::{routing::post, Router};
/// use idem::MemoryStore;
/// use idem_http::{Config, IdempotencyLayer};
///
/// let app: Router = Router::new()
///     .route("/v1/orders", post(|| async { "created" }))
///     .layer(IdempotencyLayer::new(MemoryStore::new(), Config::default()));
/// ```
#[derive(Clone)]
pub struct IdempotencyLayer {
    shared: Arc<Shared>,
}

impl IdempotencyLayer {
    /// A layer keeping its records in `store` (any [`Store`], including `Arc<dyn Store>`).
    pub fn new(store: impl Store + 'static, config: Config) -> Self {
        Self::from_arc(Arc::new(store), config)
    }

    /// A layer over a store already shared as `Arc<dyn Store>`.
    pub fn from_arc(store: Arc<dyn Store>, config: Config) -> Self {
        Self {
            shared: Arc::new(Shared { store, config }),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.shared.config
    }
}

impl<S> Layer<S> for IdempotencyLayer {
    type Service = Idempotency<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Idempotency::from_shared(inner, Arc::clone(&self.shared))
    }
}

impl fmt::Debug for IdempotencyLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdempotencyLayer")
            .field("config", &self.shared.config)
            .finish_non_exhaustive()
    }
}
