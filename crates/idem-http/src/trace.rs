//! The trace id of each request `server::serve` answers: the one of a valid W3C
//! `traceparent` header when the client sent one (so idem's log lines join the caller's
//! trace), else a fresh random one. It is the `trace_id` field of the request's span, which
//! every log line written within the request carries (feature `server`).

use std::fmt;

use http::{HeaderMap, Request};
use tower_http::trace::MakeSpan;
use tracing::Span;

/// The W3C Trace Context header (<https://www.w3.org/TR/trace-context/>).
pub const TRACEPARENT: &str = "traceparent";

/// A 128-bit W3C trace id, shown as 32 lowercase hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceId(u128);

impl TraceId {
    /// A fresh random trace id (never the invalid all-zero one).
    pub fn random() -> Self {
        loop {
            let id: u128 = rand::random();
            if id != 0 {
                return Self(id);
            }
        }
    }

    /// The trace id of `headers`' `traceparent`, when it has exactly one and it is valid
    /// (see [`TraceParent::from_headers`]).
    pub fn from_headers(headers: &HeaderMap) -> Option<Self> {
        TraceParent::from_headers(headers).map(|parent| parent.trace_id)
    }

    /// The trace id of one `traceparent` value, when it is valid.
    pub fn from_traceparent(value: &str) -> Option<Self> {
        TraceParent::parse(value).map(|parent| parent.trace_id)
    }

    /// The id `id`, or none for the invalid 0.
    pub fn from_u128(id: u128) -> Option<Self> {
        (id != 0).then_some(Self(id))
    }

    /// The id as a number.
    pub fn as_u128(self) -> u128 {
        self.0
    }
}

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

/// A valid W3C `traceparent`: the caller's trace and its span that made this request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    /// The trace the request belongs to.
    pub trace_id: TraceId,
    /// The caller's span (64 bits, never zero).
    pub parent_id: u64,
    /// The trace flags (bit 0: sampled).
    pub flags: u8,
}

impl TraceParent {
    /// `headers`' `traceparent`, when it has exactly one and it is valid.
    pub fn from_headers(headers: &HeaderMap) -> Option<Self> {
        let mut values = headers.get_all(TRACEPARENT).iter();
        let value = values.next()?;
        if values.next().is_some() {
            return None;
        }
        Self::parse(value.to_str().ok()?)
    }

    /// One `traceparent` value, when it is valid (W3C Trace Context §3.2: a version other
    /// than `ff`, a non-zero trace id and parent id in lowercase hex, flags; version `00`
    /// has nothing after the flags).
    pub fn parse(value: &str) -> Option<Self> {
        let value = value.trim_matches([' ', '\t']);
        let mut parts = value.splitn(5, '-');
        let version = parts.next()?;
        let trace_id = parts.next()?;
        let parent_id = parts.next()?;
        let flags = parts.next()?;
        let rest = parts.next();
        let lower_hex = |s: &str, len: usize| {
            s.len() == len
                && s.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        };
        let valid = lower_hex(version, 2)
            && version != "ff"
            && lower_hex(trace_id, 32)
            && lower_hex(parent_id, 16)
            && lower_hex(flags, 2)
            && (version != "00" || rest.is_none());
        if !valid {
            return None;
        }
        let trace_id = u128::from_str_radix(trace_id, 16).ok()?;
        let parent_id = u64::from_str_radix(parent_id, 16).ok()?;
        let flags = u8::from_str_radix(flags, 16).ok()?;
        (trace_id != 0 && parent_id != 0).then_some(Self {
            trace_id: TraceId(trace_id),
            parent_id,
            flags,
        })
    }
}

/// Makes each request's span, `http_request`, with its method, path and `trace_id`; the
/// [`tower_http::trace::TraceLayer`] of `server::serve` uses it.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestSpan;

impl<B> MakeSpan<B> for RequestSpan {
    fn make_span(&mut self, request: &Request<B>) -> Span {
        let span = tracing::info_span!(
            "http_request",
            method = %request.method(),
            path = request.uri().path(),
            trace_id = tracing::field::Empty,
        );
        // The id costs a parse or a random draw: only for a span a subscriber keeps.
        if !span.is_disabled() {
            let parent = TraceParent::from_headers(request.headers());
            #[cfg(feature = "otel")]
            let trace_id = crate::otel::join(&span, parent);
            #[cfg(not(feature = "otel"))]
            let trace_id = parent.map_or_else(TraceId::random, |parent| parent.trace_id);
            span.record("trace_id", tracing::field::display(trace_id));
        }
        span
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_valid_traceparent_gives_its_trace_id() {
        let id = TraceId::from_traceparent(SAMPLE).map(|id| id.to_string());
        assert_eq!(id.as_deref(), Some("4bf92f3577b34da6a3ce929d0e0e4736"));
        // A later version may carry more fields after the flags.
        let later = format!("01{}-more", &SAMPLE[2..]);
        assert!(TraceId::from_traceparent(&later).is_some());
    }

    #[test]
    fn an_invalid_traceparent_gives_none() {
        for bad in [
            "",
            "00",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
            "00-+bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert_eq!(TraceId::from_traceparent(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn two_traceparent_headers_give_none() {
        let mut headers = HeaderMap::new();
        headers.append(TRACEPARENT, SAMPLE.parse().expect("a header value"));
        assert!(TraceId::from_headers(&headers).is_some());
        headers.append(TRACEPARENT, SAMPLE.parse().expect("a header value"));
        assert_eq!(TraceId::from_headers(&headers), None);
    }

    #[test]
    fn random_ids_are_32_hex_digits_and_differ() {
        let (a, b) = (TraceId::random(), TraceId::random());
        assert_ne!(a, b);
        assert_eq!(a.to_string().len(), 32);
        assert_eq!(
            TraceId::from_traceparent(&format!("00-{a}-00f067aa0ba902b7-01")),
            Some(a)
        );
    }
}
