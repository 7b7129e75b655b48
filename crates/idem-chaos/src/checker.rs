//! The checker: holds what the clients saw against what the database and the API hold at
//! the end, and names every broken promise.
//!
//! The checks, in the order they run: every order settled with a final answer; the answer
//! was one a well-formed order may get; no order paid twice; every payment is the order
//! its client sent; every 201 a client saw is stored and served again by the API; every
//! deliberate re-send got the first answer replayed or the 422 it had to get; the ledger
//! equals the balances; no balance below zero; the sum of all balances unchanged.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use crate::client::{Answer, Order, OrderHistory, Resend, Sent};

/// A payment row as the database holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentRow {
    /// The service's id for it.
    pub payment_id: String,
    /// The client's order id.
    pub order_id: String,
    /// Paying account.
    pub payer: String,
    /// Paid account.
    pub payee: String,
    /// Minor units.
    pub amount: i64,
}

/// An account as the database holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountRow {
    /// Its id.
    pub account_id: String,
    /// Balance now.
    pub balance: i64,
    /// Balance it was opened with.
    pub opening_balance: i64,
}

impl From<(String, i64, i64)> for AccountRow {
    /// A row read as `account_id, balance, opening_balance`.
    fn from((account_id, balance, opening_balance): (String, i64, i64)) -> Self {
        Self {
            account_id,
            balance,
            opening_balance,
        }
    }
}

/// How a stored transfer differs from the order its client sent, if it does, as
/// `payer -> payee amount, sent payer -> payee amount`.
pub(crate) fn differs(sent: &Order, payer: &str, payee: &str, amount: i64) -> Option<String> {
    ((payer, payee, amount) != (sent.payer.as_str(), sent.payee.as_str(), sent.amount)).then(|| {
        format!(
            "{payer} -> {payee} {amount}, sent {} -> {} {}",
            sent.payer, sent.payee, sent.amount
        )
    })
}

/// What the run's database and API hold at the end.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    /// Every account.
    pub accounts: Vec<AccountRow>,
    /// Every payment row.
    pub payments: Vec<PaymentRow>,
    /// The sum of ledger deltas per account.
    pub ledger: BTreeMap<String, i64>,
    /// `GET /v1/payments/{order_id}` for every order a client saw paid: status and body.
    pub served: HashMap<String, (u16, String)>,
}

/// What the clients did: the accounts they opened and every order's history.
#[derive(Debug, Clone, Default)]
pub struct History {
    /// Account id and the balance it was opened with.
    pub accounts: Vec<(String, i64)>,
    /// Every order.
    pub orders: Vec<OrderHistory>,
}

/// The kinds of broken promise, in the order the checker looks for them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ViolationKind {
    /// An order or re-send got no final answer before the run's drain ended.
    Unsettled,
    /// A well-formed order got an answer it never may (such as 422 on its first sending).
    UnexpectedAnswer,
    /// One `order_id` has more than one payment: money moved twice.
    DoublePayment,
    /// Proxy target: a key the upstream executed again with no kill or lease end of the
    /// holder of its earlier execution to explain it.
    UnexplainedExecution,
    /// Proxy target with a fencing-aware upstream: a key executed twice at all.
    SecondExecution,
    /// A payment row (or an upstream execution) differs from the order its client sent, or
    /// names an unknown order.
    PaymentMismatch,
    /// Proxy target: a client saw 201 naming an execution the upstream has no record of.
    AckNotExecuted,
    /// A client saw 201, but the payment is not stored or is served with another body.
    AckNotStored,
    /// A re-send of the same order did not get the first answer, byte for byte.
    ReplayMismatch,
    /// Broker targets: a reply to an order differs from its first answer, or more than one
    /// 201 reply claims a fresh effect.
    ReplyMismatch,
    /// A re-send with another amount was not refused with 422 `order_id_conflict`.
    ConflictNotRefused,
    /// An account's balance differs from its opening balance plus its ledger entries, or
    /// plus its payments.
    LedgerMismatch,
    /// A balance is below zero.
    NegativeBalance,
    /// The sum of all balances is not the sum the accounts were opened with.
    SumChanged,
}

/// One broken promise, with what shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Violation {
    /// Which promise.
    pub kind: ViolationKind,
    /// What was seen.
    pub detail: String,
}

/// Runs every check and returns the violations found (none: the run held).
pub fn check(history: &History, observed: &Observed) -> Vec<Violation> {
    let mut out = Vec::new();
    let mut flag = |kind, detail: String| out.push(Violation { kind, detail });
    let orders: HashMap<&str, &OrderHistory> = history
        .orders
        .iter()
        .map(|h| (h.order.order_id.as_str(), h))
        .collect();

    for h in &history.orders {
        check_settled(h, &[201, 402], &mut flag);
    }

    let mut paid: HashMap<&str, Vec<&PaymentRow>> = HashMap::new();
    for p in &observed.payments {
        paid.entry(p.order_id.as_str()).or_default().push(p);
    }
    let mut paid_ids: Vec<&&str> = paid.keys().collect();
    paid_ids.sort();
    for id in paid_ids {
        let rows = &paid[*id];
        if rows.len() > 1 {
            let ids: Vec<&str> = rows.iter().map(|r| r.payment_id.as_str()).collect();
            flag(
                ViolationKind::DoublePayment,
                format!("order {id} paid {} times: {}", rows.len(), ids.join(", ")),
            );
        }
        for row in rows {
            match orders.get(*id) {
                None => flag(
                    ViolationKind::PaymentMismatch,
                    format!(
                        "payment {} names order {id}, which no client sent",
                        row.payment_id
                    ),
                ),
                Some(h) => {
                    if let Some(diff) = differs(&h.order, &row.payer, &row.payee, row.amount) {
                        flag(
                            ViolationKind::PaymentMismatch,
                            format!("order {id}: stored {diff}"),
                        );
                    }
                }
            }
        }
    }

    for h in &history.orders {
        check_answers(h, observed, &mut flag);
    }

    check_money(history, observed, &mut flag);
    out
}

/// Every sending of `h` settled with a final answer, and its first sending answered with
/// one of `expected` statuses.
pub(crate) fn check_settled(
    h: &OrderHistory,
    expected: &[u16],
    flag: &mut impl FnMut(ViolationKind, String),
) {
    let id = &h.order.order_id;
    for sent in sendings(h) {
        if sent.answer.is_none() {
            flag(
                ViolationKind::Unsettled,
                format!(
                    "order {id}: no final answer after {} attempts",
                    sent.attempts
                ),
            );
        }
    }
    if let Some(a) = &h.first.answer {
        if !expected.contains(&a.status) {
            flag(
                ViolationKind::UnexpectedAnswer,
                format!("order {id}: first sending answered {} {}", a.status, a.body),
            );
        }
    }
}

/// Every sending of an order: the first, then the deliberate re-sends.
pub(crate) fn sendings(h: &OrderHistory) -> impl Iterator<Item = &Sent> {
    std::iter::once(&h.first).chain(h.resends.iter().map(|r| match r {
        Resend::Same(s) | Resend::OtherAmount(_, s) => s,
    }))
}

/// Every 201 stored and served again; every re-send answered as it must be.
fn check_answers(
    h: &OrderHistory,
    observed: &Observed,
    flag: &mut impl FnMut(ViolationKind, String),
) {
    let id = &h.order.order_id;
    let first_paid = h.first.answer.as_ref().filter(|a| a.status == 201);
    let seen_201 = first_paid.or_else(|| {
        h.resends.iter().find_map(|r| match r {
            Resend::Same(Sent {
                answer: Some(a), ..
            }) if a.status == 201 => Some(a),
            _ => None,
        })
    });
    if let Some(a) = seen_201 {
        match observed.served.get(id.as_str()) {
            Some((200, body)) if json_eq(body, &a.body) => {}
            Some((status, body)) => flag(
                ViolationKind::AckNotStored,
                format!(
                    "order {id}: client saw 201 {}, API serves {status} {body}",
                    a.body
                ),
            ),
            None => flag(
                ViolationKind::AckNotStored,
                format!("order {id}: client saw 201 {}, never read back", a.body),
            ),
        }
    }
    check_resends(h, first_paid, "order_id_conflict", flag);
}

/// Every re-send of the same order got `first` replayed, byte for byte; every re-send with
/// another amount 422 with the problem code `conflict_code`.
pub(crate) fn check_resends(
    h: &OrderHistory,
    first_paid: Option<&Answer>,
    conflict_code: &str,
    flag: &mut impl FnMut(ViolationKind, String),
) {
    let id = &h.order.order_id;
    for resend in &h.resends {
        match resend {
            Resend::Same(Sent {
                answer: Some(again),
                ..
            }) => {
                if let Some(first) = first_paid {
                    if !is_replay_of(again, first) {
                        flag(
                            ViolationKind::ReplayMismatch,
                            format!(
                                "order {id}: first {} {}, re-sent got {} {} (replayed: {})",
                                first.status, first.body, again.status, again.body, again.replayed
                            ),
                        );
                    }
                }
            }
            Resend::OtherAmount(
                amount,
                Sent {
                    answer: Some(a), ..
                },
            ) if a.status != 422 || a.code().as_deref() != Some(conflict_code) => {
                flag(
                    ViolationKind::ConflictNotRefused,
                    format!(
                        "order {id} re-sent with amount {amount}: {} {}",
                        a.status, a.body
                    ),
                );
            }
            _ => {}
        }
    }
}

/// Whether `again` is `first` replayed: the same status and bytes, marked replayed.
pub(crate) fn is_replay_of(again: &Answer, first: &Answer) -> bool {
    again.status == first.status && again.body == first.body && again.replayed
}

fn json_eq(a: &str, b: &str) -> bool {
    match (
        serde_json::from_str::<serde_json::Value>(a),
        serde_json::from_str::<serde_json::Value>(b),
    ) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// The ledger equals the balances; no balance below zero; the total unchanged.
pub(crate) fn check_money(
    history: &History,
    observed: &Observed,
    flag: &mut impl FnMut(ViolationKind, String),
) {
    let mut by_payments: HashMap<&str, i64> = HashMap::new();
    for p in &observed.payments {
        *by_payments.entry(p.payer.as_str()).or_default() -= p.amount;
        *by_payments.entry(p.payee.as_str()).or_default() += p.amount;
    }
    let opened: HashMap<&str, i64> = history
        .accounts
        .iter()
        .map(|(id, b)| (id.as_str(), *b))
        .collect();
    for a in &observed.accounts {
        let id = a.account_id.as_str();
        let ledger = observed.ledger.get(id).copied().unwrap_or(0);
        let moved = by_payments.get(id).copied().unwrap_or(0);
        if a.opening_balance + ledger != a.balance || a.opening_balance + moved != a.balance {
            flag(
                ViolationKind::LedgerMismatch,
                format!(
                    "account {id}: balance {}, opened {} + ledger {ledger}, + payments {moved}",
                    a.balance, a.opening_balance
                ),
            );
        }
        if opened.get(id).is_some_and(|b| *b != a.opening_balance) {
            flag(
                ViolationKind::LedgerMismatch,
                format!(
                    "account {id}: opened with {} per the database, {} per its client",
                    a.opening_balance, opened[id]
                ),
            );
        }
        if a.balance < 0 {
            flag(
                ViolationKind::NegativeBalance,
                format!("account {id}: balance {}", a.balance),
            );
        }
    }
    let before: i64 = history.accounts.iter().map(|(_, b)| b).sum();
    let after: i64 = observed.accounts.iter().map(|a| a.balance).sum();
    if before != after || observed.accounts.len() != history.accounts.len() {
        flag(
            ViolationKind::SumChanged,
            format!(
                "{} accounts opened with {before} in total; {} hold {after}",
                history.accounts.len(),
                observed.accounts.len()
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::Order;

    fn answer(status: u16, body: &str, replayed: bool) -> Option<Answer> {
        Some(Answer {
            status,
            body: body.into(),
            replayed,
        })
    }

    fn paid_body(id: &str) -> String {
        format!(
            r#"{{"payment_id":"pay-{id}","order_id":"{id}","payer":"a","payee":"b","amount":10,"status":"succeeded","created_at":"t"}}"#
        )
    }

    /// Two accounts of 100; order o1 moves 10 from a to b, seen 201 and replayed once.
    fn clean() -> (History, Observed) {
        let order = Order {
            order_id: "o1".into(),
            payer: "a".into(),
            payee: "b".into(),
            amount: 10,
        };
        let body = paid_body("o1");
        let history = History {
            accounts: vec![("a".into(), 100), ("b".into(), 100)],
            orders: vec![OrderHistory {
                order,
                first: Sent {
                    attempts: 3,
                    answer: answer(201, &body, false),
                },
                resends: vec![
                    Resend::Same(Sent {
                        attempts: 1,
                        answer: answer(201, &body, true),
                    }),
                    Resend::OtherAmount(
                        11,
                        Sent {
                            attempts: 1,
                            answer: answer(422, r#"{"code":"order_id_conflict"}"#, false),
                        },
                    ),
                ],
            }],
        };
        let payment = PaymentRow {
            payment_id: "pay-o1".into(),
            order_id: "o1".into(),
            payer: "a".into(),
            payee: "b".into(),
            amount: 10,
        };
        let observed = Observed {
            accounts: vec![
                AccountRow {
                    account_id: "a".into(),
                    balance: 90,
                    opening_balance: 100,
                },
                AccountRow {
                    account_id: "b".into(),
                    balance: 110,
                    opening_balance: 100,
                },
            ],
            payments: vec![payment],
            ledger: [("a".to_string(), -10), ("b".to_string(), 10)]
                .into_iter()
                .collect(),
            served: [("o1".to_string(), (200, body))].into_iter().collect(),
        };
        (history, observed)
    }

    fn kinds(v: &[Violation]) -> Vec<ViolationKind> {
        v.iter().map(|v| v.kind).collect()
    }

    #[test]
    fn a_clean_history_has_no_violation() {
        let (history, observed) = clean();
        assert_eq!(check(&history, &observed), vec![]);
    }

    #[test]
    fn a_double_payment_is_found() {
        let (history, mut observed) = clean();
        let mut second = observed.payments[0].clone();
        second.payment_id = "pay-o1-again".into();
        observed.payments.push(second);
        for a in &mut observed.accounts {
            a.balance += if a.account_id == "a" { -10 } else { 10 };
            *observed
                .ledger
                .get_mut(&a.account_id)
                .expect("account in ledger") += if a.account_id == "a" { -10 } else { 10 };
        }
        let found = check(&history, &observed);
        assert_eq!(
            kinds(&found),
            vec![ViolationKind::DoublePayment],
            "{found:?}"
        );
        assert!(found[0].detail.contains("o1 paid 2 times"));
    }

    #[test]
    fn a_lost_acknowledgement_and_a_bad_replay_are_found() {
        let (mut history, mut observed) = clean();
        observed
            .served
            .insert("o1".into(), (404, r#"{"code":"payment_not_found"}"#.into()));
        if let Resend::Same(s) = &mut history.orders[0].resends[0] {
            s.answer = answer(201, &paid_body("o1").replace("pay-o1", "pay-other"), true);
        }
        if let Resend::OtherAmount(_, s) = &mut history.orders[0].resends[1] {
            s.answer = answer(201, &paid_body("o1"), true);
        }
        let found = kinds(&check(&history, &observed));
        assert_eq!(
            found,
            vec![
                ViolationKind::AckNotStored,
                ViolationKind::ReplayMismatch,
                ViolationKind::ConflictNotRefused
            ]
        );
    }

    #[test]
    fn money_out_of_thin_air_is_found() {
        let (mut history, mut observed) = clean();
        observed.accounts[1].balance += 5;
        observed.accounts[0].balance = -1;
        history.orders[0].first.answer = None;
        let found = kinds(&check(&history, &observed));
        assert_eq!(
            found,
            vec![
                ViolationKind::Unsettled,
                ViolationKind::LedgerMismatch,
                ViolationKind::NegativeBalance,
                ViolationKind::LedgerMismatch,
                ViolationKind::SumChanged
            ]
        );
    }
}
