//! The RabbitMQ adapter against a real broker (`IDEM_TEST_AMQP`): a consumer that dies
//! between its commit and its ack, a key in flight on another consumer (a delayed retry
//! through the retry queue), and a message that keeps failing. Each test has its own
//! queues, deleted at its end.

mod common;

use std::sync::Arc;
use std::time::Duration;

use idem::{Claim, Key, MemoryStore, Outcome, Store, StoredResponse};
use idem_consume::amqp::{self, AmqpMessage, AmqpSettler};
use idem_consume::{fingerprint, Consumer, Disposition, Failure, KeySource, Message};
use lapin::options::{BasicGetOptions, BasicPublishOptions, QueueDeleteOptions};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};

use common::{config, effects, sqlite_consumer, Counting, Insert};

/// A queue of the test's own (with its retry and dead-letter queues).
struct TestQueue {
    connection: Connection,
    name: String,
}

impl TestQueue {
    async fn create() -> Option<Self> {
        let url = idem_test_support::backend_url("IDEM_TEST_AMQP")?;
        let connection = Connection::connect(&url, ConnectionProperties::default())
            .await
            .unwrap_or_else(|e| panic!("RabbitMQ at {url}: {e}"));
        let name = idem_test_support::unique_name("idem_consume_test");
        let queue = Self { connection, name };
        queue.settler().await;
        Some(queue)
    }

    /// A settler on a channel of its own: a consumer.
    async fn settler(&self) -> AmqpSettler {
        let channel = self.connection.create_channel().await.expect("channel");
        AmqpSettler::declare(channel, &self.name)
            .await
            .expect("declare")
    }

    async fn publish(&self, id: &str, payload: &'static str) {
        let channel = self.connection.create_channel().await.expect("channel");
        channel
            .basic_publish(
                "".into(),
                self.name.as_str().into(),
                BasicPublishOptions::default(),
                payload.as_bytes(),
                BasicProperties::default().with_message_id(id.into()),
            )
            .await
            .expect("publish");
        channel.close(200, "published".into()).await.expect("close");
    }

    async fn drop_queues(self) {
        let channel = self.connection.create_channel().await.expect("channel");
        for queue in [
            self.name.clone(),
            amqp::retry_queue(&self.name),
            amqp::dead_letter_queue(&self.name),
        ] {
            channel
                .queue_delete(queue.into(), QueueDeleteOptions::default())
                .await
                .expect("delete a test queue");
        }
        let _ = self.connection.close(200, "done".into()).await;
    }
}

/// The next delivery of `queue` on `channel` within `wait`, if any, unacknowledged.
async fn next(channel: &Channel, queue: &str, wait: Duration) -> Option<AmqpMessage> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let got = channel
            .basic_get(queue.into(), BasicGetOptions { no_ack: false })
            .await
            .expect("get");
        if let Some(got) = got {
            return Some(AmqpMessage::new(got.delivery));
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The messages waiting in `queue`, read without a consumer.
async fn waiting(channel: &Channel, queue: &str) -> Vec<AmqpMessage> {
    let mut found = Vec::new();
    while let Some(got) = channel
        .basic_get(queue.into(), BasicGetOptions { no_ack: true })
        .await
        .expect("get")
    {
        found.push(AmqpMessage::new(got.delivery));
    }
    found
}

#[tokio::test]
async fn a_consumer_that_dies_after_its_commit_gets_the_message_acked_on_redelivery() {
    let Some(queue) = TestQueue::create().await else {
        return;
    };
    let consumer = sqlite_consumer(config(KeySource::MessageId)).await;
    queue.publish("order-1", r#"{"amount":5}"#).await;

    let dying = queue.settler().await;
    let first = next(dying.channel(), &queue.name, Duration::from_secs(5))
        .await
        .expect("delivered");
    assert_eq!(first.attempt(), 1);
    let decided = consumer.process(&first, &Insert::default()).await;
    assert!(
        matches!(
            decided,
            Disposition::Ack {
                replayed: false,
                ..
            }
        ),
        "{decided:?}"
    );
    // Dies: committed, never acked; closing its channel requeues the delivery.
    dying
        .channel()
        .close(200, "died".into())
        .await
        .expect("close");

    let settler = queue.settler().await;
    let again = next(settler.channel(), &queue.name, Duration::from_secs(5))
        .await
        .expect("redelivered");
    assert_eq!((again.message_id(), again.attempt()), (Some("order-1"), 2));
    let decided = consumer.process(&again, &Insert::default()).await;
    assert!(
        matches!(decided, Disposition::Ack { replayed: true, .. }),
        "{decided:?}"
    );
    settler.settle(&again, &decided).await.expect("ack");
    settler
        .channel()
        .close(200, "done".into())
        .await
        .expect("close");

    assert_eq!(effects(&consumer).await, 1);
    let check = queue.connection.create_channel().await.expect("channel");
    assert!(
        waiting(&check, &queue.name).await.is_empty(),
        "acked for good"
    );
    queue.drop_queues().await;
}

#[tokio::test]
async fn a_key_in_flight_on_another_consumer_is_retried_later_and_replayed() {
    let Some(queue) = TestQueue::create().await else {
        return;
    };
    let consumer = Consumer::new(MemoryStore::new(), config(KeySource::MessageId));
    queue.publish("order-2", "{}").await;

    // Another consumer holds the key for 2 s.
    let (key, fp) = (Key::new("order-2").expect("key"), fingerprint(b"{}"));
    let scope = consumer.config().scope.clone();
    let claim = Claim::new(
        &scope,
        &key,
        &fp,
        Duration::from_secs(2),
        Duration::from_secs(60),
    );
    let Outcome::Acquired { token, .. } = consumer.store().begin(claim).await.expect("begin")
    else {
        panic!("the other consumer could not claim");
    };

    let handler = Counting::default();
    let settler = queue.settler().await;
    let first = next(settler.channel(), &queue.name, Duration::from_secs(5))
        .await
        .expect("delivered");
    let decided = consumer.process(&first, &handler).await;
    let Disposition::Retry { delay, .. } = &decided else {
        panic!("expected a retry, got {decided:?}");
    };
    assert!(*delay <= Duration::from_secs(2));
    settler.settle(&first, &decided).await.expect("retry");

    let answer = StoredResponse::new(200, "done by the other");
    consumer
        .store()
        .complete(claim.held(token), &answer)
        .await
        .expect("the other completes");
    // Back from the retry queue once its delay expired, as attempt 2.
    let again = next(settler.channel(), &queue.name, Duration::from_secs(10))
        .await
        .expect("redelivered");
    assert_eq!(again.attempt(), 2);
    let decided = consumer.process(&again, &handler).await;
    assert_eq!(
        decided,
        Disposition::Ack {
            response: answer,
            replayed: true
        }
    );
    settler.settle(&again, &decided).await.expect("ack");
    assert_eq!(handler.runs(), 0);
    settler
        .channel()
        .close(200, "done".into())
        .await
        .expect("close");
    queue.drop_queues().await;
}

#[tokio::test]
async fn a_message_that_keeps_failing_goes_to_the_dead_letter_queue_with_its_reason() {
    let Some(queue) = TestQueue::create().await else {
        return;
    };
    let mut config = config(KeySource::MessageId);
    config.max_attempts = 2;
    let handler = Counting {
        fail: Some(Failure::transient("the ledger is down")),
        ..Counting::default()
    };
    let process = Arc::new(Consumer::new(MemoryStore::new(), config).with_handler(handler.clone()));
    let settler = queue.settler().await;
    let running = {
        let (process, settler) = (Arc::clone(&process), settler.clone());
        tokio::spawn(async move { amqp::run(&settler, "worker", &*process, 4).await })
    };
    queue.publish("order-3", r#"{"amount":7}"#).await;

    let check = queue.connection.create_channel().await.expect("channel");
    let dead = amqp::dead_letter_queue(&queue.name);
    let mut letters = Vec::new();
    for _ in 0..100 {
        letters = waiting(&check, &dead).await;
        if !letters.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let [letter] = letters.as_slice() else {
        panic!("expected one dead letter, found {}", letters.len());
    };
    let headers = letter
        .inner()
        .properties
        .headers()
        .clone()
        .expect("headers");
    let reason = headers.inner().get(amqp::REASON_HEADER).cloned();
    assert_eq!(
        reason,
        Some(lapin::types::AMQPValue::LongString(
            "attempt 2: the ledger is down".into()
        ))
    );
    assert_eq!(letter.message_id(), Some("order-3"));
    assert_eq!(letter.payload(), br#"{"amount":7}"#);
    assert_eq!(handler.runs(), 2);
    running.abort();
    settler
        .channel()
        .close(200, "done".into())
        .await
        .expect("close");
    queue.drop_queues().await;
}
