//! The run's side of the broker: its own stream and subject, or queues, made at the start
//! and deleted at the end; the publishers that stand in for HTTP clients; the log of every
//! publication and reply the checker reads.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
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
use rand::rngs::StdRng;
use tokio::sync::mpsc;
use tokio::task::AbortHandle;
use tokio::time::Instant;

use crate::client::{self, Answer, ClientConfig, ClientStats, Sender, Sent};
use crate::faults::{Fault, FaultRates, FaultStats};
use crate::Error;

/// JetStream's deduplication window on the run's stream: short enough that a message
/// published again after a client's timeout reaches the nodes, as it does once a real
/// window has passed, so that the nodes' idempotency, not the broker's, is under test.
pub const NATS_DUPLICATE_WINDOW: Duration = Duration::from_millis(100);
/// The ack wait of the nodes' JetStream consumer: a killed node's messages come again within
/// the run (`idem serve` itself creates it with 30 s when missing).
pub const NATS_ACK_WAIT: Duration = Duration::from_secs(3);

/// Which broker a run's payment requests go through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BrokerKind {
    /// NATS JetStream (`idem serve --nats`).
    Nats,
    /// RabbitMQ over AMQP 0-9-1 (`idem serve --amqp`).
    Amqp,
}

/// The run's names on the broker, all derived from its database's name.
#[derive(Debug, Clone)]
pub(crate) struct Names {
    /// The JetStream stream, or the AMQP work queue.
    pub(crate) stream: String,
    /// The JetStream subject of payment requests.
    pub(crate) subject: String,
    /// Where replies go: a subject prefix, or a queue-name prefix.
    pub(crate) replies: String,
}

impl Names {
    /// The names of the run on the database `db_name`.
    pub(crate) fn of(db_name: &str) -> Self {
        Self {
            stream: db_name.to_owned(),
            subject: format!("idem.chaos.{db_name}.pay"),
            replies: format!("idem.chaos.{db_name}.reply"),
        }
    }
}

/// The run's connection to the broker, holding its stream or queues.
pub(crate) enum Broker {
    Nats {
        client: async_nats::Client,
        js: jetstream::Context,
        names: Names,
    },
    Amqp {
        connection: Connection,
        names: Names,
    },
}

fn broker_error(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Setup(format!("{what}: {e}"))
}

impl Broker {
    /// Connects to `url` and makes the run's stream and the nodes' consumer (NATS) or its
    /// queues (RabbitMQ), as the nodes would but for the windows above.
    pub(crate) async fn prepare(kind: BrokerKind, url: &str, names: Names) -> Result<Self, Error> {
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
                        duplicate_window: NATS_DUPLICATE_WINDOW,
                        ..Default::default()
                    })
                    .await
                    .map_err(|e| broker_error("creating the run's stream", e))?;
                let consumer = idem_pay::brokers::NATS_CONSUMER;
                stream
                    .create_consumer(jetstream::consumer::pull::Config {
                        durable_name: Some(consumer.to_owned()),
                        filter_subject: names.subject.clone(),
                        ack_wait: NATS_ACK_WAIT,
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
    /// broker at `url` (the node's relay).
    pub(crate) fn node_args(&self, url: &str) -> Vec<String> {
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

    /// The stream or work queue.
    pub(crate) fn names(&self) -> &Names {
        match self {
            Self::Nats { names, .. } | Self::Amqp { names, .. } => names,
        }
    }

    /// Publisher `index`, sending as `config` says and logging into `log`; its reply
    /// reader runs until the returned handle is aborted.
    pub(crate) async fn publisher(
        &self,
        index: usize,
        shared: Shared,
    ) -> Result<(Publisher, AbortHandle), Error> {
        let (tx, rx) = mpsc::unbounded_channel();
        let (link, reader) = match self {
            Self::Nats { client, js, names } => {
                let prefix = format!("{}.{index}", names.replies);
                let subscriber = client
                    .subscribe(format!("{prefix}.>"))
                    .await
                    .map_err(|e| broker_error("subscribing to replies", e))?;
                let reader =
                    tokio::spawn(read_nats(subscriber, prefix.clone(), shared.clone(), tx));
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
                let reader = tokio::spawn(read_amqp(consumer, shared.clone(), tx));
                let link = Link::Amqp {
                    channel,
                    queue: names.stream.clone(),
                    reply_queue,
                };
                (link, reader.abort_handle())
            }
        };
        Ok((
            Publisher {
                link,
                replies: rx,
                shared,
            },
            reader,
        ))
    }

    /// Deletes the run's stream (NATS) or queues (RabbitMQ).
    pub(crate) async fn delete(&self) -> Result<(), Error> {
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
    pub(crate) async fn close(self) {
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

/// What every publisher of a run shares.
#[derive(Clone)]
pub(crate) struct Shared {
    /// The clients' configuration (timeout, backoff).
    pub(crate) config: Arc<ClientConfig>,
    /// The clients' counters (retries, outcomes).
    pub(crate) stats: Arc<ClientStats>,
    /// The run's fault counters (duplicates).
    pub(crate) faults: Arc<FaultStats>,
    /// The rate of deliberate duplicates.
    pub(crate) duplicates: FaultRates,
    /// The run's seed.
    pub(crate) seed: u64,
    /// Every publication and reply.
    pub(crate) log: Arc<ReplyLog>,
}

/// How long after a message its deliberate duplicate is published: past JetStream's
/// deduplication window, which would otherwise drop it.
const TWIN_AFTER: Duration = Duration::from_millis(150);

/// Where one publisher publishes.
#[derive(Clone)]
enum Link {
    Nats {
        js: jetstream::Context,
        subject: String,
        reply_prefix: String,
    },
    Amqp {
        channel: Channel,
        queue: String,
        reply_queue: String,
    },
}

/// A client that publishes each order to the broker and waits for its reply: on a
/// timeout it publishes the same message (message id and body) again.
pub(crate) struct Publisher {
    link: Link,
    replies: mpsc::UnboundedReceiver<(String, Answer)>,
    shared: Shared,
}

impl Link {
    /// Publishes `body` with message id `order_id`, its reply tagged `tag`, and waits up to
    /// `timeout` for the broker to store it.
    async fn publish(
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

impl Publisher {
    /// Publishes a message for `request_id` (attempt tag `tag`); true when the broker
    /// stored it. Every try is logged, stored or not: one the broker stored without saying
    /// so must not pass for a redelivery.
    async fn publish(&self, tag: &str, order_id: &str, request_id: &str, body: &Bytes) -> bool {
        self.shared.log.published(request_id);
        let timeout = self.shared.config.timeout;
        self.link
            .publish(timeout, tag, order_id, body)
            .await
            .is_ok()
    }

    /// Publishes the same message again [`TWIN_AFTER`] from now, in the background, as a
    /// deliberate duplicate.
    fn publish_twin(&self, tag: &str, order_id: &str, request_id: &str, body: &Bytes) {
        self.shared.faults.duplicate.injected();
        let (link, shared) = (self.link.clone(), self.shared.clone());
        let twin = format!("{tag}{DUPLICATE_MARK}");
        let (order_id, request_id, body) =
            (order_id.to_owned(), request_id.to_owned(), body.clone());
        tokio::spawn(async move {
            tokio::time::sleep(TWIN_AFTER).await;
            shared.log.published(&request_id);
            let _ = link
                .publish(shared.config.timeout, &twin, &order_id, &body)
                .await;
        });
    }

    /// The first reply to `request_id` before `until`; replies to earlier orders, come
    /// late, are passed over (the log has them).
    async fn reply_to(&mut self, request_id: &str, until: Instant) -> Option<Answer> {
        loop {
            let (tag, answer) = tokio::time::timeout_at(until, self.replies.recv())
                .await
                .ok()??;
            if parse_tag(&tag).is_some_and(|(id, _)| id == request_id) {
                return Some(answer);
            }
        }
    }
}

impl Sender for Publisher {
    async fn send_order(
        &mut self,
        body: &Bytes,
        order_id: &str,
        request_id: &str,
        rng: &mut StdRng,
        hard: Instant,
    ) -> Sent {
        let shared = self.shared.clone();
        let mut attempts = 0u32;
        loop {
            if Instant::now() >= hard {
                return Sent {
                    attempts,
                    answer: None,
                };
            }
            attempts += 1;
            if attempts > 1 {
                shared
                    .stats
                    .retries
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            let tag = format!("{request_id}#{attempts}");
            if !self.publish(&tag, order_id, request_id, body).await {
                shared.stats.count("connection".into());
                tokio::time::sleep(client::backoff(&shared.config, attempts, rng)).await;
                continue;
            }
            if shared.duplicates.decide(shared.seed, &tag) == Fault::Duplicate {
                self.publish_twin(&tag, order_id, request_id, body);
            }
            let until = (Instant::now() + shared.config.timeout).min(hard);
            match self.reply_to(request_id, until).await {
                Some(answer) if client::is_final(answer.status) => {
                    shared.stats.count(answer.status.to_string());
                    return Sent {
                        attempts,
                        answer: Some(answer),
                    };
                }
                Some(answer) => shared.stats.count(answer.status.to_string()),
                None => shared.stats.count("timeout".into()),
            }
            tokio::time::sleep(client::backoff(&shared.config, attempts, rng)).await;
        }
    }
}

/// The mark after a reply tag of a deliberate duplicate's publication.
const DUPLICATE_MARK: char = 'd';

/// A reply tag's request id and whether it answers a deliberate duplicate: tags are
/// `<request id>#<attempt>`, with [`DUPLICATE_MARK`] after a duplicate's.
fn parse_tag(tag: &str) -> Option<(&str, bool)> {
    let (id, attempt) = tag.rsplit_once('#')?;
    Some((id, attempt.ends_with(DUPLICATE_MARK)))
}

/// Reads a publisher's NATS replies into its channel and the run's log.
async fn read_nats(
    mut subscriber: async_nats::Subscriber,
    prefix: String,
    shared: Shared,
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
        shared.replied(tag, &answer);
        let _ = tx.send((tag.to_owned(), answer));
    }
}

/// Reads a publisher's AMQP replies into its channel and the run's log.
async fn read_amqp(
    mut consumer: lapin::Consumer,
    shared: Shared,
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
        shared.replied(&tag, &answer);
        let _ = tx.send((tag, answer));
    }
}

impl Shared {
    /// Logs a reply, and counts a deliberate duplicate's first reply as that fault's hit.
    fn replied(&self, tag: &str, answer: &Answer) {
        if let Some((request_id, duplicate)) = parse_tag(tag) {
            if duplicate && self.log.first_reply_to_twin(tag) {
                self.faults.duplicate.hit(1);
            }
            self.log.replied(request_id, answer.clone());
        }
    }
}

/// One reply, with the sending it answers.
#[derive(Debug, Clone)]
pub struct Reply {
    /// The sending: the order id, or `<order id>/r<n>` for a deliberate re-send.
    pub request_id: String,
    /// What came.
    pub answer: Answer,
}

/// An order's publications and replies.
#[derive(Debug, Clone, Default)]
pub struct OrderLog {
    /// Publications tried (re-publications and duplicates included) by sending.
    pub publications: BTreeMap<String, u32>,
    /// Every reply, in arrival order, late ones included.
    pub replies: Vec<Reply>,
}

/// Every publication and reply of a run, by order id.
#[derive(Debug, Default)]
pub struct ReplyLog {
    orders: Mutex<HashMap<String, OrderLog>>,
    /// The duplicates' tags answered so far (a redelivered duplicate is answered again).
    twins_answered: Mutex<HashSet<String>>,
}

/// The order id of a sending's request id (`<order id>` or `<order id>/r<n>`).
pub(crate) fn order_of(request_id: &str) -> &str {
    request_id.split('/').next().unwrap_or(request_id)
}

impl ReplyLog {
    fn with(&self, request_id: &str, f: impl FnOnce(&mut OrderLog)) {
        if let Ok(mut orders) = self.orders.lock() {
            f(orders.entry(order_of(request_id).to_owned()).or_default());
        }
    }

    /// Counts one publication of `request_id`.
    pub fn published(&self, request_id: &str) {
        self.with(request_id, |o| {
            *o.publications.entry(request_id.to_owned()).or_default() += 1;
        });
    }

    /// Logs a reply to `request_id`.
    pub fn replied(&self, request_id: &str, answer: Answer) {
        self.with(request_id, |o| {
            o.replies.push(Reply {
                request_id: request_id.to_owned(),
                answer,
            });
        });
    }

    /// Whether this is the first reply to the duplicate tagged `tag`.
    fn first_reply_to_twin(&self, tag: &str) -> bool {
        self.twins_answered
            .lock()
            .is_ok_and(|mut seen| seen.insert(tag.to_owned()))
    }

    /// The log as it stands.
    pub fn snapshot(&self) -> HashMap<String, OrderLog> {
        self.orders.lock().map(|o| o.clone()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_name_their_sending_and_duplicates() {
        assert_eq!(parse_tag("o3-12#2"), Some(("o3-12", false)));
        assert_eq!(parse_tag("o3-12/r0#1d"), Some(("o3-12/r0", true)));
        assert_eq!(parse_tag("nonsense"), None);
        assert_eq!(order_of("o3-12/r0"), "o3-12");
        assert_eq!(order_of("o3-12"), "o3-12");
    }
}
