//! What the model is made of: the clients, the store's lease and retention, the bounds, and
//! which protocol ([`Variant`]) the store runs.

use crate::Tick;

/// Which protocol the modelled store runs: the real one, or a known-bad one the checker
/// must catch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Variant {
    /// idem's rules as `idem::decide` states them.
    Correct,
    /// `complete` stores the response whenever a live record exists, without checking
    /// that the caller still holds it (no fencing token check).
    NoFencing,
    /// Client 0's node decides with its own clock, `skew` ticks ahead of the store's,
    /// instead of the store's time.
    NodeClock {
        /// How far ahead of the store's clock client 0's node is, in ticks.
        skew: Tick,
    },
    /// `begin` reads the record and decides in one round trip, then writes what it
    /// decided in a second one, unconditionally: check-then-insert in two steps.
    CheckThenInsert,
}

impl Variant {
    /// The names the examples' `--variant` takes, in the order of the enum.
    pub const NAMES: &'static str = "correct, no-fencing, node-clock or check-then-insert";

    /// The variant a command line names (`node-clock` with a skew of 2 ticks), if any.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "correct" => Some(Self::Correct),
            "no-fencing" => Some(Self::NoFencing),
            "node-clock" => Some(Self::NodeClock { skew: 2 }),
            "check-then-insert" => Some(Self::CheckThenInsert),
            _ => None,
        }
    }
}

/// One client: a request under `key` whose body is `payload`. Two clients with the same
/// key and payload are the same request sent twice (a retry landing on another node); the
/// same key with another payload is a key reused for another request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientSpec {
    /// Which key the request is under (0, 1, …).
    pub key: u8,
    /// Which body it carries (0, 1, …); its fingerprint is the fingerprint of this body.
    pub payload: u8,
    /// How many times the client may send its request: the first time plus the retries
    /// after a crash, a timeout (a lost reply), a refused `complete` or a `release`.
    pub attempts: u8,
}

impl ClientSpec {
    /// A client sending `payload` under `key`, with `attempts` sendings.
    pub const fn new(key: u8, payload: u8, attempts: u8) -> Self {
        Self {
            key,
            payload,
            attempts,
        }
    }
}

/// The bounds and the setting of one model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The clients, one request each.
    pub clients: Vec<ClientSpec>,
    /// The lease `begin` grants, in ticks of the store's clock.
    pub lease: Tick,
    /// How long a record is retained, in ticks; `None` keeps records for ever (the
    /// payment service's business keys, `idem::TTL_FOREVER`).
    pub ttl: Option<Tick>,
    /// The store's clock advances freely up to this tick; after it, only while a client
    /// waits for a lease to end (so every wait ends, and the state space stays finite).
    pub horizon: Tick,
    /// Transactional mode: the effect commits in the same step as `complete` (the SQL
    /// stores' `complete_in` inside the caller's transaction), and a refused `complete`
    /// rolls it back.
    pub transactional: bool,
    /// The protocol the store runs.
    pub variant: Variant,
    /// The environment assumption that no holder acts on its token once its record's
    /// retention (TTL) has ended (docs/MODEL.md, "Assumptions"). Without it a holder
    /// stalled for longer than the TTL meets a later generation of its key.
    pub holders_end_within_retention: bool,
}

impl Config {
    /// The bound CI checks on every `cargo test`: three clients on one key — the same
    /// request sent from two nodes, the first of which retries once, and another request
    /// under the same key — lease 1, TTL 2, the clock free up to tick 1 (and on while a
    /// client waits for a lease to end).
    pub fn small() -> Self {
        Self {
            clients: vec![
                ClientSpec::new(0, 0, 2),
                ClientSpec::new(0, 0, 1),
                ClientSpec::new(0, 1, 1),
            ],
            lease: 1,
            ttl: Some(2),
            horizon: 1,
            transactional: false,
            variant: Variant::Correct,
            holders_end_within_retention: true,
        }
    }

    /// The full bound (docs/MODEL.md gives its size and time): the small bound with a
    /// retry for the client of the other payload too, and the clock free up to tick 2,
    /// the TTL.
    pub fn full() -> Self {
        Self {
            clients: vec![
                ClientSpec::new(0, 0, 2),
                ClientSpec::new(0, 0, 1),
                ClientSpec::new(0, 1, 2),
            ],
            horizon: 2,
            ..Self::small()
        }
    }

    /// The same clients in transactional mode, records kept for ever (the payment
    /// service's setting), for the rule "at most one effect per key".
    pub fn transactional(self) -> Self {
        Self {
            transactional: true,
            ttl: None,
            ..self
        }
    }

    /// The same bounds with another protocol variant.
    pub fn with_variant(self, variant: Variant) -> Self {
        Self { variant, ..self }
    }

    /// How many keys the clients use.
    pub fn keys(&self) -> usize {
        self.clients
            .iter()
            .map(|c| usize::from(c.key) + 1)
            .max()
            .unwrap_or(0)
    }

    /// How many distinct payloads the clients send.
    pub fn payloads(&self) -> usize {
        self.clients
            .iter()
            .map(|c| usize::from(c.payload) + 1)
            .max()
            .unwrap_or(0)
    }
}
