//! The check of fuzz target `payment_request` (`fuzz/`), shared with the regression test
//! that replays its corpus (feature `fuzzing`).

use std::fmt::Debug;

use serde_json::{json, Value};

use crate::validate::{NewAccount, NewPayment, NewRefund, ID_LEN_MAX};
use crate::{Error, Result};

/// A request body given to the three validators: none panics or fails other than with
/// `InvalidRequest`, and what one accepts keeps DESIGN §5's rules (identifiers of 1 to 128
/// `[A-Za-z0-9._:-]`, amounts above 0, balances from 0, payer ≠ payee), was a JSON object
/// of exactly its fields, and reads back the same from its own JSON.
pub fn payment_request(data: &[u8]) {
    accepts(data, NewPayment::from_json, payment_fields, |p| {
        ids(&[p.order_id.as_str(), &p.payer, &p.payee]);
        assert!(p.amount > 0, "{p:?}");
        assert_ne!(p.payer, p.payee);
    });
    accepts(data, NewRefund::from_json, refund_fields, |r| {
        ids(&[r.refund_id.as_str()]);
        assert!(r.amount > 0, "{r:?}");
    });
    accepts(data, NewAccount::from_json, account_fields, |a| {
        ids(&[a.account_id.as_str()]);
        assert!(a.balance >= 0, "{a:?}");
    });
}

fn payment_fields(p: &NewPayment) -> Value {
    json!({"order_id": p.order_id, "payer": p.payer, "payee": p.payee, "amount": p.amount})
}

fn refund_fields(r: &NewRefund) -> Value {
    json!({"refund_id": r.refund_id, "amount": r.amount})
}

fn account_fields(a: &NewAccount) -> Value {
    json!({"account_id": a.account_id, "balance": a.balance})
}

/// Checks what `from_json` makes of `data`: `rules` hold, and the body is `fields`.
fn accepts<T: PartialEq + Debug>(
    data: &[u8],
    from_json: fn(&[u8]) -> Result<T>,
    fields: fn(&T) -> Value,
    rules: impl Fn(&T),
) {
    let request = match from_json(data) {
        Ok(request) => request,
        Err(Error::InvalidRequest { .. }) => return,
        Err(other) => panic!("refused as {other:?}"),
    };
    rules(&request);
    let body: Value = serde_json::from_slice(data).expect("an accepted body is JSON");
    assert_eq!(body, fields(&request), "accepted as {request:?}");
    let again = fields(&request).to_string();
    assert_eq!(from_json(again.as_bytes()).ok(), Some(request));
}

/// DESIGN §5's identifiers, written out again rather than read from the validator.
fn ids(values: &[&str]) {
    for value in values {
        let allowed = |c: char| c.is_ascii_alphanumeric() || ".:_-".contains(c);
        assert!(
            (1..=ID_LEN_MAX).contains(&value.len()) && value.chars().all(allowed),
            "{value:?}"
        );
    }
}
