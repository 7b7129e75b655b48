//! The RabbitMQ adapter, on lapin: a queue's deliveries through a [`Process`], each
//! settled by its [`Disposition`]. Acks are manual, and an ack is only sent after the
//! disposition's own publishes were confirmed by the broker (publisher confirms).
//!
//! - The key is the `message_id` property (or the payload's, as configured).
//! - `Ack` acks, after an answer is published to the `reply_to` queue, if any, with the
//!   delivery's `correlation_id`: the body, the stored headers (`content-type` as the
//!   property), the status in the `idem-status` header and `idempotent-replayed`.
//! - `Retry` — JetStream's `Nak` with a delay, which AMQP lacks — republishes the message
//!   to `<queue>.retry` with a per-message `expiration` of the delay, then acks it. That
//!   queue has no consumer: its messages expire, and its dead-letter exchange (the default
//!   exchange, routing key `<queue>`) puts them back on `<queue>`. The attempt travels in
//!   the `x-idem-attempt` header. (RabbitMQ expires messages from a queue's head only, so
//!   a long delay holds back the shorter ones behind it; the delays are capped by
//!   [`crate::Config::retry_delay_max`].)
//! - `DeadLetter` republishes the message to `<queue>.dead` with the reason in the
//!   `x-idem-reason` header, then acks it.
//!
//! A consumer that dies before its ack leaves the delivery unacknowledged: RabbitMQ
//! requeues it when the channel closes, marked `redelivered`, and the consumer that gets it
//! replays the stored answer.

use futures::StreamExt;
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel};

use crate::{Disposition, Error, Message, Process};

/// The header carrying which delivery a republished message is on.
pub const ATTEMPT_HEADER: &str = "x-idem-attempt";
/// The header of a dead letter carrying why.
pub const REASON_HEADER: &str = "x-idem-reason";
/// The header of an answer carrying the handler's status.
pub const STATUS_HEADER: &str = "idem-status";
/// The header of an answer that is a replay, `true`.
pub const REPLAYED_HEADER: &str = "idempotent-replayed";

/// The queue that delays retries of `queue`'s messages.
pub fn retry_queue(queue: &str) -> String {
    format!("{queue}.retry")
}

/// The queue that keeps `queue`'s dead letters.
pub fn dead_letter_queue(queue: &str) -> String {
    format!("{queue}.dead")
}

/// An AMQP delivery as a [`Message`].
#[derive(Debug)]
pub struct AmqpMessage {
    delivery: Delivery,
    attempt: u32,
}

impl AmqpMessage {
    /// Wraps a delivery, reading its attempt: the `x-idem-attempt` header our retries
    /// set (1 when absent), one more when RabbitMQ marked it redelivered, and at least a
    /// quorum queue's `x-delivery-count` plus one.
    pub fn new(delivery: Delivery) -> Self {
        let headers = delivery.properties.headers().as_ref();
        let number = |name: &str| headers.and_then(|h| h.inner().get(name)).and_then(integer);
        let carried = number(ATTEMPT_HEADER).unwrap_or(1);
        let counted = number("x-delivery-count").map_or(0, |n| n.saturating_add(1));
        let attempt = carried
            .saturating_add(u32::from(delivery.redelivered))
            .max(counted);
        Self { delivery, attempt }
    }

    /// The delivery.
    pub fn inner(&self) -> &Delivery {
        &self.delivery
    }
}

fn integer(value: &AMQPValue) -> Option<u32> {
    let wide = match value {
        AMQPValue::ShortShortUInt(n) => i64::from(*n),
        AMQPValue::ShortUInt(n) => i64::from(*n),
        AMQPValue::LongUInt(n) => i64::from(*n),
        AMQPValue::ShortShortInt(n) => i64::from(*n),
        AMQPValue::ShortInt(n) => i64::from(*n),
        AMQPValue::LongInt(n) => i64::from(*n),
        AMQPValue::LongLongInt(n) => *n,
        _ => return None,
    };
    u32::try_from(wide).ok()
}

impl Message for AmqpMessage {
    fn message_id(&self) -> Option<&str> {
        self.delivery
            .properties
            .message_id()
            .as_ref()
            .map(ShortString::as_str)
    }
    fn payload(&self) -> &[u8] {
        &self.delivery.data
    }
    fn attempt(&self) -> u32 {
        self.attempt
    }
    fn header(&self, name: &str) -> Option<&str> {
        let headers = self.delivery.properties.headers().as_ref()?;
        match headers.inner().get(name)? {
            AMQPValue::LongString(s) => std::str::from_utf8(s.as_bytes()).ok(),
            AMQPValue::ShortString(s) => Some(s.as_str()),
            _ => None,
        }
    }
}

/// Applies dispositions to the deliveries of one queue, on a channel in confirm mode.
#[derive(Debug, Clone)]
pub struct AmqpSettler {
    channel: Channel,
    queue: String,
}

impl AmqpSettler {
    /// Declares `queue` (durable), its retry queue and its dead-letter queue on
    /// `channel`, and puts the channel in confirm mode. Declaring again with the same
    /// arguments is harmless, so every consumer may do it at start.
    ///
    /// # Errors
    /// [`Error::Broker`] when the broker refuses (a queue declared before with other
    /// arguments).
    pub async fn declare(channel: Channel, queue: &str) -> Result<Self, Error> {
        let durable = QueueDeclareOptions {
            durable: true,
            ..QueueDeclareOptions::default()
        };
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(|e| Error::broker("confirm-select", e))?;
        channel
            .queue_declare(queue.into(), durable, FieldTable::default())
            .await
            .map_err(|e| Error::broker("declare", e))?;
        let mut back = FieldTable::default();
        back.insert(
            "x-dead-letter-exchange".into(),
            AMQPValue::LongString(LongString::from("")),
        );
        back.insert(
            "x-dead-letter-routing-key".into(),
            AMQPValue::LongString(LongString::from(queue)),
        );
        channel
            .queue_declare(retry_queue(queue).into(), durable, back)
            .await
            .map_err(|e| Error::broker("declare", e))?;
        channel
            .queue_declare(
                dead_letter_queue(queue).into(),
                durable,
                FieldTable::default(),
            )
            .await
            .map_err(|e| Error::broker("declare", e))?;
        Ok(Self {
            channel,
            queue: queue.to_owned(),
        })
    }

    /// The channel (in confirm mode).
    pub fn channel(&self) -> &Channel {
        &self.channel
    }

    /// The work queue.
    pub fn queue(&self) -> &str {
        &self.queue
    }

    /// Does what `disposition` says with `message`.
    ///
    /// # Errors
    /// [`Error::Broker`] when a publish was refused or an ack failed; the delivery stays
    /// unacknowledged, and RabbitMQ delivers it again when the channel closes.
    pub async fn settle(
        &self,
        message: &AmqpMessage,
        disposition: &Disposition,
    ) -> Result<(), Error> {
        let delivery = message.inner();
        match disposition {
            Disposition::Ack { response, replayed } => {
                if let Some(reply_to) = delivery.properties.reply_to() {
                    let mut headers = FieldTable::default();
                    headers.insert(
                        STATUS_HEADER.into(),
                        AMQPValue::LongUInt(response.status.into()),
                    );
                    headers.insert(REPLAYED_HEADER.into(), AMQPValue::Boolean(*replayed));
                    for (name, value) in &response.headers {
                        if !name.eq_ignore_ascii_case("content-type") {
                            let value = LongString::from(value.clone());
                            headers.insert(name.as_str().into(), AMQPValue::LongString(value));
                        }
                    }
                    let mut properties = BasicProperties::default().with_headers(headers);
                    if let Some((_, kind)) = response
                        .headers
                        .iter()
                        .find(|(name, _)| name.eq_ignore_ascii_case("content-type"))
                    {
                        let kind = String::from_utf8_lossy(kind).into_owned();
                        properties = properties.with_content_type(kind.into());
                    }
                    if let Some(id) = delivery.properties.correlation_id() {
                        properties = properties.with_correlation_id(id.clone());
                    }
                    self.publish(reply_to.as_str(), &response.body, properties, "reply")
                        .await?;
                }
            }
            Disposition::Retry { delay, .. } => {
                let ms = delay.as_millis().max(1).to_string();
                let properties = self
                    .copied(message, ATTEMPT_HEADER, next_attempt(message))
                    .with_expiration(ms.into());
                self.publish(
                    &retry_queue(&self.queue),
                    &delivery.data,
                    properties,
                    "retry",
                )
                .await?;
            }
            Disposition::DeadLetter { reason } => {
                let reason = AMQPValue::LongString(LongString::from(reason.as_str()));
                let properties = self.copied(message, REASON_HEADER, reason);
                self.publish(
                    &dead_letter_queue(&self.queue),
                    &delivery.data,
                    properties,
                    "dead-letter",
                )
                .await?;
            }
        }
        delivery
            .ack(BasicAckOptions::default())
            .await
            .map(drop)
            .map_err(|e| Error::broker("ack", e))
    }

    /// The delivery's properties with `name` set to `value`, persistent, without an
    /// expiration of a previous retry.
    fn copied(&self, message: &AmqpMessage, name: &str, value: AMQPValue) -> BasicProperties {
        let properties = &message.inner().properties;
        let mut headers = properties.headers().clone().unwrap_or_default();
        headers.insert(name.into(), value);
        let mut copy = BasicProperties::default()
            .with_headers(headers)
            .with_delivery_mode(2);
        if let Some(id) = properties.message_id() {
            copy = copy.with_message_id(id.clone());
        }
        if let Some(to) = properties.reply_to() {
            copy = copy.with_reply_to(to.clone());
        }
        if let Some(id) = properties.correlation_id() {
            copy = copy.with_correlation_id(id.clone());
        }
        if let Some(kind) = properties.content_type() {
            copy = copy.with_content_type(kind.clone());
        }
        copy
    }

    /// Publishes to `queue` through the default exchange and waits for the broker's
    /// confirm.
    async fn publish(
        &self,
        queue: &str,
        payload: &[u8],
        properties: BasicProperties,
        operation: &'static str,
    ) -> Result<(), Error> {
        let confirm = self
            .channel
            .basic_publish(
                "".into(),
                queue.into(),
                BasicPublishOptions::default(),
                payload,
                properties,
            )
            .await
            .map_err(|e| Error::broker(operation, e))?
            .await
            .map_err(|e| Error::broker(operation, e))?;
        if confirm.is_nack() {
            return Err(Error::broker(operation, "the broker refused the message"));
        }
        Ok(())
    }
}

fn next_attempt(message: &AmqpMessage) -> AMQPValue {
    AMQPValue::LongUInt(message.attempt().saturating_add(1))
}

/// Runs `process` over the deliveries of the settler's queue, up to `concurrency` at a
/// time (the channel's prefetch), settling each, until the consumer is cancelled or the
/// channel fails. A settle that fails is logged: the delivery comes again when the
/// channel closes.
///
/// # Errors
/// [`Error::Broker`] when the queue cannot be consumed or the channel fails; reconnect
/// and run again.
pub async fn run(
    settler: &AmqpSettler,
    consumer_tag: &str,
    process: &impl Process,
    concurrency: u16,
) -> Result<(), Error> {
    let channel = settler.channel();
    channel
        .basic_qos(concurrency.max(1), BasicQosOptions::default())
        .await
        .map_err(|e| Error::broker("qos", e))?;
    let deliveries = channel
        .basic_consume(
            settler.queue().into(),
            consumer_tag.into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(|e| Error::broker("consume", e))?;
    let failed = std::sync::Mutex::new(None);
    deliveries
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
        .for_each_concurrent(usize::from(concurrency.max(1)), |delivery| async move {
            let message = AmqpMessage::new(delivery);
            let disposition = process.process(&message).await;
            if let Err(e) = settler.settle(&message, &disposition).await {
                tracing::warn!(error = %e, "settling an AMQP delivery failed");
            }
        })
        .await;
    match failed.into_inner().ok().flatten() {
        Some(reason) => Err(Error::broker("consume", reason)),
        None => Ok(()),
    }
}
