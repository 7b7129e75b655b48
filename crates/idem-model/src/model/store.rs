//! The store inside the model: the conversions between the model's small integers and
//! idem's types, and the store's atomic steps, each decided by `idem::decide`.

use std::time::Duration;

use idem::decide::{self, BeginStep};
use idem::{FencingToken, Outcome, Record, RecordState, StoredResponse, Timestamp, TTL_FOREVER};

use super::ProtocolModel;
use crate::state::{Broken, Msg, Op, Rec, RecState, Reply, State};
use crate::{Tick, Variant, FOREVER};

impl ProtocolModel {
    pub(super) fn key_of(&self, client: u8) -> usize {
        usize::from(self.config.clients[usize::from(client)].key)
    }

    pub(super) fn payload_of(&self, client: u8) -> u8 {
        self.config.clients[usize::from(client)].payload
    }

    /// The store time a step asked by `client` is decided at: the store's clock, or the
    /// skewed node's own clock in [`Variant::NodeClock`].
    pub(super) fn clock_for(&self, state: &State, client: u8) -> Tick {
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
    pub(super) fn rec_state(&self, state: &RecordState) -> RecState {
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

    pub(super) fn existing(&self, state: &State, key: usize) -> Option<Record> {
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

    pub(super) fn response_index(&self, response: &StoredResponse) -> u8 {
        let index = self
            .responses
            .iter()
            .position(|r| r == response)
            .expect("a replayed response is one some client completed");
        u8::try_from(index).expect("at most 16 clients")
    }

    pub(super) fn lease_and_expiry(&self, now: Tick) -> (Tick, Tick) {
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

    /// One atomic step of the store on a request; returns what it answered (`None` for
    /// the read of [`Variant::CheckThenInsert`], which answers with its write).
    pub(super) fn store_step(&self, next: &mut State, c: u8, attempt: u8, op: Op) -> Option<Reply> {
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
    pub(super) fn write(
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
