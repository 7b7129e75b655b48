//! The broker targets' own checks, on top of the payment checker: every reply an order
//! got, late ones included, against its first answer.

use std::collections::{HashMap, HashSet};
use std::fmt;

use serde::Serialize;

use crate::broker::link::BrokerKind;
use crate::broker::publisher::OrderLog;
use crate::checker::{History, Violation, ViolationKind};
use crate::client::{self, Answer, Resend};

/// What the publishers sent and got back.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct BrokerSummary {
    /// The broker.
    pub broker: Option<BrokerKind>,
    /// The run's stream, or work queue.
    pub stream: String,
    /// How long the nodes held each answer between effect and ack, in milliseconds.
    pub settle_delay_ms: u64,
    /// Messages published: first publications, re-publications after a timeout, and
    /// deliberate duplicates.
    pub publications: u64,
    /// Replies received, late ones included.
    pub replies: u64,
    /// Replies marked `Idempotent-Replayed`.
    pub replays: u64,
    /// Deliveries seen again after their effect: replays of an order beyond what its
    /// publications explain (each needs a delivery that had its effect, then came again —
    /// a kill or a cut between the effect and the ack). A lower bound: a redelivery whose
    /// reply is lost is not seen.
    pub redelivered_after_effect: u64,
}

impl fmt::Display for BrokerSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let broker = match self.broker {
            Some(BrokerKind::Nats) => "NATS JetStream stream",
            Some(BrokerKind::Amqp) => "RabbitMQ queue",
            None => "broker",
        };
        writeln!(
            f,
            "  broker      {broker} {}: {} publications, {} replies ({} replays), answers held {} ms before the ack",
            self.stream, self.publications, self.replies, self.replays, self.settle_delay_ms
        )?;
        writeln!(
            f,
            "              deliveries seen again after their effect (kill or cut before the ack): {}",
            self.redelivered_after_effect
        )
    }
}

/// The status of a decline: no effect, nothing stored, not final.
const DECLINED: u16 = 402;

/// Checks every reply of every order of `history` against `log`. A decline (402) is not
/// final (DESIGN §5: nothing moves, the same order may be paid later), so it is answered
/// afresh each time and may come before the order's payment. Every other reply to the
/// order's own body is its first such answer, status and body byte for byte, and at most
/// one 201 is not a replay (one effect). Each reply to a re-send with another amount is the
/// 422 `order_id_conflict`. Fills the counts of `summary`.
pub fn check_replies(
    history: &History,
    log: &HashMap<String, OrderLog>,
    summary: &mut BrokerSummary,
) -> Vec<Violation> {
    let mut out = Vec::new();
    let mut flag = |kind, detail: String| out.push(Violation { kind, detail });
    for o in log.values() {
        summary.publications += o.publications.values().map(|n| u64::from(*n)).sum::<u64>();
        summary.replies += o.replies.len() as u64;
        summary.replays += o.replies.iter().filter(|r| r.answer.replayed).count() as u64;
    }
    for h in &history.orders {
        let id = h.order.order_id.as_str();
        let Some(o) = log.get(id) else { continue };
        let mut same: HashSet<String> = HashSet::from([id.to_owned()]);
        let mut other = HashSet::new();
        for (n, resend) in h.resends.iter().enumerate() {
            let request_id = format!("{id}/r{n}");
            match resend {
                Resend::Same(_) => same.insert(request_id),
                Resend::OtherAmount(..) => other.insert(request_id),
            };
        }
        let finals = |ids: &HashSet<String>| -> Vec<&Answer> {
            o.replies
                .iter()
                .filter(|r| ids.contains(&r.request_id) && client::is_final(r.answer.status))
                .map(|r| &r.answer)
                .collect()
        };
        let answers = finals(&same);
        let settled = |a: &&Answer| client::is_final(a.status) && a.status != DECLINED;
        let first = h
            .first
            .answer
            .as_ref()
            .filter(settled)
            .or(answers.iter().copied().find(settled));
        if let Some(first) = first {
            for a in answers.iter().copied().filter(settled) {
                if a.status != first.status || a.body != first.body {
                    flag(
                        ViolationKind::ReplyMismatch,
                        format!(
                            "order {id}: first answered {} {}, another reply {} {} (replayed: {})",
                            first.status, first.body, a.status, a.body, a.replayed
                        ),
                    );
                }
            }
        }
        let fresh = answers
            .iter()
            .filter(|a| a.status == 201 && !a.replayed)
            .count();
        if fresh > 1 {
            flag(
                ViolationKind::ReplyMismatch,
                format!("order {id}: {fresh} replies not marked replayed, one effect allows one"),
            );
        }
        for a in finals(&other) {
            if a.status != 422 || a.code().as_deref() != Some("order_id_conflict") {
                flag(
                    ViolationKind::ConflictNotRefused,
                    format!(
                        "order {id} re-sent with another amount: a reply {} {}",
                        a.status, a.body
                    ),
                );
            }
        }
        let published: u32 = o
            .publications
            .iter()
            .filter(|(k, _)| same.contains(*k))
            .map(|(_, n)| *n)
            .sum();
        let replays = answers.iter().filter(|a| a.replayed).count() as u64;
        summary.redelivered_after_effect +=
            replays.saturating_sub(u64::from(published.saturating_sub(1)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::link::BrokerKind;
    use crate::broker::publisher::ReplyLog;
    use crate::client::{Order, OrderHistory, Sent};

    fn answer(status: u16, body: &str, replayed: bool) -> Answer {
        Answer {
            status,
            body: body.into(),
            replayed,
        }
    }

    fn history(first: Answer, resends: Vec<Resend>) -> History {
        History {
            accounts: Vec::new(),
            orders: vec![OrderHistory {
                order: Order {
                    order_id: "o1".into(),
                    payer: "a".into(),
                    payee: "b".into(),
                    amount: 10,
                },
                first: Sent {
                    attempts: 1,
                    answer: Some(first),
                },
                resends,
            }],
        }
    }

    fn summary() -> BrokerSummary {
        BrokerSummary {
            broker: Some(BrokerKind::Nats),
            ..BrokerSummary::default()
        }
    }

    #[test]
    fn consistent_replies_pass_and_a_redelivery_after_the_effect_is_counted() {
        let paid = answer(201, "{\"payment_id\":\"p1\"}", false);
        let h = history(paid.clone(), Vec::new());
        let log = ReplyLog::default();
        // One publication, two replies: the first, then a replay of a redelivery.
        log.published("o1");
        log.replied("o1", paid.clone());
        log.replied(
            "o1",
            Answer {
                replayed: true,
                ..paid
            },
        );
        // A decline is answered afresh each time: no effect, no replay.
        let declined = answer(402, "{\"code\":\"insufficient_funds\"}", false);
        let mut h2 = history(declined.clone(), Vec::new());
        h2.orders[0].order.order_id = "o2".into();
        log.published("o2");
        log.published("o2");
        log.replied("o2", declined.clone());
        log.replied("o2", declined);
        let h = History {
            accounts: Vec::new(),
            orders: [h.orders, h2.orders].concat(),
        };
        let mut s = summary();
        assert_eq!(check_replies(&h, &log.snapshot(), &mut s), vec![]);
        assert_eq!((s.publications, s.replies, s.replays), (3, 4, 1));
        assert_eq!(s.redelivered_after_effect, 1);
    }

    #[test]
    fn a_decline_then_the_payment_passes_but_a_second_payment_body_does_not() {
        let declined = answer(402, "{\"code\":\"insufficient_funds\"}", false);
        let paid = answer(201, "{\"payment_id\":\"p1\"}", false);
        let h = history(declined.clone(), Vec::new());
        let log = ReplyLog::default();
        log.published("o1");
        log.published("o1");
        log.replied("o1", declined.clone());
        log.replied("o1", paid.clone());
        log.replied("o1", declined);
        let replay = Answer {
            replayed: true,
            ..paid
        };
        log.replied("o1", replay.clone());
        assert_eq!(check_replies(&h, &log.snapshot(), &mut summary()), vec![]);
        log.replied("o1", answer(201, "{\"payment_id\":\"p2\"}", true));
        let kinds: Vec<ViolationKind> = check_replies(&h, &log.snapshot(), &mut summary())
            .into_iter()
            .map(|v| v.kind)
            .collect();
        assert_eq!(kinds, vec![ViolationKind::ReplyMismatch]);
    }

    #[test]
    fn two_effects_and_a_bad_conflict_reply_are_found() {
        let paid = answer(201, "{\"payment_id\":\"p1\"}", false);
        let conflict = Resend::OtherAmount(
            11,
            Sent {
                attempts: 1,
                answer: Some(answer(422, "{\"code\":\"order_id_conflict\"}", false)),
            },
        );
        let h = history(paid.clone(), vec![conflict]);
        let log = ReplyLog::default();
        log.published("o1");
        log.published("o1");
        log.replied("o1", paid);
        log.replied("o1", answer(201, "{\"payment_id\":\"p2\"}", false));
        log.replied("o1/r0", answer(201, "{\"payment_id\":\"p3\"}", false));
        let mut s = summary();
        let kinds: Vec<ViolationKind> = check_replies(&h, &log.snapshot(), &mut s)
            .into_iter()
            .map(|v| v.kind)
            .collect();
        assert_eq!(
            kinds,
            vec![
                ViolationKind::ReplyMismatch,
                ViolationKind::ReplyMismatch,
                ViolationKind::ConflictNotRefused
            ]
        );
    }
}
