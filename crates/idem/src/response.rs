//! The [`StoredResponse`] a completed record replays, and its compact binary encoding.

use bytes::Bytes;

/// What a completed record replays: the status, the headers worth replaying, the body.
///
/// Stores keep it as the opaque bytes of [`StoredResponse::encode`], so every backend holds
/// the same thing and a replay is byte for byte the first answer.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StoredResponse {
    /// The HTTP status (or an application status for non-HTTP users).
    pub status: u16,
    /// Header names and raw values, in the order they are to be replayed.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The body, exactly as first sent.
    pub body: Bytes,
}

/// Why bytes read back from a store are not a [`StoredResponse`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The encoding does not start with the expected version tag.
    #[error("stored response has an unknown format tag")]
    UnknownFormat,
    /// The bytes end in the middle of a field.
    #[error("stored response is truncated")]
    Truncated,
    /// A header name is not UTF-8.
    #[error("stored response has a header name that is not UTF-8")]
    HeaderName,
}

const FORMAT_V1: &[u8; 4] = b"IDR1";

impl StoredResponse {
    /// A response with a status and a body and no headers.
    pub fn new(status: u16, body: impl Into<Bytes>) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: body.into(),
        }
    }

    /// Adds a header, builder-style.
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Encodes the response: `IDR1`, status, header count, length-prefixed headers, body.
    pub fn encode(&self) -> Vec<u8> {
        let headers_len: usize = self
            .headers
            .iter()
            .map(|(n, v)| 6 + n.len() + v.len())
            .sum();
        let mut out = Vec::with_capacity(4 + 2 + 4 + headers_len + self.body.len());
        out.extend_from_slice(FORMAT_V1);
        out.extend_from_slice(&self.status.to_be_bytes());
        out.extend_from_slice(&len_u32(self.headers.len()).to_be_bytes());
        for (name, value) in &self.headers {
            out.extend_from_slice(&len_u16(name.len()).to_be_bytes());
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(&len_u32(value.len()).to_be_bytes());
            out.extend_from_slice(value);
        }
        out.extend_from_slice(&self.body);
        out
    }

    /// Decodes what [`StoredResponse::encode`] wrote.
    ///
    /// # Errors
    /// [`DecodeError`] when the bytes were not written by `encode`.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut reader = Reader { rest: bytes };
        if reader.take(4)? != FORMAT_V1 {
            return Err(DecodeError::UnknownFormat);
        }
        let status = u16::from_be_bytes(reader.array()?);
        let count = u32::from_be_bytes(reader.array()?);
        let mut headers = Vec::new();
        for _ in 0..count {
            let name_len = u16::from_be_bytes(reader.array()?);
            let name = std::str::from_utf8(reader.take(usize::from(name_len))?)
                .map_err(|_| DecodeError::HeaderName)?
                .to_owned();
            let value_len = u32::from_be_bytes(reader.array()?) as usize;
            headers.push((name, reader.take(value_len)?.to_vec()));
        }
        Ok(Self {
            status,
            headers,
            body: Bytes::copy_from_slice(reader.rest),
        })
    }
}

// Header names and values come from HTTP messages, far below these bounds; saturating keeps
// encode infallible and decode would then report truncation rather than misread.
fn len_u16(len: usize) -> u16 {
    u16::try_from(len).unwrap_or(u16::MAX)
}

fn len_u32(len: usize) -> u32 {
    u32::try_from(len).unwrap_or(u32::MAX)
}

struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.rest.len() < n {
            return Err(DecodeError::Truncated);
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let bytes = self.take(N)?;
        let mut out = [0; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn round_trip_keeps_everything() {
        let response = StoredResponse::new(201, &b"{\"ok\":true}\x00\xff"[..])
            .with_header("content-type", "application/json")
            .with_header("x-bin", vec![0u8, 255, 10]);
        assert_eq!(StoredResponse::decode(&response.encode()), Ok(response));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert_eq!(StoredResponse::decode(b""), Err(DecodeError::Truncated));
        assert_eq!(
            StoredResponse::decode(b"XXXX\x00\xc8"),
            Err(DecodeError::UnknownFormat)
        );
        assert_eq!(
            StoredResponse::decode(b"IDR1\x00\xc8\x00\x00\x00\x05"),
            Err(DecodeError::Truncated)
        );
    }

    proptest! {
        #[test]
        fn encode_decode_round_trips(
            status in any::<u16>(),
            headers in proptest::collection::vec(("[a-z-]{1,20}", proptest::collection::vec(any::<u8>(), 0..40)), 0..5),
            body in proptest::collection::vec(any::<u8>(), 0..300),
        ) {
            let response = StoredResponse { status, headers, body: body.into() };
            prop_assert_eq!(StoredResponse::decode(&response.encode()), Ok(response));
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..100)) {
            let _ = StoredResponse::decode(&bytes);
        }
    }
}
