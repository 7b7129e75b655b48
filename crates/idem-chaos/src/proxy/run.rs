//! One run of the proxy target: the upstream, the relay to Redis when the proxies use it,
//! the proxies behind the faulty balancer, the load, the check.

use std::sync::Arc;

use tokio::time::Instant;

use crate::checker::History;
use crate::client::{ClientStats, Retrier};
use crate::cluster::NodeSpec;
use crate::db::RunDatabase;
use crate::harness::{self, Cluster, Cutter};
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
    let start = Instant::now();
    let upstream = Upstream::start(
        db.url(),
        db.backend(),
        (args.accounts, args.balance),
        args.upstream_fencing,
        start,
    )
    .await?;
    let relay = match (args.proxy_store, args.redis.as_deref()) {
        (ProxyStore::Sql, _) => None,
        // The cluster client learns the nodes' own addresses from the cluster: no relay.
        (_, Some(url)) if url.starts_with("redis+cluster://") => None,
        (_, Some(url)) => Some(Arc::new(Relay::start(url).await?)),
        (_, None) => {
            return Err(Error::Config(
                "--proxy-store redis|tiered needs --redis".into(),
            ))
        }
    };
    let mut node_args: Vec<String> = vec!["proxy".into(), "--upstream".into()];
    node_args.push(format!("http://{}", upstream.addr()));
    if args.proxy_store != ProxyStore::Redis {
        node_args.extend(["--database".into(), db.url().to_owned()]);
    }
    if let Some(url) = relay.as_ref().map(|r| r.url()).or(args.redis.as_deref()) {
        node_args.extend(["--redis".into(), url.to_owned()]);
    }
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
        per_node: Vec::new(),
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
            .map(|every| (every, cutter(args.proxy_store, db, relay.clone()))),
        None,
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

/// What a store cut cuts: the run's database (the SQL store's and the upstream's
/// connections), the relay to Redis, or both for the tiered store.
fn cutter(store: ProxyStore, db: &Arc<RunDatabase>, relay: Option<Arc<Relay>>) -> Cutter {
    let sql = (store != ProxyStore::Redis).then(|| db_cutter(db));
    Arc::new(move || {
        let (sql, relay) = (sql.clone(), relay.clone());
        Box::pin(async move {
            let mut n = relay.map_or(0, |r| r.cut());
            if let Some(sql) = sql {
                n += sql().await;
            }
            n
        })
    })
}
