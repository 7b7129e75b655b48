//! [`Process`]: a consumer bound to its handler, what the broker adapters run.

use async_trait::async_trait;
use idem::Store;
use idem_sql::TransactionalStore;

use crate::{Consumer, Disposition, Handler, Message, TransactionalConsumer, TxHandler};

/// Decides a delivery: what a broker adapter's loop calls for each message, whichever
/// mode the consumer is in.
#[async_trait]
pub trait Process: Send + Sync {
    /// Decides `message` (running the handler at most once per key) and says what to do
    /// with the delivery.
    async fn process(&self, message: &dyn Message) -> Disposition;
}

/// A consumer and its handler, as one [`Process`]: see [`Consumer::with_handler`] and
/// [`TransactionalConsumer::with_handler`].
#[derive(Debug, Clone)]
pub struct WithHandler<C, H> {
    consumer: C,
    handler: H,
}

impl<C, H> WithHandler<C, H> {
    /// The consumer.
    pub fn consumer(&self) -> &C {
        &self.consumer
    }

    /// The handler.
    pub fn handler(&self) -> &H {
        &self.handler
    }
}

impl<S: Store> Consumer<S> {
    /// This consumer running `handler`, for a broker adapter's loop.
    pub fn with_handler<H: Handler>(self, handler: H) -> WithHandler<Self, H> {
        WithHandler {
            consumer: self,
            handler,
        }
    }
}

impl<S: TransactionalStore> TransactionalConsumer<S> {
    /// This consumer running `handler`, for a broker adapter's loop.
    pub fn with_handler<H: TxHandler<S::Database>>(self, handler: H) -> WithHandler<Self, H> {
        WithHandler {
            consumer: self,
            handler,
        }
    }
}

#[async_trait]
impl<S: Store, H: Handler> Process for WithHandler<Consumer<S>, H> {
    async fn process(&self, message: &dyn Message) -> Disposition {
        self.consumer.process(message, &self.handler).await
    }
}

#[async_trait]
impl<S: TransactionalStore, H: TxHandler<S::Database>> Process
    for WithHandler<TransactionalConsumer<S>, H>
{
    async fn process(&self, message: &dyn Message) -> Disposition {
        self.consumer.process(message, &self.handler).await
    }
}
