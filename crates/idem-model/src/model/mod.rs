//! [`ProtocolModel`]: the clients, the network and the store as one stateright [`Model`],
//! whose store decides every step with the rules of `idem::decide`.

use std::fmt::Write as _;

use idem::{Fingerprint, Key, Scope, StoredResponse};
use stateright::{Model, Property};

mod store;

use crate::state::{Client, Ghost, Msg, Op, Phase, Reply, Settled, State};
use crate::{properties, Config, Tick, FOREVER};

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
