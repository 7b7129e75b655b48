//! The JetStream adapter against a real NATS server (`IDEM_TEST_NATS`): a consumer that
//! dies between its commit and its ack, a key in flight on another consumer, and a
//! message that keeps failing. Each test has its own stream, deleted at its end.

mod common;

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, consumer::PullConsumer, stream::Stream};
use futures::StreamExt;
use idem::{Claim, Key, MemoryStore, Outcome, Store, StoredResponse};
use idem_consume::nats::{self, JetStreamMessage, JetStreamSettler};
use idem_consume::{fingerprint, Consumer, Disposition, Failure, KeySource, Message};

use common::{config, effects, sqlite_consumer, Counting, Insert};

const PREFIX: &str = "idem_consume_test";

/// A stream of the test's own, capturing `<name>.work` and `<name>.dead`.
struct TestStream {
    js: jetstream::Context,
    name: String,
    stream: Stream,
}

impl TestStream {
    async fn create() -> Option<Self> {
        let url = idem_test_support::backend_url("IDEM_TEST_NATS")?;
        let client = async_nats::connect(&url)
            .await
            .unwrap_or_else(|e| panic!("NATS at {url}: {e}"));
        let js = jetstream::new(client);
        let mut names = js.stream_names();
        let mut leftovers = Vec::new();
        while let Some(Ok(name)) = names.next().await {
            if idem_test_support::owner_exited(&name, PREFIX) {
                leftovers.push(name);
            }
        }
        for name in leftovers {
            let _ = js.delete_stream(&name).await;
        }
        let name = idem_test_support::unique_name(PREFIX);
        let stream = js
            .create_stream(jetstream::stream::Config {
                name: name.clone(),
                subjects: vec![format!("{name}.work"), format!("{name}.dead")],
                ..Default::default()
            })
            .await
            .expect("create the test stream");
        Some(Self { js, name, stream })
    }

    fn work(&self) -> String {
        format!("{}.work", self.name)
    }

    fn dead(&self) -> String {
        format!("{}.dead", self.name)
    }

    async fn consumer(&self, subject: String, ack_wait: Duration) -> PullConsumer {
        self.stream
            .create_consumer(jetstream::consumer::pull::Config {
                durable_name: subject.rsplit('.').next().map(str::to_owned),
                filter_subject: subject,
                ack_wait,
                ..Default::default()
            })
            .await
            .expect("create the consumer")
    }

    async fn publish(&self, id: &str, payload: &'static str) {
        self.js
            .send_publish(
                self.work(),
                jetstream::message::PublishMessage::build()
                    .payload(payload.into())
                    .message_id(id),
            )
            .await
            .expect("publish")
            .await
            .expect("stored");
    }

    fn settler(&self) -> JetStreamSettler {
        JetStreamSettler::new(self.js.clone(), self.dead())
    }

    async fn drop_stream(self) {
        self.js
            .delete_stream(&self.name)
            .await
            .expect("delete the test stream");
    }
}

/// The next message of `consumer` within `wait`, if any.
async fn next(consumer: &PullConsumer, wait: Duration) -> Option<JetStreamMessage> {
    let mut batch = consumer
        .fetch()
        .max_messages(1)
        .expires(wait)
        .messages()
        .await
        .expect("fetch");
    let message = batch.next().await?.expect("message");
    Some(JetStreamMessage::new(message))
}

#[tokio::test]
async fn a_consumer_that_dies_after_its_commit_gets_the_message_acked_on_redelivery() {
    let Some(stream) = TestStream::create().await else {
        return;
    };
    let consumer = sqlite_consumer(config(KeySource::MessageId)).await;
    let pull = stream.consumer(stream.work(), Duration::from_secs(1)).await;
    stream.publish("order-1", r#"{"amount":5}"#).await;

    let first = next(&pull, Duration::from_secs(5))
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
    drop(first); // dies: committed, never acked

    let again = next(&pull, Duration::from_secs(5))
        .await
        .expect("redelivered");
    assert_eq!((again.message_id(), again.attempt()), (Some("order-1"), 2));
    let decided = consumer.process(&again, &Insert::default()).await;
    assert!(
        matches!(decided, Disposition::Ack { replayed: true, .. }),
        "{decided:?}"
    );
    stream
        .settler()
        .settle(&again, &decided)
        .await
        .expect("ack");

    assert_eq!(effects(&consumer).await, 1);
    assert!(
        next(&pull, Duration::from_millis(1500)).await.is_none(),
        "acked for good"
    );
    stream.drop_stream().await;
}

#[tokio::test]
async fn a_key_in_flight_on_another_consumer_is_naked_and_replayed_once_it_finishes() {
    let Some(stream) = TestStream::create().await else {
        return;
    };
    let consumer = Consumer::new(MemoryStore::new(), config(KeySource::MessageId));
    let pull = stream
        .consumer(stream.work(), Duration::from_secs(30))
        .await;
    stream.publish("order-2", "{}").await;

    // Another consumer holds the key.
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
    let first = next(&pull, Duration::from_secs(5))
        .await
        .expect("delivered");
    let decided = consumer.process(&first, &handler).await;
    assert!(matches!(decided, Disposition::Retry { .. }), "{decided:?}");
    stream
        .settler()
        .settle(&first, &decided)
        .await
        .expect("nak");
    // Naked with a delay: not back at once.
    assert!(next(&pull, Duration::from_millis(300)).await.is_none());

    let answer = StoredResponse::new(200, "done by the other");
    consumer
        .store()
        .complete(claim.held(token), &answer)
        .await
        .expect("the other completes");
    let again = next(&pull, Duration::from_secs(10))
        .await
        .expect("redelivered");
    let decided = consumer.process(&again, &handler).await;
    assert_eq!(
        decided,
        Disposition::Ack {
            response: answer,
            replayed: true
        }
    );
    stream
        .settler()
        .settle(&again, &decided)
        .await
        .expect("ack");
    assert_eq!(handler.runs(), 0);
    stream.drop_stream().await;
}

#[tokio::test]
async fn a_message_that_keeps_failing_goes_to_the_dead_letter_subject_with_its_reason() {
    let Some(stream) = TestStream::create().await else {
        return;
    };
    let mut config = config(KeySource::MessageId);
    config.max_attempts = 2;
    let handler = Counting {
        fail: Some(Failure::transient("the ledger is down")),
        ..Counting::default()
    };
    let process = Arc::new(Consumer::new(MemoryStore::new(), config).with_handler(handler.clone()));
    let pull = stream
        .consumer(stream.work(), Duration::from_secs(30))
        .await;
    let settler = stream.settler();
    let running = {
        let (process, settler) = (Arc::clone(&process), settler.clone());
        tokio::spawn(async move { nats::run(&pull, &*process, &settler, 4).await })
    };
    stream.publish("order-3", r#"{"amount":7}"#).await;

    let dead = stream
        .consumer(stream.dead(), Duration::from_secs(30))
        .await;
    let letter = next(&dead, Duration::from_secs(10))
        .await
        .expect("a dead letter");
    let headers = letter.inner().headers.clone().expect("headers");
    let reason = headers
        .get(nats::REASON_HEADER)
        .map(|v| v.as_str().to_owned());
    assert_eq!(reason.as_deref(), Some("attempt 2: the ledger is down"));
    assert_eq!(
        headers.get(nats::ORIGINAL_ID_HEADER).map(|v| v.as_str()),
        Some("order-3")
    );
    assert_eq!(letter.payload(), br#"{"amount":7}"#);
    assert_eq!(handler.runs(), 2);
    running.abort();
    stream.drop_stream().await;
}
