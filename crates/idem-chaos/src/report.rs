//! The report at the end of a run: what was done, which faults hit, how the service
//! answered, how long orders took, and every violation with examples. Text for people,
//! JSON (`--json`) for machines.

use std::collections::BTreeMap;
use std::fmt;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::broker::BrokerSummary;
use crate::checker::{Violation, ViolationKind};
use crate::db::Backend;
use crate::faults::{FaultReport, KindReport};
use crate::proxy::ProxySummary;
use crate::skew::{NodeSkew, Skew};
use crate::Target;

/// Examples kept per violation kind.
pub const EXAMPLES_PER_KIND: usize = 5;

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct Latency {
    /// Median.
    pub p50_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Slowest.
    pub max_ms: f64,
}

impl Latency {
    /// Percentiles of a histogram of microseconds.
    pub fn of(h: &Histogram<u64>) -> Self {
        let ms = |us: u64| us as f64 / 1000.0;
        if h.is_empty() {
            return Self::default();
        }
        Self {
            p50_ms: ms(h.value_at_quantile(0.5)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            max_ms: ms(h.max()),
        }
    }
}

/// The network between the nodes and their store, as the relays shaped it.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct NetworkReport {
    /// Delay added to every chunk, each way.
    pub delay_ms: f64,
    /// Further delay per chunk, up to this.
    pub jitter_ms: f64,
    /// Share of chunks stalled as if lost.
    pub loss: f64,
    /// How often a node was partitioned from the database, if ever.
    pub partition_every_s: Option<f64>,
    /// How long a partition lasted, give or take half.
    pub partition_for_s: Option<f64>,
}

/// One kind of violation: how many, and the first few.
#[derive(Debug, Clone, Serialize)]
pub struct ViolationGroup {
    /// The kind.
    pub kind: ViolationKind,
    /// How many were found.
    pub count: usize,
    /// The first few, described.
    pub examples: Vec<String>,
}

/// Groups violations by kind, keeping [`EXAMPLES_PER_KIND`] examples of each.
pub fn group(violations: &[Violation]) -> Vec<ViolationGroup> {
    let mut groups: BTreeMap<ViolationKind, ViolationGroup> = BTreeMap::new();
    for v in violations {
        let g = groups.entry(v.kind).or_insert_with(|| ViolationGroup {
            kind: v.kind,
            count: 0,
            examples: Vec::new(),
        });
        g.count += 1;
        if g.examples.len() < EXAMPLES_PER_KIND {
            g.examples.push(v.detail.clone());
        }
    }
    groups.into_values().collect()
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// What was under faults: `payments` or `proxy`.
    pub target: Target,
    /// The database engine.
    pub backend: Backend,
    /// The run's database.
    pub database: String,
    /// Nodes started.
    pub nodes: usize,
    /// Concurrent clients.
    pub clients: usize,
    /// Accounts paid between.
    pub accounts: usize,
    /// The seed that repeats the schedule.
    pub seed: u64,
    /// Whether the nodes ran without idempotency (the guard).
    pub idempotency_disabled: bool,
    /// Seconds the load ran, drain included.
    pub elapsed_s: f64,
    /// Orders sent (first sendings).
    pub orders: u64,
    /// Deliberate re-sends: unchanged, and with another amount.
    pub resends_same: u64,
    /// Deliberate re-sends with another amount.
    pub resends_other_amount: u64,
    /// Attempts beyond the first of each request.
    pub retries: u64,
    /// Orders per second over the run.
    pub orders_per_s: f64,
    /// Final answers of the orders' first sendings, by status.
    pub final_answers: BTreeMap<String, u64>,
    /// Every attempt's outcome, by HTTP status or `timeout` / `connection` / `other`.
    pub attempts_by_outcome: BTreeMap<String, u64>,
    /// Faults injected and hits, by kind.
    pub faults: FaultReport,
    /// Order latency, first attempt to final answer.
    pub latency: Latency,
    /// Payments stored, and the payments' total.
    pub payments_stored: u64,
    /// Violations found.
    pub violations_total: usize,
    /// Violations by kind, with examples.
    pub violations: Vec<ViolationGroup>,
    /// The nodes that ran with their wall clock skewed, and by how much (empty: none).
    pub skew: Vec<NodeSkew>,
    /// Why clock skew asked for by `--all-faults` was left off (libfaketime missing).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skew_skipped: Option<String>,
    /// The network faults between the nodes and their store, when any ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network: Option<NetworkReport>,
    /// Why network faults asked for could not be injected, or (beside `network`) only on
    /// some of the store's connections.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network_skipped: Option<String>,
    /// The proxy target's per-key findings (executions, acknowledgements, replays, and each
    /// second execution with the kill or lease end that explains it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proxy: Option<ProxySummary>,
    /// The broker targets' publications and replies (re-publishes, duplicates, replays, and
    /// the deliveries seen again after their effect).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub broker: Option<BrokerSummary>,
}

impl Report {
    /// Whether every check held.
    pub fn ok(&self) -> bool {
        self.violations_total == 0
    }

    /// Fills in what the load measured and the checker found: the time the load ran, the
    /// orders' latencies, the executions stored, and the violations, grouped by kind.
    pub(crate) fn record_run(
        &mut self,
        elapsed: std::time::Duration,
        latency: &Histogram<u64>,
        payments_stored: usize,
        violations: &[Violation],
    ) {
        self.elapsed_s = elapsed.as_secs_f64();
        self.orders_per_s = self.orders as f64 / elapsed.as_secs_f64().max(1e-9);
        self.latency = Latency::of(latency);
        self.payments_stored = payments_stored as u64;
        self.violations_total = violations.len();
        self.violations = group(violations);
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verdict = if self.ok() {
            "OK: no violation"
        } else {
            "FAILED"
        };
        writeln!(f, "idem chaos: {verdict}")?;
        let what = match self.target {
            Target::Payments | Target::Nats | Target::Amqp => "node(s)",
            Target::Proxy => "proxies",
        };
        writeln!(
            f,
            "  cluster     {} {what} on {:?} database {}{}",
            self.nodes,
            self.backend,
            self.database,
            if self.idempotency_disabled {
                " — IDEMPOTENCY DISABLED (guard run)"
            } else {
                ""
            }
        )?;
        writeln!(
            f,
            "  load        {} clients, {} accounts, seed {}, {:.1} s",
            self.clients, self.accounts, self.seed, self.elapsed_s
        )?;
        writeln!(
            f,
            "  orders      {} ({:.0}/s), re-sent unchanged {}, re-sent with another amount {}, retries {}",
            self.orders, self.orders_per_s, self.resends_same, self.resends_other_amount, self.retries
        )?;
        match &self.proxy {
            None => writeln!(f, "  payments    {} stored", self.payments_stored)?,
            Some(proxy) => write!(f, "{proxy}")?,
        }
        if let Some(broker) = &self.broker {
            write!(f, "{broker}")?;
        }
        writeln!(f, "  final       {}", join(&self.final_answers))?;
        writeln!(f, "  attempts    {}", join(&self.attempts_by_outcome))?;
        writeln!(
            f,
            "  latency     p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            self.latency.p50_ms, self.latency.p99_ms, self.latency.max_ms
        )?;
        writeln!(f, "  faults      kind           injected        hit")?;
        let rows: [(&str, KindReport); 9] = [
            ("drop response", self.faults.drop_response),
            ("duplicate", self.faults.duplicate),
            ("delay", self.faults.delay),
            ("kill node", self.faults.kill),
            ("cut database", self.faults.cut_db),
            ("partition", self.faults.partition),
            ("left dead", self.faults.left_dead),
            ("restart db", self.faults.restart_db),
            ("cut broker", self.faults.cut_broker),
        ];
        for (name, k) in rows {
            writeln!(
                f,
                "              {name:<14} {:>8} {:>10}",
                k.injected, k.hit
            )?;
        }
        match (&self.network, &self.network_skipped) {
            (Some(n), _) => {
                write!(
                    f,
                    "  network     per-node relays: delay {} ms + jitter up to {} ms, loss {} %",
                    n.delay_ms,
                    n.jitter_ms,
                    n.loss * 100.0
                )?;
                if let (Some(every), Some(lasting)) = (n.partition_every_s, n.partition_for_s) {
                    write!(
                        f,
                        ", a partition about every {every} s for about {lasting} s"
                    )?;
                }
                writeln!(f)?;
                if let Some(part) = &self.network_skipped {
                    writeln!(f, "              ({part})")?;
                }
            }
            (None, Some(why)) => writeln!(f, "  network     untouched ({why})")?,
            (None, None) => {}
        }
        if self.skew.is_empty() {
            let why = self.skew_skipped.as_deref().unwrap_or("no node");
            writeln!(f, "  clock skew  none ({why})")?;
        }
        for (i, s) in self.skew.iter().enumerate() {
            let head = if i == 0 { "clock skew" } else { "" };
            let skew = Skew {
                offset_s: s.offset_s,
                rate: s.rate,
            };
            writeln!(
                f,
                "  {head:<10}  node {} {skew} (FAKETIME=\"{}\")",
                s.node, s.faketime
            )?;
        }
        writeln!(f, "  violations  {}", self.violations_total)?;
        for g in &self.violations {
            writeln!(f, "    {:?}: {}", g.kind, g.count)?;
            for e in &g.examples {
                writeln!(f, "      - {e}")?;
            }
        }
        Ok(())
    }
}

fn join(map: &BTreeMap<String, u64>) -> String {
    map.iter()
        .map(|(k, v)| format!("{k}: {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn violations_are_grouped_with_a_few_examples() {
        let v: Vec<Violation> = (0..8)
            .map(|i| Violation {
                kind: if i < 7 {
                    ViolationKind::DoublePayment
                } else {
                    ViolationKind::SumChanged
                },
                detail: format!("v{i}"),
            })
            .collect();
        let groups = group(&v);
        assert_eq!(groups.len(), 2);
        assert_eq!(groups[0].kind, ViolationKind::DoublePayment);
        assert_eq!(groups[0].count, 7);
        assert_eq!(groups[0].examples.len(), EXAMPLES_PER_KIND);
        assert_eq!(groups[1].count, 1);
    }
}
