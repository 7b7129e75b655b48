//! [`Error`]: what a broker adapter can fail with.

use idem::BoxError;

/// Why a broker adapter failed. A delivery whose settling failed is not lost: the broker
/// delivers it again (its ack wait ends, or its channel closes) and the consumer replays.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The broker refused or the connection failed during `operation`. Transient.
    #[error("broker operation {operation} failed")]
    Broker {
        /// What was being done: `ack`, `nak`, `dead-letter`, `reply`, `consume`.
        operation: &'static str,
        /// The client's error.
        #[source]
        source: BoxError,
    },
}

#[cfg(any(feature = "nats", feature = "amqp"))]
impl Error {
    pub(crate) fn broker(operation: &'static str, source: impl Into<BoxError>) -> Self {
        Self::Broker {
            operation,
            source: source.into(),
        }
    }
}
