//! One chaos run from start to verdict: the plan from the options, then the target's run —
//! the payment service here, the proxy in [`crate::proxy`] — on a fresh database, dropped at
//! the end unless `--keep`.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rand::rngs::StdRng;
use rand::SeedableRng;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::balancer::BalancerConfig;
use crate::checker::{self, History, Observed, Violation};
use crate::client::{ClientConfig, ClientStats, Deadlines, OrderHistory, Resend, Retrier};
use crate::cluster::NodeSpec;
use crate::db::{Backend, RunDatabase};
use crate::faults::FaultRates;
use crate::harness::{self, Cluster, Cutter, NetFaults};
use crate::relay::{NetShape, Relay};
use crate::report::{Latency, NetworkReport, Report};
use crate::server::PrivateServer;
use crate::skew::{self, SkewPlan};
use crate::{ChaosArgs, Error, ProxyStore, Target};

/// Rates and periods `--all-faults` uses for kinds not set explicitly.
const ALL_DROP_RATE: f64 = 0.05;
const ALL_DUPLICATE_RATE: f64 = 0.05;
const ALL_DELAY_RATE: f64 = 0.02;
const ALL_KILL_EVERY: Duration = Duration::from_secs(8);
const ALL_CUT_EVERY: Duration = Duration::from_secs(5);
/// The network `--all-faults` shapes between nodes and database: a partition about every
/// 10 s, 1 ms of delay, up to 2 ms of jitter, one chunk in a thousand stalled as if lost.
const ALL_PARTITION_EVERY: Duration = Duration::from_secs(10);
const ALL_NET_DELAY: Duration = Duration::from_millis(1);
const ALL_NET_JITTER: Duration = Duration::from_millis(2);
const ALL_NET_LOSS: f64 = 0.001;
/// How often `--all-faults` restarts the run's own database server.
const ALL_RESTART_EVERY: Duration = Duration::from_secs(15);
/// Nodes `--all-faults` runs with their clock skewed, when there are two or more.
const ALL_SKEW_NODES: usize = 1;
/// Concurrent reads when the checker fetches stored payments through the API.
const READ_BACK_CONCURRENCY: usize = 16;

/// What the options ask for, checked: the same for every target.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    /// The `idem` binary nodes start from.
    pub(crate) bin: PathBuf,
    /// The seed of every schedule.
    pub(crate) seed: u64,
    /// Node count.
    pub(crate) nodes: usize,
    /// Per-request fault rates.
    pub(crate) rates: FaultRates,
    /// How often a node is killed, if ever.
    pub(crate) kill_every: Option<Duration>,
    /// How often the store's connections are cut, if ever.
    pub(crate) cut_every: Option<Duration>,
    /// Which nodes run with their clock skewed.
    pub(crate) skew: SkewPlan,
    /// Why skew asked for by `--all-faults` was left off, if it was.
    pub(crate) skew_skipped: Option<String>,
    /// The network between nodes and database, when any of it is asked for and possible.
    pub(crate) net: Option<NetPlan>,
    /// Why network faults asked for were left off, in whole or (beside `net`) in part.
    pub(crate) net_skipped: Option<String>,
    /// The run's own database server, and how often it is restarted, if ever.
    pub(crate) restart: Option<(Duration, Arc<tokio::sync::Mutex<PrivateServer>>)>,
}

/// The network faults asked for: latency on every chunk, partitions.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct NetPlan {
    pub(crate) shape: NetShape,
    /// How often one node is partitioned, and for how long.
    pub(crate) partition: Option<(Duration, Duration)>,
}

impl NetPlan {
    /// What `args` ask for (under `--all-faults`, every kind not set explicitly), if anything.
    fn of(args: &ChaosArgs) -> Result<Option<Self>, Error> {
        let all = args.all_faults;
        let shape = NetShape {
            delay: args
                .net_delay
                .or(all.then_some(ALL_NET_DELAY))
                .unwrap_or_default(),
            jitter: args
                .net_jitter
                .or(all.then_some(ALL_NET_JITTER))
                .unwrap_or_default(),
            loss: args.net_loss.or(all.then_some(ALL_NET_LOSS)).unwrap_or(0.0),
        };
        if !(0.0..=1.0).contains(&shape.loss) {
            return Err(Error::Config("--net-loss must be in [0, 1]".into()));
        }
        let partition = args
            .partition_every
            .or(all.then_some(ALL_PARTITION_EVERY))
            .map(|every| (every, args.partition_for));
        Ok((shape.is_on() || partition.is_some()).then_some(Self { shape, partition }))
    }

    /// The report's view of it.
    pub(crate) fn report(&self) -> NetworkReport {
        NetworkReport {
            delay_ms: self.shape.delay.as_secs_f64() * 1000.0,
            jitter_ms: self.shape.jitter.as_secs_f64() * 1000.0,
            loss: self.shape.loss,
            partition_every_s: self.partition.map(|(every, _)| every.as_secs_f64()),
            partition_for_s: self.partition.map(|(_, lasting)| lasting.as_secs_f64()),
        }
    }
}

impl Plan {
    /// The balancer's configuration: the plan's rates, requests held past the client's
    /// timeout.
    pub(crate) fn balancer(&self, args: &ChaosArgs) -> BalancerConfig {
        BalancerConfig {
            seed: self.seed,
            rates: self.rates,
            delay: args
                .delay
                .unwrap_or(args.client_timeout + Duration::from_millis(500)),
        }
    }
}

/// Runs `idem chaos` and returns its report (the caller prints it and picks the exit code).
/// Nodes start from `--idem-bin`, or else from `default_bin`: the `idem` binary passes its
/// own path.
///
/// # Errors
/// Any [`Error`] that kept the run from reaching a verdict.
pub async fn chaos(args: ChaosArgs, default_bin: &Path) -> Result<Report, Error> {
    if args.restart_db_every.is_some() && args.own_database_server.is_none() {
        return Err(Error::Config(
            "--restart-db-every restarts only the run's own server: add --own-database-server postgres|mysql".into(),
        ));
    }
    let own = match args.own_database_server {
        Some(kind) => Some(Arc::new(tokio::sync::Mutex::new(
            PrivateServer::start(kind).await?,
        ))),
        None => None,
    };
    let server = match &own {
        Some(own) => own.lock().await.admin_url().to_owned(),
        None => args.database.clone().unwrap_or_else(|| "sqlite".into()),
    };
    let backend = Backend::of(&server)?;
    let nodes_n = args
        .nodes
        .unwrap_or(if backend == Backend::Sqlite { 1 } else { 3 });
    if nodes_n == 0 || args.clients == 0 || args.accounts < 2 {
        return Err(Error::Config(
            "need at least 1 node, 1 client and 2 accounts".into(),
        ));
    }
    if args.target.broker().is_some() && args.broker.is_none() {
        return Err(Error::Config(
            "--target nats|amqp needs --broker URL (nats://… or amqp://…)".into(),
        ));
    }
    if backend == Backend::Sqlite && (nodes_n > 1 || args.target == Target::Proxy) {
        return Err(Error::Config(
            "SQLite runs one payment node; use postgres:// or mysql:// for more, or for --target proxy".into(),
        ));
    }
    let seed = args.seed.unwrap_or_else(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
    });
    let pick = |explicit: Option<f64>, all: f64| {
        explicit.unwrap_or(if args.all_faults { all } else { 0.0 })
    };
    let rates = FaultRates {
        drop_response: pick(args.drop_response_rate, ALL_DROP_RATE),
        duplicate: pick(args.duplicate_rate, ALL_DUPLICATE_RATE),
        delay: pick(args.delay_rate, ALL_DELAY_RATE),
    };
    let total = rates.drop_response + rates.duplicate + rates.delay;
    if !(0.0..=1.0).contains(&total)
        || [rates.drop_response, rates.duplicate, rates.delay]
            .iter()
            .any(|r| *r < 0.0)
    {
        return Err(Error::Config(
            "fault rates must be ≥ 0 and add up to at most 1".into(),
        ));
    }
    let every = |explicit: Option<Duration>, all| explicit.or(args.all_faults.then_some(all));
    let (skew, skew_skipped) = skew_plan(&args, nodes_n)?;
    if let Some(why) = &skew_skipped {
        eprintln!("idem chaos: {why}");
    }
    let (net, net_skipped) = net_plan(&args, backend)?;
    if let Some(why) = &net_skipped {
        eprintln!("idem chaos: {why}");
    }
    let plan = Plan {
        bin: args
            .idem_bin
            .clone()
            .unwrap_or_else(|| default_bin.to_path_buf()),
        seed,
        nodes: nodes_n,
        rates,
        kill_every: every(args.kill_every, ALL_KILL_EVERY),
        cut_every: every(args.cut_db_every, ALL_CUT_EVERY).filter(|_| backend != Backend::Sqlite),
        skew,
        skew_skipped,
        net,
        net_skipped,
        restart: own.clone().and_then(|own| {
            args.restart_db_every
                .or(args.all_faults.then_some(ALL_RESTART_EVERY))
                .map(|every| (every, own))
        }),
    };

    let db = Arc::new(RunDatabase::create(&server).await?);
    let result = match args.target {
        Target::Payments => run_payments(&args, &db, &plan).await,
        Target::Proxy => crate::proxy::run(&args, &db, &plan).await,
        Target::Nats | Target::Amqp => crate::broker::run(&args, &db, &plan).await,
    };
    if !args.keep && own.is_none() {
        // A failed clean-up must not hide the verdict; say it and go on.
        if let Err(e) = db.drop_database().await {
            eprintln!("idem chaos: could not drop {}: {e}", db.name());
        }
    }
    // The run's own server (its last holders are these) goes now with its data dir,
    // `--keep` or not.
    drop((db, plan, own));
    result
}

/// Why SQLite runs see no network faults.
const NO_NETWORK: &str = "SQLite is a file, with no network to the database";
/// Why a Redis Cluster's connections see no network faults.
const CLUSTER_UNRELAYED: &str =
    "the proxies reach a Redis Cluster's nodes at the addresses the cluster gives, past any relay";

/// The network faults of the run, and why those asked for were left off, in whole or (the
/// second value beside a plan) in part: SQLite has no network to fault, and a Redis
/// Cluster's connections pass no relay.
fn net_plan(
    args: &ChaosArgs,
    backend: Backend,
) -> Result<(Option<NetPlan>, Option<String>), Error> {
    let Some(net) = NetPlan::of(args)? else {
        return Ok((None, None));
    };
    let cluster = args.redis.is_some() && args.relayable_redis().is_none();
    let redis_store = args.target == Target::Proxy && args.proxy_store != ProxyStore::Sql;
    Ok(match backend {
        Backend::Sqlite => (
            None,
            Some(format!("could not inject network faults: {NO_NETWORK}")),
        ),
        _ if redis_store && cluster && args.proxy_store == ProxyStore::Redis => (
            None,
            Some(format!(
                "could not inject network faults: {CLUSTER_UNRELAYED}"
            )),
        ),
        _ if redis_store && cluster => (
            Some(net),
            Some(format!(
                "the database's connections only: {CLUSTER_UNRELAYED}"
            )),
        ),
        _ => (Some(net), None),
    })
}

/// Which nodes run skewed: `--skew-nodes`, or under `--all-faults` one node when there are
/// two or more. Asked for explicitly, a missing libfaketime refuses the run; asked for by
/// `--all-faults`, it leaves skew off and says why (the second value).
fn skew_plan(args: &ChaosArgs, nodes: usize) -> Result<(SkewPlan, Option<String>), Error> {
    let wanted = args.skew_nodes.unwrap_or(if args.all_faults && nodes >= 2 {
        ALL_SKEW_NODES
    } else {
        0
    });
    if wanted == 0 {
        return Ok((SkewPlan::default(), None));
    }
    if wanted > nodes {
        return Err(Error::Config(format!(
            "--skew-nodes {wanted} is more than the {nodes} node(s) of the run"
        )));
    }
    match skew::find_libfaketime(args.libfaketime.as_deref()) {
        Some(library) => Ok((SkewPlan::first(wanted, library), None)),
        None if args.skew_nodes.is_some() => Err(Error::Config(format!(
            "--skew-nodes {wanted}: {}{}",
            skew::PACKAGE_HINT,
            missing_path(args)
        ))),
        None => Ok((
            SkewPlan::default(),
            Some(format!(
                "could not inject clock skew: {}{}; going on without it",
                skew::PACKAGE_HINT,
                missing_path(args)
            )),
        )),
    }
}

/// ` (no file at PATH)` when `--libfaketime` names a file that is not there.
fn missing_path(args: &ChaosArgs) -> String {
    args.libfaketime
        .as_ref()
        .map(|p| format!(" (no file at {})", p.display()))
        .unwrap_or_default()
}

/// The HTTP client every run's clients share.
pub(crate) fn http_client(args: &ChaosArgs) -> Result<reqwest::Client, Error> {
    reqwest::Client::builder()
        .pool_max_idle_per_host(args.clients * 2)
        .build()
        .map_err(|e| Error::Setup(format!("building the HTTP client: {e}")))
}

/// The client behaviour of `args` against the balancer at `base_url`, posting to `path`.
pub(crate) fn client_config(
    args: &ChaosArgs,
    seed: u64,
    base_url: String,
    path: &str,
) -> ClientConfig {
    ClientConfig {
        base_url,
        path: path.to_owned(),
        idempotency_keys: false,
        authorization: None,
        timeout: args.client_timeout,
        backoff_base: Duration::from_millis(10),
        backoff_max: Duration::from_secs(1),
        accounts: args.accounts,
        amount_max: args.amount_max.max(1),
        replay_rate: args.replay_rate,
        conflict_rate: args.conflict_rate,
        seed,
    }
}

/// The store cutter of a run on `db`: every connection to the run's database killed.
pub(crate) fn db_cutter(db: &Arc<RunDatabase>) -> Cutter {
    let db = db.clone();
    Arc::new(move || {
        let db = db.clone();
        Box::pin(async move { db.cut_connections().await.unwrap_or(0) })
    })
}

/// Restarts the run's own database server; says 1 when it came back, 0 (and why, on stderr)
/// when it did not.
pub(crate) fn restarter(own: &Arc<tokio::sync::Mutex<PrivateServer>>) -> Cutter {
    let own = own.clone();
    Arc::new(move || {
        let own = own.clone();
        Box::pin(async move {
            match own.lock().await.restart().await {
                Ok(()) => 1,
                Err(e) => {
                    eprintln!("idem chaos: restarting the database server: {e}");
                    0
                }
            }
        })
    })
}

/// The payment nodes of a run, up with their accounts opened and their faults on.
pub(crate) struct PaymentNodes {
    /// The nodes behind the balancer, and the fault injectors.
    pub(crate) cluster: Cluster,
    /// The HTTP client of the clients, the read-back and the account opening.
    pub(crate) http: reqwest::Client,
    /// A retrier through the balancer, configured for `POST /v1/payments`.
    pub(crate) retrier: Retrier,
    /// The clients' counters.
    pub(crate) client_stats: Arc<ClientStats>,
    /// The accounts opened, with their opening balances.
    pub(crate) accounts: Vec<(String, i64)>,
    /// The run's deadlines, from the start of its load.
    pub(crate) deadlines: Deadlines,
}

/// Starts `idem serve` nodes on `db` behind a balancer of `balancer`, each with its
/// `per_node` arguments (a broker's address through its own relay), opens the accounts,
/// and starts the plan's faults: the payment target's, and the broker targets' nodes.
pub(crate) async fn start_payment_nodes(
    args: &ChaosArgs,
    db: &Arc<RunDatabase>,
    plan: &Plan,
    per_node: Vec<Vec<String>>,
    balancer: BalancerConfig,
) -> Result<PaymentNodes, Error> {
    // With network faults, each node reaches the database through a relay of its own.
    let mut relays = Vec::new();
    if plan.net.is_some() {
        for _ in 0..plan.nodes {
            relays.push(Relay::start(db.url()).await?);
        }
    }
    let urls: Vec<String> = if relays.is_empty() {
        vec![db.url().to_owned()]
    } else {
        relays.iter().map(|r| r.url().to_owned()).collect()
    };
    let mut spec = NodeSpec::serve(plan.bin.clone(), &urls, args.guard.node_args());
    spec.skew = plan.skew.clone();
    if !per_node.is_empty() {
        spec.per_node.resize(plan.nodes, Vec::new());
        for (mine, extra) in spec.per_node.iter_mut().zip(per_node) {
            mine.extend(extra);
        }
    }
    let mut cluster = Cluster::start(spec, plan.nodes, balancer, Instant::now()).await?;
    let client_stats = Arc::new(ClientStats::default());
    let config = Arc::new(client_config(
        args,
        plan.seed,
        format!("http://{}", cluster.balancer.addr()),
        "/v1/payments",
    ));
    let http = http_client(args)?;
    let retrier = Retrier::new(http.clone(), config, client_stats.clone());
    let deadlines = harness::deadlines(args);
    let accounts = open_accounts(&retrier, args, plan.seed, deadlines.hard).await?;
    let net = plan.net.map(|net| NetFaults {
        relays: Arc::new(relays.into_iter().map(|r| vec![r]).collect()),
        shape: net.shape,
        partition: net.partition,
    });
    cluster.start_faults(
        plan.seed,
        plan.kill_every,
        plan.cut_every.map(|every| (every, db_cutter(db))),
        net,
        plan.restart
            .as_ref()
            .map(|(every, own)| (*every, restarter(own))),
    );
    Ok(PaymentNodes {
        cluster,
        http,
        retrier,
        client_stats,
        accounts,
        deadlines,
    })
}

impl PaymentNodes {
    /// Reads the run's database and every paid order back through the API, faults off,
    /// and runs the payment checker over `history`.
    pub(crate) async fn check(
        &self,
        db: &RunDatabase,
        history: &History,
    ) -> Result<(Observed, Vec<Violation>), Error> {
        let mut observed = db.read().await?;
        let base = &self.retrier.config().base_url;
        observed.served = read_back(&self.http, base, history).await;
        let violations = checker::check(history, &observed);
        Ok((observed, violations))
    }
}

/// The payment target: `idem serve` nodes, the payment checker.
async fn run_payments(
    args: &ChaosArgs,
    db: &Arc<RunDatabase>,
    plan: &Plan,
) -> Result<Report, Error> {
    let mut nodes = start_payment_nodes(args, db, plan, Vec::new(), plan.balancer(args)).await?;
    let retrier = nodes.retrier.clone();
    let (orders, latency, elapsed) = nodes
        .cluster
        .load(
            args,
            vec![retrier.clone(); args.clients],
            (retrier.config(), &nodes.client_stats),
            nodes.deadlines,
        )
        .await?;
    let history = History {
        accounts: std::mem::take(&mut nodes.accounts),
        orders,
    };
    let (observed, violations) = nodes.check(db, &history).await?;
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
    Ok(report)
}

/// The report's parts every target fills alike: the run's shape, the clients' answers and
/// re-sends, the faults; the rest (timings, stored rows, violations) left for the target.
pub(crate) fn base_report(
    args: &ChaosArgs,
    db: &RunDatabase,
    plan: &Plan,
    cluster: &Cluster,
    orders: &[OrderHistory],
    client_stats: &ClientStats,
) -> Report {
    let mut final_answers = BTreeMap::new();
    let (mut same, mut other) = (0, 0);
    for h in orders {
        let key = h
            .first
            .answer
            .as_ref()
            .map_or("none".to_string(), |a| a.status.to_string());
        *final_answers.entry(key).or_insert(0u64) += 1;
        for r in &h.resends {
            match r {
                Resend::Same(_) => same += 1,
                Resend::OtherAmount(..) => other += 1,
            }
        }
    }
    Report {
        target: args.target,
        backend: db.backend(),
        database: db.name().to_string(),
        nodes: cluster.len(),
        clients: args.clients,
        accounts: args.accounts,
        seed: plan.seed,
        idempotency_disabled: args.guard.idempotency_disabled(),
        elapsed_s: 0.0,
        orders: orders.len() as u64,
        resends_same: same,
        resends_other_amount: other,
        retries: client_stats.retries.load(Ordering::Relaxed),
        orders_per_s: 0.0,
        final_answers,
        attempts_by_outcome: client_stats
            .answers
            .lock()
            .map(|a| a.clone())
            .unwrap_or_default(),
        faults: cluster.stats.snapshot(),
        latency: Latency::default(),
        payments_stored: 0,
        violations_total: 0,
        violations: Vec::new(),
        skew: plan.skew.report(),
        skew_skipped: plan.skew_skipped.clone(),
        network: plan.net.map(|n| n.report()),
        network_skipped: plan.net_skipped.clone(),
        proxy: None,
        broker: None,
    }
}

/// Opens `acct-0` … through the balancer, faults and all, retrying like any order.
async fn open_accounts(
    retrier: &Retrier,
    args: &ChaosArgs,
    seed: u64,
    hard: Instant,
) -> Result<Vec<(String, i64)>, Error> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut accounts = Vec::with_capacity(args.accounts);
    for i in 0..args.accounts {
        let id = format!("acct-{i}");
        let body = serde_json::json!({ "account_id": id, "balance": args.balance }).to_string();
        let sent = retrier
            .send("/v1/accounts", &body.into(), (&id, None), &mut rng, hard)
            .await;
        match sent.answer {
            Some(a) if a.status == 201 => accounts.push((id, args.balance)),
            other => {
                return Err(Error::Setup(format!(
                    "opening {id}: expected 201, got {other:?}"
                )))
            }
        }
    }
    Ok(accounts)
}

/// `GET /v1/payments/{order_id}` for every order a client saw paid, faults off.
async fn read_back(
    http: &reqwest::Client,
    base_url: &str,
    history: &History,
) -> HashMap<String, (u16, String)> {
    let ids: Vec<String> = history
        .orders
        .iter()
        .filter(|h| {
            std::iter::once(&h.first)
                .chain(h.resends.iter().map(|r| match r {
                    Resend::Same(s) | Resend::OtherAmount(_, s) => s,
                }))
                .any(|s| s.answer.as_ref().is_some_and(|a| a.status == 201))
        })
        .map(|h| h.order.order_id.clone())
        .collect();
    let ids = Arc::new(ids);
    let next = Arc::new(AtomicU64::new(0));
    let mut workers = JoinSet::new();
    for _ in 0..READ_BACK_CONCURRENCY {
        let (ids, next, http) = (ids.clone(), next.clone(), http.clone());
        let base = base_url.to_string();
        workers.spawn(async move {
            let mut out = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                let Some(id) = ids.get(i) else { break };
                // A read may meet a node still restarting: a few tries, then report what came.
                for _ in 0..20 {
                    let r = http
                        .get(format!("{base}/v1/payments/{id}"))
                        .timeout(Duration::from_secs(10))
                        .send()
                        .await;
                    if let Ok(r) = r {
                        let status = r.status().as_u16();
                        if status < 500 {
                            if let Ok(body) = r.text().await {
                                out.push((id.clone(), (status, body)));
                                break;
                            }
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
            out
        });
    }
    let mut served = HashMap::new();
    while let Some(Ok(part)) = workers.join_next().await {
        served.extend(part);
    }
    served
}
