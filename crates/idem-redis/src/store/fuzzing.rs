//! The check of fuzz target `redis_record` (`fuzz/`), shared with the regression test that
//! replays its corpus (feature `fuzzing`).

use idem::fuzzing::Input;
use idem::{Key, Outcome, Record, RecordState, Scope, StoreError, StoredResponse};
use redis::Value;

use super::reply::{
    parse_outcome, parse_record, RawRecord, COMPLETED, EXACT_MS, HEADER_LEN, RELEASED,
};

/// The deepest array [`reply`] builds.
const DEPTH_MAX: u32 = 8;

/// Bytes read back from Redis: a record's string value with the expiry `get.lua` returns
/// beside it (first byte even), or any reply of any shape (odd). Reading them never
/// panics; a record that reads is the one its bytes hold, with its creation, lease end and
/// expiry in order, its response exactly the encoded bytes after the header; and `begin`'s
/// replay of the same record agrees.
pub fn redis_record(data: &[u8]) {
    let mut input = Input::new(data);
    if input.byte() & 1 == 0 {
        let expires_at = input.i64();
        record(input.rest(), expires_at);
    } else {
        let reply = reply(&mut input, 0);
        let _ = parse_outcome(&reply);
        let _ = parse_record(&Scope::global(), &key(), &reply);
    }
}

fn key() -> Key {
    Key::new("k").expect("a valid key")
}

fn record(raw: &[u8], expires_at: i64) {
    let header = RawRecord::parse(raw).ok();
    if let Some(header) = &header {
        assert!(raw.len() >= HEADER_LEN && header.fingerprint.len() == 32);
        for number in [header.token, header.lease_ms, header.life_ms] {
            assert!((0..EXACT_MS).contains(&number), "{number}");
        }
        assert_eq!(header.completed, raw[32] == COMPLETED);
        assert_eq!(header.released, raw[32] == RELEASED);
        assert_eq!(header.response, &raw[HEADER_LEN..]);
    }

    // `begin.lua` answering a replay with this record.
    let replay = parse_outcome(&Value::Array(vec![
        Value::Int(2),
        Value::BulkString(raw.to_vec()),
    ]));
    let response = header.as_ref().map(|h| StoredResponse::decode(h.response));
    match (response, replay) {
        (Some(Ok(response)), Ok(Outcome::Replay(replayed))) => assert_eq!(replayed, response),
        (Some(Err(_)) | None, Err(StoreError::Corrupt(_))) => {}
        (response, replay) => panic!("record read as {response:?}, replay as {replay:?}"),
    }

    // `get.lua`'s reply, the expiry as an integer and as the text Redis may send instead.
    let (scope, key) = (Scope::global(), key());
    let get = |expiry: Value| {
        parse_record(
            &scope,
            &key,
            &Value::Array(vec![Value::BulkString(raw.to_vec()), expiry]),
        )
    };
    let read = get(Value::Int(expires_at));
    let as_text = get(Value::BulkString(expires_at.to_string().into_bytes()));
    match (&read, &as_text) {
        (Ok(a), Ok(b)) => assert_eq!(a, b),
        (Err(StoreError::Corrupt(_)), Err(StoreError::Corrupt(_))) => {}
        _ => panic!("integer expiry read as {read:?}, text as {as_text:?}"),
    }
    if let Ok(Some(record)) = read {
        let header = header.expect("a record that reads has a header that reads");
        in_order(&record, header.life_ms);
        assert_eq!(&record.fingerprint.as_bytes()[..], header.fingerprint);
        assert_eq!(record.token().as_i64(), header.token);
    }
}

/// A record's times: created at or after 0, leased from then, expiring `life_ms` later.
fn in_order(record: &Record, life_ms: i64) {
    let (created_at, expires_at) = (record.created_at.0, record.expires_at.0);
    assert!(created_at >= 0 && expires_at > 0, "{record:?}");
    assert_eq!(expires_at - created_at, life_ms, "{record:?}");
    if let RecordState::InProgress { lease_until, .. } = record.state {
        assert!(lease_until.0 >= created_at, "{record:?}");
    }
}

/// A reply of the shapes a script may return.
fn reply(input: &mut Input<'_>, depth: u32) -> Value {
    let tag = input.byte();
    match tag % 8 {
        0 => Value::Nil,
        1 => Value::Int(input.i64()),
        2 => Value::Int(i64::from(tag >> 3)),
        3 => {
            let len = usize::from(input.byte());
            Value::BulkString(input.bytes(len).to_vec())
        }
        4 => Value::BulkString(input.rest().to_vec()),
        5 => Value::SimpleString(
            String::from_utf8_lossy(input.bytes(usize::from(tag >> 3))).into_owned(),
        ),
        6 if depth < DEPTH_MAX => {
            let len = usize::from(tag >> 5);
            Value::Array((0..len).map(|_| reply(input, depth + 1)).collect())
        }
        _ => Value::Okay,
    }
}
