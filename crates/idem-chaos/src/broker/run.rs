//! One run of a broker target: the run's stream or queues, a relay per node to the broker,
//! the payment nodes consuming through them, the publishers, the checks, the clean-up.

use std::sync::Arc;
use std::time::Duration;

use crate::balancer::BalancerConfig;
use crate::broker::checker::{check_replies, BrokerSummary};
use crate::broker::link::{Broker, BrokerKind, Names, Windows, NATS_ACK_WAIT};
use crate::broker::publisher::{Publisher, ReplyLog, Shared};
use crate::checker::History;
use crate::db::RunDatabase;
use crate::faults::{FaultRates, Ticker};
use crate::harness::Cutter;
use crate::relay::Relay;
use crate::report::Report;
use crate::runner::{base_report, start_payment_nodes, Plan};
use crate::{ChaosArgs, Error};

/// How often `--all-faults` cuts the nodes' broker connections.
const ALL_CUT_BROKER_EVERY: Duration = Duration::from_secs(4);
/// How long `--all-faults` has the nodes hold each answer between effect and ack.
const ALL_SETTLE_DELAY: Duration = Duration::from_millis(20);
/// How long replies are still collected after the load: a RabbitMQ delivery comes again as
/// soon as its channel closes, a JetStream one after the consumer's ack wait.
const LATE_REPLIES_AMQP: Duration = Duration::from_secs(1);

/// Runs a broker target on the run's database `db` and returns its report; the run's
/// stream or queues are deleted whatever the outcome.
pub(crate) async fn run(
    args: &ChaosArgs,
    db: &Arc<RunDatabase>,
    plan: &Plan,
) -> Result<Report, Error> {
    let (Some(kind), Some(url)) = (args.target.broker(), args.broker.as_deref()) else {
        return Err(Error::Config(
            "--target nats|amqp needs --broker URL (nats://… or amqp://…)".into(),
        ));
    };
    let broker = Broker::prepare(kind, url, Names::of(db.name()), Windows::CHAOS).await?;
    let result = run_on(args, db, plan, (&broker, kind, url)).await;
    // A failed clean-up must not hide the verdict; say it and go on.
    if let Err(e) = broker.delete().await {
        eprintln!("idem chaos: {e}");
    }
    broker.close().await;
    result
}

async fn run_on(
    args: &ChaosArgs,
    db: &Arc<RunDatabase>,
    plan: &Plan,
    (broker, kind, url): (&Broker, BrokerKind, &str),
) -> Result<Report, Error> {
    let mut relays = Vec::with_capacity(plan.nodes);
    for _ in 0..plan.nodes {
        relays.push(Relay::start(url).await?);
    }
    let settle = args
        .settle_delay
        .or(args.all_faults.then_some(ALL_SETTLE_DELAY))
        .unwrap_or_default();
    let per_node = relays
        .iter()
        .map(|relay| {
            let mut node = broker.node_args(relay.url());
            node.extend([
                "--chaos-settle-delay-ms".to_owned(),
                settle.as_millis().to_string(),
            ]);
            node
        })
        .collect();
    // The balancer carries only the accounts' opening and the read-back: no faults there.
    let balancer = BalancerConfig {
        rates: FaultRates::default(),
        ..plan.balancer(args)
    };
    let mut nodes = start_payment_nodes(args, db, plan, per_node, balancer).await?;
    let relays = Arc::new(relays);
    let cut_every = args
        .cut_broker_every
        .or(args.all_faults.then_some(ALL_CUT_BROKER_EVERY));
    if let Some(every) = cut_every {
        let relays = relays.clone();
        let cutter: Cutter = Arc::new(move || {
            let relays = relays.clone();
            Box::pin(async move { relays.iter().map(Relay::cut).sum() })
        });
        nodes
            .cluster
            .every(Ticker::new(plan.seed, "cut-broker", every), cutter, |s| {
                &s.cut_broker
            });
    }

    let log = Arc::new(ReplyLog::default());
    let shared = Shared {
        config: nodes.retrier.config().clone(),
        stats: nodes.client_stats.clone(),
        faults: nodes.cluster.stats.clone(),
        duplicates: FaultRates {
            duplicate: plan.rates.duplicate,
            ..FaultRates::default()
        },
        seed: plan.seed,
        log: log.clone(),
    };
    let mut publishers = Vec::with_capacity(args.clients);
    let mut readers = Vec::with_capacity(args.clients);
    for i in 0..args.clients {
        let (publisher, reader) = Publisher::start(broker, i, shared.clone()).await?;
        publishers.push(publisher);
        readers.push(reader);
    }
    let loaded = nodes
        .cluster
        .load(
            args,
            publishers,
            (&shared.config, &nodes.client_stats),
            nodes.deadlines,
        )
        .await;
    // Deliveries of a killed node, or whose ack a cut lost, come again and are answered.
    tokio::time::sleep(match kind {
        BrokerKind::Nats => NATS_ACK_WAIT + Duration::from_secs(1),
        BrokerKind::Amqp => LATE_REPLIES_AMQP,
    })
    .await;
    for reader in readers {
        reader.abort();
    }
    let (orders, latency, elapsed) = loaded?;
    let history = History {
        accounts: std::mem::take(&mut nodes.accounts),
        orders,
    };
    let (observed, mut violations) = nodes.check(db, &history).await?;
    let mut summary = BrokerSummary {
        broker: Some(kind),
        stream: broker.names().stream.clone(),
        settle_delay_ms: settle.as_millis() as u64,
        ..BrokerSummary::default()
    };
    violations.extend(check_replies(&history, &log.snapshot(), &mut summary));
    nodes.cluster.shutdown().await;

    let mut report = base_report(
        args,
        db,
        plan,
        &nodes.cluster,
        &history.orders,
        &nodes.client_stats,
    );
    report.record_run(elapsed, &latency, observed.payments.len(), &violations);
    report.broker = Some(summary);
    Ok(report)
}
