//! A run's side of the broker: its own stream and subject, or queues, made at the start
//! and deleted at the end, and one endpoint per publisher: where it publishes payment
//! requests with their message ids, and its replies read back by tag. `idem chaos` builds
//! its retrying publishers on it (`publisher.rs`), `idem bench --broker` its
//! closed-loop clients.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use bytes::Bytes;
use futures::StreamExt;
use lapin::options::{
    BasicConsumeOptions, BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions,
    QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use tokio::sync::mpsc;
use tokio::task::AbortHandle;

use crate::client::Answer;
use crate::Error;

/// JetStream's deduplication window on the run's stream: short enough that a message
/// published again after a client's timeout reaches the nodes, as it does once a real
/// window has passed, so that the nodes' idempotency, not the broker's, is under test.
pub const NATS_DUPLICATE_WINDOW: Duration = Duration::from_millis(100);
/// The ack wait of the nodes' JetStream consumer: a killed node's messages come again within
/// the run (`idem serve` itself creates it with 30 s when missing).
pub const NATS_ACK_WAIT: Duration = Duration::from_secs(3);

/// The JetStream windows of a run's stream and of the nodes' consumer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Windows {
    /// The stream's deduplication window; zero takes the server's default (2 min).
    pub duplicate: Duration,
    /// How long the nodes' consumer waits for an ack before delivering again.
    pub ack_wait: Duration,
}

impl Windows {
    /// `idem chaos`: re-publications past JetStream's deduplication, a killed node's
    /// messages again within the run.
    pub const CHAOS: Windows = Windows {
        duplicate: NATS_DUPLICATE_WINDOW,
        ack_wait: NATS_ACK_WAIT,
    };
    /// What `idem serve` creates when the stream and consumer are missing, for a run that
    /// measures the nodes as deployed (`idem bench --broker`).
    pub const SERVE: Windows = Windows {
        duplicate: Duration::ZERO,
        ack_wait: idem_pay::brokers::NATS_ACK_WAIT,
    };
}

/// Which broker a run's payment requests go through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BrokerKind {
    /// NATS JetStream (`idem serve --nats`).
    Nats,
    /// RabbitMQ over AMQP 0-9-1 (`idem serve --amqp`).
    Amqp,
}

/// A run's names on the broker, all derived from one id no other run uses.
#[derive(Debug, Clone)]
pub struct Names {
    /// The JetStream stream, or the AMQP work queue.
    pub stream: String,
    /// The JetStream subject of payment requests.
    pub subject: String,
    /// Where replies go: a subject prefix, or a queue-name prefix.
    pub replies: String,
}

impl Names {
    /// The names of an `idem chaos` run on the database `db_name`.
    pub fn of(db_name: &str) -> Self {
        Self::new("chaos", db_name)
    }

    /// The names of a run of `tool` (`chaos`, `bench`) with the id `id`, which must be a
    /// valid JetStream stream name (no `.`, `*`, `>` or spaces).
    pub fn new(tool: &str, id: &str) -> Self {
        Self {
            stream: id.to_owned(),
            subject: format!("idem.{tool}.{id}.pay"),
            replies: format!("idem.{tool}.{id}.reply"),
        }
    }
}

/// Called with each reply's tag and answer as its reader receives it, before the reply is
/// handed to the publisher: the reply log of `idem chaos`, which late replies reach too.
pub type OnReply = Arc<dyn Fn(&str, &Answer) + Send + Sync>;

/// One publisher's side of the broker: where it publishes, and its replies as
/// `(tag, answer)`, read until `reader` is aborted.
pub struct Endpoint {
    /// Where it publishes.
    pub link: Link,
    /// Its replies, each with the tag its publication carried.
    pub replies: mpsc::UnboundedReceiver<(String, Answer)>,
    /// The task reading its replies.
    pub reader: AbortHandle,
}

/// A run's connection to the broker, holding its stream or queues.
pub enum Broker {
    /// NATS JetStream.
    Nats {
        /// The run's own connection.
        client: async_nats::Client,
        /// JetStream on it.
        js: jetstream::Context,
        /// The run's stream and subjects.
        names: Names,
    },
    /// RabbitMQ.
    Amqp {
        /// The run's own connection.
        connection: Connection,
        /// The run's queues.
        names: Names,
    },
}

fn broker_error(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Setup(format!("{what}: {e}"))
}

impl Broker {
    /// Connects to `url` and makes the run's stream and the nodes' consumer with `windows`
    /// (NATS) or its queues (RabbitMQ), as the nodes would when missing.
    ///
    /// # Errors
    /// [`Error::Setup`] when the broker cannot be reached or refuses the stream or queues.
    pub async fn prepare(
        kind: BrokerKind,
        url: &str,
        names: Names,
        windows: Windows,
    ) -> Result<Self, Error> {
        match kind {
            BrokerKind::Nats => {
                let client = async_nats::connect(url)
                    .await
                    .map_err(|e| broker_error("connecting to NATS", e))?;
                let js = jetstream::new(client.clone());
                let stream = js
                    .create_stream(jetstream::stream::Config {
                        name: names.stream.clone(),
                        subjects: vec![names.subject.clone(), format!("{}.dead", names.subject)],
                        duplicate_window: windows.duplicate,
                        ..Default::default()
                    })
                    .await
                    .map_err(|e| broker_error("creating the run's stream", e))?;
                let consumer = idem_pay::brokers::NATS_CONSUMER;
                stream
                    .create_consumer(jetstream::consumer::pull::Config {
                        durable_name: Some(consumer.to_owned()),
                        filter_subject: names.subject.clone(),
                        ack_wait: windows.ack_wait,
                        ..Default::default()
                    })
                    .await
                    .map_err(|e| broker_error("creating the nodes' consumer", e))?;
                Ok(Self::Nats { client, js, names })
            }
            BrokerKind::Amqp => {
                let connection = Connection::connect(url, ConnectionProperties::default())
                    .await
                    .map_err(|e| broker_error("connecting to RabbitMQ", e))?;
                let channel = connection
                    .create_channel()
                    .await
                    .map_err(|e| broker_error("opening a channel", e))?;
                idem_consume::amqp::AmqpSettler::declare(channel, &names.stream)
                    .await
                    .map_err(|e| broker_error("declaring the run's queues", e))?;
                Ok(Self::Amqp { connection, names })
            }
        }
    }

    /// The arguments that make an `idem serve` node consume the run's requests from the
    /// broker at `url` (the node's relay, or the broker itself).
    pub fn node_args(&self, url: &str) -> Vec<String> {
        match self {
            Self::Nats { names, .. } => vec![
                "--nats".into(),
                url.into(),
                "--nats-stream".into(),
                names.stream.clone(),
                "--nats-subject".into(),
                names.subject.clone(),
            ],
            Self::Amqp { names, .. } => vec![
                "--amqp".into(),
                url.into(),
                "--amqp-queue".into(),
                names.stream.clone(),
            ],
        }
    }

    /// The run's names.
    pub fn names(&self) -> &Names {
        match self {
            Self::Nats { names, .. } | Self::Amqp { names, .. } => names,
        }
    }

    /// The endpoint of publisher `index`: its replies come to a subject or queue of its own,
    /// each passed to `on_reply` as it comes.
    ///
    /// # Errors
    /// [`Error::Setup`] when the reply subscription or queue cannot be made.
    pub async fn endpoint(&self, index: usize, on_reply: OnReply) -> Result<Endpoint, Error> {
        let (tx, rx) = mpsc::unbounded_channel();
        let (link, reader) = match self {
            Self::Nats { client, js, names } => {
                let prefix = format!("{}.{index}", names.replies);
                let subscriber = client
                    .subscribe(format!("{prefix}.>"))
                    .await
                    .map_err(|e| broker_error("subscribing to replies", e))?;
                let reader = tokio::spawn(read_nats(subscriber, prefix.clone(), on_reply, tx));
                let link = Link::Nats {
                    js: js.clone(),
                    subject: names.subject.clone(),
                    reply_prefix: prefix,
                };
                (link, reader.abort_handle())
            }
            Self::Amqp { connection, names } => {
                let channel = connection
                    .create_channel()
                    .await
                    .map_err(|e| broker_error("opening a channel", e))?;
                channel
                    .confirm_select(ConfirmSelectOptions::default())
                    .await
                    .map_err(|e| broker_error("confirm mode", e))?;
                let reply_queue = format!("{}.{index}", names.replies);
                let exclusive = QueueDeclareOptions {
                    exclusive: true,
                    auto_delete: true,
                    ..QueueDeclareOptions::default()
                };
                channel
                    .queue_declare(
                        reply_queue.as_str().into(),
                        exclusive,
                        FieldTable::default(),
                    )
                    .await
                    .map_err(|e| broker_error("declaring a reply queue", e))?;
                let no_ack = BasicConsumeOptions {
                    no_ack: true,
                    ..BasicConsumeOptions::default()
                };
                let consumer = channel
                    .basic_consume(
                        reply_queue.as_str().into(),
                        "".into(),
                        no_ack,
                        FieldTable::default(),
                    )
                    .await
                    .map_err(|e| broker_error("consuming replies", e))?;
                let reader = tokio::spawn(read_amqp(consumer, on_reply, tx));
                let link = Link::Amqp {
                    channel,
                    queue: names.stream.clone(),
                    reply_queue,
                };
                (link, reader.abort_handle())
            }
        };
        Ok(Endpoint {
            link,
            replies: rx,
            reader,
        })
    }

    /// Deletes the run's stream (NATS) or queues (RabbitMQ).
    ///
    /// # Errors
    /// [`Error::Setup`] when the broker refuses.
    pub async fn delete(&self) -> Result<(), Error> {
        match self {
            Self::Nats { js, names, .. } => js
                .delete_stream(&names.stream)
                .await
                .map(drop)
                .map_err(|e| broker_error("deleting the run's stream", e)),
            Self::Amqp { connection, names } => {
                let channel = connection
                    .create_channel()
                    .await
                    .map_err(|e| broker_error("opening a channel", e))?;
                let queue = &names.stream;
                for name in [
                    queue.clone(),
                    idem_consume::amqp::retry_queue(queue),
                    idem_consume::amqp::dead_letter_queue(queue),
                ] {
                    channel
                        .queue_delete(name.as_str().into(), QueueDeleteOptions::default())
                        .await
                        .map_err(|e| broker_error("deleting the run's queues", e))?;
                }
                let _ = channel.close(200, "done".into()).await;
                Ok(())
            }
        }
    }

    /// Closes the run's own connection.
    pub async fn close(self) {
        match self {
            Self::Nats { client, .. } => {
                let _ = client.drain().await;
            }
            Self::Amqp { connection, .. } => {
                let _ = connection.close(200, "done".into()).await;
            }
        }
    }
}

/// Where one publisher publishes, and where its replies are to go.
#[derive(Clone)]
pub enum Link {
    /// A JetStream subject; replies to `<reply_prefix>.<tag>`.
    Nats {
        /// JetStream on the run's connection.
        js: jetstream::Context,
        /// The subject of payment requests.
        subject: String,
        /// The publisher's reply subjects' prefix.
        reply_prefix: String,
    },
    /// A RabbitMQ work queue, on a channel in confirm mode; replies to `reply_queue`.
    Amqp {
        /// The publisher's channel.
        channel: Channel,
        /// The work queue.
        queue: String,
        /// The publisher's exclusive reply queue.
        reply_queue: String,
    },
}

impl Link {
    /// Publishes `body` with message id `order_id`, its reply tagged `tag`, and waits up to
    /// `timeout` for the broker to store it.
    ///
    /// # Errors
    /// Why the broker did not confirm it in time, in words.
    pub async fn publish(
        &self,
        timeout: Duration,
        tag: &str,
        order_id: &str,
        body: &Bytes,
    ) -> Result<(), String> {
        let stored = async {
            match self {
                Link::Nats {
                    js,
                    subject,
                    reply_prefix,
                } => {
                    let mut headers = async_nats::HeaderMap::new();
                    headers.insert("Nats-Msg-Id", order_id);
                    let reply_to = format!("{reply_prefix}.{tag}");
                    headers.insert(idem_consume::nats::REPLY_TO_HEADER, reply_to.as_str());
                    js.publish_with_headers(subject.clone(), headers, body.clone())
                        .await
                        .map_err(|e| e.to_string())?
                        .await
                        .map(drop)
                        .map_err(|e| e.to_string())
                }
                Link::Amqp {
                    channel,
                    queue,
                    reply_queue,
                } => {
                    let properties = BasicProperties::default()
                        .with_message_id(order_id.into())
                        .with_reply_to(reply_queue.as_str().into())
                        .with_correlation_id(tag.into())
                        .with_content_type("application/json".into())
                        .with_delivery_mode(2);
                    let confirm = channel
                        .basic_publish(
                            "".into(),
                            queue.as_str().into(),
                            BasicPublishOptions::default(),
                            body,
                            properties,
                        )
                        .await
                        .map_err(|e| e.to_string())?
                        .await
                        .map_err(|e| e.to_string())?;
                    if confirm.is_nack() {
                        return Err("the broker refused the message".to_owned());
                    }
                    Ok(())
                }
            }
        };
        tokio::time::timeout(timeout, stored)
            .await
            .map_err(|_| "no confirmation in time".to_owned())?
    }
}

/// Reads a publisher's NATS replies into its channel, through `on_reply`.
async fn read_nats(
    mut subscriber: async_nats::Subscriber,
    prefix: String,
    on_reply: OnReply,
    tx: mpsc::UnboundedSender<(String, Answer)>,
) {
    while let Some(reply) = subscriber.next().await {
        let Some(tag) = reply
            .subject
            .as_str()
            .strip_prefix(prefix.as_str())
            .and_then(|t| t.strip_prefix('.'))
        else {
            continue;
        };
        let header = |name: &str| {
            reply
                .headers
                .as_ref()
                .and_then(|h| h.get(name))
                .map(|v| v.as_str().to_owned())
        };
        let Some(status) = header(idem_consume::nats::STATUS_HEADER).and_then(|s| s.parse().ok())
        else {
            continue;
        };
        let answer = Answer {
            status,
            body: String::from_utf8_lossy(&reply.payload).into_owned(),
            replayed: header(idem_consume::nats::REPLAYED_HEADER).as_deref() == Some("true"),
        };
        on_reply(tag, &answer);
        let _ = tx.send((tag.to_owned(), answer));
    }
}

/// Reads a publisher's AMQP replies into its channel, through `on_reply`.
async fn read_amqp(
    mut consumer: lapin::Consumer,
    on_reply: OnReply,
    tx: mpsc::UnboundedSender<(String, Answer)>,
) {
    while let Some(Ok(reply)) = consumer.next().await {
        let Some(tag) = reply
            .properties
            .correlation_id()
            .as_ref()
            .map(|c| c.to_string())
        else {
            continue;
        };
        let headers = reply.properties.headers().clone().unwrap_or_default();
        let get = |name: &str| headers.inner().get(name).cloned();
        let status = match get(idem_consume::amqp::STATUS_HEADER) {
            Some(AMQPValue::LongUInt(n)) => u16::try_from(n).ok(),
            Some(AMQPValue::LongInt(n)) => u16::try_from(n).ok(),
            Some(AMQPValue::ShortUInt(n)) => Some(n),
            _ => None,
        };
        let Some(status) = status else { continue };
        let answer = Answer {
            status,
            body: String::from_utf8_lossy(&reply.data).into_owned(),
            replayed: matches!(
                get(idem_consume::amqp::REPLAYED_HEADER),
                Some(AMQPValue::Boolean(true))
            ),
        };
        on_reply(&tag, &answer);
        let _ = tx.send((tag, answer));
    }
}
