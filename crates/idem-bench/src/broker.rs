//! `idem bench --broker URL`: the payment service's broker path under load. The spawned
//! `idem serve` consumes from a stream and subject (NATS JetStream) or a queue (RabbitMQ) of
//! the run's own, made at the start and deleted at the end; each client publishes a fresh
//! order (the body of `POST /v1/payments`, its `order_id` as `Nats-Msg-Id` or AMQP
//! `message_id`) and waits for its reply, which must be a 201 that is not a replay.
//!
//! With `--baseline-unsafe` the same consumer loop runs too with the node spawned with
//! `--unsafe-disable-idempotency` (the test guard: every order claimed under a key of its
//! own, nothing looked up), on the same stream and database: first, then idem's node on
//! the tables and stream the baseline has filled, or last with `--baseline-last`. The
//! ratio is idem's replies/s ÷ the baseline's.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use idem_chaos::broker::{Broker, BrokerKind, Endpoint, Link, Names, OnReply, Windows};
use idem_chaos::client::Answer;
use idem_sql_admin::{unique_name, ScratchDatabase};
use rand::rngs::StdRng;
use rand::SeedableRng;
use serde::Serialize;
use tokio::process::Command;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::args::{BenchArgs, Kind, Mix};
use crate::client::Target;
use crate::error::{BenchError, Result};
use crate::load::{drive, LoadClient, Pace, Step};
use crate::payments::Workload;
use crate::report::Summary;
use crate::run::spawned_database;
use crate::server::Server;
use crate::stats::Figures;

/// How long a client waits for the broker to store its message, then for its reply.
const REPLY_TIMEOUT: Duration = Duration::from_secs(10);
/// The switch of the test guard, which `--baseline-unsafe` passes to its node.
const UNSAFE_SWITCH: &str = "--unsafe-disable-idempotency";

/// The result of `idem bench --broker`.
#[derive(Debug, Clone, Serialize)]
pub struct BrokerReport {
    /// What was measured: "idem serve --nats on postgres".
    pub target: String,
    /// The broker.
    pub broker: BrokerKind,
    /// The run's stream (NATS) or work queue (RabbitMQ).
    pub stream: String,
    /// Concurrent publishers, each waiting for its reply before the next order.
    pub clients: usize,
    /// Who paid whom: `uniform`, or `hot:PAYEES:SHARE`.
    pub accounts_skew: String,
    /// The node as shipped.
    pub idem: BrokerLoad,
    /// Whether the baseline ran before idem's node (after it with `--baseline-last`).
    pub baseline_first: Option<bool>,
    /// The same consumer loop with the node's idempotency off, when `--baseline-unsafe`.
    pub baseline_unsafe: Option<BrokerLoad>,
    /// idem's replies/s ÷ the baseline's.
    pub idem_vs_unsafe: Option<f64>,
}

/// One node's load through the broker.
#[derive(Debug, Clone, Serialize)]
pub struct BrokerLoad {
    /// Seconds the load ran.
    pub elapsed_s: f64,
    /// Replies (rps: replies per second) and latency from publishing to the reply.
    pub figures: Figures,
    /// Unexpected replies and missing ones, by cause.
    pub errors: std::collections::BTreeMap<String, u64>,
}

/// The broker a URL names by its scheme.
///
/// # Errors
/// A scheme that is neither NATS's nor AMQP's.
pub(crate) fn kind_of(url: &str) -> Result<BrokerKind> {
    let scheme = url.split_once("://").map_or("", |(scheme, _)| scheme);
    match scheme {
        "nats" | "tls" => Ok(BrokerKind::Nats),
        "amqp" | "amqps" => Ok(BrokerKind::Amqp),
        _ => Err(BenchError::InvalidArgument {
            what: "--broker",
            reason: format!("`{url}` is neither nats://… nor amqp://…"),
        }),
    }
}

/// Runs `idem bench --broker URL` as `args` say, with `bin` as the nodes' `idem`.
///
/// # Errors
/// Bad options, an `idem` without the test guard for `--baseline-unsafe`, a broker or
/// database that cannot be used, a node that does not start. Unexpected replies are counted
/// in the report, not errors.
pub(crate) async fn run(args: &BenchArgs, url: &str, default_bin: &Path) -> Result<Summary> {
    if args.clients == 0 {
        return Err(BenchError::InvalidArgument {
            what: "--clients",
            reason: "must be at least 1".into(),
        });
    }
    let kind = kind_of(url)?;
    let bin = args.idem_bin.as_deref().unwrap_or(default_bin);
    if args.baseline_unsafe {
        require_test_guard(bin).await?;
    }
    let (database, engine, fresh) = spawned_database(
        args,
        "--broker spawns its node: give it a database",
        "idem_bench_broker",
    )
    .await?;
    let db_url = fresh.as_ref().map_or(database, ScratchDatabase::url);
    let names = Names::new("bench", &unique_name("idem_bench"));
    let result = match Broker::prepare(kind, url, names, Windows::SERVE).await {
        Ok(broker) => {
            let node = Node {
                bin,
                database: db_url,
                broker: &broker,
                url,
            };
            let result = measure(args, &node, kind, engine.name()).await;
            // A failed clean-up must not hide the figures; say it and go on.
            if let Err(e) = broker.delete().await {
                eprintln!("idem bench: {e}");
            }
            broker.close().await;
            result
        }
        Err(e) => Err(e.into()),
    };
    if let Some(fresh) = fresh {
        fresh.drop_database().await?;
    }
    Ok(Summary::Broker(Box::new(result?)))
}

/// Fails unless `bin serve` takes the test guard's switch: without the cargo feature, the
/// switch does not exist and the baseline cannot run.
async fn require_test_guard(bin: &Path) -> Result<()> {
    let status = Command::new(bin)
        .args(["serve", UNSAFE_SWITCH, "--help"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await
        .map_err(|e| BenchError::Spawn {
            bin: PathBuf::from(bin),
            reason: e.to_string(),
        })?;
    if status.success() {
        Ok(())
    } else {
        Err(BenchError::NoTestGuard {
            bin: PathBuf::from(bin),
        })
    }
}

/// What every node of a run is started with.
struct Node<'a> {
    bin: &'a Path,
    database: &'a str,
    broker: &'a Broker,
    url: &'a str,
}

/// The baseline (when asked for), then idem, each on a node of its own.
async fn measure(
    args: &BenchArgs,
    node: &Node<'_>,
    kind: BrokerKind,
    engine: &str,
) -> Result<BrokerReport> {
    let run_id = unique_name("b");
    let mut workload = None;
    let baseline_first = args.baseline_unsafe && !args.baseline_last;
    let mut baseline_unsafe = None;
    if baseline_first {
        baseline_unsafe = Some(load(args, node, Phase::Unsafe, &run_id, &mut workload).await?);
    }
    let idem = load(args, node, Phase::Idem, &run_id, &mut workload).await?;
    if args.baseline_unsafe && !baseline_first {
        baseline_unsafe = Some(load(args, node, Phase::Unsafe, &run_id, &mut workload).await?);
    }
    let idem_vs_unsafe = baseline_unsafe
        .as_ref()
        .filter(|b| b.figures.rps > 0.0)
        .map(|b| idem.figures.rps / b.figures.rps);
    let flag = match kind {
        BrokerKind::Nats => "--nats",
        BrokerKind::Amqp => "--amqp",
    };
    Ok(BrokerReport {
        target: format!("idem serve {flag} on {engine}"),
        broker: kind,
        stream: node.broker.names().stream.clone(),
        clients: args.clients,
        accounts_skew: args.accounts_skew.to_string(),
        idem,
        baseline_first: baseline_unsafe.as_ref().map(|_| baseline_first),
        baseline_unsafe,
        idem_vs_unsafe,
    })
}

/// Which node a load runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// `idem serve` as shipped.
    Idem,
    /// `idem serve --unsafe-disable-idempotency`.
    Unsafe,
}

impl Phase {
    /// The phase's mark in order ids and its publishers' first index, so that no order id
    /// or reply queue of one phase is another's.
    fn mark(self, clients: usize) -> (&'static str, usize) {
        match self {
            Phase::Idem => ("i", 0),
            Phase::Unsafe => ("u", clients),
        }
    }
}

/// Spawns the phase's node, opens the run's accounts if no phase has, drives the clients
/// and stops the node.
async fn load(
    args: &BenchArgs,
    node: &Node<'_>,
    phase: Phase,
    run_id: &str,
    workload: &mut Option<Arc<Workload>>,
) -> Result<BrokerLoad> {
    let mut serve_args = args.serve_args.clone();
    serve_args.extend(node.broker.node_args(node.url));
    if phase == Phase::Unsafe {
        serve_args.push(UNSAFE_SWITCH.to_owned());
    }
    let server = Server::spawn(node.bin, node.database, &serve_args).await?;
    let result = async {
        let target = Target::at(server.addr, Vec::new());
        let workload = match workload {
            Some(workload) => workload.clone(),
            None => {
                let opened = Workload::open(
                    &target,
                    run_id,
                    args.accounts,
                    args.clients,
                    Mix::only(Kind::Fresh),
                    args.accounts_skew,
                )
                .await?;
                workload.insert(opened).clone()
            }
        };
        let (mark, first) = phase.mark(args.clients);
        let mut clients = Vec::with_capacity(args.clients);
        let mut readers = Vec::with_capacity(args.clients);
        let ignore: OnReply = Arc::new(|_: &str, _: &Answer| {});
        for i in 0..args.clients {
            let Endpoint {
                link,
                replies,
                reader,
            } = node.broker.endpoint(first + i, ignore.clone()).await?;
            readers.push(reader);
            clients.push(BrokerClient {
                link,
                replies,
                workload: workload.clone(),
                prefix: format!("{}-{mark}{i}", workload.run_id()),
                seq: 0,
                rng: StdRng::seed_from_u64(i as u64 ^ 0xb20c),
            });
        }
        let pace = Pace {
            clients: args.clients,
            rate: args.rate,
            duration: args.duration,
            requests: args.requests,
        };
        let label = match phase {
            Phase::Idem => "idem serve",
            Phase::Unsafe => "unsafe baseline",
        };
        let (tally, elapsed) = drive(pace, label, args.quiet, clients).await;
        for reader in readers {
            reader.abort();
        }
        Ok(BrokerLoad {
            elapsed_s: elapsed.as_secs_f64(),
            figures: tally.total().figures(elapsed),
            errors: tally.errors,
        })
    }
    .await;
    server.stop().await;
    result
}

/// One publisher: a fresh order at a time, its reply awaited.
struct BrokerClient {
    link: Link,
    replies: mpsc::UnboundedReceiver<(String, Answer)>,
    workload: Arc<Workload>,
    prefix: String,
    seq: u64,
    rng: StdRng,
}

impl BrokerClient {
    /// Publishes `body` with `order_id` as message id and reply tag; the cause when its
    /// reply is not a fresh 201 or does not come.
    async fn send(&mut self, order_id: &str, body: &Bytes) -> Option<String> {
        if let Err(e) = self
            .link
            .publish(REPLY_TIMEOUT, order_id, order_id, body)
            .await
        {
            return Some(format!("publish: {e}"));
        }
        let until = Instant::now() + REPLY_TIMEOUT;
        loop {
            match tokio::time::timeout_at(until, self.replies.recv()).await {
                Err(_) => return Some("no reply in time".to_owned()),
                Ok(None) => return Some("the reply reader stopped".to_owned()),
                Ok(Some((tag, answer))) if tag == order_id => return unexpected(&answer),
                // A late reply to an earlier order of this client, already counted.
                Ok(Some(_)) => {}
            }
        }
    }
}

/// The cause when `answer` is not a fresh order's: 201, not a replay.
fn unexpected(answer: &Answer) -> Option<String> {
    if answer.status == 201 && !answer.replayed {
        return None;
    }
    let mut cause = answer.status.to_string();
    if let Some(code) = answer.code() {
        cause.push(' ');
        cause.push_str(&code);
    }
    if answer.replayed {
        cause.push_str(" (replayed)");
    }
    Some(cause)
}

impl LoadClient for BrokerClient {
    async fn step(&mut self) -> Step {
        self.seq += 1;
        let order_id = format!("{}-{}", self.prefix, self.seq);
        let (payer, payee, amount) = self.workload.draw(&mut self.rng);
        let body = self.workload.body(&order_id, payer, payee, amount);
        Step {
            kind: Kind::Fresh.name(),
            error: self.send(&order_id, &body).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_broker_is_read_from_the_scheme() {
        assert_eq!(
            kind_of("nats://127.0.0.1:4222").ok(),
            Some(BrokerKind::Nats)
        );
        assert_eq!(
            kind_of("amqp://guest:guest@127.0.0.1:5672/%2f").ok(),
            Some(BrokerKind::Amqp)
        );
        assert!(kind_of("http://127.0.0.1:8080").is_err());
        assert!(kind_of("127.0.0.1:4222").is_err());
    }

    #[test]
    fn only_a_fresh_201_is_expected() {
        let answer = |status, replayed| Answer {
            status,
            body: r#"{"code":"order_id_conflict"}"#.to_owned(),
            replayed,
        };
        assert_eq!(unexpected(&answer(201, false)), None);
        assert_eq!(
            unexpected(&answer(201, true)).as_deref(),
            Some("201 order_id_conflict (replayed)")
        );
        assert_eq!(
            unexpected(&answer(422, false)).as_deref(),
            Some("422 order_id_conflict")
        );
    }
}
