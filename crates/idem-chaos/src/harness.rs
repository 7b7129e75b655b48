//! What every target's run shares: the nodes behind the faulty balancer, the killer and the
//! cutter, the clients' load with its deadlines and progress bar, and the kill log that the
//! proxy target's checker matches executions against.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use tokio::sync::Mutex;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::balancer::{Balancer, BalancerConfig};
use crate::client::{self, ClientConfig, ClientStats, Deadlines, OrderHistory, Sender};
use crate::cluster::{self, Node, NodeSpec};
use crate::faults::{Counter, FaultStats, Ticker};
use crate::relay::{NetShape, Relay};
use crate::{ChaosArgs, Error};

/// How long a killed node stays dead before it is restarted.
const RESTART_AFTER: Duration = Duration::from_millis(300);
/// Tries to restart a killed node before the run gives up on it.
const RESTART_TRIES: u32 = 10;

/// The nodes, each slot empty while its node is dead.
type Nodes = Arc<Vec<Mutex<Option<Node>>>>;

/// Cuts the run's store connections and says how many died.
pub(crate) type Cutter = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = u64> + Send>> + Send + Sync>;

/// The relays of every node slot: slot `i` reaches each of its servers (the database, Redis)
/// through one relay of `[i]`, so that one node can be cut off alone, from all of them.
pub(crate) type NodeRelays = Arc<Vec<Vec<Relay>>>;

/// The network faults between the nodes and their store: the relays of each node slot, the
/// latency they add, and how often and how long one node is partitioned.
pub(crate) struct NetFaults {
    /// Node `i` reaches its store through the relays `relays[i]`.
    pub(crate) relays: NodeRelays,
    /// Latency on every chunk, each way.
    pub(crate) shape: NetShape,
    /// How often one node is partitioned, and for how long (give or take half).
    pub(crate) partition: Option<(Duration, Duration)>,
}

/// One SIGKILL: which node process died, and when.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Kill {
    /// The node's slot.
    pub node: usize,
    /// Which process in that slot (1 for the first start, 2 after the first restart, …).
    pub incarnation: u64,
    /// Milliseconds since the run's start.
    pub at_ms: u64,
}

/// The nodes, the balancer in front of them, and the fault injectors.
pub(crate) struct Cluster {
    pub(crate) balancer: Arc<Balancer>,
    pub(crate) stats: Arc<FaultStats>,
    nodes: Nodes,
    spec: Arc<NodeSpec>,
    stop: Arc<AtomicBool>,
    tasks: JoinSet<Result<(), Error>>,
    kills: Arc<std::sync::Mutex<Vec<Kill>>>,
    start: Instant,
    relays: NodeRelays,
}

impl Cluster {
    /// Starts the balancer and `n` nodes: the first alone (it migrates a fresh store), the
    /// rest together after it. `start` is the run's time zero (for the kill log).
    pub(crate) async fn start(
        spec: NodeSpec,
        n: usize,
        config: BalancerConfig,
        start: Instant,
    ) -> Result<Self, Error> {
        let stats = Arc::new(FaultStats::default());
        let balancer = Arc::new(Balancer::start(n, config, stats.clone()).await?);
        let spec = Arc::new(spec);
        let first = cluster::start_node(&spec, 0).await?;
        let mut started = vec![first];
        let mut rest = JoinSet::new();
        for i in 1..n {
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
        Ok(Self {
            balancer,
            stats,
            nodes: Arc::new(started.into_iter().map(|n| Mutex::new(Some(n))).collect()),
            spec,
            stop: Arc::new(AtomicBool::new(false)),
            tasks: JoinSet::new(),
            kills: Arc::default(),
            start,
            relays: Arc::default(),
        })
    }

    /// Number of node slots.
    pub(crate) fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Starts the timed faults: a node killed about every `kill_every`, the store's
    /// connections cut about every `cut_every` by `cutter`, the network's latency and
    /// partitions of `net`, and the database server restarted about every `restart.0` by
    /// `restart.1` (which says 1 when it restarted).
    pub(crate) fn start_faults(
        &mut self,
        seed: u64,
        kill_every: Option<Duration>,
        cut: Option<(Duration, Cutter)>,
        net: Option<NetFaults>,
        restart: Option<(Duration, Cutter)>,
    ) {
        if let Some((every, restarter)) = restart {
            self.every(Ticker::new(seed, "restart", every), restarter, |s| {
                &s.restart_db
            });
        }
        if let Some(net) = net {
            for relay in net.relays.iter().flatten() {
                relay.set_shape(net.shape);
            }
            if let Some((every, lasting)) = net.partition {
                self.tasks.spawn(partitioner(
                    Ticker::new(seed, "partition", every),
                    lasting,
                    net.relays.clone(),
                    self.stats.clone(),
                    self.stop.clone(),
                ));
            }
            self.relays = net.relays;
        }
        if let Some(every) = kill_every {
            self.tasks.spawn(killer(
                Ticker::new(seed, "kill", every),
                self.nodes.clone(),
                self.spec.clone(),
                self.balancer.clone(),
                self.stats.clone(),
                self.stop.clone(),
                (self.kills.clone(), self.start),
            ));
        }
        if let Some((every, cutter)) = cut {
            self.every(Ticker::new(seed, "cut", every), cutter, |s| &s.cut_db);
        }
    }

    /// Runs `action` at each of `ticker`'s events until the faults stop, counting each
    /// run and its hits on `counter`.
    pub(crate) fn every(
        &mut self,
        mut ticker: Ticker,
        action: Cutter,
        counter: fn(&FaultStats) -> &Counter,
    ) {
        let (stop, stats) = (self.stop.clone(), self.stats.clone());
        self.tasks.spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let (gap, _) = ticker.next_event(1);
                if !sleep_unless(&stop, gap).await {
                    break;
                }
                counter(&stats).injected();
                let hits = action().await;
                counter(&stats).hit(hits);
            }
            Ok(())
        });
    }

    /// Runs one client per sender of `senders`, configured by `config`, until `deadlines`,
    /// with the faults on until the soft deadline; then stops every fault. Returns every
    /// order's history, the order latencies and how long the load ran.
    pub(crate) async fn load<S: Sender>(
        &mut self,
        args: &ChaosArgs,
        senders: Vec<S>,
        (config, client_stats): (&Arc<ClientConfig>, &Arc<ClientStats>),
        deadlines: Deadlines,
    ) -> Result<(Vec<OrderHistory>, Histogram<u64>, Duration), Error> {
        let start = Instant::now();
        let progress = progress_bar(args, deadlines);
        let mut clients = JoinSet::new();
        for (i, sender) in senders.into_iter().enumerate() {
            let shared = (config.clone(), client_stats.clone());
            clients.spawn(client::run_client(i, sender, shared, deadlines));
        }
        // At the soft deadline the faults stop, so the last orders can settle.
        let faults_off = {
            let (stop, balancer) = (self.stop.clone(), self.balancer.clone());
            let relays = self.relays.clone();
            tokio::spawn(async move {
                tokio::time::sleep_until(deadlines.soft).await;
                stop.store(true, Ordering::Relaxed);
                balancer.set_faults(false);
                calm(&relays);
            })
        };
        let ticker = tick_progress(
            progress.clone(),
            client_stats.clone(),
            self.stats.clone(),
            start,
            args,
            deadlines,
        );
        let mut orders = Vec::new();
        let mut latency = client::histogram();
        while let Some(done) = clients.join_next().await {
            let done = done.map_err(|e| Error::Setup(format!("a client failed: {e}")))?;
            let _ = latency.add(&done.latency_us);
            orders.extend(done.orders);
        }
        let elapsed = start.elapsed();
        self.stop.store(true, Ordering::Relaxed);
        self.balancer.set_faults(false);
        calm(&self.relays);
        faults_off.abort();
        ticker.abort();
        progress.finish_and_clear();
        while let Some(joined) = self.tasks.join_next().await {
            joined.map_err(|e| Error::Node(format!("the fault injector failed: {e}")))??;
        }
        Ok((orders, latency, elapsed))
    }

    /// Every SIGKILL so far, in order.
    pub(crate) fn kills(&self) -> Vec<Kill> {
        self.kills.lock().map(|k| k.clone()).unwrap_or_default()
    }

    /// Kills every node still running (the run is over).
    pub(crate) async fn shutdown(&self) {
        let mut running = Vec::new();
        for slot in self.nodes.iter() {
            if let Some(node) = slot.lock().await.take() {
                running.push(node);
            }
        }
        for node in running {
            node.kill().await;
        }
    }
}

/// Kills a node now and then with SIGKILL and restarts it, one node down at a time, and logs
/// each kill.
async fn killer(
    mut ticker: Ticker,
    nodes: Nodes,
    spec: Arc<NodeSpec>,
    balancer: Arc<Balancer>,
    stats: Arc<FaultStats>,
    stop: Arc<AtomicBool>,
    (log, start): (Arc<std::sync::Mutex<Vec<Kill>>>, Instant),
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
        let incarnation = balancer.incarnation(i);
        node.kill().await;
        let at_ms = start.elapsed().as_millis() as u64;
        if let Ok(mut log) = log.lock() {
            log.push(Kill {
                node: i,
                incarnation,
                at_ms,
            });
        }
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

/// Partitions one node from its store now and then (from every server it reaches at once),
/// silently (nothing closed, nothing refused), and heals it a while later: at even odds the
/// held connections resume, or stay dead for good, half-open, for the node's and the
/// server's timeouts to end.
async fn partitioner(
    mut ticker: Ticker,
    lasting: Duration,
    relays: NodeRelays,
    stats: Arc<FaultStats>,
    stop: Arc<AtomicBool>,
) -> Result<(), Error> {
    while !stop.load(Ordering::Relaxed) {
        let (gap, i) = ticker.next_event(relays.len());
        if !sleep_unless(&stop, gap).await {
            break;
        }
        let Some(node) = relays.get(i) else { break };
        let held = ticker.around(lasting);
        let leave_dead = ticker.coin();
        stats.partition.injected();
        stats.partition.hit(node.iter().map(Relay::partition).sum());
        sleep_unless(&stop, held).await;
        if leave_dead {
            stats.left_dead.injected();
            stats.left_dead.hit(node.iter().map(Relay::open).sum());
        }
        for relay in node {
            relay.heal(leave_dead);
        }
    }
    Ok(())
}

/// The network faults off: every partition healed (forwarding resumes), no added latency.
/// Connections left dead stay dead.
fn calm(relays: &[Vec<Relay>]) {
    for relay in relays.iter().flatten() {
        relay.heal(false);
        relay.set_shape(NetShape::default());
    }
}

/// Starts node `i` again; a store cut may kill its start-up (its migration check), so a few
/// tries are allowed before the run gives up.
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

/// The run's deadlines from `--duration`, `--orders` and `--drain-timeout`, from now.
pub(crate) fn deadlines(args: &ChaosArgs) -> Deadlines {
    let load = args
        .duration
        .or(args.orders.is_none().then_some(Duration::from_secs(30)));
    // An orders-bound run with no duration ends when its orders are done; a day bounds it.
    let soft = Instant::now() + load.unwrap_or(Duration::from_secs(86_400));
    Deadlines {
        soft,
        hard: soft + args.drain_timeout,
        orders_max: args.orders.unwrap_or(u64::MAX),
    }
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
                    .min(deadlines.soft.saturating_duration_since(start).as_secs())
            });
            bar.set_message(format!(
                "orders {done}, retries {}, faults hit: drop {} dup {} delay {} kill {} cut {} partition {}",
                clients.retries.load(Ordering::Relaxed),
                f.drop_response.hit,
                f.duplicate.hit,
                f.delay.hit,
                f.kill.injected,
                f.cut_db.hit,
                f.partition.injected,
            ));
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    })
}
