//! [`Config`]: what the layer guards, where keys and principals come from, what it stores.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::header::{self, HeaderName};
use http::request::Parts;
use http::{Method, StatusCode};
use idem::FieldSelection;

use crate::key::IDEMPOTENCY_KEY;

/// A function finding the raw key in a request (its head and its buffered body).
pub type KeyFn = Arc<dyn Fn(&Parts, &[u8]) -> Option<String> + Send + Sync>;

/// A function naming the principal (tenant, user) a request acts for.
pub type PrincipalFn = Arc<dyn Fn(&Parts) -> Option<String> + Send + Sync>;

/// Where the idempotency key of a request comes from.
#[derive(Clone)]
pub enum KeySource {
    /// A header holding an sf-string or a bare token (`Idempotency-Key` by default).
    Header(HeaderName),
    /// A function over the request, such as a JSON body field (see [`KeySource::json_field`]).
    Custom(KeyFn),
}

impl KeySource {
    /// The top-level string (or number) member `field` of a JSON body, such as `order_id`.
    pub fn json_field(field: impl Into<String>) -> Self {
        let field = field.into();
        Self::Custom(Arc::new(move |_, body| {
            let value: serde_json::Value = serde_json::from_slice(body).ok()?;
            match value.get(&field)? {
                serde_json::Value::String(s) => Some(s.clone()),
                serde_json::Value::Number(n) => Some(n.to_string()),
                _ => None,
            }
        }))
    }
}

impl fmt::Debug for KeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Header(name) => f.debug_tuple("Header").field(name).finish(),
            Self::Custom(_) => f.write_str("Custom(..)"),
        }
    }
}

/// What a request does when the first request with its key is still running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InFlight {
    /// Answer 409 with `Retry-After` at once (the default).
    Reject,
    /// Poll the store with backoff for up to `max` for the first request's result and
    /// return it, as if attached to the first call; 409 when `max` passes first.
    Wait {
        /// The longest a request waits.
        max: Duration,
    },
}

/// The layer's configuration. `Config::default()` is DESIGN §4 with the draft's header.
#[derive(Clone)]
pub struct Config {
    pub(crate) methods: Vec<Method>,
    pub(crate) key_source: KeySource,
    pub(crate) key_required: bool,
    pub(crate) principal: Option<PrincipalFn>,
    pub(crate) fields: FieldSelection,
    pub(crate) lease: Duration,
    pub(crate) ttl: Duration,
    pub(crate) stored_headers: Vec<HeaderName>,
    pub(crate) body_limit_bytes: usize,
    pub(crate) store_status: fn(StatusCode) -> bool,
    pub(crate) in_flight: InFlight,
}

/// The default lease: long enough for a slow handler, short enough that a crashed node's
/// keys are taken over within a minute.
pub const LEASE_DEFAULT: Duration = Duration::from_secs(60);

/// The default record lifetime, as Stripe keeps keys.
pub const TTL_DEFAULT: Duration = Duration::from_secs(24 * 60 * 60);

/// The default largest request body kept for fingerprinting.
pub const BODY_LIMIT_BYTES_DEFAULT: usize = 1024 * 1024;

/// 2xx and 4xx are answers worth replaying; 5xx (and anything else) releases the key so a
/// retry runs again.
pub fn store_success_and_client_errors(status: StatusCode) -> bool {
    status.is_success() || status.is_client_error()
}

impl Default for Config {
    fn default() -> Self {
        Self {
            methods: vec![Method::POST, Method::PATCH],
            key_source: KeySource::Header(IDEMPOTENCY_KEY),
            key_required: true,
            principal: None,
            fields: FieldSelection::All,
            lease: LEASE_DEFAULT,
            ttl: TTL_DEFAULT,
            stored_headers: vec![
                header::CONTENT_TYPE,
                header::CONTENT_ENCODING,
                header::CONTENT_LANGUAGE,
                header::LOCATION,
                header::ETAG,
                header::LAST_MODIFIED,
                header::LINK,
                header::CACHE_CONTROL,
            ],
            body_limit_bytes: BODY_LIMIT_BYTES_DEFAULT,
            store_status: store_success_and_client_errors,
            in_flight: InFlight::Reject,
        }
    }
}

impl Config {
    /// The methods guarded; every other method passes through untouched, body streamed.
    pub fn methods(mut self, methods: impl IntoIterator<Item = Method>) -> Self {
        self.methods = methods.into_iter().collect();
        self
    }

    /// Where the key comes from.
    pub fn key_source(mut self, source: KeySource) -> Self {
        self.key_source = source;
        self
    }

    /// Whether a guarded request without a key is refused with 400 (true, the default) or
    /// passed through unguarded.
    pub fn key_required(mut self, required: bool) -> Self {
        self.key_required = required;
        self
    }

    /// Scopes keys by the principal `principal` returns (`None`: the shared, anonymous
    /// scope), so one tenant never sees another's stored response.
    pub fn principal(
        mut self,
        principal: impl Fn(&Parts) -> Option<String> + Send + Sync + 'static,
    ) -> Self {
        self.principal = Some(Arc::new(principal));
        self
    }

    /// Which top-level JSON body fields make the fingerprint (default: the whole body).
    pub fn fingerprint_fields(mut self, fields: FieldSelection) -> Self {
        self.fields = fields;
        self
    }

    /// How long a running request holds its key before another may take it over.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// How long a record (and so a replay) lives.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// The response headers kept and replayed. `set-cookie` is never kept, whatever is
    /// listed: a replay must not hand one client's session to another retry.
    pub fn stored_headers(mut self, names: impl IntoIterator<Item = HeaderName>) -> Self {
        self.stored_headers = names
            .into_iter()
            .filter(|n| *n != header::SET_COOKIE)
            .collect();
        self
    }

    /// The largest guarded request body read; a bigger one is refused with 413.
    pub fn body_limit_bytes(mut self, limit: usize) -> Self {
        self.body_limit_bytes = limit;
        self
    }

    /// Which statuses are stored and replayed; the others release the key.
    pub fn store_status(mut self, store: fn(StatusCode) -> bool) -> Self {
        self.store_status = store;
        self
    }

    /// What a duplicate does while the first request runs.
    pub fn in_flight(mut self, in_flight: InFlight) -> Self {
        self.in_flight = in_flight;
        self
    }

    pub(crate) fn guards(&self, method: &Method) -> bool {
        self.methods.contains(method)
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("methods", &self.methods)
            .field("key_source", &self.key_source)
            .field("key_required", &self.key_required)
            .field("principal", &self.principal.as_ref().map(|_| ".."))
            .field("fields", &self.fields)
            .field("lease", &self.lease)
            .field("ttl", &self.ttl)
            .field("stored_headers", &self.stored_headers)
            .field("body_limit_bytes", &self.body_limit_bytes)
            .field("in_flight", &self.in_flight)
            .finish_non_exhaustive()
    }
}
