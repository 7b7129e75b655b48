//! Reading the replies of the store's scripts: integers, record bytes (a fixed header,
//! then the stored response) and the outcomes and records they stand for.

use std::time::Duration;

use idem::{
    FencingToken, Fingerprint, Key, Outcome, Record, RecordState, Scope, StoreError,
    StoredResponse, Timestamp,
};
use redis::Value;

use crate::error::bad_reply;

pub(super) fn int(value: &Value) -> Option<i64> {
    match value {
        Value::Int(n) => Some(*n),
        Value::BulkString(bytes) => std::str::from_utf8(bytes).ok()?.parse().ok(),
        _ => None,
    }
}

pub(super) fn bytes(value: &Value) -> Option<&[u8]> {
    match value {
        Value::BulkString(bytes) => Some(bytes),
        _ => None,
    }
}

pub(super) fn decode_response(raw: &[u8]) -> Result<StoredResponse, StoreError> {
    StoredResponse::decode(raw).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// The bytes of a record before its response: the fingerprint (32), then the state, token,
/// lease and life (expiry − creation, ms) as Lua's `struct.pack('>c1ddd', …)` writes them.
pub(super) const HEADER_LEN: usize = 57;

/// The state byte of a record in progress.
pub(super) const RUNNING: u8 = b'P';

/// The state byte of a completed record.
pub(super) const COMPLETED: u8 = b'C';

/// The state byte of a released record (absent to callers, kept for its token).
pub(super) const RELEASED: u8 = b'R';

/// Times up to here are exact as the doubles of the header (2^53).
pub(super) const EXACT_MS: i64 = 1 << 53;

/// One record as `begin.lua` lays it out in its string value. Its times count from its
/// creation; the absolute ones come from the key's expiry in Redis (see `begin.lua`).
pub(super) struct RawRecord<'a> {
    pub(super) fingerprint: &'a [u8],
    pub(super) completed: bool,
    pub(super) released: bool,
    pub(super) token: i64,
    pub(super) lease_ms: i64,
    pub(super) life_ms: i64,
    pub(super) response: &'a [u8],
}

impl<'a> RawRecord<'a> {
    pub(super) fn parse(raw: &'a [u8]) -> Result<Self, StoreError> {
        let corrupt = |what: &str| StoreError::Corrupt(format!("record {what} is unreadable"));
        if raw.len() < HEADER_LEN {
            return Err(corrupt("header"));
        }
        let (header, response) = raw.split_at(HEADER_LEN);
        // Tokens and durations are whole numbers below 2^53: exact as doubles.
        let number = |at: usize| -> Result<i64, StoreError> {
            let bytes: [u8; 8] = header[at..at + 8]
                .try_into()
                .map_err(|_| corrupt("number"))?;
            let value = f64::from_be_bytes(bytes);
            if value.fract() != 0.0 || !(0.0..EXACT_MS as f64).contains(&value) {
                return Err(corrupt("number"));
            }
            Ok(value as i64)
        };
        let (completed, released) = match header[32] {
            RUNNING => (false, false),
            COMPLETED => (true, false),
            RELEASED => (false, true),
            _ => return Err(corrupt("state")),
        };
        Ok(Self {
            fingerprint: &header[..32],
            completed,
            released,
            token: number(33)?,
            lease_ms: number(41)?,
            life_ms: number(49)?,
            response,
        })
    }

    /// The string of a new record holding token 1, as `begin.lua` writes it.
    pub(super) fn fresh(
        fingerprint: &Fingerprint,
        lease_ms: i64,
        life_ms: i64,
    ) -> [u8; HEADER_LEN] {
        let mut raw = [0; HEADER_LEN];
        raw[..32].copy_from_slice(fingerprint.as_bytes());
        raw[32] = RUNNING;
        for (at, number) in [
            (33, FencingToken::FIRST.as_i64()),
            (41, lease_ms),
            (49, life_ms),
        ] {
            raw[at..at + 8].copy_from_slice(&(number as f64).to_be_bytes());
        }
        raw
    }
}

/// Reads `begin.lua`'s reply: `{1, token, recovered} | {2, record} | {3} | {4, ms}`.
pub(super) fn parse_outcome(reply: &Value) -> Result<Outcome, StoreError> {
    let Value::Array(items) = reply else {
        return Err(bad_reply("begin", reply));
    };
    match (items.first().and_then(int), items.get(1), items.get(2)) {
        (Some(1), Some(token), Some(recovered)) => {
            let token = int(token).ok_or_else(|| bad_reply("begin", reply))?;
            Ok(Outcome::Acquired {
                token: FencingToken::from_i64(token),
                recovered: int(recovered) == Some(1),
            })
        }
        (Some(2), Some(record), None) => {
            let raw = bytes(record).ok_or_else(|| bad_reply("begin", reply))?;
            Ok(Outcome::Replay(decode_response(
                RawRecord::parse(raw)?.response,
            )?))
        }
        (Some(3), None, None) => Ok(Outcome::Mismatch),
        (Some(4), Some(ms), None) => {
            let ms = int(ms).ok_or_else(|| bad_reply("begin", reply))?;
            Ok(Outcome::InFlight {
                retry_after: Duration::from_millis(u64::try_from(ms.max(1)).unwrap_or(1)),
            })
        }
        _ => Err(bad_reply("begin", reply)),
    }
}

/// Reads `get.lua`'s reply: nil, or the record's string and its expiry.
pub(super) fn parse_record(
    scope: &Scope,
    key: &Key,
    reply: &Value,
) -> Result<Option<Record>, StoreError> {
    let (raw, expires_at) = match reply {
        Value::Nil => return Ok(None),
        Value::Array(items) => match (items.first().and_then(bytes), items.get(1).and_then(int)) {
            (Some(raw), Some(expires_at)) if items.len() == 2 => {
                (RawRecord::parse(raw)?, expires_at)
            }
            _ => return Err(bad_reply("get", reply)),
        },
        _ => return Err(bad_reply("get", reply)),
    };
    let fingerprint = Fingerprint::from_slice(raw.fingerprint)
        .ok_or_else(|| StoreError::Corrupt("record fingerprint is unreadable".to_owned()))?;
    // The expiry may come back as any integer: checked arithmetic makes a corrupt one
    // corrupt instead of an overflow.
    let unreadable = || StoreError::Corrupt("record expiry is unreadable".to_owned());
    let created_at = expires_at.checked_sub(raw.life_ms).ok_or_else(unreadable)?;
    if expires_at <= 0 || created_at < 0 {
        return Err(unreadable());
    }
    let token = FencingToken::from_i64(raw.token);
    let state = if raw.released {
        RecordState::Released { token }
    } else if raw.completed {
        RecordState::Completed {
            token,
            response: decode_response(raw.response)?,
        }
    } else {
        RecordState::InProgress {
            token,
            lease_until: Timestamp(
                created_at
                    .checked_add(raw.lease_ms)
                    .ok_or_else(unreadable)?,
            ),
        }
    };
    Ok(Some(Record {
        scope: scope.clone(),
        key: key.clone(),
        fingerprint,
        state,
        created_at: Timestamp(created_at),
        expires_at: Timestamp(expires_at),
    }))
}

/// Reads a `1`/`0` reply of `complete.lua` and `release.lua`: done or fenced.
pub(super) fn done_or_fenced(what: &str, reply: &Value) -> Result<(), StoreError> {
    match int(reply) {
        Some(1) => Ok(()),
        Some(0) => Err(StoreError::Fenced),
        _ => Err(bad_reply(what, reply)),
    }
}
