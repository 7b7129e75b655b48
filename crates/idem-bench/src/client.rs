//! One keep-alive HTTP/1.1 connection per simulated client, on hyper's connection API:
//! no pool, no per-request allocation beyond the request itself, so the load generator
//! spends as little of the machine's two cores as it can.

use std::net::SocketAddr;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, CONTENT_TYPE, HOST, SET_COOKIE};
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::error::{BenchError, Result};

/// Where requests go: the resolved address and the `Host` header.
#[derive(Debug, Clone)]
pub struct Target {
    /// The server's address.
    pub addr: SocketAddr,
    host: HeaderValue,
    /// Headers sent with every request.
    headers: Vec<(HeaderName, HeaderValue)>,
}

impl Target {
    /// Resolves an `http://host:port` base URL (any path is ignored).
    ///
    /// # Errors
    /// Another scheme, a malformed URL, a header that is not valid, or a name that does not resolve.
    pub async fn resolve(url: &str, headers: &[(String, String)]) -> Result<Self> {
        let bad = |reason: &str| BenchError::Resolve {
            url: url.to_owned(),
            reason: reason.to_owned(),
        };
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| bad("only http:// URLs are supported"))?;
        let authority = rest.split('/').next().unwrap_or_default();
        if authority.is_empty() {
            return Err(bad("no host"));
        }
        let with_port = if authority
            .rsplit_once(':')
            .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
        {
            authority.to_owned()
        } else {
            format!("{authority}:80")
        };
        let addr = tokio::net::lookup_host(with_port.as_str())
            .await
            .map_err(|e| bad(&e.to_string()))?
            .next()
            .ok_or_else(|| bad("no address"))?;
        let host =
            HeaderValue::from_str(authority).map_err(|_| bad("host is not a header value"))?;
        let headers = headers
            .iter()
            .map(|(name, value)| {
                match (
                    HeaderName::from_bytes(name.as_bytes()),
                    HeaderValue::from_str(value),
                ) {
                    (Ok(n), Ok(v)) => Ok((n, v)),
                    _ => Err(BenchError::InvalidArgument {
                        what: "--header",
                        reason: format!("`{name}: {value}` is not a valid header"),
                    }),
                }
            })
            .collect::<Result<_>>()?;
        Ok(Target {
            addr,
            host,
            headers,
        })
    }

    /// A target at a known address, such as a server the bench started.
    pub fn at(addr: SocketAddr, headers: Vec<(HeaderName, HeaderValue)>) -> Self {
        let host = HeaderValue::from_str(&addr.to_string())
            .unwrap_or(HeaderValue::from_static("localhost"));
        Target {
            addr,
            host,
            headers,
        }
    }
}

/// An answer: its status, whether it says it is a replay, and its body.
#[derive(Debug)]
pub struct Answer {
    /// The status code.
    pub status: StatusCode,
    /// `Idempotent-Replayed: true` was present.
    pub replayed: bool,
    /// The whole body.
    pub body: Bytes,
    /// The first `Set-Cookie` header, if any.
    pub set_cookie: Option<HeaderValue>,
}

/// One client's connection, opened on first use and again after any failure.
#[derive(Debug)]
pub struct Conn {
    target: Target,
    sender: Option<SendRequest<Full<Bytes>>>,
}

impl Conn {
    /// A connection to `target`, not yet opened.
    pub fn new(target: Target) -> Self {
        Conn {
            target,
            sender: None,
        }
    }

    /// Sends one request with a JSON body (or none) and reads the whole answer.
    ///
    /// # Errors
    /// Connecting, sending or reading failed; the text says which. The connection is
    /// dropped so the next request opens a new one.
    pub async fn send(
        &mut self,
        method: Method,
        path: &str,
        extra: Option<(&HeaderName, &HeaderValue)>,
        body: Option<Bytes>,
    ) -> std::result::Result<Answer, String> {
        let mut builder = Request::builder()
            .method(method)
            .uri(path)
            .header(HOST, self.target.host.clone());
        for (name, value) in &self.target.headers {
            builder = builder.header(name, value);
        }
        if let Some((name, value)) = extra {
            builder = builder.header(name, value);
        }
        let has_body = body.is_some();
        if has_body {
            builder = builder.header(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        let request = builder
            .body(Full::new(body.unwrap_or_default()))
            .map_err(|e| format!("request: {e}"))?;
        let result = self.try_send(request).await;
        if result.is_err() {
            self.sender = None;
        }
        result
    }

    async fn try_send(
        &mut self,
        request: Request<Full<Bytes>>,
    ) -> std::result::Result<Answer, String> {
        let sender = match &mut self.sender {
            Some(sender) => sender,
            None => {
                let sender = self.connect().await?;
                self.sender.insert(sender)
            }
        };
        sender
            .ready()
            .await
            .map_err(|e| format!("connection: {e}"))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| format!("send: {e}"))?;
        let status = response.status();
        let replayed = response
            .headers()
            .get("idempotent-replayed")
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"true"));
        let set_cookie = response.headers().get(SET_COOKIE).cloned();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("body: {e}"))?
            .to_bytes();
        Ok(Answer {
            status,
            replayed,
            body,
            set_cookie,
        })
    }

    async fn connect(&self) -> std::result::Result<SendRequest<Full<Bytes>>, String> {
        let stream = TcpStream::connect(self.target.addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        // Small requests on a kept-alive connection: Nagle would add delay, not save packets.
        stream
            .set_nodelay(true)
            .map_err(|e| format!("connect: {e}"))?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        tokio::spawn(async move {
            // The connection task ends when the sender is dropped or the peer closes; its
            // error, if any, reaches the next request through `ready()`.
            let _ = connection.await;
        });
        Ok(sender)
    }
}
