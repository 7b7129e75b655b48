//! `idem serve --nats URL` and `--amqp URL`: payment requests taken from a broker as well
//! as over HTTP. Each message's payload is the JSON body of a `POST /v1/payments`, run
//! through the very router that serves HTTP, so its answer — status and body, the replay of
//! a paid order, the 422 conflict — is the one HTTP gives, and an order sent over HTTP and
//! again over a broker is paid once: the payment claims its `order_id` inside its own
//! database transaction (the transactional mode, with the order as the business key).
//!
//! The answer goes to the subject in the message's `Idem-Reply-To` header (NATS; a
//! JetStream message's own reply subject is its ack subject) or to its `reply_to` queue
//! with its `correlation_id` (RabbitMQ), before the message is acked. A 5xx answer is
//! retried after a delay, and dead-lettered after [`ATTEMPTS_MAX`] deliveries.

use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use axum::body::Body;
use axum::http::{header, Request};
use axum::Router;
use clap::Args;
use idem::{Scope, StoredResponse};
use idem_consume::amqp::{self, AmqpSettler};
use idem_consume::nats::{self, JetStreamSettler};
use idem_consume::{Config, Disposition, Failure, KeySource, Message, Process};
use tokio::task::JoinHandle;
use tower::ServiceExt;

use crate::api::{BODY_LIMIT_BYTES, REPLAYED_HEADER};

/// The JetStream stream `idem serve --nats` reads from (created when missing).
pub const NATS_STREAM: &str = "IDEM_PAYMENTS";
/// The subject of payment requests; dead letters go to `<subject>.dead`, in the same stream.
pub const NATS_SUBJECT: &str = "idem.payments";
/// The durable JetStream consumer every node shares.
pub const NATS_CONSUMER: &str = "idem-serve";
/// The RabbitMQ queue `idem serve --amqp` reads from (declared when missing, with
/// `<queue>.retry` and `<queue>.dead`).
pub const AMQP_QUEUE: &str = "idem.payments";
/// Deliveries of one message before a 5xx answer sends it to the dead letters.
pub const ATTEMPTS_MAX: u32 = 10;
/// The ack wait of the JetStream consumer `idem serve` creates when missing: a node that
/// died holding a message lets another have it after this long.
pub const NATS_ACK_WAIT: Duration = Duration::from_secs(30);

/// The broker options of `idem serve`; each has an `IDEM_*` environment variable.
#[derive(Debug, Clone, Default, Args)]
pub struct BrokerArgs {
    /// NATS URL: also take payment requests from JetStream (stream `--nats-stream`,
    /// subject `--nats-subject`).
    #[arg(long, env = "IDEM_NATS")]
    pub nats: Option<String>,
    /// The JetStream stream of payment requests.
    #[arg(long, env = "IDEM_NATS_STREAM", default_value = NATS_STREAM)]
    pub nats_stream: String,
    /// The subject of payment requests; dead letters go to `<subject>.dead`.
    #[arg(long, env = "IDEM_NATS_SUBJECT", default_value = NATS_SUBJECT)]
    pub nats_subject: String,
    /// AMQP URL (RabbitMQ): also take payment requests from the queue `--amqp-queue`.
    #[arg(long, env = "IDEM_AMQP")]
    pub amqp: Option<String>,
    /// The queue of payment requests.
    #[arg(long, env = "IDEM_AMQP_QUEUE", default_value = AMQP_QUEUE)]
    pub amqp_queue: String,
    /// Messages each broker consumer works on at once (per node).
    #[arg(long, env = "IDEM_BROKER_CONCURRENCY", default_value_t = 64)]
    pub broker_concurrency: u16,
    /// CHAOS SWITCH, not for real use: hold every broker answer this many milliseconds
    /// after the payment's effect and before its reply and ack, so that `idem chaos
    /// --target nats|amqp` lands node kills in that window (hidden; 0, the default, holds
    /// nothing).
    #[arg(long, hide = true, default_value_t = 0)]
    pub chaos_settle_delay_ms: u64,
}

/// Payment requests from a broker, run through the HTTP router.
struct Payments {
    router: Router,
    retries: Config,
    /// The chaos switch `--chaos-settle-delay-ms`: zero but under `idem chaos`.
    settle_delay: Duration,
}

impl Payments {
    fn new(router: Router, settle_delay: Duration) -> anyhow::Result<Self> {
        // The payment service claims each order itself; this configuration only paces
        // the retries of 5xx answers.
        let scope = Scope::new("broker|POST /v1/payments").context("the broker scope")?;
        let mut retries = Config::new(scope, KeySource::MessageId);
        retries.max_attempts = ATTEMPTS_MAX;
        retries.retry_delay = Duration::from_millis(200);
        retries.retry_delay_max = Duration::from_secs(10);
        Ok(Self {
            router,
            retries,
            settle_delay,
        })
    }
}

#[async_trait]
impl Process for Payments {
    async fn process(&self, message: &dyn Message) -> Disposition {
        let mut request =
            Request::post("/v1/payments").header(header::CONTENT_TYPE, "application/json");
        if let Some(credentials) = message.header("Authorization") {
            request = request.header(header::AUTHORIZATION, credentials);
        }
        let request = match request.body(Body::from(message.payload().to_vec())) {
            Ok(request) => request,
            Err(e) => {
                return Disposition::DeadLetter {
                    reason: format!("not a request: {e}"),
                }
            }
        };
        let response = match self.router.clone().oneshot(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        };
        if !self.settle_delay.is_zero() {
            // Chaos only: the effect is committed, the ack not yet sent.
            tokio::time::sleep(self.settle_delay).await;
        }
        let status = response.status().as_u16();
        let replayed = response
            .headers()
            .get(REPLAYED_HEADER)
            .is_some_and(|v| v == "true");
        let content_type = response.headers().get(header::CONTENT_TYPE).cloned();
        let body = match axum::body::to_bytes(response.into_body(), 4 * BODY_LIMIT_BYTES).await {
            Ok(body) => body,
            Err(e) => {
                let failure = Failure::transient(format!("reading the answer: {e}"));
                return self.retries.after_failure(message.attempt(), &failure);
            }
        };
        if status >= 500 {
            let failure = Failure::transient(format!(
                "answered {status}: {}",
                String::from_utf8_lossy(&body)
            ));
            return self.retries.after_failure(message.attempt(), &failure);
        }
        let mut answer = StoredResponse::new(status, body);
        if let Some(kind) = content_type {
            answer = answer.with_header("content-type", kind.as_bytes());
        }
        Disposition::Ack {
            response: answer,
            replayed,
        }
    }
}

/// Connects to the brokers `args` names, creates the stream, consumer and queues when
/// missing, and starts consuming into `router`; each returned task reconnects after a
/// failure, until aborted.
///
/// # Errors
/// When a broker cannot be reached or refuses the stream or queue at start.
pub async fn start(args: &BrokerArgs, router: Router) -> anyhow::Result<Vec<JoinHandle<()>>> {
    let settle_delay = Duration::from_millis(args.chaos_settle_delay_ms);
    let process = std::sync::Arc::new(Payments::new(router, settle_delay)?);
    let mut tasks = Vec::new();
    if let Some(url) = &args.nats {
        let consumer = nats_consumer(url, args)
            .await
            .with_context(|| format!("JetStream at {}", crate::serve::redact(url)))?;
        tracing::info!(stream = %args.nats_stream, subject = %args.nats_subject, "consuming payment requests from NATS");
        let process = std::sync::Arc::clone(&process);
        let concurrency = usize::from(args.broker_concurrency);
        tasks.push(tokio::spawn(async move {
            let (consumer, settler) = consumer;
            loop {
                if let Err(e) = nats::run(&consumer, &*process, &settler, concurrency).await {
                    tracing::warn!(error = %e, "NATS consumer stopped; resuming");
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }));
    }
    if let Some(url) = &args.amqp {
        let first = amqp_settler(url, &args.amqp_queue)
            .await
            .with_context(|| format!("RabbitMQ at {}", crate::serve::redact(url)))?;
        tracing::info!(queue = %args.amqp_queue, "consuming payment requests from RabbitMQ");
        let (url, queue) = (url.clone(), args.amqp_queue.clone());
        let concurrency = args.broker_concurrency;
        tasks.push(tokio::spawn(async move {
            let mut settler = Some(first);
            loop {
                let current = match settler.take() {
                    Some(current) => Ok(current),
                    None => amqp_settler(&url, &queue).await,
                };
                match current {
                    Ok(current) => {
                        if let Err(e) =
                            amqp::run(&current, "idem-serve", &*process, concurrency).await
                        {
                            tracing::warn!(error = %e, "AMQP consumer stopped; reconnecting");
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "RabbitMQ unreachable; retrying"),
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }));
    }
    Ok(tasks)
}

async fn nats_consumer(
    url: &str,
    args: &BrokerArgs,
) -> anyhow::Result<(
    async_nats::jetstream::consumer::PullConsumer,
    JetStreamSettler,
)> {
    use async_nats::jetstream;
    let client = async_nats::connect(url).await?;
    let js = jetstream::new(client);
    let dead = format!("{}.dead", args.nats_subject);
    let stream = js
        .get_or_create_stream(jetstream::stream::Config {
            name: args.nats_stream.clone(),
            subjects: vec![args.nats_subject.clone(), dead.clone()],
            ..Default::default()
        })
        .await?;
    let consumer = stream
        .get_or_create_consumer(
            NATS_CONSUMER,
            jetstream::consumer::pull::Config {
                durable_name: Some(NATS_CONSUMER.to_owned()),
                filter_subject: args.nats_subject.clone(),
                ack_wait: NATS_ACK_WAIT,
                ..Default::default()
            },
        )
        .await?;
    Ok((consumer, JetStreamSettler::new(js, dead)))
}

async fn amqp_settler(url: &str, queue: &str) -> anyhow::Result<AmqpSettler> {
    let connection =
        lapin::Connection::connect(url, lapin::ConnectionProperties::default()).await?;
    let channel = connection.create_channel().await?;
    Ok(AmqpSettler::declare(channel, queue).await?)
}
