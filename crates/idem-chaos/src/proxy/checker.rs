//! The proxy target's checker: per key, the upstream's executions, the answers acknowledged
//! to clients and the replays, held against the proxy's promise (DESIGN §4).
//!
//! - Every replay is the first acknowledged answer, byte for byte; a reuse with another body
//!   is 422 `idempotency_key_reused`; every 201 names an execution the upstream recorded.
//! - A key runs again only after a take-over (a higher fencing token) of a holder that was
//!   killed before completing — the kill of that node process between the two executions
//!   explains it — or whose lease ended first (it was fenced). Any other second execution is
//!   a violation; with a fencing-aware upstream, any second execution at all.
//! - On the Redis store alone, a kill of a Redis Cluster master (no replicas, nothing on
//!   disk) loses the records it held: a key whose first execution came before such a kill
//!   and whose next came after it is listed as explained by that kill. The tiered store
//!   keeps its records in SQL, so no master kill explains anything there.
//! - The upstream's money adds up (the payment checker's ledger checks, on its tables).

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use serde::Serialize;

use crate::checker::{self, History, Observed, PaymentRow, Violation, ViolationKind};
use crate::client::Answer;
use crate::harness::Kill;
use crate::proxy::upstream::{Execution, UpstreamState};
use crate::proxy::MasterKill;
use crate::ProxyStore;

/// Explained second executions listed in the text report (the JSON has them all).
const EXPLAINED_SHOWN: usize = 5;
/// How much earlier than a lease's end a take-over may seem to start, measured at the
/// upstream rather than at the store (forwarding takes a moment on each side).
const LEASE_SLACK_MS: i64 = 250;

/// What explains a second execution of a key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Cause {
    /// The proxy process that ran the earlier execution was killed before the later one.
    Killed(Kill),
    /// The earlier holder's lease had ended before the later execution took the key over:
    /// the holder had not stored its answer in time and was fenced.
    LeaseEnded,
    /// A Redis master was killed between the two executions, losing the key's record
    /// (the Redis store alone).
    RedisMasterKilled(MasterKill),
}

/// One execution, as the report shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExecutionRef {
    /// The upstream's id for it.
    pub exec_id: String,
    /// The proxy process that forwarded it (`<slot>.<incarnation>`).
    pub node: String,
    /// The fencing token it came with.
    pub token: Option<i64>,
    /// When it arrived, in milliseconds since the run's start.
    pub at_ms: i64,
}

/// A key executed again within the proxy's documented limit, with what explains it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Explained {
    /// The key.
    pub key: String,
    /// The earlier execution.
    pub first: ExecutionRef,
    /// The later one.
    pub again: ExecutionRef,
    /// The kill or lease end that explains it.
    pub cause: Cause,
}

/// The proxy target's findings, in the report.
#[derive(Debug, Clone, Serialize)]
pub struct ProxySummary {
    /// Where the proxies kept their records.
    pub store: ProxyStore,
    /// The proxies' lease, in milliseconds.
    pub lease_ms: u64,
    /// Whether the upstream was fencing-aware.
    pub upstream_fencing: bool,
    /// Keys the clients sent.
    pub keys: u64,
    /// Executions the upstream recorded.
    pub executions: u64,
    /// Keys by how many times the upstream executed them (`"0"`, `"1"`, `"2"`, …).
    pub keys_by_executions: BTreeMap<String, u64>,
    /// Final answers the clients got (every sending, replays included).
    pub acknowledged: u64,
    /// Of those, answers marked `Idempotent-Replayed: true`.
    pub replays: u64,
    /// Requests the fencing-aware upstream refused for a stale or repeated token.
    pub refused_stale: u64,
    /// Requests for an executed key the fencing-aware upstream answered from its record.
    pub answered_recorded: u64,
    /// Second executions explained by a kill of their proxy.
    pub explained_by_kill: u64,
    /// Second executions explained by an ended lease.
    pub explained_by_lease: u64,
    /// Second executions explained by a Redis master's kill (its records lost).
    pub explained_by_redis_master: u64,
    /// Every explained second execution, with its cause.
    pub explained: Vec<Explained>,
    /// Every SIGKILL of the run.
    pub kills: Vec<Kill>,
    /// Every SIGKILL of a Redis Cluster master (`--kill-redis-master-every`).
    pub redis_master_kills: Vec<MasterKill>,
}

/// The rules of the run the checker judges.
#[derive(Debug, Clone, Copy)]
pub struct Rules {
    /// The proxies' store.
    pub store: ProxyStore,
    /// The proxies' lease.
    pub lease_ms: u64,
    /// Whether the upstream was fencing-aware (then no second execution may exist).
    pub upstream_fencing: bool,
}

/// Checks the clients' history against the upstream's records and the kill logs (of the
/// proxies, and of the Redis masters); returns the violations and the summary.
pub fn check(
    history: &History,
    state: &UpstreamState,
    kills: &[Kill],
    master_kills: &[MasterKill],
    rules: Rules,
) -> (Vec<Violation>, ProxySummary) {
    let mut out = Vec::new();
    let mut flag = |kind, detail: String| out.push(Violation { kind, detail });
    let mut by_key: HashMap<&str, Vec<&Execution>> = HashMap::new();
    for x in &state.executions {
        by_key.entry(x.key.as_str()).or_default().push(x);
    }
    let mut summary = ProxySummary {
        store: rules.store,
        lease_ms: rules.lease_ms,
        upstream_fencing: rules.upstream_fencing,
        keys: history.orders.len() as u64,
        executions: state.executions.len() as u64,
        keys_by_executions: BTreeMap::new(),
        acknowledged: 0,
        replays: 0,
        refused_stale: state.refused_stale,
        answered_recorded: state.answered_recorded,
        explained_by_kill: 0,
        explained_by_lease: 0,
        explained_by_redis_master: 0,
        explained: Vec::new(),
        kills: kills.to_vec(),
        redis_master_kills: master_kills.to_vec(),
    };
    // Only the Redis store loses records with a master.
    let lost_with = if rules.store == ProxyStore::Redis {
        master_kills
    } else {
        &[]
    };
    let mut sent_keys = std::collections::HashSet::new();
    for h in &history.orders {
        let key = h.order.order_id.as_str();
        sent_keys.insert(key);
        checker::check_settled(h, &[201, 402], &mut flag);
        let acked = checker::sendings(h).filter_map(|s| s.answer.as_ref());
        for a in acked {
            summary.acknowledged += 1;
            summary.replays += u64::from(a.replayed);
        }
        let first_paid = h.first.answer.as_ref().filter(|a| a.status == 201);
        checker::check_resends(h, first_paid, "idempotency_key_reused", &mut flag);
        let runs = by_key.get(key).map_or(&[][..], Vec::as_slice);
        *summary
            .keys_by_executions
            .entry(runs.len().to_string())
            .or_default() += 1;
        if let Some(a) = first_paid.filter(|a| !names_an_execution(a, runs)) {
            flag(
                ViolationKind::AckNotExecuted,
                format!(
                    "key {key}: client saw 201 {}, executions {:?}",
                    a.body,
                    runs.iter().map(|x| &x.exec_id).collect::<Vec<_>>()
                ),
            );
        }
        for x in runs {
            if let Some(diff) = checker::differs(&h.order, &x.payer, &x.payee, x.amount) {
                flag(
                    ViolationKind::PaymentMismatch,
                    format!("key {key}: executed {diff}"),
                );
            }
        }
        for pair in runs.windows(2) {
            let (first, again) = (pair[0], pair[1]);
            let what = format!("key {key}: executed {} then {}", show(first), show(again));
            if rules.upstream_fencing {
                flag(ViolationKind::SecondExecution, what);
                continue;
            }
            let lost = lost_with
                .iter()
                .find(|k| (first.started_ms..=again.started_ms).contains(&(k.at_ms as i64)));
            let cause = match lost {
                Some(kill) => Some(Cause::RedisMasterKilled(*kill)),
                None => explain(first, again, kills, rules.lease_ms),
            };
            match cause {
                Some(cause) => {
                    match cause {
                        Cause::Killed(_) => summary.explained_by_kill += 1,
                        Cause::LeaseEnded => summary.explained_by_lease += 1,
                        Cause::RedisMasterKilled(_) => summary.explained_by_redis_master += 1,
                    }
                    summary.explained.push(Explained {
                        key: key.to_owned(),
                        first: reference(first),
                        again: reference(again),
                        cause,
                    });
                }
                None => flag(
                    ViolationKind::UnexplainedExecution,
                    format!("{what}, with no take-over after a kill or a lease end"),
                ),
            }
        }
    }
    for x in &state.executions {
        if !sent_keys.contains(x.key.as_str()) {
            flag(
                ViolationKind::PaymentMismatch,
                format!(
                    "execution {} has key {:?}, which no client sent",
                    x.exec_id, x.key
                ),
            );
        }
    }
    let moved = Observed {
        accounts: state.accounts.clone(),
        payments: state
            .executions
            .iter()
            .map(|x| PaymentRow {
                payment_id: x.exec_id.clone(),
                order_id: x.key.clone(),
                payer: x.payer.clone(),
                payee: x.payee.clone(),
                amount: x.amount,
            })
            .collect(),
        ledger: ledger(&state.executions),
        served: HashMap::new(),
    };
    checker::check_money(history, &moved, &mut flag);
    (out, summary)
}

/// Why `again` could run after `first`: only a take-over grants a key again, and it raises
/// the token; the earlier holder then either died (its process was killed between the two)
/// or kept the key past its lease.
fn explain(first: &Execution, again: &Execution, kills: &[Kill], lease_ms: u64) -> Option<Cause> {
    let (Some(t1), Some(t2)) = (first.token, again.token) else {
        return None;
    };
    if t2 <= t1 {
        return None;
    }
    let killed = kills.iter().find(|k| {
        format!("{}.{}", k.node, k.incarnation) == first.node
            && k.at_ms as i64 >= first.started_ms
            && k.at_ms as i64 <= again.started_ms
    });
    if let Some(kill) = killed {
        return Some(Cause::Killed(*kill));
    }
    let lease_ended = again.started_ms - first.started_ms >= lease_ms as i64 - LEASE_SLACK_MS;
    lease_ended.then_some(Cause::LeaseEnded)
}

/// Whether a 201's `transfer_id` is one of the key's executions.
fn names_an_execution(answer: &Answer, runs: &[&Execution]) -> bool {
    let id = serde_json::from_str::<serde_json::Value>(&answer.body)
        .ok()
        .and_then(|v| v.get("transfer_id")?.as_str().map(str::to_owned));
    id.is_some_and(|id| runs.iter().any(|x| x.exec_id == id))
}

/// Each account's sum of moves by the executions (the upstream's ledger).
fn ledger(executions: &[Execution]) -> BTreeMap<String, i64> {
    let mut sums = BTreeMap::new();
    for x in executions {
        *sums.entry(x.payer.clone()).or_default() -= x.amount;
        *sums.entry(x.payee.clone()).or_default() += x.amount;
    }
    sums
}

fn reference(x: &Execution) -> ExecutionRef {
    ExecutionRef {
        exec_id: x.exec_id.clone(),
        node: x.node.clone(),
        token: x.token,
        at_ms: x.started_ms,
    }
}

fn show(x: &Execution) -> String {
    let token = x.token.map_or("none".to_owned(), |t| t.to_string());
    format!(
        "{} by proxy {} at {} ms (token {token})",
        x.exec_id, x.node, x.started_ms
    )
}

impl fmt::Display for ProxySummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let counts: Vec<String> = self
            .keys_by_executions
            .iter()
            .map(|(n, keys)| format!("{n}×: {keys}"))
            .collect();
        writeln!(
            f,
            "  proxies     store {:?}, lease {} ms, upstream fencing {}",
            self.store,
            self.lease_ms,
            if self.upstream_fencing { "on" } else { "off" }
        )?;
        writeln!(
            f,
            "  executions  {} for {} keys; keys executed {}",
            self.executions,
            self.keys,
            counts.join(", ")
        )?;
        writeln!(
            f,
            "  answers     {} acknowledged, {} of them replays; upstream refused {} stale, answered {} from its record",
            self.acknowledged, self.replays, self.refused_stale, self.answered_recorded
        )?;
        writeln!(
            f,
            "  explained   {} second executions: {} after a kill of their proxy, {} after a lease ended, {} after a Redis master's kill lost their record",
            self.explained.len(),
            self.explained_by_kill,
            self.explained_by_lease,
            self.explained_by_redis_master
        )?;
        for k in &self.redis_master_kills {
            writeln!(
                f,
                "  redis       master :{} killed at {} ms, back at {} ms",
                k.port, k.at_ms, k.back_ms
            )?;
        }
        for e in self.explained.iter().take(EXPLAINED_SHOWN) {
            let cause = match &e.cause {
                Cause::Killed(k) => format!(
                    "proxy {}.{} killed at {} ms",
                    k.node, k.incarnation, k.at_ms
                ),
                Cause::LeaseEnded => "the first holder's lease ended".to_owned(),
                Cause::RedisMasterKilled(k) => format!(
                    "Redis master :{} killed at {} ms (the record lost)",
                    k.port, k.at_ms
                ),
            };
            writeln!(
                f,
                "      - key {}: {} by {} at {} ms, again {} by {} at {} ms: {cause}",
                e.key,
                e.first.exec_id,
                e.first.node,
                e.first.at_ms,
                e.again.exec_id,
                e.again.node,
                e.again.at_ms
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::AccountRow;
    use crate::client::{Order, OrderHistory, Sent};

    fn run(exec_id: &str, node: &str, token: Option<i64>, at_ms: i64) -> Execution {
        Execution {
            exec_id: exec_id.into(),
            key: "k1".into(),
            token,
            node: node.into(),
            payer: "a".into(),
            payee: "b".into(),
            amount: 10,
            started_ms: at_ms,
        }
    }

    /// Key k1 moved 10 from a to b by the executions given; its client saw `x1`'s answer.
    fn world(runs: Vec<Execution>) -> (History, UpstreamState) {
        let moved = 10 * runs.len() as i64;
        let body =
            r#"{"amount":10,"key":"k1","payee":"b","payer":"a","token":1,"transfer_id":"x1"}"#;
        let history = History {
            accounts: vec![("a".into(), 100), ("b".into(), 100)],
            orders: vec![OrderHistory {
                order: Order {
                    order_id: "k1".into(),
                    payer: "a".into(),
                    payee: "b".into(),
                    amount: 10,
                },
                first: Sent {
                    attempts: 2,
                    answer: Some(Answer {
                        status: 201,
                        body: body.into(),
                        replayed: false,
                    }),
                },
                resends: Vec::new(),
            }],
        };
        let account = |id: &str, balance| AccountRow {
            account_id: id.into(),
            balance,
            opening_balance: 100,
        };
        let state = UpstreamState {
            accounts: vec![account("a", 100 - moved), account("b", 100 + moved)],
            executions: runs,
            refused_stale: 0,
            answered_recorded: 0,
        };
        (history, state)
    }

    const RULES: Rules = Rules {
        store: ProxyStore::Sql,
        lease_ms: 3000,
        upstream_fencing: false,
    };

    /// Checks key k1 executed first by `x1` (node 0.1, token 1, at 100 ms), then by `again`.
    fn check_again(
        again: Execution,
        kills: &[Kill],
        rules: Rules,
    ) -> (Vec<Violation>, ProxySummary) {
        let (history, state) = world(vec![run("x1", "0.1", Some(1), 100), again]);
        check(&history, &state, kills, &[], rules)
    }

    /// A SIGKILL of the first process in slot `node`.
    fn kill(node: usize, at_ms: u64) -> Kill {
        Kill {
            node,
            incarnation: 1,
            at_ms,
        }
    }

    fn kinds(v: &[Violation]) -> Vec<ViolationKind> {
        v.iter().map(|v| v.kind).collect()
    }

    #[test]
    fn one_execution_per_key_holds() {
        let (history, state) = world(vec![run("x1", "0.1", Some(1), 100)]);
        let (violations, summary) = check(&history, &state, &[], &[], RULES);
        assert_eq!(violations, vec![]);
        assert_eq!(summary.keys_by_executions.get("1"), Some(&1));
    }

    #[test]
    fn a_second_execution_after_its_holder_was_killed_is_explained() {
        let kill = kill(0, 120);
        let (violations, summary) = check_again(run("x2", "2.1", Some(2), 1500), &[kill], RULES);
        assert_eq!(violations, vec![]);
        assert_eq!(summary.explained_by_kill, 1);
        assert_eq!(summary.explained[0].cause, Cause::Killed(kill));
    }

    #[test]
    fn a_second_execution_after_a_lease_end_is_explained() {
        let (violations, summary) = check_again(run("x2", "2.1", Some(2), 3100), &[], RULES);
        assert_eq!(violations, vec![]);
        assert_eq!(summary.explained_by_lease, 1);
    }

    #[test]
    fn a_second_execution_with_no_take_over_is_a_violation() {
        // Another node's kill, a kill of the holder after the second run, no token: none
        // explains it.
        let kills = [kill(1, 120), kill(0, 900)];
        for again in [
            run("x2", "2.1", Some(2), 500),
            run("x2", "2.1", None, 1000),
            run("x2", "2.1", Some(1), 1000),
        ] {
            let (violations, _) = check_again(again, &kills, RULES);
            assert_eq!(
                kinds(&violations),
                vec![ViolationKind::UnexplainedExecution]
            );
        }
    }

    #[test]
    fn with_a_fencing_upstream_any_second_execution_is_a_violation() {
        let rules = Rules {
            upstream_fencing: true,
            ..RULES
        };
        let (violations, _) = check_again(run("x2", "2.1", Some(2), 5000), &[], rules);
        assert_eq!(kinds(&violations), vec![ViolationKind::SecondExecution]);
    }

    #[test]
    fn an_acknowledged_answer_no_execution_gave_is_found() {
        let (history, mut state) = world(vec![run("x9", "0.1", Some(1), 100)]);
        state.executions[0].exec_id = "x9".into();
        let (violations, _) = check(&history, &state, &[], &[], RULES);
        assert_eq!(kinds(&violations), vec![ViolationKind::AckNotExecuted]);
    }

    #[test]
    fn a_redis_master_kill_explains_a_lost_record_on_the_redis_store_only() {
        let master = MasterKill {
            port: 30002,
            at_ms: 400,
            back_ms: 2900,
        };
        let (history, state) = world(vec![
            run("x1", "0.1", Some(1), 100),
            run("x2", "1.1", Some(1), 3000),
        ]);
        let redis = Rules {
            store: ProxyStore::Redis,
            ..RULES
        };
        let (violations, summary) = check(&history, &state, &[], &[master], redis);
        assert_eq!(violations, vec![]);
        assert_eq!(summary.explained_by_redis_master, 1);
        assert_eq!(summary.explained[0].cause, Cause::RedisMasterKilled(master));
        // The tiered store's records are in SQL: the kill explains nothing there.
        let tiered = Rules {
            store: ProxyStore::Tiered,
            ..RULES
        };
        let (violations, _) = check(&history, &state, &[], &[master], tiered);
        assert_eq!(
            kinds(&violations),
            vec![ViolationKind::UnexplainedExecution]
        );
        // A kill before the first execution lost nothing of this key.
        let early = MasterKill {
            at_ms: 50,
            ..master
        };
        let (violations, _) = check(&history, &state, &[], &[early], redis);
        assert_eq!(
            kinds(&violations),
            vec![ViolationKind::UnexplainedExecution]
        );
    }
}
