//! `idem serve --nats` and `--amqp`, as a process: one order paid over HTTP, then sent
//! again over each broker, is paid once, and each broker's reply is the HTTP replay (status,
//! body byte for byte, `Idempotent-Replayed`); the same order with another amount gets the
//! 422 conflict; an order paid first over a broker replays over HTTP. Each run has its own
//! stream and queues, deleted at its end.

#[path = "common/serve_harness.rs"]
mod harness;

use std::time::Duration;

use async_nats::jetstream;
use futures::StreamExt;
use harness::{Endpoint, Node};
use idem_test_support::{backend_url, unique_name, TestDatabase};
use lapin::options::{
    BasicConsumeOptions, BasicPublishOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Connection, ConnectionProperties};
use serde_json::{json, Value};

/// A broker's answer: status, replayed, body.
#[derive(Debug, PartialEq, Eq)]
struct Answer {
    status: u16,
    replayed: bool,
    body: Vec<u8>,
}

struct Nats {
    client: async_nats::Client,
    js: jetstream::Context,
    stream: String,
    subject: String,
}

impl Nats {
    /// Publishes `body` to JetStream with message id `id` and waits for the reply.
    async fn pay(&self, id: &str, body: &Value) -> Answer {
        let inbox = self.client.new_inbox();
        let mut replies = self
            .client
            .subscribe(inbox.clone())
            .await
            .expect("subscribe");
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", id);
        headers.insert("Idem-Reply-To", inbox.as_str());
        self.js
            .publish_with_headers(self.subject.clone(), headers, body.to_string().into())
            .await
            .expect("publish")
            .await
            .expect("stored");
        let reply = tokio::time::timeout(Duration::from_secs(20), replies.next())
            .await
            .expect("a reply within 20 s")
            .expect("a reply");
        let headers = reply.headers.clone().expect("reply headers");
        let header = |name: &str| headers.get(name).map(|v| v.as_str().to_owned());
        Answer {
            status: header("Idem-Status")
                .and_then(|s| s.parse().ok())
                .expect("status"),
            replayed: header("Idempotent-Replayed").as_deref() == Some("true"),
            body: reply.payload.to_vec(),
        }
    }
}

struct Amqp {
    connection: Connection,
    queue: String,
}

impl Amqp {
    /// Publishes `body` to the queue with `reply_to` and a correlation id, and waits for the
    /// reply that carries it.
    async fn pay(&self, id: &str, body: &Value) -> Answer {
        let channel = self.connection.create_channel().await.expect("channel");
        let replies = unique_name("idem_serve_replies");
        let exclusive = QueueDeclareOptions {
            exclusive: true,
            auto_delete: true,
            ..QueueDeclareOptions::default()
        };
        channel
            .queue_declare(replies.as_str().into(), exclusive, FieldTable::default())
            .await
            .expect("reply queue");
        let mut consumer = channel
            .basic_consume(
                replies.as_str().into(),
                "".into(),
                BasicConsumeOptions {
                    no_ack: true,
                    ..BasicConsumeOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .expect("consume replies");
        let properties = BasicProperties::default()
            .with_message_id(id.into())
            .with_reply_to(replies.as_str().into())
            .with_correlation_id(format!("corr-{id}").into());
        channel
            .basic_publish(
                "".into(),
                self.queue.as_str().into(),
                BasicPublishOptions::default(),
                body.to_string().as_bytes(),
                properties,
            )
            .await
            .expect("publish");
        let reply = tokio::time::timeout(Duration::from_secs(20), consumer.next())
            .await
            .expect("a reply within 20 s")
            .expect("a reply")
            .expect("a delivery");
        let correlation = reply.properties.correlation_id().clone();
        assert_eq!(
            correlation.map(|c| c.to_string()),
            Some(format!("corr-{id}"))
        );
        let headers = reply.properties.headers().clone().expect("reply headers");
        let status = match headers.inner().get("idem-status") {
            Some(AMQPValue::LongUInt(n)) => u16::try_from(*n).expect("a status"),
            other => panic!("no status: {other:?}"),
        };
        let replayed = matches!(
            headers.inner().get("idempotent-replayed"),
            Some(AMQPValue::Boolean(true))
        );
        let _ = channel.close(200, "done".into()).await;
        Answer {
            status,
            replayed,
            body: reply.data,
        }
    }
}

async fn http_pay(node: &Endpoint, body: &Value) -> Answer {
    let reply = node.post("/v1/payments", body).await;
    Answer {
        status: reply.status,
        replayed: reply.replayed,
        body: reply.body,
    }
}

fn order(order_id: &str, amount: i64) -> Value {
    json!({"order_id": order_id, "payer": "alice", "payee": "bob", "amount": amount})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_over_http_and_brokers_are_paid_once_and_brokers_reply_as_http() {
    let Some(nats_url) = backend_url("IDEM_TEST_NATS") else {
        return;
    };
    let Some(amqp_url) = backend_url("IDEM_TEST_AMQP") else {
        return;
    };
    let Some(db) = TestDatabase::create("sqlite", "idem_serve_brokers").await else {
        return;
    };
    let name = unique_name("idem_serve_brokers");
    let client = async_nats::connect(&nats_url).await.expect("NATS");
    let nats = Nats {
        js: jetstream::new(client.clone()),
        client,
        stream: name.clone(),
        subject: format!("{name}.pay"),
    };
    let amqp = Amqp {
        connection: Connection::connect(&amqp_url, ConnectionProperties::default())
            .await
            .expect("RabbitMQ"),
        queue: name.clone(),
    };
    let node = Node::start(
        db.url(),
        &[
            "--nats",
            &nats_url,
            "--nats-stream",
            &nats.stream,
            "--nats-subject",
            &nats.subject,
            "--amqp",
            &amqp_url,
            "--amqp-queue",
            &amqp.queue,
        ],
        None,
    );
    let http = Endpoint {
        client: reqwest::Client::new(),
        base: node.base.clone(),
    };
    for (account, balance) in [("alice", 1_000), ("bob", 0)] {
        let opened = http
            .post(
                "/v1/accounts",
                &json!({"account_id": account, "balance": balance}),
            )
            .await;
        assert_eq!(opened.status, 201, "{}", opened.text());
    }

    // Paid over HTTP, then sent again over each broker: replayed, byte for byte.
    let first = http_pay(&http, &order("o-1", 100)).await;
    assert_eq!((first.status, first.replayed), (201, false));
    let replay = Answer {
        replayed: true,
        ..first
    };
    assert_eq!(nats.pay("o-1-a", &order("o-1", 100)).await, replay);
    assert_eq!(amqp.pay("o-1-b", &order("o-1", 100)).await, replay);

    // The same order with another amount: the HTTP API's 422, over both brokers.
    let http_conflict = http_pay(&http, &order("o-1", 999)).await;
    assert_eq!(http_conflict.status, 422);
    assert_eq!(nats.pay("o-1-c", &order("o-1", 999)).await, http_conflict);
    assert_eq!(amqp.pay("o-1-d", &order("o-1", 999)).await, http_conflict);

    // Paid first over a broker: HTTP replays it.
    let over_amqp = amqp.pay("o-2-a", &order("o-2", 50)).await;
    assert_eq!((over_amqp.status, over_amqp.replayed), (201, false));
    let again = http_pay(&http, &order("o-2", 50)).await;
    assert_eq!(
        (again.status, again.replayed, &again.body),
        (201, true, &over_amqp.body)
    );
    let over_nats = nats.pay("o-3-a", &order("o-3", 25)).await;
    assert_eq!((over_nats.status, over_nats.replayed), (201, false));
    assert_eq!(
        amqp.pay("o-3-b", &order("o-3", 25)).await.body,
        over_nats.body
    );

    // Three orders, each paid once.
    let alice = http.get("/v1/accounts/alice").await.json();
    let bob = http.get("/v1/accounts/bob").await.json();
    assert_eq!(
        (alice["balance"].as_i64(), bob["balance"].as_i64()),
        (Some(825), Some(175))
    );

    drop(node);
    nats.js
        .delete_stream(&nats.stream)
        .await
        .expect("delete the stream");
    let channel = amqp.connection.create_channel().await.expect("channel");
    for queue in [
        amqp.queue.clone(),
        format!("{}.retry", amqp.queue),
        format!("{}.dead", amqp.queue),
    ] {
        channel
            .queue_delete(queue.into(), QueueDeleteOptions::default())
            .await
            .expect("delete a queue");
    }
    db.drop_database().await;
}
