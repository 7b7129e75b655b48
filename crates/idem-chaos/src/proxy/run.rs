//! One run of the proxy target: the upstream, the relay to Redis when the proxies use it,
//! the proxies behind the faulty balancer, the load, the check.

use std::sync::Arc;

use tokio::time::Instant;

use crate::checker::History;
use crate::client::{ClientStats, Retrier};
use crate::cluster::NodeSpec;
use crate::db::RunDatabase;
use crate::harness::{self, Cluster, Cutter, NetFaults, NodeRelays};
use crate::proxy::redis_master::{ClusterNodes, MasterKiller};
use crate::proxy::{check, Rules, Upstream};
use crate::relay::Relay;
use crate::report::Report;
use crate::runner::{base_report, client_config, db_cutter, http_client, restarter, Plan};
use crate::{ChaosArgs, Error, ProxyStore};

/// How long the proxies keep answers for replay: a key's retries and re-sends all come
/// within the drain (60 s by default), and a shared Redis is not left holding a run's keys
/// for long.
const TTL_SECS: &str = "900";

/// Runs the proxy target on the run's database `db` and returns its report.
pub(crate) async fn run(
    args: &ChaosArgs,
    db: &Arc<RunDatabase>,
    plan: &Plan,
) -> Result<Report, Error> {
    if args.proxy_store != ProxyStore::Sql && args.redis.is_none() {
        return Err(Error::Config(
            "--proxy-store redis|tiered needs --redis".into(),
        ));
    }
    let start = Instant::now();
    let upstream = Upstream::start(
        db.url(),
        db.backend(),
        (args.accounts, args.balance),
        args.upstream_fencing,
        start,
    )
    .await?;
    let relays = Arc::new(node_relays(args, db, plan).await?);
    let mut node_args: Vec<String> = vec!["proxy".into(), "--upstream".into()];
    node_args.push(format!("http://{}", upstream.addr()));
    // A server no relay stands in front of is reached directly by every node.
    if args.proxy_store != ProxyStore::Redis && plan.net.is_none() {
        node_args.extend(["--database".into(), db.url().to_owned()]);
    }
    if args.proxy_store != ProxyStore::Sql && args.relayable_redis().is_none() {
        node_args.extend(["--redis".into(), args.redis.clone().unwrap_or_default()]);
    }
    let per_node = relays
        .iter()
        .map(|node| {
            node.iter()
                .flat_map(|r| [flag_of(r).to_owned(), r.url().to_owned()])
                .collect()
        })
        .collect();
    let masters =
        match (args.kill_redis_master_every, args.redis.as_deref()) {
            (Some(every), Some(url)) if args.proxy_store != ProxyStore::Sql => {
                Some((ClusterNodes::new(url, &args.redis_cluster_dir)?, every))
            }
            (Some(_), _) => return Err(Error::Config(
                "--kill-redis-master-every needs --proxy-store redis|tiered and a cluster --redis"
                    .into(),
            )),
            (None, _) => None,
        };
    node_args.extend([
        "--lease-ms".into(),
        args.lease_ms.to_string(),
        "--ttl-secs".into(),
        TTL_SECS.into(),
        "--purge-every-secs".into(),
        "0".into(),
    ]);
    node_args.extend(args.guard.proxy_args());
    let spec = NodeSpec {
        bin: plan.bin.clone(),
        args: node_args,
        skew: plan.skew.clone(),
        per_node,
    };
    let mut cluster = Cluster::start(spec, plan.nodes, plan.balancer(args), start).await?;

    let client_stats = Arc::new(ClientStats::default());
    let mut config = client_config(
        args,
        plan.seed,
        format!("http://{}", cluster.balancer.addr()),
        "/v1/transfers",
    );
    config.idempotency_keys = true;
    // Keys are scoped by this: a run's keys never meet another's on a shared Redis.
    config.authorization = Some(format!("Bearer {}", db.name()));
    let retrier = Retrier::new(http_client(args)?, Arc::new(config), client_stats.clone());
    cluster.start_faults(
        plan.seed,
        plan.kill_every,
        plan.cut_every
            .map(|every| (every, cutter(args.proxy_store, db, relays.clone()))),
        plan.net.map(|net| NetFaults {
            relays: relays.clone(),
            shape: net.shape,
            partition: net.partition,
        }),
        plan.restart
            .as_ref()
            .map(|(every, own)| (*every, restarter(own))),
    );
    let killer = masters.map(|(nodes, every)| MasterKiller::start(nodes, plan.seed, every, start));
    let deadlines = harness::deadlines(args);
    let loaded = cluster
        .load(
            args,
            vec![retrier.clone(); args.clients],
            (retrier.config(), &client_stats),
            deadlines,
        )
        .await;
    // The masters are all up again before the run reports, or fails.
    let master_kills = match killer {
        Some(killer) => killer.stop().await?,
        None => Vec::new(),
    };
    let (orders, latency, elapsed) = loaded?;
    let kills = cluster.kills();
    cluster.shutdown().await;
    let state = upstream.read().await?;
    let accounts = state
        .accounts
        .iter()
        .map(|a| (a.account_id.clone(), a.opening_balance))
        .collect();
    let history = History { accounts, orders };
    let rules = Rules {
        store: args.proxy_store,
        lease_ms: args.lease_ms,
        upstream_fencing: args.upstream_fencing,
    };
    let (violations, summary) = check(&history, &state, &kills, &master_kills, rules);

    let mut report = base_report(args, db, plan, &cluster, &history.orders, &client_stats);
    report.record_run(elapsed, &latency, state.executions.len(), &violations);
    report.proxy = Some(summary);
    Ok(report)
}

/// The relays of each proxy: to the run's database when the network is faulted (else the
/// proxies reach it directly, and a cut ends its connections from the server's side), and
/// to a single Redis server always (a cut closes the proxies' connections there).
async fn node_relays(
    args: &ChaosArgs,
    db: &RunDatabase,
    plan: &Plan,
) -> Result<Vec<Vec<Relay>>, Error> {
    let sql = (args.proxy_store != ProxyStore::Redis && plan.net.is_some()).then(|| db.url());
    let redis = args
        .relayable_redis()
        .filter(|_| args.proxy_store != ProxyStore::Sql);
    let mut relays = Vec::with_capacity(plan.nodes);
    for _ in 0..plan.nodes {
        let mut node = Vec::new();
        for url in sql.into_iter().chain(redis) {
            node.push(Relay::start(url).await?);
        }
        relays.push(node);
    }
    Ok(relays)
}

/// The `idem proxy` option that names the server a relay reaches.
fn flag_of(relay: &Relay) -> &'static str {
    if is_redis(relay) {
        "--redis"
    } else {
        "--database"
    }
}

fn is_redis(relay: &Relay) -> bool {
    relay.url().starts_with("redis://")
}

/// What a store cut cuts: the run's database (the SQL store's and the upstream's
/// connections), the proxies' connections to Redis through their relays, or both for the
/// tiered store.
fn cutter(store: ProxyStore, db: &Arc<RunDatabase>, relays: NodeRelays) -> Cutter {
    let sql = (store != ProxyStore::Redis).then(|| db_cutter(db));
    Arc::new(move || {
        let (sql, relays) = (sql.clone(), relays.clone());
        Box::pin(async move {
            let mut n: u64 = relays
                .iter()
                .flatten()
                .filter(|r| is_redis(r))
                .map(Relay::cut)
                .sum();
            if let Some(sql) = sql {
                n += sql().await;
            }
            n
        })
    })
}
