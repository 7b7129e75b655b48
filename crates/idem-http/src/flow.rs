//! What one request goes through: key, body, scope, fingerprint, `begin`, then run and
//! store, replay, or refuse. Every refusal is an [`Error`] turned into problem+json.

use std::sync::Arc;
use std::time::Duration;

use axum_core::body::Body;
use axum_core::response::IntoResponse;
use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http::request::Parts;
use http::{HeaderName, HeaderValue, Request, Response, StatusCode};
use http_body::Body as HttpBody;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use idem::metrics::RequestOutcome;
use idem::{
    BoxError, Claim, FencingToken, FieldSelection, Fingerprint, Key, Outcome, Scope, StoreError,
    StoredResponse,
};
use tokio::time::Instant;
use tower_service::Service;

use crate::config::{InFlight, KeySource};
use crate::deadline::BodyDeadlineElapsed;
use crate::guard::{within_lease, Held};
use crate::layer::Shared;
use crate::{key, Error};

/// The header a replayed response carries.
pub const IDEMPOTENT_REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");

/// The share of the lease a `begin` may take for its caller still to run the request: the
/// lease, counted by the store from after the call was sent, has then at least the rest of
/// it left to forward and finish in. A later answer (a network path that held it) may come
/// after the lease ended and another node took the key over: running then would be a
/// second execution that no kill or fencing explains.
const BEGIN_SHARE_OF_LEASE_MAX: u32 = 2;

/// The first and the longest pause between two polls of a waiting duplicate.
const WAIT_BACKOFF_FIRST: Duration = Duration::from_millis(5);
const WAIT_BACKOFF_MAX: Duration = Duration::from_millis(200);

/// An unguarded request: straight to the inner service, bodies streamed both ways.
pub(crate) async fn pass_through<S, ResBody>(
    mut inner: S,
    request: Request<Body>,
) -> Result<Response<Body>, S::Error>
where
    S: Service<Request<Body>, Response = Response<ResBody>>,
    ResBody: HttpBody<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<BoxError>,
{
    Ok(inner.call(request).await?.map(Body::new))
}

/// A guarded request, from its key to its stored answer.
pub(crate) async fn guard<S, ReqBody, ResBody>(
    shared: Arc<Shared>,
    mut inner: S,
    request: Request<ReqBody>,
) -> Result<Response<Body>, S::Error>
where
    S: Service<Request<Body>, Response = Response<ResBody>>,
    ReqBody: HttpBody<Data = Bytes> + Send + 'static,
    ReqBody::Error: Into<BoxError>,
    ResBody: HttpBody<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<BoxError>,
{
    let config = &shared.config;
    let (mut parts, body) = request.into_parts();

    // A header key is checked before the body is read: a bad request costs no upload.
    let header_key = match &config.key_source {
        KeySource::Header(name) => match key::from_header(&parts.headers, name) {
            Ok(Some(key)) => Some(key),
            Ok(None) if config.key_required => return Ok(refuse(Error::KeyMissing)),
            Ok(None) => {
                return pass_through(inner, Request::from_parts(parts, Body::new(body))).await
            }
            Err(error) => return Ok(refuse(error)),
        },
        KeySource::Custom(_) => None,
    };
    let bytes = match read_body(&parts, body, config.body_limit_bytes).await {
        Ok(bytes) => bytes,
        Err(error) => return Ok(refuse(error)),
    };
    let key = match (header_key, &config.key_source) {
        (Some(key), _) => key,
        (None, KeySource::Custom(find)) => match find(&parts, &bytes) {
            Some(raw) => match Key::new(raw) {
                Ok(key) => key,
                Err(e) => {
                    let reason = e.to_string();
                    return Ok(refuse(Error::KeyInvalid { reason }));
                }
            },
            None if config.key_required => return Ok(refuse(Error::KeyMissing)),
            None => {
                let request = Request::from_parts(parts, Body::from(bytes));
                return pass_through(inner, request).await;
            }
        },
        (None, KeySource::Header(_)) => return Ok(refuse(Error::KeyMissing)),
    };
    // The hash costs a digest: only for a span that a subscriber keeps.
    let span = tracing::Span::current();
    if !span.is_disabled() {
        span.record("key_hash", tracing::field::display(key_hash(&key)));
    }

    let principal = config.principal.as_ref().and_then(|find| find(&parts));
    let operation = format!("{} {}", parts.method, parts.uri.path());
    let scope = Scope::for_operation(principal.as_deref(), &operation);
    let fingerprint = fingerprint(&parts, &bytes, &config.fields);

    let token = match acquire(&shared, &scope, &key, &fingerprint).await {
        Ok(Acquire::Run(token)) => {
            counted(RequestOutcome::Executed);
            token
        }
        Ok(Acquire::Answer(response)) => {
            counted(RequestOutcome::Replayed);
            return Ok(response);
        }
        Err(error) => return Ok(refuse(error)),
    };
    // From here until `complete` or `release`, dropping `held` (client gone, handler
    // panicked) releases the key.
    let held = Held::new(Arc::clone(&shared.store), scope, key, token, config.lease);
    // The handler may fence its own writes with the holder's token (`idem proxy` passes it
    // on as `Idempotency-Fencing-Token`, DESIGN §4).
    parts.extensions.insert(token);

    let response = match inner
        .call(Request::from_parts(parts, Body::from(bytes)))
        .await
    {
        Ok(response) => response,
        Err(error) => {
            held.release().await;
            return Err(error);
        }
    };
    let (head, body) = response.into_parts();
    let collected = body
        .collect()
        .await
        .map_err(|e| Error::ResponseBody(e.into()));
    let body = match collected {
        Ok(collected) => collected.to_bytes(),
        Err(error) => {
            held.release().await;
            return Ok(error.into_response());
        }
    };
    if (config.store_status)(head.status) {
        let stored = to_stored(&head, &body, &config.stored_headers);
        if let Err(error) = held.complete(&stored).await {
            // The work is done and its answer goes to this client; only the replay is lost.
            tracing::warn!(%error, "could not store an idempotent response; a retry will run again");
        }
    } else {
        held.release().await;
    }
    Ok(Response::from_parts(head, Body::from(body)))
}

/// Counts a request that ended as `outcome` (`idem::metrics::REQUESTS_TOTAL`) and names
/// the outcome on the request's span.
fn counted(outcome: RequestOutcome) {
    outcome.record();
    tracing::Span::current().record("outcome", outcome.as_str());
}

/// The answer to a request refused with `error`, counted under its outcome when it has one
/// (a refusal about the body is not an idempotency outcome).
fn refuse(error: Error) -> Response<Body> {
    let outcome = match &error {
        Error::KeyMissing => Some(RequestOutcome::MissingKey),
        Error::KeyInvalid { .. } => Some(RequestOutcome::InvalidKey),
        Error::KeyReused => Some(RequestOutcome::Mismatch),
        Error::InFlight { .. } => Some(RequestOutcome::InFlight),
        Error::Store(_) => Some(RequestOutcome::StoreError),
        _ => None,
    };
    if let Some(outcome) = outcome {
        counted(outcome);
    }
    error.into_response()
}

/// What logs and spans show of a key (see [`idem::key_hash`]).
pub(crate) fn key_hash(key: &Key) -> String {
    idem::key_hash(key.as_str())
}

enum Acquire {
    /// This request holds the key: run it.
    Run(FencingToken),
    /// Answer this without running anything (a replay).
    Answer(Response<Body>),
}

async fn acquire(
    shared: &Shared,
    scope: &Scope,
    key: &Key,
    fingerprint: &Fingerprint,
) -> Result<Acquire, Error> {
    let config = &shared.config;
    let deadline = match config.in_flight {
        InFlight::Reject => None,
        InFlight::Wait { max } => Some(Instant::now() + max),
    };
    let mut backoff = WAIT_BACKOFF_FIRST;
    loop {
        let sent = Instant::now();
        let claim = Claim::new(scope, key, fingerprint, config.lease, config.ttl);
        let outcome = within_lease(config.lease, shared.store.begin(claim)).await?;
        match outcome {
            Outcome::Acquired { token, .. }
                if sent.elapsed() >= config.lease / BEGIN_SHARE_OF_LEASE_MAX =>
            {
                let held = Held::new(
                    Arc::clone(&shared.store),
                    scope.clone(),
                    key.clone(),
                    token,
                    config.lease,
                );
                held.release().await;
                let why = "the store granted the key too late in its lease to run the request";
                return Err(Error::Store(StoreError::Unavailable(why.into())));
            }
            Outcome::Acquired { token, recovered } => {
                if recovered {
                    tracing::info!("took over an abandoned idempotency key");
                }
                return Ok(Acquire::Run(token));
            }
            Outcome::Replay(stored) => return Ok(Acquire::Answer(replay(stored)?)),
            Outcome::Mismatch => return Err(Error::KeyReused),
            Outcome::InFlight { retry_after } => {
                let now = Instant::now();
                let Some(deadline) = deadline.filter(|d| *d > now) else {
                    return Err(Error::InFlight { retry_after });
                };
                // The first request may finish (replay), fail (we acquire) or vanish (its
                // lease ends and we take over): polling `begin` covers all three.
                tokio::time::sleep(backoff.min(deadline - now).min(retry_after)).await;
                backoff = (backoff * 2).min(WAIT_BACKOFF_MAX);
            }
        }
    }
}

/// The guarded body, whole, within `limit_bytes`. The limit is `http_body_util::Limited`, as
/// in tower-http's `RequestBodyLimit`, which answers a plain 413; here an oversized body is
/// the problem+json `body_too_large`, and only a guarded body is limited.
async fn read_body<B>(parts: &Parts, body: B, limit_bytes: usize) -> Result<Bytes, Error>
where
    B: HttpBody<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let declared = parts
        .headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit_bytes as u64) {
        return Err(Error::BodyTooLarge { limit_bytes });
    }
    match Limited::new(body, limit_bytes).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.is::<LengthLimitError>() => Err(Error::BodyTooLarge { limit_bytes }),
        Err(error) if BodyDeadlineElapsed::found_in(&*error) => Err(Error::BodyTimeout),
        Err(error) => Err(Error::BodyRead(error)),
    }
}

/// Method, path with query, and the body: canonical JSON when it is JSON, else raw bytes.
fn fingerprint(parts: &Parts, body: &[u8], fields: &FieldSelection) -> Fingerprint {
    let method = parts.method.as_str();
    let target = parts
        .uri
        .path_and_query()
        .map_or_else(|| parts.uri.path(), |pq| pq.as_str());
    let is_json = parts
        .headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.contains("json"));
    if is_json {
        if let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) {
            return Fingerprint::of_json(method, target, &value, fields);
        }
    }
    Fingerprint::of_bytes(method, target, body)
}

fn to_stored(head: &http::response::Parts, body: &Bytes, names: &[HeaderName]) -> StoredResponse {
    let mut stored = StoredResponse::new(head.status.as_u16(), body.clone());
    for name in names {
        for value in head.headers.get_all(name) {
            stored
                .headers
                .push((name.as_str().to_owned(), value.as_bytes().to_vec()));
        }
    }
    stored
}

fn replay(stored: StoredResponse) -> Result<Response<Body>, Error> {
    let corrupt = |what: &str| Error::Store(StoreError::Corrupt(what.to_owned()));
    let status = StatusCode::from_u16(stored.status).map_err(|_| corrupt("stored status"))?;
    let mut response = Response::new(Body::from(stored.body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    for (name, value) in stored.headers {
        let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| corrupt("header name"))?;
        let value = HeaderValue::from_bytes(&value).map_err(|_| corrupt("header value"))?;
        headers.append(name, value);
    }
    headers.insert(IDEMPOTENT_REPLAYED, HeaderValue::from_static("true"));
    Ok(response)
}
