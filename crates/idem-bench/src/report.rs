//! What a run reports, as JSON (`--json`) and as text for people.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

use crate::baseline::BaselineReport;
use crate::broker::{BrokerLoad, BrokerReport};
use crate::stats::Figures;

/// The result of one `idem bench` run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The server measured: its URL, or "spawned idem serve on <engine>".
    pub target: String,
    /// Concurrent clients.
    pub clients: usize,
    /// Who paid whom: `uniform`, or `hot:PAYEES:SHARE`.
    pub accounts_skew: String,
    /// Fixed request rate, if one was asked for.
    pub rate: Option<f64>,
    /// Seconds the load ran.
    pub elapsed_s: f64,
    /// Every request, whatever its kind.
    pub total: Figures,
    /// By kind: fresh, replay, conflict.
    pub kinds: BTreeMap<String, Figures>,
    /// Unexpected answers by "kind: cause".
    pub errors: BTreeMap<String, u64>,
    /// The bare SQL transaction's rate, when `--baseline-sql` was given.
    pub baseline_sql: Option<BaselineReport>,
    /// Fresh payments/s of the server divided by bare SQL transactions/s.
    pub fresh_vs_sql: Option<f64>,
    /// The one-statement-per-payment rate, when `--baseline-statement` was given.
    pub baseline_statement: Option<BaselineReport>,
    /// Fresh payments/s of the server divided by one-statement payments/s.
    pub fresh_vs_statement: Option<f64>,
}

/// One point of a sweep: fresh-only and replay-only loads at one client count.
#[derive(Debug, Clone, Serialize)]
pub struct SweepPoint {
    /// Concurrent clients.
    pub clients: usize,
    /// The fresh-only load.
    pub fresh: Figures,
    /// The replay-only load.
    pub replay: Figures,
}

/// The result of `idem bench --sweep`.
#[derive(Debug, Clone, Serialize)]
pub struct SweepReport {
    /// The server measured.
    pub target: String,
    /// Seconds each load ran.
    pub duration_s: f64,
    /// One per client count, in the order given.
    pub points: Vec<SweepPoint>,
    /// Unexpected answers over the whole sweep by "kind: cause".
    pub errors: BTreeMap<String, u64>,
}

/// What `idem bench` prints.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum Summary {
    /// One run.
    Run(Box<Report>),
    /// A sweep over client counts.
    Sweep(SweepReport),
    /// A run through a broker (`--broker`).
    Broker(Box<BrokerReport>),
}

impl Summary {
    /// The summary as JSON (`json`) or as text for people.
    pub fn render(&self, json: bool) -> String {
        if json {
            self.to_json()
        } else {
            self.to_string()
        }
    }

    /// The summary as pretty-printed JSON.
    pub fn to_json(&self) -> String {
        // Only maps with string keys and plain numbers: serialising cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }

    /// Unexpected answers over the whole run.
    pub fn error_count(&self) -> u64 {
        match self {
            Summary::Run(report) => report.errors.values().sum(),
            Summary::Sweep(sweep) => sweep.errors.values().sum(),
            Summary::Broker(broker) => std::iter::once(&broker.idem)
                .chain(&broker.baseline_unsafe)
                .map(|load| load.errors.values().sum::<u64>())
                .sum(),
        }
    }
}

fn figures_header(f: &mut fmt::Formatter<'_>) -> fmt::Result {
    writeln!(
        f,
        "{:<10} {:>10} {:>8} {:>10} {:>9} {:>9} {:>9} {:>9}",
        "kind", "requests", "errors", "req/s", "p50 ms", "p90 ms", "p99 ms", "max ms"
    )
}

fn figures_row(f: &mut fmt::Formatter<'_>, name: &str, x: &Figures) -> fmt::Result {
    writeln!(
        f,
        "{:<10} {:>10} {:>8} {:>10.0} {:>9.2} {:>9.2} {:>9.2} {:>9.2}",
        name, x.requests, x.errors, x.rps, x.p50_ms, x.p90_ms, x.p99_ms, x.max_ms
    )
}

fn errors_list(f: &mut fmt::Formatter<'_>, errors: &BTreeMap<String, u64>) -> fmt::Result {
    if errors.is_empty() {
        return writeln!(f, "errors: none");
    }
    writeln!(f, "errors:")?;
    for (cause, n) in errors {
        writeln!(f, "  {n:>8}  {cause}")?;
    }
    Ok(())
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pacing = match self.rate {
            Some(rate) => format!("{} clients at {rate} req/s", self.clients),
            None => format!("{} clients", self.clients),
        };
        writeln!(
            f,
            "idem bench: {} — {pacing}, accounts {}, {:.1} s",
            self.target, self.accounts_skew, self.elapsed_s
        )?;
        figures_header(f)?;
        for (name, figures) in &self.kinds {
            figures_row(f, name, figures)?;
        }
        figures_row(f, "all", &self.total)?;
        for (sql, name) in [
            (&self.baseline_sql, "sql"),
            (&self.baseline_statement, "statement"),
        ] {
            if let Some(sql) = sql {
                writeln!(
                    f,
                    "\n{} on {} ({} clients, {:.1} s):",
                    sql.shape.describe(),
                    sql.engine,
                    sql.clients,
                    sql.elapsed_s
                )?;
                figures_header(f)?;
                figures_row(f, name, &sql.figures)?;
                if !sql.errors.is_empty() {
                    errors_list(f, &sql.errors)?;
                }
            }
        }
        if let Some(ratio) = self.fresh_vs_sql {
            writeln!(
                f,
                "\nfresh payments/s ÷ bare SQL transactions/s = {ratio:.2}"
            )?;
        }
        if let Some(ratio) = self.fresh_vs_statement {
            writeln!(
                f,
                "fresh payments/s ÷ one-statement payments/s = {ratio:.2}"
            )?;
        }
        errors_list(f, &self.errors)
    }
}

impl fmt::Display for SweepReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "idem bench sweep: {} — {:.1} s per load",
            self.target, self.duration_s
        )?;
        writeln!(
            f,
            "{:>8} {:>12} {:>12} {:>12} {:>12} {:>9}",
            "clients", "fresh req/s", "fresh p99", "replay req/s", "replay p99", "replay÷fresh"
        )?;
        for p in &self.points {
            let ratio = p.replay.rps / p.fresh.rps.max(1e-9);
            writeln!(
                f,
                "{:>8} {:>12.0} {:>9.2} ms {:>12.0} {:>9.2} ms {:>9.2}",
                p.clients, p.fresh.rps, p.fresh.p99_ms, p.replay.rps, p.replay.p99_ms, ratio
            )?;
        }
        errors_list(f, &self.errors)
    }
}

impl fmt::Display for BrokerReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "idem bench: {} — {} publishers, accounts {}, stream {}",
            self.target, self.clients, self.accounts_skew, self.stream
        )?;
        writeln!(
            f,
            "(requests: replies; latency: from publishing to the reply)"
        )?;
        figures_header(f)?;
        let loads = std::iter::once(("idem", &self.idem))
            .chain(self.baseline_unsafe.as_ref().map(|b| ("unsafe", b)));
        if let Some(first) = self.baseline_first {
            let order = if first { "unsafe first" } else { "idem first" };
            writeln!(f, "(both nodes on the same stream and database, {order})")?;
        }
        let mut errors = BTreeMap::new();
        for (name, load) in loads.clone() {
            figures_row(f, name, &load.figures)?;
        }
        for (name, BrokerLoad { errors: own, .. }) in loads {
            for (cause, n) in own {
                errors.insert(format!("{name}: {cause}"), *n);
            }
        }
        if let Some(ratio) = self.idem_vs_unsafe {
            writeln!(
                f,
                "\nidem replies/s ÷ replies/s without idempotency (--unsafe-disable-idempotency) = {ratio:.2}"
            )?;
        }
        errors_list(f, &errors)
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Summary::Run(report) => report.fmt(f),
            Summary::Sweep(sweep) => sweep.fmt(f),
            Summary::Broker(broker) => broker.fmt(f),
        }
    }
}
