//! [`ProtocolModel`]: the clients, the network and the store as one stateright [`Model`],
//! whose store decides every step with the rules of `idem::decide`.

use std::fmt::Write as _;
use std::time::Duration;

use idem::decide::{self, BeginStep};
use idem::{
    FencingToken, Fingerprint, Key, Outcome, Record, RecordState, Scope, StoredResponse, Timestamp,
    TTL_FOREVER,
};
use stateright::{Model, Property};

use crate::state::{Broken, Client, Ghost, Msg, Op, Phase, Rec, RecState, Reply, Settled, State};
use crate::{properties, Config, Tick, Variant, FOREVER};

/// One step of the model: something a client, the network or the store does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Client `.0` sends `begin` for a new attempt.
    Send(u8),
    /// Client `.0` wakes from `InFlight` and asks again.
    Wake(u8),
    /// Client `.0` sends `complete`.
    Complete(u8),
    /// Client `.0` gives up its operation before any effect and sends `release`.
    Release(u8),
    /// Client `.0` crashes or times out; it retries as a new attempt if it has one left.
    Crash(u8),
    /// The network delivers message `.0` (an index into [`State::net`]): a request is one
    /// atomic step of the store, a reply reaches its client.
    Deliver(usize),
    /// The store's clock advances one tick.
    Tick,
    /// `purge_expired` deletes the expired record of key `.0`.
    Purge(u8),
}

/// The protocol as a stateright model: K clients, the store's records, its clock and a
/// network that delays and reorders messages (a lost reply is the client's timeout), with
/// idem's rules deciding every store step. See the crate docs and docs/MODEL.md.
#[derive(Debug, Clone)]
pub struct ProtocolModel {
    config: Config,
    scope: Scope,
    keys: Vec<Key>,
    fingerprints: Vec<Fingerprint>,
    responses: Vec<StoredResponse>,
}

impl ProtocolModel {
    /// A model of `config`.
    ///
    /// # Panics
    /// When the configuration has more than 16 clients or a lease of zero ticks.
    pub fn new(config: Config) -> Self {
        assert!(
            config.clients.len() <= 16,
            "the model's messages name clients with u8 and the bounds are for a handful"
        );
        assert!(config.lease > 0, "a lease of zero ticks never runs");
        let keys = (0..config.keys())
            .map(|k| Key::new(format!("key-{k}")).expect("model keys are valid"))
            .collect();
        let fingerprints = (0..config.payloads())
            .map(|p| Fingerprint::of_bytes("POST", "/pay", format!("payload-{p}").as_bytes()))
            .collect();
        let responses = (0..config.clients.len())
            .map(|c| StoredResponse::new(201, format!("response of client {c}")))
            .collect();
        Self {
            config,
            scope: Scope::global(),
            keys,
            fingerprints,
            responses,
        }
    }

    /// The configuration this model was built from.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The clock's hard end: the horizon plus one lease for every attempt that could take
    /// the key, past which no wait can last under correct rules.
    pub fn end_of_time(&self) -> Tick {
        let acquisitions: u32 = self
            .config
            .clients
            .iter()
            .map(|c| u32::from(c.attempts))
            .sum::<u32>()
            + 1;
        let end = u32::from(self.config.horizon) + u32::from(self.config.lease) * acquisitions;
        Tick::try_from(end.min(u32::from(FOREVER - 1))).unwrap_or(FOREVER - 1)
    }

    // --- between the model's integers and idem's types ---------------------------------

    fn key_of(&self, client: u8) -> usize {
        usize::from(self.config.clients[usize::from(client)].key)
    }

    fn payload_of(&self, client: u8) -> u8 {
        self.config.clients[usize::from(client)].payload
    }

    /// The store time a step asked by `client` is decided at: the store's clock, or the
    /// skewed node's own clock in [`Variant::NodeClock`].
    fn clock_for(&self, state: &State, client: u8) -> Tick {
        match self.config.variant {
            Variant::NodeClock { skew } if client == 0 => {
                state.now.saturating_add(skew).min(FOREVER - 1)
            }
            _ => state.now,
        }
    }

    /// The `idem::Record` the store's rules see for `rec` under key `key`.
    pub fn record(&self, key: usize, rec: &Rec) -> Record {
        let state = match rec.state {
            RecState::InProgress { token, lease_until } => RecordState::InProgress {
                token: FencingToken(u64::from(token)),
                lease_until: timestamp(lease_until),
            },
            RecState::Completed { token, response } => RecordState::Completed {
                token: FencingToken(u64::from(token)),
                response: self.responses[usize::from(response)].clone(),
            },
            RecState::Released { token } => RecordState::Released {
                token: FencingToken(u64::from(token)),
            },
        };
        Record {
            scope: self.scope.clone(),
            key: self.keys[key].clone(),
            fingerprint: self.fingerprints[usize::from(rec.payload)],
            state,
            // No rule reads the creation time.
            created_at: Timestamp(0),
            expires_at: timestamp(rec.expires_at),
        }
    }

    /// The model's record state for a state `idem::decide` wrote.
    fn rec_state(&self, state: &RecordState) -> RecState {
        let token = |t: &FencingToken| small(*t);
        match state {
            RecordState::InProgress {
                token: t,
                lease_until,
            } => RecState::InProgress {
                token: token(t),
                lease_until: tick(*lease_until),
            },
            RecordState::Completed { token: t, response } => RecState::Completed {
                token: token(t),
                response: self.response_index(response),
            },
            RecordState::Released { token: t } => RecState::Released { token: token(t) },
        }
    }

    fn existing(&self, state: &State, key: usize) -> Option<Record> {
        state.records[key].as_ref().map(|rec| self.record(key, rec))
    }

    /// True when `token` may `complete` or `release` key `key` at store time `now`, by
    /// `idem::decide::holds`.
    pub fn holds(&self, state: &State, key: usize, token: u8, now: Tick) -> bool {
        decide::holds(
            self.existing(state, key).as_ref(),
            FencingToken(u64::from(token)),
            timestamp(now),
        )
    }

    /// True when key `key`'s record has expired at `now`, by `idem::decide::expired`.
    pub fn expired(&self, state: &State, key: usize, now: Tick) -> bool {
        self.existing(state, key)
            .is_some_and(|record| decide::expired(&record, timestamp(now)))
    }

    /// What `begin` by a request with `payload` on key `key` decides at `now`, by
    /// `idem::decide::begin_step`.
    pub fn begin_step(&self, state: &State, key: usize, payload: u8, now: Tick) -> BeginStep {
        decide::begin_step(
            self.existing(state, key).as_ref(),
            &self.fingerprints[usize::from(payload)],
            timestamp(now),
        )
    }

    fn response_index(&self, response: &StoredResponse) -> u8 {
        let index = self
            .responses
            .iter()
            .position(|r| r == response)
            .expect("a replayed response is one some client completed");
        u8::try_from(index).expect("at most 16 clients")
    }

    fn lease_and_expiry(&self, now: Tick) -> (Tick, Tick) {
        let ttl = self
            .config
            .ttl
            .map_or(TTL_FOREVER, |t| Duration::from_millis(u64::from(t)));
        let (lease_until, expires_at) = decide::lease_and_expiry(
            timestamp(now),
            Duration::from_millis(u64::from(self.config.lease)),
            ttl,
        );
        (tick(lease_until), tick(expires_at))
    }

    // --- the steps -----------------------------------------------------------------------

    /// The step `action` takes from `state`, and a line saying what happened when `log`
    /// is given. `None` when the action changes nothing.
    pub fn step(&self, state: &State, action: Action, log: Option<&mut String>) -> Option<State> {
        let mut next = state.clone();
        let mut line = String::new();
        let describe = log.is_some();
        macro_rules! say {
            ($($arg:tt)*) => {
                if describe {
                    let _ = write!(line, $($arg)*);
                }
            };
        }
        match action {
            Action::Send(c) | Action::Wake(c) => {
                let client = &mut next.clients[usize::from(c)];
                client.phase = Phase::Asking;
                let attempt = client.attempt;
                next.send(Msg::Request {
                    client: c,
                    attempt,
                    op: Op::Begin,
                });
                if matches!(action, Action::Wake(_)) {
                    say!(
                        "client {c} (attempt {attempt}) waited out retry_after, sends begin again"
                    );
                } else {
                    say!("client {c} (attempt {attempt}) sends begin");
                }
            }
            Action::Complete(c) => {
                let client = &mut next.clients[usize::from(c)];
                let Phase::Holding { token, deadline } = client.phase else {
                    return None;
                };
                client.phase = Phase::Completing { token };
                let attempt = client.attempt;
                next.send(Msg::Request {
                    client: c,
                    attempt,
                    op: Op::Complete { token, deadline },
                });
                say!("client {c} runs its effect and sends complete with token {token}");
            }
            Action::Release(c) => {
                let client = &mut next.clients[usize::from(c)];
                let Phase::Holding { token, deadline } = client.phase else {
                    return None;
                };
                client.phase = Phase::Releasing { token };
                let attempt = client.attempt;
                next.send(Msg::Request {
                    client: c,
                    attempt,
                    op: Op::Release { token, deadline },
                });
                say!("client {c} fails before its effect and sends release with token {token}");
            }
            Action::Crash(c) => {
                let phase = next.clients[usize::from(c)].phase;
                self.retry(&mut next, c);
                say!("client {c} crashes or times out in {phase:?}; ");
                say!("{}", retry_words(&next.clients[usize::from(c)]));
            }
            Action::Deliver(i) => {
                let msg = next.net.remove(i);
                match msg {
                    Msg::Request {
                        client,
                        attempt,
                        op,
                    } => {
                        let key = self.key_of(client);
                        let clock = self.clock_for(&next, client);
                        let reply = self.store_step(&mut next, client, attempt, op);
                        say!(
                            "store: {op:?} from client {client} (attempt {attempt}) on key {key}: "
                        );
                        match reply {
                            Some(reply) => say!("{reply:?}"),
                            None => say!("the read decides to write; the write is on its way"),
                        }
                        if clock != next.now {
                            say!(" (decided at its node's clock, t={clock})");
                        }
                    }
                    Msg::Reply {
                        client,
                        attempt,
                        reply,
                    } => {
                        let taken = self.receive(&mut next, client, attempt, reply);
                        if taken {
                            say!("client {client} receives {reply:?}");
                            if matches!(
                                next.clients[usize::from(client)].phase,
                                Phase::Idle | Phase::GaveUp
                            ) {
                                say!("; {}", retry_words(&next.clients[usize::from(client)]));
                            }
                        } else {
                            say!(
                                "client {client} ignores {reply:?} meant for its attempt {attempt}"
                            );
                        }
                    }
                }
            }
            Action::Tick => {
                next.now += 1;
                say!("the store's clock ticks to {}", next.now);
                let before = next.net.len();
                next.net.retain(|msg| self.deliverable(next.now, msg));
                if next.net.len() < before {
                    say!("; calls past their holder's deadline are never made");
                }
            }
            Action::Purge(k) => {
                next.records[usize::from(k)] = None;
                say!("purge_expired deletes the expired record of key {k}");
            }
        }
        if let Some(log) = log {
            *log = line;
        }
        Some(next)
    }

    /// One atomic step of the store on a request; returns what it answered (`None` for
    /// the read of [`Variant::CheckThenInsert`], which answers with its write).
    fn store_step(&self, next: &mut State, c: u8, attempt: u8, op: Op) -> Option<Reply> {
        let key = self.key_of(c);
        let payload = self.payload_of(c);
        let now = self.clock_for(next, c);
        let reply = match op {
            Op::Begin => match self.begin_step(next, key, payload, now) {
                BeginStep::Write { token, recovered } => {
                    let token = small(token);
                    if self.config.variant == Variant::CheckThenInsert {
                        // The node got its decision; its write is a second round trip.
                        next.send(Msg::Request {
                            client: c,
                            attempt,
                            op: Op::Write { token, recovered },
                        });
                        return None;
                    }
                    self.write(next, c, attempt, token, recovered, now)
                }
                BeginStep::Answer(Outcome::Replay(response)) => {
                    let r = self.response_index(&response);
                    let ghost = next.ghosts[key];
                    if ghost.first != Some(r) {
                        next.broken |= Broken::ReplayDiffers as u8;
                    }
                    if self.payload_of(r) != payload {
                        next.broken |= Broken::MismatchGotResponse as u8;
                    }
                    Reply::Replay(r)
                }
                BeginStep::Answer(Outcome::Mismatch) => Reply::Mismatch,
                BeginStep::Answer(Outcome::InFlight { retry_after }) => {
                    let wait = u64::try_from(retry_after.as_millis()).unwrap_or(u64::MAX);
                    let until = u64::from(next.now).saturating_add(wait);
                    Reply::InFlight {
                        until: Tick::try_from(until.min(u64::from(FOREVER))).unwrap_or(FOREVER),
                    }
                }
                BeginStep::Answer(Outcome::Acquired { .. }) => {
                    unreachable!("begin_step writes to acquire, it never answers Acquired")
                }
            },
            Op::Write { token, recovered } => self.write(next, c, attempt, token, recovered, now),
            Op::Complete { token, .. } => {
                let accepted = match self.config.variant {
                    Variant::NoFencing => {
                        next.records[key].is_some() && !self.expired(next, key, now)
                    }
                    _ => decide::complete_step(
                        self.existing(next, key).as_ref(),
                        FencingToken(u64::from(token)),
                        &self.responses[usize::from(c)],
                        timestamp(now),
                    )
                    .is_some_and(|state| {
                        self.rec_state(&state) == RecState::Completed { token, response: c }
                    }),
                };
                if accepted {
                    if next.ghosts[key].holder != Some((c, attempt)) {
                        next.broken |= Broken::FencedCompleteAccepted as u8;
                    }
                    let ghost = &mut next.ghosts[key];
                    ghost.holder = None;
                    ghost.first.get_or_insert(c);
                    if self.config.transactional {
                        ghost.effects = ghost.effects.saturating_add(1);
                    }
                    let rec = next.records[key]
                        .as_mut()
                        .expect("an accepted complete has a record");
                    rec.state = RecState::Completed { token, response: c };
                    ghost.acked = Some((c, rec.expires_at));
                    Reply::Ok
                } else {
                    Reply::Fenced
                }
            }
            Op::Release { token, .. } => {
                let step = decide::release_step(
                    self.existing(next, key).as_ref(),
                    FencingToken(u64::from(token)),
                    timestamp(now),
                );
                match (step, next.records[key].as_mut()) {
                    (Some(state), Some(rec)) => {
                        rec.state = self.rec_state(&state);
                        next.ghosts[key].holder = None;
                        Reply::Ok
                    }
                    _ => Reply::Fenced,
                }
            }
        };
        next.send(Msg::Reply {
            client: c,
            attempt,
            reply,
        });
        Some(reply)
    }

    /// `begin`'s write: a new holder under `token`, leased from `now`.
    fn write(
        &self,
        next: &mut State,
        c: u8,
        attempt: u8,
        token: u8,
        recovered: bool,
        now: Tick,
    ) -> Reply {
        let key = self.key_of(c);
        let (lease_until, expires_at) = self.lease_and_expiry(now);
        next.records[key] = Some(Rec {
            payload: self.payload_of(c),
            state: RecState::InProgress { token, lease_until },
            expires_at,
        });
        let ghost = &mut next.ghosts[key];
        ghost.holder = Some((c, attempt));
        if !recovered {
            // A new generation of the key: its first completion is yet to come.
            ghost.first = None;
        }
        Reply::Acquired {
            token,
            deadline: expires_at,
        }
    }

    /// A reply reaching client `c`; false when the client ignores it (another attempt's,
    /// or not what it waits for).
    fn receive(&self, next: &mut State, c: u8, attempt: u8, reply: Reply) -> bool {
        let client = &mut next.clients[usize::from(c)];
        if client.attempt != attempt {
            return false;
        }
        match (client.phase, reply) {
            (Phase::Asking, Reply::Acquired { token, deadline }) => {
                client.phase = Phase::Holding { token, deadline };
            }
            (Phase::Asking, Reply::Replay(r)) => client.phase = Phase::Done(Settled::Replayed(r)),
            (Phase::Asking, Reply::Mismatch) => client.phase = Phase::Done(Settled::Mismatched),
            (Phase::Asking, Reply::InFlight { until }) => client.phase = Phase::Sleeping { until },
            (Phase::Completing { .. }, Reply::Ok) => client.phase = Phase::Done(Settled::Answered),
            // A refused complete is an error to the user, who retries; so is a released
            // operation (it failed).
            (Phase::Completing { .. }, Reply::Fenced)
            | (Phase::Releasing { .. }, Reply::Ok | Reply::Fenced) => {
                self.retry(next, c);
            }
            _ => return false,
        }
        true
    }

    /// Client `c`'s current attempt ends without an answer: the next attempt, or giving up.
    fn retry(&self, next: &mut State, c: u8) {
        // Replies to the attempt that ends would be ignored: they are as good as lost.
        next.net
            .retain(|msg| !matches!(msg, Msg::Reply { client, .. } if *client == c));
        let client = &mut next.clients[usize::from(c)];
        if client.attempt + 1 < self.config.clients[usize::from(c)].attempts {
            client.attempt += 1;
            client.phase = Phase::Idle;
        } else {
            client.phase = Phase::GaveUp;
        }
    }

    /// Whether the network may still deliver `msg` at `now`: under the assumption
    /// [`Config::holders_end_within_retention`], a holder's call past its deadline is never
    /// made (its node gave up first), so it leaves the network when the clock passes it.
    fn deliverable(&self, now: Tick, msg: &Msg) -> bool {
        match msg {
            Msg::Request {
                op: Op::Complete { deadline, .. } | Op::Release { deadline, .. },
                ..
            } => !self.config.holders_end_within_retention || now < *deadline,
            _ => true,
        }
    }

    /// What happened in the step `action` from `state`, in words (for traces).
    pub fn describe(&self, state: &State, action: Action) -> String {
        let mut line = String::new();
        let _ = self.step(state, action, Some(&mut line));
        format!("t={} {line}", state.now)
    }
}

fn retry_words(client: &Client) -> String {
    match client.phase {
        Phase::GaveUp => "no attempt left: it gives up".to_owned(),
        _ => format!("it will retry as attempt {}", client.attempt),
    }
}

/// A tick as the store's time (ticks are milliseconds).
fn timestamp(t: Tick) -> Timestamp {
    if t == FOREVER {
        Timestamp(idem::DURATION_MS_MAX)
    } else {
        Timestamp(i64::from(t))
    }
}

/// The store's time as a tick, [`FOREVER`] when past every tick the model reaches.
fn tick(t: Timestamp) -> Tick {
    Tick::try_from(t.as_millis()).unwrap_or(FOREVER)
}

fn small(token: FencingToken) -> u8 {
    u8::try_from(token.0).expect("tokens stay small within the model's bounds")
}

impl Model for ProtocolModel {
    type State = State;
    type Action = Action;

    fn init_states(&self) -> Vec<State> {
        let keys = self.config.keys();
        vec![State {
            now: 0,
            records: vec![None; keys],
            clients: vec![
                Client {
                    attempt: 0,
                    phase: Phase::Idle,
                };
                self.config.clients.len()
            ],
            net: Vec::new(),
            ghosts: vec![Ghost::default(); keys],
            broken: 0,
        }]
    }

    fn actions(&self, state: &State, actions: &mut Vec<Action>) {
        for (i, client) in state.clients.iter().enumerate() {
            let c = u8::try_from(i).expect("at most 16 clients");
            match client.phase {
                Phase::Idle => actions.push(Action::Send(c)),
                Phase::Sleeping { until } if until <= state.now => actions.push(Action::Wake(c)),
                // Under the retention assumption a holder past its deadline only gives up.
                Phase::Holding { deadline, .. }
                    if !self.config.holders_end_within_retention || state.now < deadline =>
                {
                    actions.push(Action::Complete(c));
                    actions.push(Action::Release(c));
                }
                _ => {}
            }
            if matches!(
                client.phase,
                Phase::Asking
                    | Phase::Holding { .. }
                    | Phase::Completing { .. }
                    | Phase::Releasing { .. }
            ) {
                actions.push(Action::Crash(c));
            }
        }
        for (i, msg) in state.net.iter().enumerate() {
            // Identical messages are one choice.
            if i > 0 && state.net[i - 1] == *msg {
                continue;
            }
            actions.push(Action::Deliver(i));
        }
        let someone_waits = state
            .clients
            .iter()
            .any(|c| matches!(c.phase, Phase::Sleeping { until } if until > state.now));
        if state.now < self.config.horizon || (someone_waits && state.now < self.end_of_time()) {
            actions.push(Action::Tick);
        }
        for key in 0..state.records.len() {
            if self.expired(state, key, state.now) {
                actions.push(Action::Purge(u8::try_from(key).expect("few keys")));
            }
        }
    }

    fn next_state(&self, state: &State, action: Action) -> Option<State> {
        self.step(state, action, None)
    }

    fn format_action(&self, action: &Action) -> String {
        format!("{action:?}")
    }

    fn format_step(&self, last_state: &State, action: Action) -> Option<String> {
        let line = self.describe(last_state, action);
        self.next_state(last_state, action)
            .map(|next| format!("{line}\n\n{next:#?}"))
    }

    fn properties(&self) -> Vec<Property<Self>> {
        properties::all()
    }
}
