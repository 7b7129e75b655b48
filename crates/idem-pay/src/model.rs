//! What the service answers with: the JSON bodies of DESIGN §5, written once and stored as
//! bytes so that every replay, from any node, is the first answer byte for byte.

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde::Serialize;
use utoipa::ToSchema;

use crate::validate::Id;

/// A successful answer: a status and the exact body bytes, and whether it is a replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The HTTP status (201 for creations, 200 for reads).
    pub status: u16,
    /// The JSON body, exactly as first sent.
    pub body: Bytes,
    /// The body was stored by an earlier call (`Idempotent-Replayed: true`).
    pub replayed: bool,
}

impl Answer {
    pub(crate) fn executed(status: u16, body: impl Into<Bytes>) -> Self {
        Self {
            status,
            body: body.into(),
            replayed: false,
        }
    }

    pub(crate) fn replayed(status: u16, body: impl Into<Bytes>) -> Self {
        Self {
            status,
            body: body.into(),
            replayed: true,
        }
    }
}

/// An account: `{"account_id","balance"}`.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Account)]
pub struct AccountBody<'a> {
    /// The account's id.
    #[schema(value_type = Id)]
    pub account_id: &'a str,
    /// Its balance in minor units.
    #[schema(minimum = 0, maximum = 9223372036854775807_i64)]
    pub balance: i64,
}

/// What a payment or refund that exists has done: only successful ones are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// The money moved.
    Succeeded,
}

/// A payment: `{"payment_id","order_id","payer","payee","amount","status","created_at"}`.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Payment)]
pub struct PaymentBody<'a> {
    /// The service's id for this payment.
    #[schema(value_type = String, pattern = "^pay_[0-9a-f]{24}$")]
    pub payment_id: &'a str,
    /// The client's order id.
    #[schema(value_type = Id)]
    pub order_id: &'a str,
    /// The account debited.
    #[schema(value_type = Id)]
    pub payer: &'a str,
    /// The account credited.
    #[schema(value_type = Id)]
    pub payee: &'a str,
    /// Minor units.
    #[schema(minimum = 1, maximum = 9223372036854775807_i64)]
    pub amount: i64,
    /// Always `succeeded`: only successful payments are kept.
    pub status: Status,
    /// When it was executed, RFC 3339 UTC.
    #[schema(value_type = String, format = DateTime)]
    pub created_at: &'a str,
}

/// A refund: `{"refund_id","payment_id","order_id","amount","status","created_at"}`.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Refund)]
pub struct RefundBody<'a> {
    /// The client's refund id (unique within the payment).
    #[schema(value_type = Id)]
    pub refund_id: &'a str,
    /// The refunded payment.
    #[schema(value_type = String, pattern = "^pay_[0-9a-f]{24}$")]
    pub payment_id: &'a str,
    /// The refunded payment's order id.
    #[schema(value_type = Id)]
    pub order_id: &'a str,
    /// Minor units moved back from payee to payer.
    #[schema(minimum = 1, maximum = 9223372036854775807_i64)]
    pub amount: i64,
    /// Always `succeeded`.
    pub status: Status,
    /// When it was executed, RFC 3339 UTC.
    #[schema(value_type = String, format = DateTime)]
    pub created_at: &'a str,
}

/// Serializes a body; the bodies are plain structs of strings and integers.
pub(crate) fn to_json(value: &impl Serialize) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec())
}

/// A fresh id such as `pay_1f3a…`: 96 random bits, never reused in practice.
pub(crate) fn new_id(prefix: &str) -> String {
    let bits: u128 = rand::random::<u128>() >> 32;
    format!("{prefix}_{bits:024x}")
}

/// Now as RFC 3339 UTC with milliseconds, e.g. `2026-11-23T11:15:00.123Z`.
pub(crate) fn now_rfc3339() -> String {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    rfc3339(since.as_secs(), since.subsec_millis())
}

fn rfc3339(secs: u64, millis: u32) -> String {
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

// Howard Hinnant's days-to-civil algorithm (proleptic Gregorian calendar).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339_utc() {
        assert_eq!(rfc3339(0, 0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(951_782_400, 7), "2000-02-29T00:00:00.007Z");
        assert_eq!(rfc3339(1_795_432_500, 123), "2026-11-23T11:15:00.123Z");
    }

    #[test]
    fn payment_body_has_the_fields_of_design_5_in_order() {
        let body = to_json(&PaymentBody {
            payment_id: "pay_1",
            order_id: "o",
            payer: "a",
            payee: "b",
            amount: 5,
            status: Status::Succeeded,
            created_at: "t",
        });
        assert_eq!(
            std::str::from_utf8(&body).expect("utf8"),
            r#"{"payment_id":"pay_1","order_id":"o","payer":"a","payee":"b","amount":5,"status":"succeeded","created_at":"t"}"#
        );
    }

    #[test]
    fn ids_are_fresh() {
        let (a, b) = (new_id("pay"), new_id("pay"));
        assert_ne!(a, b);
        assert!(a.starts_with("pay_") && a.len() == 28);
    }
}
