//! What the consumer reads from a delivery ([`Message`]), where its key comes from
//! ([`KeySource`]) and what a handler is given ([`Received`]).

use std::fmt;
use std::sync::Arc;

use idem::{FieldSelection, Fingerprint, Key};

/// One delivery from a broker, as the consumer needs it. The adapters implement it for
/// JetStream and AMQP messages; a test can implement it for anything.
pub trait Message: Send + Sync {
    /// The broker's message id: JetStream's `Nats-Msg-Id` header, AMQP's `message_id`.
    fn message_id(&self) -> Option<&str>;
    /// The payload: what the fingerprint is computed over and what the handler reads.
    fn payload(&self) -> &[u8];
    /// Which delivery of this message this is, from 1: JetStream's delivery count, or
    /// what the AMQP adapter carries in a header across its retries.
    fn attempt(&self) -> u32;
    /// A header of the message (a NATS header, an AMQP header table entry that is a
    /// string), for handlers that need one, such as an `Authorization`.
    fn header(&self, name: &str) -> Option<&str> {
        let _ = name;
        None
    }
}

/// A function that reads a business key from a payload, `None` when it has none.
pub type KeyFn = Arc<dyn Fn(&[u8]) -> Option<String> + Send + Sync>;

/// Where a message's idempotency key comes from.
#[derive(Clone)]
pub enum KeySource {
    /// The broker's message id ([`Message::message_id`]): a publisher that re-publishes
    /// on timeout keeps it.
    MessageId,
    /// A key the user's function reads from the payload: a business key such as an
    /// `order_id`, the same whichever publisher (or HTTP client) sent it.
    Payload(KeyFn),
}

impl KeySource {
    /// The top-level string (or integer) member `field` of a JSON object payload.
    pub fn json_field(field: impl Into<String>) -> Self {
        let field = field.into();
        Self::Payload(Arc::new(move |payload| {
            let value: serde_json::Value = serde_json::from_slice(payload).ok()?;
            match value.get(&field)? {
                serde_json::Value::String(s) => Some(s.clone()),
                serde_json::Value::Number(n) => Some(n.to_string()),
                _ => None,
            }
        }))
    }

    /// The key of `message`, or why it has none (the message goes to the dead letters:
    /// no retry can give it one).
    pub(crate) fn key_of(&self, message: &(impl Message + ?Sized)) -> Result<Key, String> {
        let raw = match self {
            Self::MessageId => message
                .message_id()
                .map(str::to_owned)
                .ok_or_else(|| "the message has no message id".to_owned())?,
            Self::Payload(read) => read(message.payload())
                .ok_or_else(|| "the payload names no idempotency key".to_owned())?,
        };
        Key::new(raw).map_err(|e| format!("invalid idempotency key: {e}"))
    }
}

impl fmt::Debug for KeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MessageId => f.write_str("MessageId"),
            Self::Payload(_) => f.write_str("Payload(..)"),
        }
    }
}

/// The fingerprint of a payload: its canonical JSON when it is JSON (so a re-serialised
/// copy with its members in another order is the same message), its bytes otherwise.
pub fn fingerprint(payload: &[u8]) -> Fingerprint {
    match serde_json::from_slice::<serde_json::Value>(payload) {
        Ok(json) => Fingerprint::of_json("MESSAGE", "", &json, &FieldSelection::All),
        Err(_) => Fingerprint::of_bytes("MESSAGE", "", payload),
    }
}

/// What a handler is given: the message's key, its payload and which attempt this is.
#[derive(Debug, Clone, Copy)]
pub struct Received<'a> {
    /// The idempotency key the message was claimed under.
    pub key: &'a Key,
    /// The payload.
    pub payload: &'a [u8],
    /// Which delivery this is, from 1.
    pub attempt: u32,
}
