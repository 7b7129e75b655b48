//! The model-based property test: random sequences of begin / complete / release / time
//! advance / purge / get run against a plain model of DESIGN §2 and against a store, and
//! every answer of the store must be the model's.
//!
//! Time moves in steps of 7 s against a 10 s lease and a 45 s TTL, so every lease end and
//! expiry falls at least 3 s away from any moment the test looks: the real time a case
//! takes (milliseconds) cannot push an answer across a boundary.

use std::collections::HashMap;
use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

use super::Harness;
use crate::{
    Claim, FencingToken, Fingerprint, Hold, Key, Outcome, RecordState, Scope, Store, StoreError,
    StoredResponse, TimeTravel,
};

const KEYS: u8 = 3;
const STEP_MS: i64 = 7_000;
const LEASE_MS: i64 = 10_000;
const TTL_MS: i64 = 45_000;
const SLACK_MS: i64 = 3_000;

/// One step of a generated sequence.
#[derive(Debug, Clone)]
pub enum Op {
    /// `begin` on key `key` with fingerprint number `fp`.
    Begin {
        /// Which of the keys.
        key: u8,
        /// Which of two fingerprints.
        fp: u8,
    },
    /// `complete` with the latest token issued for the key, or a stale one.
    Complete {
        /// Which of the keys.
        key: u8,
        /// Use a token one below the latest.
        stale: bool,
        /// Which response to store.
        response: u8,
    },
    /// `release` with the latest token issued for the key, or a stale one.
    Release {
        /// Which of the keys.
        key: u8,
        /// Use a token one below the latest.
        stale: bool,
    },
    /// Age the store's records by `steps` × 7 s.
    Advance {
        /// How many steps.
        steps: u8,
    },
    /// Purge expired records in batches of `limit` until none is left.
    Purge {
        /// The batch size.
        limit: u8,
    },
    /// `get` on a key.
    Get {
        /// Which of the keys.
        key: u8,
    },
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..KEYS, 0..2u8).prop_map(|(key, fp)| Op::Begin { key, fp }),
        3 => (0..KEYS, prop::bool::weighted(0.2), 0..3u8).prop_map(|(key, stale, response)| Op::Complete { key, stale, response }),
        1 => (0..KEYS, prop::bool::weighted(0.2)).prop_map(|(key, stale)| Op::Release { key, stale }),
        2 => (1..=4u8).prop_map(|steps| Op::Advance { steps }),
        1 => (1..=3u8).prop_map(|limit| Op::Purge { limit }),
        1 => (0..KEYS).prop_map(|key| Op::Get { key }),
    ]
}

#[derive(Debug, Clone)]
struct ModelRecord {
    fp: u8,
    token: u64,
    lease_until: i64,
    expires_at: i64,
    completed: Option<u8>,
    /// Released: absent to callers, kept (with its token) until it expires.
    released: bool,
}

#[derive(Debug, Default)]
struct Model {
    now: i64,
    records: HashMap<u8, ModelRecord>,
    issued: HashMap<u8, u64>,
}

impl Model {
    fn live(&self, key: u8) -> Option<&ModelRecord> {
        self.records
            .get(&key)
            .filter(|r| r.expires_at > self.now && !r.released)
    }

    fn token_for(&self, key: u8, stale: bool) -> FencingToken {
        let latest = self.issued.get(&key).copied().unwrap_or(1);
        FencingToken(if stale {
            latest.saturating_sub(1)
        } else {
            latest
        })
    }

    fn holds(&self, key: u8, token: FencingToken) -> bool {
        matches!(self.live(key), Some(r) if r.completed.is_none() && r.token == token.0)
    }
}

fn the_key(key: u8) -> Key {
    Key::new(format!("model-{key}")).expect("valid key")
}

fn the_fp(fp: u8) -> Fingerprint {
    Fingerprint::of_bytes("POST", "/model", &[fp])
}

fn the_response(n: u8) -> StoredResponse {
    StoredResponse::new(200 + u16::from(n), format!("response {n}")).with_header("x-n", vec![n])
}

fn lease() -> Duration {
    Duration::from_millis(LEASE_MS as u64)
}

fn ttl() -> Duration {
    Duration::from_millis(TTL_MS as u64)
}

fn fail(msg: String) -> TestCaseError {
    TestCaseError::fail(msg)
}

/// Checks the answer to a holder's `complete` or `release` (`what`): success when the model
/// says the caller `holds` the record, `Fenced` otherwise. True when it succeeded, so the
/// caller updates the model.
fn holder_or_fenced(
    holds: bool,
    got: &Result<(), StoreError>,
    what: &str,
    at: &dyn Fn(&str) -> String,
) -> Result<bool, TestCaseError> {
    if holds {
        prop_assert!(
            got.is_ok(),
            "{}",
            at(&format!("holder's {what} must succeed, got {got:?}"))
        );
    } else {
        prop_assert!(
            matches!(got, Err(StoreError::Fenced)),
            "{}",
            at(&format!("expected Fenced, got {got:?}"))
        );
    }
    Ok(holds)
}

/// Runs `ops` against `store` and the model. `drops_expired`: the store drops a record
/// itself at its expiry ([`Harness::DROPS_EXPIRED`]), as if purged at that moment.
async fn run_ops<S: Store + TimeTravel>(
    store: &S,
    ops: &[Op],
    drops_expired: bool,
) -> Result<(), TestCaseError> {
    let scope = Scope::new("model").expect("valid scope");
    let mut model = Model::default();
    for (step, op) in ops.iter().enumerate() {
        let at = |what: &str| format!("step {step} {op:?}: {what}");
        match *op {
            Op::Begin { key, fp } => {
                let got = store
                    .begin(Claim::new(
                        &scope,
                        &the_key(key),
                        &the_fp(fp),
                        lease(),
                        ttl(),
                    ))
                    .await
                    .map_err(|e| fail(at(&format!("begin failed: {e}"))))?;
                let now = model.now;
                let expected_write = match model.live(key) {
                    None => Some(false),
                    Some(r) if r.fp != fp => {
                        prop_assert_eq!(&got, &Outcome::Mismatch, "{}", at("another fingerprint"));
                        None
                    }
                    Some(r) => match r.completed {
                        Some(n) => {
                            prop_assert_eq!(
                                &got,
                                &Outcome::Replay(the_response(n)),
                                "{}",
                                at("completed")
                            );
                            None
                        }
                        None if r.lease_until > now => {
                            let expected_ms = r.lease_until - now;
                            match got {
                                Outcome::InFlight { retry_after } => {
                                    let ms = retry_after.as_millis() as i64;
                                    prop_assert!(
                                        ms <= expected_ms && ms >= expected_ms - SLACK_MS,
                                        "{}",
                                        at(&format!("retry_after {ms} ms, model {expected_ms} ms"))
                                    );
                                }
                                other => {
                                    return Err(fail(at(&format!(
                                        "expected InFlight, got {other:?}"
                                    ))))
                                }
                            }
                            None
                        }
                        None => Some(true),
                    },
                };
                if let Some(recovered) = expected_write {
                    let previous = model.records.get(&key).map(|r| r.token);
                    match got {
                        Outcome::Acquired {
                            token,
                            recovered: r,
                        } => {
                            prop_assert_eq!(r, recovered, "{}", at("recovered flag"));
                            // A take-over, and a new generation over an expired or
                            // released record, never reuse a token.
                            prop_assert!(
                                !matches!(previous, Some(p) if token.0 <= p),
                                "{}",
                                at(&format!(
                                    "token {} must exceed the record's {previous:?}",
                                    token.0
                                ))
                            );
                            model.issued.insert(key, token.0);
                            model.records.insert(
                                key,
                                ModelRecord {
                                    fp,
                                    token: token.0,
                                    lease_until: now + LEASE_MS,
                                    expires_at: now + TTL_MS,
                                    completed: None,
                                    released: false,
                                },
                            );
                        }
                        other => {
                            return Err(fail(at(&format!(
                                "expected Acquired(recovered={recovered}), got {other:?}"
                            ))))
                        }
                    }
                }
            }
            Op::Complete {
                key,
                stale,
                response,
            } => {
                let token = model.token_for(key, stale);
                let got = store
                    .complete(
                        Hold::new(&scope, &the_key(key), token),
                        &the_response(response),
                    )
                    .await;
                if holder_or_fenced(model.holds(key, token), &got, "complete", &at)? {
                    if let Some(r) = model.records.get_mut(&key) {
                        r.completed = Some(response);
                    }
                }
            }
            Op::Release { key, stale } => {
                let token = model.token_for(key, stale);
                let got = store.release(Hold::new(&scope, &the_key(key), token)).await;
                if holder_or_fenced(model.holds(key, token), &got, "release", &at)? {
                    if let Some(r) = model.records.get_mut(&key) {
                        r.released = true;
                    }
                }
            }
            Op::Advance { steps } => {
                let by = STEP_MS * i64::from(steps);
                store
                    .advance(Duration::from_millis(by as u64))
                    .await
                    .map_err(|e| fail(at(&format!("advance failed: {e}"))))?;
                model.now += by;
                if drops_expired {
                    let now = model.now;
                    model.records.retain(|_, r| r.expires_at > now);
                }
            }
            Op::Purge { limit } => {
                let now = model.now;
                let expired = model
                    .records
                    .values()
                    .filter(|r| r.expires_at <= now)
                    .count();
                let mut total = 0;
                loop {
                    let purged = store
                        .purge_expired(usize::from(limit))
                        .await
                        .map_err(|e| fail(at(&format!("purge failed: {e}"))))?;
                    prop_assert!(
                        purged <= usize::from(limit),
                        "{}",
                        at(&format!("a batch of {purged} exceeds the limit"))
                    );
                    total += purged;
                    if purged < usize::from(limit) {
                        break;
                    }
                }
                prop_assert_eq!(
                    total,
                    expired,
                    "{}",
                    at("purge removes exactly the expired records")
                );
                model.records.retain(|_, r| r.expires_at > now);
            }
            Op::Get { key } => {
                let got = store
                    .get(&scope, &the_key(key))
                    .await
                    .map_err(|e| fail(at(&format!("get failed: {e}"))))?;
                match (model.live(key), got) {
                    (None, None) => {}
                    (Some(r), Some(record)) => {
                        prop_assert_eq!(record.fingerprint, the_fp(r.fp), "{}", at("fingerprint"));
                        match (r.completed, &record.state) {
                            (Some(n), RecordState::Completed { response, .. }) => prop_assert_eq!(
                                response,
                                &the_response(n),
                                "{}",
                                at("stored response")
                            ),
                            (None, RecordState::InProgress { token, .. }) => {
                                prop_assert_eq!(token.0, r.token, "{}", at("token"))
                            }
                            (_, state) => {
                                return Err(fail(at(&format!("model {r:?}, store {state:?}"))))
                            }
                        }
                    }
                    (model, store) => {
                        return Err(fail(at(&format!("model {model:?}, store {store:?}"))))
                    }
                }
            }
        }
    }
    Ok(())
}

/// Runs the property test: `PROPTEST_CASES` sequences (default 48) of up to 40 steps, each
/// on a fresh store from `harness`. Panics with the shrunk failing sequence.
pub fn check<H: Harness>(runtime: &tokio::runtime::Runtime, harness: &H) {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(48);
    let config = Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    };
    let mut runner = TestRunner::new(config);
    let strategy = proptest::collection::vec(op_strategy(), 1..40);
    let result = runner.run(&strategy, |ops| {
        runtime.block_on(async {
            let store = harness.fresh().await;
            run_ops(&store, &ops, H::DROPS_EXPIRED).await
        })
    });
    if let Err(failure) = result {
        panic!("the store disagrees with the model of DESIGN §2: {failure}");
    }
}
