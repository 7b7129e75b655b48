//! The axum extractor for handlers that want the request's idempotency key themselves, for
//! instance to pass it on to a downstream API: parsed exactly as the layer parses it, and
//! refused with the layer's problem+json when missing or malformed.

use axum_core::extract::{FromRequestParts, OptionalFromRequestParts};
use http::request::Parts;
use idem::Key;

use crate::key::{from_header, IDEMPOTENCY_KEY};
use crate::Error;

/// The request's `Idempotency-Key` (an sf-string, or a bare token), as a validated [`Key`].
///
/// As an argument it requires the header: a missing key answers 400
/// `idempotency_key_missing`, an invalid one 400 `idempotency_key_invalid`. As
/// `Option<IdempotencyKey>` a missing header is `None`, while an invalid one is still 400.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey(pub Key);

impl<S: Send + Sync> FromRequestParts<S> for IdempotencyKey {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        from_header(&parts.headers, &IDEMPOTENCY_KEY)?
            .map(Self)
            .ok_or(Error::KeyMissing)
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for IdempotencyKey {
    type Rejection = Error;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        Ok(from_header(&parts.headers, &IDEMPOTENCY_KEY)?.map(Self))
    }
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::routing::post;
    use axum::Router;
    use http::{Request, StatusCode};
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    use super::IdempotencyKey;

    fn app() -> Router {
        Router::new()
            .route(
                "/required",
                post(|IdempotencyKey(key): IdempotencyKey| async move { key.to_string() }),
            )
            .route(
                "/optional",
                post(|key: Option<IdempotencyKey>| async move {
                    key.map_or_else(|| "none".to_owned(), |k| k.0.to_string())
                }),
            )
    }

    async fn call(path: &str, key: Option<&str>) -> (StatusCode, String, String) {
        let mut request = Request::post(path);
        if let Some(key) = key {
            request = request.header("idempotency-key", key);
        }
        let response = app()
            .oneshot(request.body(Body::empty()).expect("request"))
            .await
            .expect("infallible");
        let status = response.status();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let body = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        (
            status,
            content_type,
            String::from_utf8_lossy(&body).into_owned(),
        )
    }

    #[tokio::test]
    async fn quoted_and_bare_keys_are_extracted() {
        assert_eq!(call("/required", Some("\"k-1\"")).await.2, "k-1");
        assert_eq!(call("/required", Some("k-2")).await.2, "k-2");
        assert_eq!(call("/optional", Some("\"k-3\"")).await.2, "k-3");
    }

    #[tokio::test]
    async fn a_missing_key_is_400_where_required_and_none_where_optional() {
        let (status, content_type, body) = call("/required", None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(content_type, "application/problem+json");
        assert!(body.contains("idempotency_key_missing"), "{body}");
        assert_eq!(call("/optional", None).await.2, "none");
    }

    #[tokio::test]
    async fn an_invalid_key_is_400_even_where_optional() {
        let long = format!("\"{}\"", "k".repeat(300));
        for path in ["/required", "/optional"] {
            let (status, _, body) = call(path, Some(&long)).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{path}");
            assert!(body.contains("idempotency_key_invalid"), "{body}");
        }
    }
}
