//! The model's state: the store's records and clock, the clients, the messages in flight,
//! and the ghost variables the properties read.
//!
//! Everything is small integers so that millions of states fit in memory: a token is a
//! `u8`, a time is a [`Tick`], a response is the index of the client that produced it.

use crate::Tick;

/// One record as the store keeps it, in the model's small integers. [`crate::ProtocolModel`]
/// turns it into an `idem::Record` whenever a rule of `idem::decide` is asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Rec {
    /// The payload (so the fingerprint) of the request that wrote it.
    pub payload: u8,
    /// In progress, completed or released.
    pub state: RecState,
    /// When it expires, in store ticks ([`crate::FOREVER`] for never).
    pub expires_at: Tick,
}

/// Where a record is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RecState {
    /// Held under `token` until `lease_until`.
    InProgress {
        /// The holder's fencing token.
        token: u8,
        /// When the lease ends.
        lease_until: Tick,
    },
    /// Completed by the holder of `token` with the response of client `response`.
    Completed {
        /// The completer's token.
        token: u8,
        /// The index of the client whose response is stored.
        response: u8,
    },
    /// Released by the holder of `token`: absent to every caller, kept until it expires.
    Released {
        /// The releaser's token.
        token: u8,
    },
}

/// One client's request: which attempt it is on and where that attempt is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Client {
    /// The attempt under way (0 for the first sending).
    pub attempt: u8,
    /// Where the attempt is.
    pub phase: Phase,
}

/// Where a client's attempt is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Phase {
    /// About to send `begin`.
    Idle,
    /// `begin` sent, waiting for its answer.
    Asking,
    /// Told `InFlight`: asks again once the store's clock reaches `until`.
    Sleeping {
        /// The store time the client's `retry_after` ends at.
        until: Tick,
    },
    /// Holds the record under `token` and runs the operation. Its effect is part of the
    /// `complete` step (docs/MODEL.md: a crash before or after an unrecorded effect leaves
    /// the store in the same state).
    Holding {
        /// The token `begin` gave.
        token: u8,
        /// When the record's retention ends (the latest the holder acts, by assumption).
        deadline: Tick,
    },
    /// `complete` sent, waiting for its answer.
    Completing {
        /// The token sent.
        token: u8,
    },
    /// `release` sent, waiting for its answer.
    Releasing {
        /// The token sent.
        token: u8,
    },
    /// Answered: the request is over for its user.
    Done(Settled),
    /// Ran out of attempts.
    GaveUp,
}

/// How a client's request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Settled {
    /// Its own `complete` was acknowledged.
    Answered,
    /// It was given the stored response of client `.0`.
    Replayed(u8),
    /// Refused: the key holds another request.
    Mismatched,
}

/// A message in flight. The network delivers them in any order and late; a lost reply is
/// the client's timeout ([`crate::Action::Crash`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Msg {
    /// A call from a client's attempt to the store.
    Request {
        /// The calling client.
        client: u8,
        /// The attempt that called.
        attempt: u8,
        /// The call.
        op: Op,
    },
    /// The store's answer to a client's attempt.
    Reply {
        /// The called-back client.
        client: u8,
        /// The attempt the answer is for; a later attempt ignores it.
        attempt: u8,
        /// The answer.
        reply: Reply,
    },
}

/// A store call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Op {
    /// `begin` (with the client's key and payload).
    Begin,
    /// The second round trip of [`crate::Variant::CheckThenInsert`]: write what the read
    /// decided, unconditionally.
    Write {
        /// The token decided.
        token: u8,
        /// Whether it decided a take-over.
        recovered: bool,
    },
    /// `complete` with the client's response.
    Complete {
        /// The caller's token.
        token: u8,
        /// The caller's deadline (its record's retention end).
        deadline: Tick,
    },
    /// `release`.
    Release {
        /// The caller's token.
        token: u8,
        /// The caller's deadline.
        deadline: Tick,
    },
}

/// A store answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reply {
    /// `begin`: run it under `token`.
    Acquired {
        /// The token.
        token: u8,
        /// The record's retention end.
        deadline: Tick,
    },
    /// `begin`: the stored response of client `.0`.
    Replay(u8),
    /// `begin`: the key holds another request.
    Mismatch,
    /// `begin`: still running elsewhere; ask again at store time `until`.
    InFlight {
        /// When the lease ends.
        until: Tick,
    },
    /// `complete` or `release` done.
    Ok,
    /// `complete` or `release` refused: the caller no longer holds the record.
    Fenced,
}

/// What the properties remember about one key beyond the store's own state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Ghost {
    /// The attempt `(client, attempt)` the store last gave the record to, until it
    /// completes or releases it: every other attempt is fenced.
    pub holder: Option<(u8, u8)>,
    /// The first response completed in the record's current generation.
    pub first: Option<u8>,
    /// The last acknowledged completion and the end of its retention.
    pub acked: Option<(u8, Tick)>,
    /// Effects committed (transactional mode only).
    pub effects: u8,
}

/// The whole model state.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct State {
    /// The store's clock.
    pub now: Tick,
    /// The record of each key, if any.
    pub records: Vec<Option<Rec>>,
    /// Each client.
    pub clients: Vec<Client>,
    /// Messages in flight, sorted (a multiset).
    pub net: Vec<Msg>,
    /// Per key, what the properties remember.
    pub ghosts: Vec<Ghost>,
    /// Violations seen in a step ([`Broken`] bits), read by the properties.
    pub broken: u8,
}

/// The properties that a single step breaks, kept as bits in [`State::broken`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Broken {
    /// A `complete` from a fenced holder was accepted.
    FencedCompleteAccepted = 1,
    /// A replay differed from the first completed response.
    ReplayDiffers = 2,
    /// A request got the stored response of another payload.
    MismatchGotResponse = 4,
}

impl State {
    /// True when step property `which` was broken on the way here.
    pub fn is_broken(&self, which: Broken) -> bool {
        self.broken & which as u8 != 0
    }

    /// Adds a message to the network, keeping it sorted.
    pub(crate) fn send(&mut self, msg: Msg) {
        let at = self.net.partition_point(|m| *m <= msg);
        self.net.insert(at, msg);
    }
}
