//! The consumer's decisions over real stores (in memory, SQLite), without a broker: each
//! message's handler runs once per key, and every other path ends in the disposition the
//! crate documents.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{config, effects, sqlite_consumer, Counting, Insert};
use idem::{Claim, Key, MemoryStore, Outcome, Store, StoredResponse};
use idem_consume::{fingerprint, Consumer, Disposition, Failure, KeySource, Message, Process};

struct Delivery {
    id: Option<&'static str>,
    payload: Vec<u8>,
    attempt: u32,
}

impl Delivery {
    fn new(id: &'static str, payload: &str) -> Self {
        Self {
            id: Some(id),
            payload: payload.as_bytes().to_vec(),
            attempt: 1,
        }
    }

    fn attempt(mut self, attempt: u32) -> Self {
        self.attempt = attempt;
        self
    }
}

impl Message for Delivery {
    fn message_id(&self) -> Option<&str> {
        self.id
    }
    fn payload(&self) -> &[u8] {
        &self.payload
    }
    fn attempt(&self) -> u32 {
        self.attempt
    }
}

fn memory_consumer() -> Consumer<MemoryStore> {
    Consumer::new(MemoryStore::new(), config(KeySource::MessageId))
}

#[tokio::test]
async fn a_finished_key_is_acked_without_running_the_handler() {
    let consumer = memory_consumer();
    let handler = Counting::default();
    let message = Delivery::new("m-1", r#"{"a":1}"#);
    let first = consumer.process(&message, &handler).await;
    let again = consumer.process(&message.attempt(2), &handler).await;
    let response = StoredResponse::new(200, "done m-1");
    assert_eq!(
        first,
        Disposition::Ack {
            response: response.clone(),
            replayed: false
        }
    );
    assert_eq!(
        again,
        Disposition::Ack {
            response,
            replayed: true
        }
    );
    assert_eq!(handler.runs(), 1);
}

#[tokio::test]
async fn a_key_in_flight_elsewhere_is_retried_after_the_lease() {
    let consumer = memory_consumer();
    let handler = Counting::default();
    let message = Delivery::new("m-1", "{}");
    // Another consumer holds the key.
    let (scope, key, fp) = (
        consumer.config().scope.clone(),
        Key::new("m-1").expect("key"),
        fingerprint(b"{}"),
    );
    let claim = Claim::new(
        &scope,
        &key,
        &fp,
        Duration::from_secs(30),
        Duration::from_secs(60),
    );
    let held = consumer.store().begin(claim).await.expect("begin");
    assert!(matches!(held, Outcome::Acquired { .. }));

    let decided = consumer.process(&message, &handler).await;
    let Disposition::Retry { delay, reason } = decided else {
        panic!("expected a retry, got {decided:?}");
    };
    assert!(delay > Duration::from_secs(25) && delay <= Duration::from_secs(30));
    assert!(reason.contains("in flight"), "{reason}");
    assert_eq!(handler.runs(), 0);
}

#[tokio::test]
async fn a_key_reused_for_another_payload_goes_to_the_dead_letters() {
    let consumer = memory_consumer();
    let handler = Counting::default();
    let _ = consumer
        .process(&Delivery::new("m-1", r#"{"amount":5}"#), &handler)
        .await;
    let decided = consumer
        .process(&Delivery::new("m-1", r#"{"amount":6}"#), &handler)
        .await;
    assert!(
        matches!(&decided, Disposition::DeadLetter { reason } if reason.contains("another payload")),
        "{decided:?}"
    );
    assert_eq!(handler.runs(), 1);
}

#[tokio::test]
async fn a_message_without_a_key_goes_to_the_dead_letters() {
    let consumer = memory_consumer();
    let handler = Counting::default();
    let mut message = Delivery::new("unused", "{}");
    message.id = None;
    let decided = consumer.process(&message, &handler).await;
    assert!(
        matches!(decided, Disposition::DeadLetter { .. }),
        "{decided:?}"
    );
    let by_field = Consumer::new(
        MemoryStore::new(),
        config(KeySource::json_field("order_id")),
    );
    let decided = by_field.process(&message, &handler).await;
    assert!(
        matches!(decided, Disposition::DeadLetter { .. }),
        "{decided:?}"
    );
    assert_eq!(handler.runs(), 0);
}

#[tokio::test]
async fn a_failing_handler_is_retried_with_a_growing_delay_then_dead_lettered() {
    let consumer = memory_consumer();
    let failing = Counting {
        fail: Some(Failure::transient("the warehouse is down")),
        ..Counting::default()
    };
    let message = |attempt| Delivery::new("m-1", "{}").attempt(attempt);
    let delays: Vec<_> = [1, 2]
        .into_iter()
        .map(|attempt| (attempt, message(attempt)))
        .collect();
    let mut seen = Vec::new();
    for (_, delivery) in &delays {
        match consumer.process(delivery, &failing).await {
            Disposition::Retry { delay, .. } => seen.push(delay),
            other => panic!("expected a retry, got {other:?}"),
        }
    }
    assert_eq!(
        seen,
        [Duration::from_millis(100), Duration::from_millis(200)]
    );
    let last = consumer.process(&message(3), &failing).await;
    assert_eq!(
        last,
        Disposition::DeadLetter {
            reason: "attempt 3: the warehouse is down".into()
        }
    );
    // Each failure released the key: the handler ran every time, and runs again now.
    assert_eq!(failing.runs(), 3);
    let healthy = Counting::default();
    let decided = consumer.process(&message(4), &healthy).await;
    assert!(matches!(
        decided,
        Disposition::Ack {
            replayed: false,
            ..
        }
    ));
}

#[tokio::test]
async fn a_permanent_failure_is_dead_lettered_at_once() {
    let consumer = memory_consumer();
    let failing = Counting {
        fail: Some(Failure::permanent("no such sku")),
        ..Counting::default()
    };
    let decided = consumer
        .process(&Delivery::new("m-1", "{}"), &failing)
        .await;
    assert_eq!(
        decided,
        Disposition::DeadLetter {
            reason: "attempt 1: no such sku".into()
        }
    );
}

#[tokio::test]
async fn a_business_key_from_the_payload_ignores_message_ids_and_member_order() {
    let consumer = Consumer::new(
        MemoryStore::new(),
        config(KeySource::json_field("order_id")),
    );
    let handler = Counting::default();
    let first = Delivery::new("publisher-a-1", r#"{"order_id":"o-7","amount":5}"#);
    let second = Delivery::new("publisher-b-9", r#"{ "amount": 5, "order_id": "o-7" }"#);
    let _ = consumer.process(&first, &handler).await;
    let decided = consumer.process(&second, &handler).await;
    assert_eq!(
        decided,
        Disposition::Ack {
            response: StoredResponse::new(200, "done o-7"),
            replayed: true
        }
    );
    assert_eq!(handler.runs(), 1);
}

#[tokio::test]
async fn transactional_mode_writes_the_effect_once() {
    let consumer = sqlite_consumer(config(KeySource::MessageId)).await;
    let message = Delivery::new("m-1", r#"{"a":1}"#);
    let first = consumer.process(&message, &Insert::default()).await;
    let again = consumer
        .process(&message.attempt(2), &Insert::default())
        .await;
    assert!(
        matches!(
            first,
            Disposition::Ack {
                replayed: false,
                ..
            }
        ),
        "{first:?}"
    );
    assert!(
        matches!(again, Disposition::Ack { replayed: true, .. }),
        "{again:?}"
    );
    assert_eq!(effects(&consumer).await, 1);
}

#[tokio::test]
async fn transactional_mode_rolls_back_the_effect_with_the_record() {
    let consumer = sqlite_consumer(config(KeySource::MessageId)).await;
    let message = Delivery::new("m-1", "{}");
    let failed = consumer.process(&message, &Insert { fail: true }).await;
    assert!(matches!(failed, Disposition::Retry { .. }), "{failed:?}");
    assert_eq!(effects(&consumer).await, 0);
    let retried = consumer
        .process(&message.attempt(2), &Insert::default())
        .await;
    assert!(
        matches!(
            retried,
            Disposition::Ack {
                replayed: false,
                ..
            }
        ),
        "{retried:?}"
    );
    assert_eq!(effects(&consumer).await, 1);
}

#[tokio::test]
async fn concurrent_duplicates_in_transactional_mode_run_once() {
    let consumer = Arc::new(
        sqlite_consumer(config(KeySource::MessageId))
            .await
            .with_handler(Insert::default()),
    );
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let consumer = Arc::clone(&consumer);
            tokio::spawn(async move { consumer.process(&Delivery::new("m-1", r#"{"a":1}"#)).await })
        })
        .collect();
    let mut ran = 0;
    for task in tasks {
        match task.await.expect("task") {
            Disposition::Ack {
                replayed: false, ..
            } => ran += 1,
            Disposition::Ack { replayed: true, .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(ran, 1);
    assert_eq!(effects(consumer.consumer()).await, 1);
}
