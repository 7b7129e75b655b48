//! Reading requests: every field checked and named when wrong, before anything touches the
//! database.
//!
//! Rules (DESIGN §5): identifiers (`account_id`, `order_id`, `payer`, `payee`, `refund_id`)
//! are 1 to [`ID_LEN_MAX`] characters of `[A-Za-z0-9._:-]`; `amount` is a JSON integer in
//! `1..=i64::MAX` (no floats such as `5.0`, no strings, no exponents); `balance` is a JSON
//! integer in `0..=i64::MAX`; `payer` ≠ `payee`. Unknown members are refused (400 naming
//! the member): in a money API a misspelt `ammount` must not pass silently. So is a member
//! given twice: parsers disagree on which copy wins, so the body has no one meaning.

use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::{Map, Value};
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::RefOr;
use utoipa::{PartialSchema, ToSchema};

use crate::{Error, Result};

/// The longest identifier accepted.
pub const ID_LEN_MAX: usize = 128;

/// Whether `b` may appear in an identifier (and in a tenant's name): `[A-Za-z0-9._:-]`.
pub(crate) fn id_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-')
}

/// [`id_byte`] as a regular expression, for the OpenAPI document.
pub const ID_PATTERN: &str = "^[A-Za-z0-9._:-]+$";

/// An identifier as the OpenAPI document states it: the rules of [`id`], in one schema that
/// every id field and path parameter refers to.
#[derive(Debug, Clone, Copy)]
pub struct Id;

impl PartialSchema for Id {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .min_length(Some(1))
            .max_length(Some(ID_LEN_MAX))
            .pattern(Some(ID_PATTERN))
            .description(Some(format!(
                "An identifier: 1 to {ID_LEN_MAX} of A-Z, a-z, 0-9 and . _ : -, unique within the tenant."
            )))
            .into()
    }
}

impl ToSchema for Id {}

/// Checks an identifier: 1 to 128 of `[A-Za-z0-9._:-]`.
///
/// # Errors
/// [`Error::InvalidRequest`] naming `field`.
pub fn id(field: &str, value: &str) -> Result<()> {
    if value.is_empty() || value.len() > ID_LEN_MAX {
        return Err(Error::invalid(
            field,
            format!("{field} must be 1 to {ID_LEN_MAX} characters long"),
        ));
    }
    if !value.bytes().all(id_byte) {
        return Err(Error::invalid(
            field,
            format!("{field} may only contain A-Z, a-z, 0-9 and . _ : -"),
        ));
    }
    Ok(())
}

// The bodies are read by `Fields` below, not by serde: `deny_unknown_fields` is there for
// `ToSchema`, which writes it as `additionalProperties: false`, as `Fields::finish` enforces.

/// `POST /v1/accounts`: opens an account.
#[derive(Debug, Clone, PartialEq, Eq, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewAccount {
    /// The account's id.
    #[schema(value_type = Id)]
    pub account_id: String,
    /// The opening balance in minor units, ≥ 0.
    #[schema(minimum = 0, maximum = 9223372036854775807_i64)]
    pub balance: i64,
}

/// `POST /v1/payments`: moves `amount` from `payer` to `payee`, once per `order_id`.
/// `payee` must differ from `payer` (a rule JSON Schema cannot state): an equal pair is
/// 400 `invalid_request` naming `payee`.
#[derive(Debug, Clone, PartialEq, Eq, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewPayment {
    /// The business key: an order is paid at most once.
    #[schema(value_type = Id)]
    pub order_id: String,
    /// The account debited.
    #[schema(value_type = Id)]
    pub payer: String,
    /// The account credited; not `payer`.
    #[schema(value_type = Id)]
    pub payee: String,
    /// Minor units, > 0.
    #[schema(minimum = 1, maximum = 9223372036854775807_i64)]
    pub amount: i64,
}

/// `POST /v1/payments/{order_id}/refunds`: moves money back from payee to payer.
#[derive(Debug, Clone, PartialEq, Eq, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewRefund {
    /// The refund's key, unique within its payment.
    #[schema(value_type = Id)]
    pub refund_id: String,
    /// Minor units, > 0.
    #[schema(minimum = 1, maximum = 9223372036854775807_i64)]
    pub amount: i64,
}

impl NewAccount {
    /// Parses and checks a JSON body.
    ///
    /// # Errors
    /// [`Error::InvalidRequest`] naming the first field at fault.
    pub fn from_json(body: &[u8]) -> Result<Self> {
        let mut fields = Fields::parse(body)?;
        let account_id = fields.id("account_id")?;
        let balance = fields.integer("balance", 0)?;
        fields.finish()?;
        Ok(Self {
            account_id,
            balance,
        })
    }
}

impl NewPayment {
    /// Parses and checks a JSON body.
    ///
    /// # Errors
    /// [`Error::InvalidRequest`] naming the first field at fault.
    pub fn from_json(body: &[u8]) -> Result<Self> {
        let mut fields = Fields::parse(body)?;
        let order_id = fields.id("order_id")?;
        let payer = fields.id("payer")?;
        let payee = fields.id("payee")?;
        let amount = fields.integer("amount", 1)?;
        fields.finish()?;
        if payer == payee {
            return Err(Error::invalid("payee", "payee must differ from payer"));
        }
        Ok(Self {
            order_id,
            payer,
            payee,
            amount,
        })
    }
}

impl NewRefund {
    /// Parses and checks a JSON body.
    ///
    /// # Errors
    /// [`Error::InvalidRequest`] naming the first field at fault.
    pub fn from_json(body: &[u8]) -> Result<Self> {
        let mut fields = Fields::parse(body)?;
        let refund_id = fields.id("refund_id")?;
        let amount = fields.integer("amount", 1)?;
        fields.finish()?;
        Ok(Self { refund_id, amount })
    }
}

/// The UTF-8 encoding of U+FEFF, the byte order mark.
const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// The members of a JSON object body, taken one by one; what is left is unknown.
struct Fields(Map<String, Value>);

impl Fields {
    fn parse(body: &[u8]) -> Result<Self> {
        // RFC 8259 §8.1: JSON sent over a network carries no byte order mark. Said plainly
        // rather than as "expected value at column 1".
        if body.starts_with(UTF8_BOM) {
            return Err(Error::invalid(
                "body",
                "the body starts with a byte order mark (U+FEFF); send the JSON without it",
            ));
        }
        let members = match serde_json::from_slice::<Members>(body) {
            Ok(Members(members)) => members,
            // Not an object, or not JSON (bad syntax, invalid UTF-8, a number no float
            // holds, nested past serde_json's 128 levels): tell which, and why.
            Err(_) => {
                return Err(match serde_json::from_slice::<Value>(body) {
                    Ok(_) => Error::invalid("body", "the body must be a JSON object"),
                    Err(error) => Error::invalid(
                        "body",
                        format!("the body could not be read as JSON: {error}"),
                    ),
                })
            }
        };
        let mut fields = Map::with_capacity(members.len());
        for (name, value) in members {
            if fields.contains_key(&name) {
                let detail = format!("{name} is given more than once");
                return Err(Error::invalid(name, detail));
            }
            fields.insert(name, value);
        }
        Ok(Self(fields))
    }

    fn take(&mut self, name: &str) -> Result<Value> {
        match self.0.remove(name) {
            None | Some(Value::Null) => Err(Error::invalid(name, format!("{name} is required"))),
            Some(value) => Ok(value),
        }
    }

    fn id(&mut self, name: &str) -> Result<String> {
        match self.take(name)? {
            Value::String(value) => {
                id(name, &value)?;
                Ok(value)
            }
            _ => Err(Error::invalid(name, format!("{name} must be a string"))),
        }
    }

    fn integer(&mut self, name: &str, min: i64) -> Result<i64> {
        let value = self.take(name)?;
        let out_of_range = || {
            Error::invalid(
                name,
                format!("{name} must be an integer from {min} to {}", i64::MAX),
            )
        };
        match value {
            // serde_json keeps integers exact; 5.0, 1e3 and anything past i64 arrive as
            // floats or u64 and are refused rather than rounded.
            Value::Number(number) => match number.as_i64() {
                Some(n) if n >= min => Ok(n),
                _ => Err(out_of_range()),
            },
            _ => Err(Error::invalid(
                name,
                format!(
                    "{name} must be a JSON integer (minor units), not {}",
                    kind(&value)
                ),
            )),
        }
    }

    fn finish(self) -> Result<()> {
        match self.0.keys().next() {
            Some(unknown) => Err(Error::invalid(
                unknown.clone(),
                format!("unknown field {unknown}"),
            )),
            None => Ok(()),
        }
    }
}

/// A JSON object's members in their order, a repeated name kept twice (a `Map` would keep
/// only the last) so that [`Fields::parse`] can refuse it.
struct Members(Vec<(String, Value)>);

impl<'de> Deserialize<'de> for Members {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        struct ObjectVisitor;

        impl<'de> Visitor<'de> for ObjectVisitor {
            type Value = Members;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<A: MapAccess<'de>>(
                self,
                mut map: A,
            ) -> std::result::Result<Members, A::Error> {
                let mut members = Vec::with_capacity(map.size_hint().unwrap_or(4));
                while let Some(member) = map.next_entry::<String, Value>()? {
                    members.push(member);
                }
                Ok(Members(members))
            }
        }

        deserializer.deserialize_map(ObjectVisitor)
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(result: Result<impl std::fmt::Debug>) -> String {
        match result {
            Err(Error::InvalidRequest { field, .. }) => field,
            other => panic!("expected invalid_request, got {other:?}"),
        }
    }

    #[test]
    fn a_good_payment_reads() {
        let payment = NewPayment::from_json(
            br#"{"order_id":"o-1.a:b_c","payer":"A","payee":"B","amount":5}"#,
        )
        .expect("valid");
        assert_eq!(payment.amount, 5);
        assert_eq!(payment.order_id, "o-1.a:b_c");
    }

    #[test]
    fn identifiers_are_checked() {
        assert!(id("order_id", &"x".repeat(128)).is_ok());
        for bad in ["", "a b", "ü", "a/b", "a\"", &"x".repeat(129)] {
            assert_eq!(field_of(id("order_id", bad)), "order_id", "{bad:?}");
        }
    }

    #[test]
    fn amounts_must_be_positive_integers() {
        for bad in [
            "0",
            "-1",
            "5.0",
            "1e3",
            "\"5\"",
            "null",
            "true",
            "[]",
            "9223372036854775808",
            "18446744073709551616",
        ] {
            let body = format!(r#"{{"order_id":"o","payer":"a","payee":"b","amount":{bad}}}"#);
            assert_eq!(
                field_of(NewPayment::from_json(body.as_bytes())),
                "amount",
                "{bad}"
            );
        }
        let max = format!(
            r#"{{"order_id":"o","payer":"a","payee":"b","amount":{}}}"#,
            i64::MAX
        );
        assert!(NewPayment::from_json(max.as_bytes()).is_ok());
    }

    #[test]
    fn missing_unknown_and_equal_parties_are_named() {
        let field = |body: &str| field_of(NewPayment::from_json(body.as_bytes()));
        assert_eq!(field(r#"{"payer":"a","payee":"b","amount":1}"#), "order_id");
        assert_eq!(field(r#"{"order_id":"o","payee":"b","amount":1}"#), "payer");
        assert_eq!(
            field(r#"{"order_id":"o","payer":"a","payee":"b","amount":1,"ammount":2}"#),
            "ammount"
        );
        assert_eq!(
            field(r#"{"order_id":"o","payer":"a","payee":"a","amount":1}"#),
            "payee"
        );
        assert_eq!(
            field(r#"{"order_id":"o","payer":"a","payee":"b","amount":1,"amount":9}"#),
            "amount"
        );
        assert_eq!(field("[1]"), "body");
        // Past serde_json's nesting limit, not valid UTF-8, a byte order mark, a number
        // no float holds: refused as a bad body, never a panic or an overflow.
        let deep = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
        assert_eq!(field(&deep), "body");
        let deep_member = format!(
            r#"{{"order_id":"o","payer":"a","payee":"b","amount":1,"x":{}1{}}}"#,
            "[".repeat(5000),
            "]".repeat(5000)
        );
        assert_eq!(field(&deep_member), "body");
        assert_eq!(
            field_of(NewPayment::from_json(
                b"{\"order_id\":\"o\xff\",\"payer\":\"a\",\"payee\":\"b\",\"amount\":1}"
            )),
            "body"
        );
        assert_eq!(
            field("\u{feff}{\"order_id\":\"o\",\"payer\":\"a\",\"payee\":\"b\",\"amount\":1}"),
            "body"
        );
        assert_eq!(
            field(r#"{"order_id":"o","payer":"a","payee":"b","amount":1e400}"#),
            "body"
        );
        assert_eq!(field("{"), "body");
        assert_eq!(field(""), "body");
    }

    #[test]
    fn balances_may_be_zero_not_negative() {
        assert!(NewAccount::from_json(br#"{"account_id":"a","balance":0}"#).is_ok());
        assert_eq!(
            field_of(NewAccount::from_json(br#"{"account_id":"a","balance":-1}"#)),
            "balance"
        );
        assert_eq!(
            field_of(NewRefund::from_json(br#"{"refund_id":"r","amount":0}"#)),
            "amount"
        );
    }
}
