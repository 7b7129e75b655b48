//! The check of fuzz target `sql_row` (`fuzz/`), shared with the regression test that
//! replays its corpus (feature `fuzzing`).

use idem::decide::{begin_step, live, BeginStep};
use idem::fuzzing::Input;
use idem::{
    FencingToken, Fingerprint, Key, Outcome, Record, RecordState, Scope, StoreError,
    StoredResponse, Timestamp,
};

use crate::common::{Row, COMPLETED, IN_PROGRESS, RELEASED};

/// An `idem_records` row as any database could hand it back, columns in table order, then
/// the store's time: reading it never panics, a record that reads holds exactly the row's
/// columns (its response the bytes `StoredResponse::encode` wrote), and `begin` decides
/// on it without panicking, giving a taken-over record a larger token.
pub fn sql_row(data: &[u8]) {
    let mut input = Input::new(data);
    let flags = input.byte();
    // Mostly a 32-byte fingerprint, as every store writes; sometimes another length.
    let fingerprint_len = if flags & 1 == 0 {
        32
    } else {
        usize::from(input.byte() % 64)
    };
    let fingerprint = input.bytes(fingerprint_len).to_vec();
    let token = input.i64();
    // Small states, where the known ones are, are the common case.
    let state = i16::from(i8::from_be_bytes(input.array()));
    let (lease_until, created_at, expires_at) = (input.i64(), input.i64(), input.i64());
    let now = Timestamp(input.i64());
    let response = (flags & 2 == 0).then(|| input.rest().to_vec());
    let row = Row {
        fingerprint: fingerprint.clone(),
        token,
        state,
        lease_until,
        response: response.clone(),
        created_at,
        expires_at,
    };
    let shown = format!("{row:?}");

    let (scope, key) = (Scope::global(), Key::new("k").expect("a valid key"));
    let record = match row.into_record(&scope, &key) {
        Ok(record) => record,
        Err(StoreError::Corrupt(_)) => return,
        Err(other) => panic!("{shown} read as {other:?}"),
    };
    assert_eq!(&record.fingerprint.as_bytes()[..], &fingerprint[..]);
    assert_eq!(
        (record.created_at, record.expires_at),
        (Timestamp(created_at), Timestamp(expires_at))
    );
    let token = FencingToken::from_i64(token);
    let expected = match state {
        IN_PROGRESS => RecordState::InProgress {
            token,
            lease_until: Timestamp(lease_until),
        },
        COMPLETED => {
            let bytes = response
                .as_deref()
                .expect("a completed row that reads has a response");
            let response = StoredResponse::decode(bytes).expect("a response that reads decodes");
            assert_eq!(response.encode(), bytes);
            RecordState::Completed { token, response }
        }
        RELEASED => RecordState::Released { token },
        other => panic!("{shown}: state {other} read as {:?}", record.state),
    };
    assert_eq!(record.state, expected, "{shown}");

    let other = Fingerprint::of_bytes("POST", "/other", data);
    for asked in [record.fingerprint, other] {
        decides(&record, &asked, now);
    }
}

/// `begin` on `record` at `now`: a write takes a larger token than the record's (unless
/// tokens ran out), and a replay answers the record's own response.
fn decides(record: &Record, fingerprint: &Fingerprint, now: Timestamp) {
    match begin_step(Some(record), fingerprint, now) {
        BeginStep::Write { token, .. } => {
            let old = record.token();
            assert!(
                token > old || old.0 == u64::MAX,
                "{record:?} then {token:?}"
            );
        }
        BeginStep::Answer(Outcome::Replay(response)) => {
            assert!(live(record, now) && record.fingerprint == *fingerprint);
            let stored: Option<&StoredResponse> = match &record.state {
                RecordState::Completed { response, .. } => Some(response),
                _ => None,
            };
            assert_eq!(stored, Some(&response));
        }
        BeginStep::Answer(_) => assert!(live(record, now)),
    }
}
