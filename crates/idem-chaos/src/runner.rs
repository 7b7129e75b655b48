//! One chaos run from start to verdict: database, nodes, balancer, accounts, load and
//! faults, drain, check, report, clean-up.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use indicatif::{ProgressBar, ProgressStyle};
use rand::rngs::StdRng;
use rand::SeedableRng;
use tokio::sync::Mutex;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::balancer::{Balancer, BalancerConfig};
use crate::checker::{self, History};
use crate::client::{self, ClientConfig, ClientStats, Deadlines, Resend, Retrier};
use crate::cluster::{self, Node, NodeSpec};
use crate::db::{Backend, RunDatabase};
use crate::faults::{FaultRates, FaultStats, Ticker};
use crate::report::{self, Latency, Report};
use crate::{ChaosArgs, Error};

/// Rates and periods `--all-faults` uses for kinds not set explicitly.
const ALL_DROP_RATE: f64 = 0.05;
const ALL_DUPLICATE_RATE: f64 = 0.05;
const ALL_DELAY_RATE: f64 = 0.02;
const ALL_KILL_EVERY: Duration = Duration::from_secs(8);
const ALL_CUT_EVERY: Duration = Duration::from_secs(5);
/// How long a killed node stays dead before it is restarted.
const RESTART_AFTER: Duration = Duration::from_millis(300);
/// Tries to restart a killed node before the run gives up on it.
const RESTART_TRIES: u32 = 10;
/// Concurrent reads when the checker fetches stored payments through the API.
const READ_BACK_CONCURRENCY: usize = 16;

/// The nodes, each slot empty while its node is dead.
type Nodes = Arc<Vec<Mutex<Option<Node>>>>;

/// Runs `idem chaos` and returns its report (the caller prints it and picks the exit code).
/// Nodes start from `--idem-bin`, or else from `default_bin`: the `idem` binary passes its
/// own path.
///
/// # Errors
/// Any [`Error`] that kept the run from reaching a verdict.
pub async fn chaos(args: ChaosArgs, default_bin: &Path) -> Result<Report, Error> {
    let server = args.database.clone().unwrap_or_else(|| "sqlite".into());
    let backend = Backend::of(&server)?;
    let nodes_n = args
        .nodes
        .unwrap_or(if backend == Backend::Sqlite { 1 } else { 3 });
    if nodes_n == 0 || args.clients == 0 || args.accounts < 2 {
        return Err(Error::Config(
            "need at least 1 node, 1 client and 2 accounts".into(),
        ));
    }
    if backend == Backend::Sqlite && nodes_n > 1 {
        return Err(Error::Config(
            "SQLite runs one node; use postgres:// or mysql:// for more".into(),
        ));
    }
    let bin = args
        .idem_bin
        .clone()
        .unwrap_or_else(|| default_bin.to_path_buf());
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
    let kill_every = every(args.kill_every, ALL_KILL_EVERY);
    let cut_every = every(args.cut_db_every, ALL_CUT_EVERY).filter(|_| backend != Backend::Sqlite);

    let db = Arc::new(RunDatabase::create(&server).await?);
    let result = run_on(&args, &db, bin, seed, nodes_n, rates, kill_every, cut_every).await;
    if !args.keep {
        // A failed clean-up must not hide the verdict; say it and go on.
        if let Err(e) = db.drop_database().await {
            eprintln!("idem chaos: could not drop {}: {e}", db.name());
        }
    }
    result
}

#[allow(clippy::too_many_arguments)]
async fn run_on(
    args: &ChaosArgs,
    db: &Arc<RunDatabase>,
    bin: std::path::PathBuf,
    seed: u64,
    nodes_n: usize,
    rates: FaultRates,
    kill_every: Option<Duration>,
    cut_every: Option<Duration>,
) -> Result<Report, Error> {
    let extra_args = args.guard.node_args();
    let spec = Arc::new(NodeSpec {
        bin,
        database_url: db.url().to_string(),
        extra_args,
    });
    let stats = Arc::new(FaultStats::default());
    let balancer = Arc::new(
        Balancer::start(
            nodes_n,
            BalancerConfig {
                seed,
                rates,
                delay: args
                    .delay
                    .unwrap_or(args.client_timeout + Duration::from_millis(500)),
            },
            stats.clone(),
        )
        .await?,
    );
    // The first node migrates the fresh database alone; the rest start together after it.
    let first = cluster::start_node(&spec, 0).await?;
    let mut started = vec![first];
    let mut rest = JoinSet::new();
    for i in 1..nodes_n {
        let spec = spec.clone();
        rest.spawn(async move { (i, cluster::start_node(&spec, i).await) });
    }
    let mut others = Vec::new();
    while let Some(joined) = rest.join_next().await {
        let (i, node) = joined.map_err(|e| Error::Node(format!("starting a node: {e}")))?;
        others.push((i, node?));
    }
    others.sort_by_key(|(i, _)| *i);
    started.extend(others.into_iter().map(|(_, n)| n));
    for (i, node) in started.iter().enumerate() {
        balancer.set_node(i, Some(node.addr()));
    }
    let nodes: Nodes = Arc::new(started.into_iter().map(|n| Mutex::new(Some(n))).collect());

    let client_stats = Arc::new(ClientStats::default());
    let config = Arc::new(ClientConfig {
        base_url: format!("http://{}", balancer.addr()),
        timeout: args.client_timeout,
        backoff_base: Duration::from_millis(10),
        backoff_max: Duration::from_secs(1),
        accounts: args.accounts,
        amount_max: args.amount_max.max(1),
        replay_rate: args.replay_rate,
        conflict_rate: args.conflict_rate,
        seed,
    });
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(args.clients * 2)
        .build()
        .map_err(|e| Error::Setup(format!("building the HTTP client: {e}")))?;
    let retrier = Retrier::new(http.clone(), config.clone(), client_stats.clone());

    let start = Instant::now();
    let load = args
        .duration
        .or(args.orders.is_none().then_some(Duration::from_secs(30)));
    // An orders-bound run with no duration ends when its orders are done; a day bounds it.
    let soft = start + load.unwrap_or(Duration::from_secs(86_400));
    let deadlines = Deadlines {
        soft,
        hard: soft + args.drain_timeout,
        orders_max: args.orders.unwrap_or(u64::MAX),
    };
    let accounts = open_accounts(&retrier, args, seed, deadlines.hard).await?;

    let stop = Arc::new(AtomicBool::new(false));
    let mut chaos_tasks = JoinSet::new();
    if let Some(every) = kill_every {
        chaos_tasks.spawn(killer(
            Ticker::new(seed, "kill", every),
            nodes.clone(),
            spec.clone(),
            balancer.clone(),
            stats.clone(),
            stop.clone(),
        ));
    }
    if let Some(every) = cut_every {
        let (stop, stats) = (stop.clone(), stats.clone());
        let mut ticker = Ticker::new(seed, "cut", every);
        let db = db.clone();
        chaos_tasks.spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let (gap, _) = ticker.next_event(1);
                if !sleep_unless(&stop, gap).await {
                    break;
                }
                stats.cut_db.injected();
                if let Ok(n) = db.cut_connections().await {
                    stats.cut_db.hit(n);
                }
            }
            Ok(())
        });
    }

    let progress = progress_bar(args, deadlines);
    let mut clients = JoinSet::new();
    for i in 0..args.clients {
        clients.spawn(client::run_client(i, retrier.clone(), deadlines));
    }
    // At the soft deadline the faults stop, so the last orders can settle.
    let faults_off = {
        let (stop, balancer) = (stop.clone(), balancer.clone());
        tokio::spawn(async move {
            tokio::time::sleep_until(soft).await;
            stop.store(true, Ordering::Relaxed);
            balancer.set_faults(false);
        })
    };
    let mut history = History {
        accounts,
        orders: Vec::new(),
    };
    let mut latency = client::histogram();
    let ticker = tick_progress(
        progress.clone(),
        client_stats.clone(),
        stats.clone(),
        start,
        args,
        deadlines,
    );
    while let Some(done) = clients.join_next().await {
        let done = done.map_err(|e| Error::Setup(format!("a client failed: {e}")))?;
        let _ = latency.add(&done.latency_us);
        history.orders.extend(done.orders);
    }
    let elapsed = start.elapsed();
    stop.store(true, Ordering::Relaxed);
    balancer.set_faults(false);
    faults_off.abort();
    ticker.abort();
    progress.finish_and_clear();
    while let Some(joined) = chaos_tasks.join_next().await {
        joined.map_err(|e| Error::Node(format!("the fault injector failed: {e}")))??;
    }

    let mut observed = db.read().await?;
    observed.served = read_back(&http, &config.base_url, &history).await;
    let violations = checker::check(&history, &observed);

    let mut guard = Vec::new();
    for slot in nodes.iter() {
        if let Some(node) = slot.lock().await.take() {
            guard.push(node);
        }
    }
    for node in guard {
        node.kill().await;
    }

    let mut final_answers = BTreeMap::new();
    let (mut same, mut other) = (0, 0);
    for h in &history.orders {
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
    let orders = history.orders.len() as u64;
    let attempts_by_outcome = client_stats
        .answers
        .lock()
        .map(|a| a.clone())
        .unwrap_or_default();
    Ok(Report {
        backend: db.backend(),
        database: db.name().to_string(),
        nodes: nodes.len(),
        clients: args.clients,
        accounts: args.accounts,
        seed,
        idempotency_disabled: args.guard.idempotency_disabled(),
        elapsed_s: elapsed.as_secs_f64(),
        orders,
        resends_same: same,
        resends_other_amount: other,
        retries: client_stats.retries.load(Ordering::Relaxed),
        orders_per_s: orders as f64 / elapsed.as_secs_f64().max(1e-9),
        final_answers,
        attempts_by_outcome,
        faults: stats.snapshot(),
        latency: Latency::of(&latency),
        payments_stored: observed.payments.len() as u64,
        violations_total: violations.len(),
        violations: report::group(&violations),
    })
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
            .send("/v1/accounts", &body.into(), &id, &mut rng, hard)
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

/// Kills a node now and then with SIGKILL and restarts it, one node down at a time.
async fn killer(
    mut ticker: Ticker,
    nodes: Nodes,
    spec: Arc<NodeSpec>,
    balancer: Arc<Balancer>,
    stats: Arc<FaultStats>,
    stop: Arc<AtomicBool>,
) -> Result<(), Error> {
    while !stop.load(Ordering::Relaxed) {
        let (gap, i) = ticker.next_event(nodes.len());
        if !sleep_unless(&stop, gap).await {
            break;
        }
        let Some(node) = nodes[i].lock().await.take() else {
            continue;
        };
        // Read before the kill: these requests die with the node.
        let in_flight = balancer.in_flight(i);
        node.kill().await;
        balancer.set_node(i, None);
        stats.kill.injected();
        stats.kill.hit(in_flight);
        tokio::time::sleep(RESTART_AFTER).await;
        let node = restart(&spec, i).await?;
        balancer.set_node(i, Some(node.addr()));
        *nodes[i].lock().await = Some(node);
    }
    Ok(())
}

/// Starts node `i` again; a database cut may kill its start-up (its migration check), so a
/// few tries are allowed before the run gives up.
async fn restart(spec: &NodeSpec, i: usize) -> Result<Node, Error> {
    let mut tries = 0;
    loop {
        tries += 1;
        match cluster::start_node(spec, i).await {
            Ok(node) => return Ok(node),
            Err(e) if tries >= RESTART_TRIES => return Err(e),
            Err(_) => tokio::time::sleep(RESTART_AFTER).await,
        }
    }
}

/// Sleeps `gap` in short steps; false when `stop` was raised meanwhile.
async fn sleep_unless(stop: &AtomicBool, gap: Duration) -> bool {
    let until = Instant::now() + gap;
    while Instant::now() < until {
        if stop.load(Ordering::Relaxed) {
            return false;
        }
        let step = (until - Instant::now()).min(Duration::from_millis(100));
        tokio::time::sleep(step).await;
    }
    !stop.load(Ordering::Relaxed)
}

fn progress_bar(args: &ChaosArgs, deadlines: Deadlines) -> ProgressBar {
    let len = match args.orders {
        Some(n) if args.duration.is_none() => n,
        _ => (deadlines.soft - Instant::now()).as_secs().max(1),
    };
    let bar = ProgressBar::new(len);
    let unit = if args.orders.is_some() && args.duration.is_none() {
        "orders"
    } else {
        "s"
    };
    if let Ok(style) = ProgressStyle::with_template(&format!(
        "{{spinner}} [{{elapsed_precise}}] {{bar:30}} {{pos}}/{{len}} {unit} {{msg}}"
    )) {
        bar.set_style(style);
    }
    bar
}

fn tick_progress(
    bar: ProgressBar,
    clients: Arc<ClientStats>,
    faults: Arc<FaultStats>,
    start: Instant,
    args: &ChaosArgs,
    deadlines: Deadlines,
) -> tokio::task::JoinHandle<()> {
    let by_orders = args.orders.is_some() && args.duration.is_none();
    tokio::spawn(async move {
        loop {
            let done = clients.orders_done.load(Ordering::Relaxed);
            let f = faults.snapshot();
            bar.set_position(if by_orders {
                done
            } else {
                start
                    .elapsed()
                    .as_secs()
                    .min((deadlines.soft - start).as_secs())
            });
            bar.set_message(format!(
                "orders {done}, retries {}, faults hit: drop {} dup {} delay {} kill {} cut {}",
                clients.retries.load(Ordering::Relaxed),
                f.drop_response.hit,
                f.duplicate.hit,
                f.delay.hit,
                f.kill.injected,
                f.cut_db.hit,
            ));
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    })
}

/// `GET /v1/payments/{order_id}` for every order a client saw paid, faults off.
async fn read_back(
    http: &reqwest::Client,
    base_url: &str,
    history: &History,
) -> std::collections::HashMap<String, (u16, String)> {
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
    let mut served = std::collections::HashMap::new();
    while let Some(Ok(part)) = workers.join_next().await {
        served.extend(part);
    }
    served
}
