//! The JetStream adapter, on async-nats: a pull consumer's messages through a
//! [`Process`], each settled by its [`Disposition`].
//!
//! - The key is the `Nats-Msg-Id` header (or the payload's, as configured); the attempt
//!   is JetStream's delivery count.
//! - `Ack` acks, after an answer (the body, the stored headers, the status in
//!   `Idem-Status`, `Idempotent-Replayed: true` for a replay) is published to the subject
//!   in the message's `Idem-Reply-To` header, if any (a JetStream message's own reply subject is its ack
//!   subject, so the reply address travels in a header).
//! - `Retry` is `Nak` with the delay: JetStream redelivers it then, to any consumer.
//! - `DeadLetter` publishes the payload to the dead-letter subject (which a stream must
//!   capture) with the reason in `Idem-Dead-Letter-Reason`, waits for JetStream's
//!   acknowledgement, then terminates the message (`Term`).

use async_nats::jetstream::{self, consumer::PullConsumer, AckKind};
use async_nats::HeaderMap;
use futures::StreamExt;

use crate::{Disposition, Error, Message, Process};

/// The header naming the subject an answer is published to.
pub const REPLY_TO_HEADER: &str = "Idem-Reply-To";
/// The header of an answer carrying the handler's status.
pub const STATUS_HEADER: &str = "Idem-Status";
/// The header of an answer that is a replay, `true`.
pub const REPLAYED_HEADER: &str = "Idempotent-Replayed";
/// The header of a dead letter carrying why.
pub const REASON_HEADER: &str = "Idem-Dead-Letter-Reason";
/// The header of a dead letter carrying the message id it had.
pub const ORIGINAL_ID_HEADER: &str = "Idem-Original-Msg-Id";

/// A JetStream delivery as a [`Message`].
#[derive(Debug)]
pub struct JetStreamMessage {
    message: jetstream::Message,
    attempt: u32,
}

impl JetStreamMessage {
    /// Wraps a delivery, reading its delivery count.
    pub fn new(message: jetstream::Message) -> Self {
        let attempt = message
            .info()
            .ok()
            .and_then(|info| u32::try_from(info.delivered).ok())
            .unwrap_or(1);
        Self { message, attempt }
    }

    /// The delivery.
    pub fn inner(&self) -> &jetstream::Message {
        &self.message
    }

    /// The subject its answer goes to (the `Idem-Reply-To` header).
    pub fn reply_to(&self) -> Option<&str> {
        header(&self.message, REPLY_TO_HEADER)
    }
}

fn header<'a>(message: &'a jetstream::Message, name: &str) -> Option<&'a str> {
    message
        .headers
        .as_ref()?
        .get(name)
        .map(|value| value.as_str())
}

impl Message for JetStreamMessage {
    fn message_id(&self) -> Option<&str> {
        header(&self.message, "Nats-Msg-Id")
    }
    fn payload(&self) -> &[u8] {
        &self.message.payload
    }
    fn attempt(&self) -> u32 {
        self.attempt
    }
    fn header(&self, name: &str) -> Option<&str> {
        header(&self.message, name)
    }
}

/// Applies dispositions to JetStream deliveries.
#[derive(Debug, Clone)]
pub struct JetStreamSettler {
    context: jetstream::Context,
    dead_letter_subject: String,
}

impl JetStreamSettler {
    /// Settles on `context`, sending dead letters to `dead_letter_subject`.
    pub fn new(context: jetstream::Context, dead_letter_subject: impl Into<String>) -> Self {
        Self {
            context,
            dead_letter_subject: dead_letter_subject.into(),
        }
    }

    /// Does what `disposition` says with `message`.
    ///
    /// # Errors
    /// [`Error::Broker`] when a publish or an ack failed; JetStream then delivers the
    /// message again once its ack wait ends.
    pub async fn settle(
        &self,
        message: &JetStreamMessage,
        disposition: &Disposition,
    ) -> Result<(), Error> {
        let delivery = message.inner();
        match disposition {
            Disposition::Ack { response, replayed } => {
                if let Some(reply_to) = message.reply_to() {
                    let mut headers = HeaderMap::new();
                    for (name, value) in &response.headers {
                        if let Ok(value) = std::str::from_utf8(value) {
                            headers.insert(name.as_str(), value);
                        }
                    }
                    headers.insert(STATUS_HEADER, response.status.to_string().as_str());
                    if *replayed {
                        headers.insert(REPLAYED_HEADER, "true");
                    }
                    let client = self.context.client();
                    client
                        .publish_with_headers(reply_to.to_owned(), headers, response.body.clone())
                        .await
                        .map_err(|e| Error::broker("reply", e))?;
                }
                delivery.ack().await.map_err(|e| Error::broker("ack", e))
            }
            Disposition::Retry { delay, .. } => delivery
                .ack_with(AckKind::Nak(Some(*delay)))
                .await
                .map_err(|e| Error::broker("nak", e)),
            Disposition::DeadLetter { reason } => {
                let mut headers = HeaderMap::new();
                headers.insert(REASON_HEADER, reason.as_str());
                if let Some(id) = message.message_id() {
                    headers.insert(ORIGINAL_ID_HEADER, id);
                }
                self.context
                    .publish_with_headers(
                        self.dead_letter_subject.clone(),
                        headers,
                        delivery.payload.clone(),
                    )
                    .await
                    .map_err(|e| Error::broker("dead-letter", e))?
                    .await
                    .map_err(|e| Error::broker("dead-letter", e))?;
                delivery
                    .ack_with(AckKind::Term)
                    .await
                    .map_err(|e| Error::broker("term", e))
            }
        }
    }
}

/// Runs `process` over `consumer`'s messages, up to `concurrency` at a time, settling
/// each, until the message stream ends or fails. A settle that fails is logged: the
/// message comes again after its ack wait.
///
/// # Errors
/// [`Error::Broker`] when the message stream cannot be opened or fails; reconnect and
/// run again.
pub async fn run(
    consumer: &PullConsumer,
    process: &impl Process,
    settler: &JetStreamSettler,
    concurrency: usize,
) -> Result<(), Error> {
    let messages = consumer
        .messages()
        .await
        .map_err(|e| Error::broker("consume", e))?;
    let failed = std::sync::Mutex::new(None);
    messages
        .take_while(|next| {
            let ok = next.is_ok();
            if let Err(e) = next {
                if let Ok(mut failed) = failed.lock() {
                    *failed = Some(e.to_string());
                }
            }
            std::future::ready(ok)
        })
        .filter_map(|next| std::future::ready(next.ok()))
        .for_each_concurrent(concurrency.max(1), |delivery| async move {
            let message = JetStreamMessage::new(delivery);
            let disposition = process.process(&message).await;
            if let Err(e) = settler.settle(&message, &disposition).await {
                tracing::warn!(error = %e, "settling a JetStream message failed");
            }
        })
        .await;
    match failed.into_inner().ok().flatten() {
        Some(reason) => Err(Error::broker("consume", reason)),
        None => Ok(()),
    }
}
