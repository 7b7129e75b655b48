//! # idem-bench — what idem costs per request, and whether it really runs once
//!
//! The library behind `idem bench`:
//!
//! - a load generator for the payment API (DESIGN §5): keep-alive HTTP/1.1 clients,
//!   closed-loop or at a fixed rate, for a duration or a request count, mixing fresh
//!   payments, replays and conflicting reuses of an `order_id`, every answer checked
//!   against the contract, latency in HDR histograms ([`run`], [`BenchArgs`]);
//! - the database's own limit: the same money movement as a bare SQL transaction, and as
//!   one SQL statement per payment, on a fresh database with the same concurrency, each
//!   with its ratio ([`baseline`]);
//! - who pays whom: uniformly, or a hot-account mix with most payments to a few payees,
//!   for the load and the baselines alike ([`Skew`]);
//! - the broker path: fresh orders published to `idem serve --nats` or `--amqp` on a
//!   stream or queue of the run's own, each reply awaited, against the same consumer loop
//!   with the node's idempotency off ([`BrokerReport`]);
//! - a sweep over client counts with a plot of throughput and p99 ([`plot`]);
//! - the workload of the peer comparison (`bench/peers/run.sh`): fresh keys, replays and
//!   a race of identical requests against any idempotent endpoint ([`peers`]).
//!
//! ## Example
//!
//! ```text
//! idem bench --spawn --database sqlite://bench.db --fresh-database --clients 32 --duration 10s
//! idem bench --url http://127.0.0.1:8080 --mix fresh=80,replay=15,conflict=5 --json
//! idem bench --spawn --database postgres://postgres@127.0.0.1/test --fresh-database \
//!     --mix fresh=1 --baseline-sql --baseline-statement --accounts-skew hot
//! idem bench --broker nats://127.0.0.1:4222 --spawn --idem-bin target/release/idem \
//!     --database postgres://postgres@127.0.0.1/test --fresh-database --baseline-unsafe
//! ```

mod args;
pub mod baseline;
mod broker;
mod client;
mod error;
mod load;
mod payments;
pub mod peers;
pub mod plot;
mod report;
mod run;
mod server;
mod skew;
mod stats;

pub use args::{parse_duration, parse_header, BenchArgs, Kind, Mix};
pub use broker::{BrokerLoad, BrokerReport};
pub use client::{Answer, Conn, Target};
pub use error::{BenchError, Result};
pub use load::{drive, LoadClient, Pace, Step};
pub use payments::{PaymentClient, Workload};
pub use report::{Report, Summary, SweepPoint, SweepReport};
pub use run::{run, run_blocking};
pub use server::{address_in, Server};
pub use skew::{Skew, HOT_PAYEES, HOT_SHARE};
pub use stats::{median, Figures, Recorder, Tally};
