//! # idem-consume — idempotent message consumers
//!
//! Every broker delivers at least once: a consumer that dies after its effect and before
//! its ack gets the message again, on another node. This crate wraps a message handler so
//! that each message's effect happens once, over any idem store (Apache Camel's
//! Idempotent Consumer, for Rust):
//!
//! - The key comes from the message ([`KeySource::MessageId`]: JetStream's `Nats-Msg-Id`,
//!   AMQP's `message_id`) or from the payload through a function ([`KeySource::Payload`],
//!   [`KeySource::json_field`] for a business key such as `order_id`); the fingerprint
//!   from the payload.
//! - A finished key is acked without running the handler; a key in flight on another
//!   consumer is retried after a delay; a key reused for another payload, a permanent
//!   failure or the last failed attempt goes to the dead letters with its reason
//!   ([`Disposition`]).
//! - [`Consumer`] works over any [`idem::Store`]; [`TransactionalConsumer`] writes the
//!   handler's SQL and the record in one transaction and acks only after it commits.
//! - The adapters apply a [`Disposition`] to a real delivery: [`nats`] (JetStream on
//!   async-nats: `Nak` with a delay) and [`amqp`] (RabbitMQ on lapin: a delayed retry
//!   through a retry queue whose messages expire back into the work queue).
//!
//! ## Example
//!
//! ```
//! use async_trait::async_trait;
//! use idem::{MemoryStore, Scope, StoredResponse};
//! use idem_consume::{Config, Consumer, Disposition, Failure, Handler, KeySource, Message, Received};
//!
//! struct Order(&'static [u8]);
//! impl Message for Order {
//!     fn message_id(&self) -> Option<&str> { None }
//!     fn payload(&self) -> &[u8] { self.0 }
//!     fn attempt(&self) -> u32 { 1 }
//! }
//!
//! struct Ship;
//! #[async_trait]
//! impl Handler for Ship {
//!     async fn handle(&self, m: Received<'_>) -> Result<StoredResponse, Failure> {
//!         Ok(StoredResponse::new(200, format!("shipped {}", m.key.as_str())))
//!     }
//! }
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let config = Config::new(Scope::new("orders|ship").unwrap(), KeySource::json_field("order_id"));
//! let consumer = Consumer::new(MemoryStore::new(), config);
//! let order = Order(br#"{"order_id":"o-1","sku":"tea"}"#);
//! let first = consumer.process(&order, &Ship).await;
//! assert!(matches!(first, Disposition::Ack { replayed: false, .. }));
//! // Delivered again: acked, the handler not run.
//! let again = consumer.process(&order, &Ship).await;
//! assert!(matches!(again, Disposition::Ack { replayed: true, .. }));
//! # });
//! ```

mod config;
mod consumer;
mod disposition;
mod error;
mod message;
mod process;
mod transactional;

#[cfg(feature = "amqp")]
pub mod amqp;
#[cfg(feature = "nats")]
pub mod nats;

pub use config::Config;
pub use consumer::{Consumer, Handler};
pub use disposition::{Disposition, Failure};
pub use error::Error;
pub use message::{fingerprint, KeyFn, KeySource, Message, Received};
pub use process::{Process, WithHandler};
pub use transactional::{TransactionalConsumer, TxHandler};
