//! The fault schedule: which request meets which fault, and when nodes die and database
//! connections are cut.
//!
//! Every decision is a pure function of the seed, so `--seed` repeats the schedule. A
//! request's fault depends on its request id (the order id and the attempt number), not on
//! when it arrives, so concurrent clients racing each other do not reshuffle the faults.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

/// What the load balancer does to one request (and a broker target's publisher, which
/// draws only [`Fault::Duplicate`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Forward it and pass the answer back.
    None,
    /// Forward it, let the node do the work, then drop the answer and close the connection:
    /// the client sees a reset, as after a network timeout.
    DropResponse,
    /// Send it to two nodes at once (a double click landing on two machines).
    Duplicate,
    /// Hold it past the client's timeout before delivering it (late delivery).
    DelayRequest,
    /// Deliver it, then hold the answer past the client's timeout (late answer).
    DelayResponse,
}

/// The per-request fault rates, each the probability in `[0, 1]` that a request meets it.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct FaultRates {
    /// Probability of [`Fault::DropResponse`].
    pub drop_response: f64,
    /// Probability of [`Fault::Duplicate`].
    pub duplicate: f64,
    /// Probability of a delay ([`Fault::DelayRequest`] or [`Fault::DelayResponse`], even odds).
    pub delay: f64,
}

impl FaultRates {
    /// The fault for the request named `request_id` under `seed`: the same inputs always give
    /// the same fault.
    pub fn decide(&self, seed: u64, request_id: &str) -> Fault {
        let x = mix(seed ^ fnv1a(request_id.as_bytes()));
        let p = unit(x);
        let mut edge = self.drop_response;
        if p < edge {
            return Fault::DropResponse;
        }
        edge += self.duplicate;
        if p < edge {
            return Fault::Duplicate;
        }
        edge += self.delay;
        if p < edge {
            // A second, independent draw picks which half of the exchange is late.
            return if mix(x) & 1 == 0 {
                Fault::DelayRequest
            } else {
                Fault::DelayResponse
            };
        }
        Fault::None
    }
}

/// A repeatable stream of timed events (node kills, database cuts): gaps of `every` give or
/// take half, each with a node picked at random.
#[derive(Debug)]
pub struct Ticker {
    rng: StdRng,
    every: Duration,
}

impl Ticker {
    /// A ticker for the event stream named `stream` (so kills and cuts under one seed differ).
    pub fn new(seed: u64, stream: &str, every: Duration) -> Self {
        Self {
            rng: StdRng::seed_from_u64(mix(seed ^ fnv1a(stream.as_bytes()))),
            every,
        }
    }

    /// A fair coin from the same stream (whether a partition's connections are left dead).
    pub fn coin(&mut self) -> bool {
        self.rng.gen_bool(0.5)
    }

    /// A duration of `around` give or take half, from the same stream.
    pub fn around(&mut self, around: Duration) -> Duration {
        around.mul_f64(self.rng.gen_range(0.5..1.5))
    }

    /// The wait before the next event, and a node index below `nodes` for it to hit.
    pub fn next_event(&mut self, nodes: usize) -> (Duration, usize) {
        let gap = self.every.mul_f64(self.rng.gen_range(0.5..1.5));
        let node = self.rng.gen_range(0..nodes.max(1));
        (gap, node)
    }
}

/// One kind of fault's counters: how often it was injected and how often it actually hit a
/// request (the node answered and the answer was lost, two nodes answered, a node died with
/// requests in flight, a database connection was killed).
#[derive(Debug, Default)]
pub struct Counter {
    injected: AtomicU64,
    hit: AtomicU64,
}

impl Counter {
    /// Count one injection.
    pub fn injected(&self) {
        self.injected.fetch_add(1, Ordering::Relaxed);
    }

    /// Count `n` hits.
    pub fn hit(&self, n: u64) {
        self.hit.fetch_add(n, Ordering::Relaxed);
    }

    fn snapshot(&self) -> KindReport {
        KindReport {
            injected: self.injected.load(Ordering::Relaxed),
            hit: self.hit.load(Ordering::Relaxed),
        }
    }
}

/// The live fault counters of a run, shared by the balancer, the killer and the cutter.
#[derive(Debug, Default)]
pub struct FaultStats {
    /// Answers dropped after the node did the work.
    pub drop_response: Counter,
    /// Requests sent to two nodes at once.
    pub duplicate: Counter,
    /// Requests or answers held past the client's timeout.
    pub delay: Counter,
    /// Nodes killed with SIGKILL (hit: requests in flight on the node when it died).
    pub kill: Counter,
    /// Database cuts (hit: server connections killed).
    pub cut_db: Counter,
    /// A node partitioned from its database (hit: connections caught by it).
    pub partition: Counter,
    /// Partitions healed with their connections left dead, half-open (hit: connections).
    pub left_dead: Counter,
    /// Restarts of the run's own database server (hit: restarts that completed).
    pub restart_db: Counter,
    /// Broker targets: every node's broker connections cut through its relay (hit:
    /// connections cut).
    pub cut_broker: Counter,
}

impl FaultStats {
    /// The counters as they stand.
    pub fn snapshot(&self) -> FaultReport {
        FaultReport {
            drop_response: self.drop_response.snapshot(),
            duplicate: self.duplicate.snapshot(),
            delay: self.delay.snapshot(),
            kill: self.kill.snapshot(),
            cut_db: self.cut_db.snapshot(),
            partition: self.partition.snapshot(),
            left_dead: self.left_dead.snapshot(),
            restart_db: self.restart_db.snapshot(),
            cut_broker: self.cut_broker.snapshot(),
        }
    }
}

/// One fault kind in the report.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct KindReport {
    /// How often it was injected.
    pub injected: u64,
    /// How often it actually hit a request (see [`FaultStats`] for each kind's meaning).
    pub hit: u64,
}

/// Every fault kind in the report.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct FaultReport {
    /// Answers dropped after the node did the work.
    pub drop_response: KindReport,
    /// Requests sent to two nodes at once (hit: both nodes answered).
    pub duplicate: KindReport,
    /// Requests or answers held past the client's timeout (hit: the node answered).
    pub delay: KindReport,
    /// SIGKILLs (hit: requests in flight on the killed node).
    pub kill: KindReport,
    /// Database cuts (hit: connections killed).
    pub cut_db: KindReport,
    /// Nodes partitioned from the database, packets silently dropped (hit: connections
    /// caught).
    pub partition: KindReport,
    /// Partitions whose connections were left dead after the heal (hit: connections).
    pub left_dead: KindReport,
    /// Restarts of the run's own database server (hit: completed).
    pub restart_db: KindReport,
    /// Broker targets: the nodes' broker connections cut (hit: connections cut).
    pub cut_broker: KindReport,
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// SplitMix64's finaliser: spreads nearby inputs over the whole range.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn unit(x: u64) -> f64 {
    // 53 random bits make every f64 in [0, 1) equally likely.
    (x >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    const RATES: FaultRates = FaultRates {
        drop_response: 0.1,
        duplicate: 0.1,
        delay: 0.05,
    };

    #[test]
    fn same_seed_gives_the_same_request_faults() {
        let ids: Vec<String> = (0..2000).map(|i| format!("o-3-{i}#1")).collect();
        let a: Vec<Fault> = ids.iter().map(|id| RATES.decide(7, id)).collect();
        let b: Vec<Fault> = ids.iter().map(|id| RATES.decide(7, id)).collect();
        let c: Vec<Fault> = ids.iter().map(|id| RATES.decide(8, id)).collect();
        assert_eq!(a, b);
        assert_ne!(a, c, "another seed must give another schedule");
    }

    #[test]
    fn request_faults_follow_their_rates() {
        let n = 20_000;
        let faults: Vec<Fault> = (0..n)
            .map(|i| RATES.decide(42, &format!("o-{i}#1")))
            .collect();
        let share =
            |f: &dyn Fn(&Fault) -> bool| faults.iter().filter(|x| f(x)).count() as f64 / n as f64;
        let drop = share(&|f| *f == Fault::DropResponse);
        let dup = share(&|f| *f == Fault::Duplicate);
        let delay = share(&|f| matches!(f, Fault::DelayRequest | Fault::DelayResponse));
        let late_request = share(&|f| *f == Fault::DelayRequest);
        assert!((drop - 0.1).abs() < 0.01, "drop share {drop}");
        assert!((dup - 0.1).abs() < 0.01, "duplicate share {dup}");
        assert!((delay - 0.05).abs() < 0.01, "delay share {delay}");
        assert!(late_request > 0.01, "both halves of the delay occur");
        assert!(FaultRates::default().decide(1, "x#1") == Fault::None);
    }

    #[test]
    fn same_seed_gives_the_same_kill_and_cut_timeline() {
        let every = Duration::from_secs(4);
        let run = |seed, stream| {
            let mut t = Ticker::new(seed, stream, every);
            (0..50).map(|_| t.next_event(3)).collect::<Vec<_>>()
        };
        assert_eq!(run(1, "kill"), run(1, "kill"));
        assert_ne!(run(1, "kill"), run(2, "kill"));
        assert_ne!(run(1, "kill"), run(1, "cut"));
        for (gap, node) in run(9, "kill") {
            assert!(gap >= every / 2 && gap <= every * 3 / 2, "gap {gap:?}");
            assert!(node < 3);
        }
    }
}
