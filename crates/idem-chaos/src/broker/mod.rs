//! `--target nats|amqp`: the payment nodes consuming payment requests from a broker
//! (`idem serve --nats` or `--amqp`), publishers in place of HTTP clients, the nodes'
//! broker connections cut through relays of the run's own, and the payment checker with
//! every reply checked against the first answer.

mod checker;
mod link;
mod run;

pub use checker::{check_replies, BrokerSummary};
pub use link::{BrokerKind, OrderLog, Reply, ReplyLog, NATS_ACK_WAIT, NATS_DUPLICATE_WINDOW};
pub(crate) use run::run;
