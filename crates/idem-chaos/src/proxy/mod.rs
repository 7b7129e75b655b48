//! `--target proxy`: `idem proxy` nodes on one shared store in front of an upstream of the
//! run's own that records every execution, and a checker that explains every second
//! execution by the kill or lease end that allows it, or names it a violation.

mod checker;
mod redis_master;
mod run;
mod upstream;

pub use checker::{check, Cause, ExecutionRef, Explained, ProxySummary, Rules};
pub use redis_master::MasterKill;
pub(crate) use run::run;
pub use upstream::{Execution, Upstream, UpstreamState};
