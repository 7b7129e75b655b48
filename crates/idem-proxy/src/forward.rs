//! [`Forwarder`]: sends a request on to the upstream over a pooled hyper-util client.

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::{Extension, State};
use axum::response::{IntoResponse, Response};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Request, Uri, Version};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use idem::FencingToken;
use idem_http::server::PeerAddr;
use idem_http::BodyDeadlineElapsed;

use crate::Error;

/// The request header that carries the holder's fencing token to the upstream (DESIGN §4),
/// so an upstream that records key and token can refuse a stale holder.
pub const FENCING_TOKEN_HEADER: HeaderName = HeaderName::from_static("idempotency-fencing-token");

/// The upstream and a connection pool to it.
#[derive(Clone, Debug)]
pub(crate) struct Forwarder {
    client: Client<HttpConnector, Body>,
    authority: Authority,
    base_path: String,
}

impl Forwarder {
    /// A forwarder to `upstream`, a plain `http://host:port[/base]` URL.
    pub(crate) fn new(upstream: &str) -> Result<Self, Error> {
        let uri: Uri = upstream
            .parse()
            .map_err(|e| Error::Config(format!("--upstream {upstream:?}: {e}")))?;
        if uri.scheme() != Some(&Scheme::HTTP) {
            return Err(Error::Config(format!(
                "--upstream {upstream:?}: only http:// upstreams are supported"
            )));
        }
        let authority = uri
            .authority()
            .cloned()
            .ok_or_else(|| Error::Config(format!("--upstream {upstream:?}: no host")))?;
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        Ok(Self {
            client: Client::builder(TokioExecutor::new()).build(connector),
            authority,
            base_path: uri.path().trim_end_matches('/').to_owned(),
        })
    }

    async fn send(&self, peer: SocketAddr, request: Request<Body>) -> Result<Response, Error> {
        let (mut parts, body) = request.into_parts();
        let target = parts.uri.path_and_query().map_or("/", PathAndQuery::as_str);
        let path = format!("{}{}", self.base_path, target);
        parts.uri = Uri::builder()
            .scheme(Scheme::HTTP)
            .authority(self.authority.clone())
            .path_and_query(path)
            .build()
            .map_err(|e| Error::Upstream(e.into()))?;
        if let Some(host) = parts.headers.remove(header::HOST) {
            parts
                .headers
                .insert(HeaderName::from_static("x-forwarded-host"), host);
        }
        // Each hop speaks its own HTTP version: the client's (HTTP/1.0, say) is not the
        // one the proxy speaks to the upstream, HTTP/1.1.
        parts.version = Version::HTTP_11;
        strip_hop_by_hop(&mut parts.headers);
        append_forwarded_for(&mut parts.headers, peer);
        // Only the layer names the holder: a token the client sent is never passed on.
        parts.headers.remove(FENCING_TOKEN_HEADER);
        if let Some(token) = parts.extensions.get::<FencingToken>() {
            parts
                .headers
                .insert(FENCING_TOKEN_HEADER, HeaderValue::from(token.0));
        }
        if let Ok(host) = HeaderValue::from_str(self.authority.as_str()) {
            parts.headers.insert(header::HOST, host);
        }
        let response = self
            .client
            .request(Request::from_parts(parts, body))
            .await
            .map_err(|e| {
                // An unguarded body streamed to the upstream that missed its deadline is
                // the client's failure, not the upstream's.
                if BodyDeadlineElapsed::found_in(&e) {
                    Error::BodyTimeout
                } else {
                    Error::Upstream(e.into())
                }
            })?;
        let (mut parts, body) = response.into_parts();
        // The upstream's version (an HTTP/1.0 server's, say) is not the proxy's: hyper
        // would write it into the status line the client reads.
        parts.version = Version::default();
        strip_hop_by_hop(&mut parts.headers);
        Ok(Response::from_parts(parts, Body::new(body)))
    }
}

/// The axum handler every request reaches after the layer.
pub(crate) async fn forward(
    State(forwarder): State<Forwarder>,
    Extension(PeerAddr(peer)): Extension<PeerAddr>,
    request: Request<Body>,
) -> Response {
    match forwarder.send(peer, request).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

/// RFC 9110 §7.6.1: connection-specific headers, and any the `Connection` header names,
/// belong to one hop and are not forwarded.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in [
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    ] {
        headers.remove(name);
    }
}

/// Tells the upstream who the client is, appending to what earlier proxies said.
fn append_forwarded_for(headers: &mut HeaderMap, peer: SocketAddr) {
    let name = HeaderName::from_static("x-forwarded-for");
    let ip = peer.ip().to_string();
    let value = match headers.get(&name).and_then(|v| v.to_str().ok()) {
        Some(earlier) => format!("{earlier}, {ip}"),
        None => ip,
    };
    if let Ok(value) = HeaderValue::from_str(&value) {
        headers.insert(name, value);
    }
    headers.insert(
        HeaderName::from_static("x-forwarded-proto"),
        HeaderValue::from_static("http"),
    );
}
