//! `--target nats|amqp`: the payment nodes consuming payment requests from a broker
//! (`idem serve --nats` or `--amqp`), publishers in place of HTTP clients, the nodes'
//! broker connections cut through relays of the run's own, and the payment checker with
//! every reply checked against the first answer. The run's stream or queues and the
//! publishers' endpoints ([`Broker`]) serve `idem bench --broker` too.

mod checker;
mod link;
mod publisher;
mod run;

pub use checker::{check_replies, BrokerSummary};
pub use link::{
    Broker, BrokerKind, Endpoint, Link, Names, OnReply, Windows, NATS_ACK_WAIT,
    NATS_DUPLICATE_WINDOW,
};
pub use publisher::{OrderLog, Reply, ReplyLog};
pub(crate) use run::run;
