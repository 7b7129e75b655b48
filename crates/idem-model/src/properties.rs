//! The properties the checker proves at the bounds, by name.

use idem::decide::BeginStep;
use stateright::Property;

use crate::state::{Broken, Msg, Op, Phase, RecState, Reply, State};
use crate::ProtocolModel;

/// At any time, at most one attempt holds a token the store would accept for a key.
pub const ONE_UNFENCED_HOLDER: &str = "at most one un-fenced holder of a key";
/// A `complete` from an attempt the store has since given the key to someone else (or that
/// released it, or whose record was completed) is refused, and so changes nothing.
pub const FENCED_COMPLETE_REFUSED: &str = "a fenced holder's complete is refused";
/// Every replay is the first response completed in the record's generation.
pub const REPLAY_IS_FIRST_RESPONSE: &str = "every replay equals the first completed response";
/// A request never gets a response stored for another payload under its key.
pub const MISMATCH_GETS_NO_RESPONSE: &str = "a mismatched payload never receives a stored response";
/// Until its retention ends, an acknowledged completion stays stored as it was.
pub const ACKED_COMPLETION_KEPT: &str =
    "no acknowledged completion is lost before its retention ends";
/// Whenever a live in-progress record's lease has ended, its request would acquire it.
pub const ENDED_LEASE_ACQUIRABLE: &str = "a key whose lease has ended is acquirable by its request";
/// Transactional mode: at most one effect per key commits.
pub const ONE_EFFECT_PER_KEY: &str = "at most one effect per key (transactional mode)";
/// Liveness: every path ends with every client answered or out of attempts; no client
/// waits for ever on a key in flight.
pub const EVERY_CLIENT_SETTLES: &str = "every client eventually settles";

/// Reachability checks that keep the safety properties from holding vacuously.
pub const SOMETIMES_REPLAYED: &str = "sometimes a client is served a replay";
/// As above: the model reaches a second holder of a key (a take-over or a new generation).
pub const SOMETIMES_TAKEN_OVER: &str = "sometimes a later holder gets token 2";
/// As above: the model reaches a refused `complete`.
pub const SOMETIMES_FENCED: &str = "sometimes a complete is fenced";

/// Every property, in the order above.
pub fn all() -> Vec<Property<ProtocolModel>> {
    vec![
        Property::always(ONE_UNFENCED_HOLDER, one_unfenced_holder),
        Property::always(FENCED_COMPLETE_REFUSED, |_: &ProtocolModel, s: &State| {
            !s.is_broken(Broken::FencedCompleteAccepted)
        }),
        Property::always(REPLAY_IS_FIRST_RESPONSE, |_: &ProtocolModel, s: &State| {
            !s.is_broken(Broken::ReplayDiffers)
        }),
        Property::always(MISMATCH_GETS_NO_RESPONSE, |_: &ProtocolModel, s: &State| {
            !s.is_broken(Broken::MismatchGotResponse)
        }),
        Property::always(ACKED_COMPLETION_KEPT, acked_completion_kept),
        Property::always(ENDED_LEASE_ACQUIRABLE, ended_lease_acquirable),
        Property::always(ONE_EFFECT_PER_KEY, |m: &ProtocolModel, s: &State| {
            !m.config().transactional || s.ghosts.iter().all(|g| g.effects <= 1)
        }),
        Property::eventually(EVERY_CLIENT_SETTLES, |_: &ProtocolModel, s: &State| {
            s.clients
                .iter()
                .all(|c| matches!(c.phase, Phase::Done(_) | Phase::GaveUp))
        }),
        Property::sometimes(SOMETIMES_REPLAYED, |_: &ProtocolModel, s: &State| {
            s.net.iter().any(|m| {
                matches!(
                    m,
                    Msg::Reply {
                        reply: Reply::Replay(_),
                        ..
                    }
                )
            })
        }),
        Property::sometimes(SOMETIMES_TAKEN_OVER, |_: &ProtocolModel, s: &State| {
            s.records.iter().flatten().any(|r| {
                matches!(
                    r.state,
                    RecState::InProgress { token, .. } | RecState::Completed { token, .. } if token >= 2
                )
            })
        }),
        Property::sometimes(SOMETIMES_FENCED, |_: &ProtocolModel, s: &State| {
            s.net.iter().any(|m| {
                matches!(
                    m,
                    Msg::Reply {
                        reply: Reply::Fenced,
                        ..
                    }
                )
            })
        }),
    ]
}

/// The attempts that can still act with a token for key `key`: holders that have not
/// called yet (and, under the retention assumption, are within their deadline), and
/// `complete` or `release` calls still in flight; each attempt once.
fn holders(m: &ProtocolModel, s: &State, key: usize) -> Vec<(u8, u8, u8)> {
    let mut found: Vec<(u8, u8, u8)> = Vec::new();
    let mut add = |client: u8, attempt: u8, token: u8| {
        if !found.iter().any(|&(c, a, _)| (c, a) == (client, attempt)) {
            found.push((client, attempt, token));
        }
    };
    for (i, client) in s.clients.iter().enumerate() {
        let c = u8::try_from(i).expect("at most 16 clients");
        if usize::from(m.config().clients[i].key) != key {
            continue;
        }
        if let Phase::Holding { token, deadline } = client.phase {
            // Past its deadline a holder only gives up, under the retention assumption.
            if !m.config().holders_end_within_retention || s.now < deadline {
                add(c, client.attempt, token);
            }
        }
    }
    for msg in &s.net {
        if let Msg::Request {
            client,
            attempt,
            op: Op::Complete { token, .. } | Op::Release { token, .. },
        } = *msg
        {
            if usize::from(m.config().clients[usize::from(client)].key) == key {
                add(client, attempt, token);
            }
        }
    }
    found
}

fn one_unfenced_holder(m: &ProtocolModel, s: &State) -> bool {
    (0..s.records.len()).all(|key| {
        if s.records[key].is_none() {
            return true;
        }
        holders(m, s, key)
            .into_iter()
            .filter(|&(_, _, token)| m.holds(s, key, token, s.now))
            .count()
            <= 1
    })
}

fn acked_completion_kept(_: &ProtocolModel, s: &State) -> bool {
    s.ghosts.iter().zip(&s.records).all(|(ghost, record)| match ghost.acked {
        Some((response, retention_end)) if s.now < retention_end => matches!(
            record,
            Some(rec) if matches!(rec.state, RecState::Completed { response: r, .. } if r == response)
        ),
        _ => true,
    })
}

fn ended_lease_acquirable(m: &ProtocolModel, s: &State) -> bool {
    s.records
        .iter()
        .enumerate()
        .all(|(key, record)| match record {
            Some(rec) => match rec.state {
                RecState::InProgress { lease_until, .. }
                    if lease_until <= s.now && !m.expired(s, key, s.now) =>
                {
                    matches!(
                        m.begin_step(s, key, rec.payload, s.now),
                        BeginStep::Write {
                            recovered: true,
                            ..
                        }
                    )
                }
                _ => true,
            },
            None => true,
        })
}
