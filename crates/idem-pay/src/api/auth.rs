//! Who calls `/v1` (DESIGN §5a): the middleware that turns `Authorization: Bearer <key>` into
//! the caller's [`Tenant`], or answers 401 before the handler reads anything.
//!
//! Every refusal is the same answer — missing, malformed, unknown or revoked — so a client
//! learns nothing about which keys exist. A malformed key never reaches the database.

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::keys::ApiKeys;
use crate::{Error, Tenant};

/// How `/v1` requests are authenticated (`idem serve --auth`).
#[derive(Debug, Clone, Default)]
pub enum Auth {
    /// No key is read: every request belongs to the built-in tenant `default`.
    #[default]
    None,
    /// Every request carries a live key of `idem keys create`; the key names the tenant.
    ApiKeys(ApiKeys),
}

/// Puts the caller's [`Tenant`] in the request's extensions, or answers 401 `unauthorized`.
pub(super) async fn authenticate(
    State(auth): State<Auth>,
    mut request: Request,
    next: Next,
) -> Response {
    let tenant = match &auth {
        Auth::None => Tenant::default(),
        Auth::ApiKeys(keys) => {
            let Some(secret) = bearer(request.headers()) else {
                return Error::Unauthorized.into_response();
            };
            match keys.tenant_of(secret).await {
                Ok(Some(tenant)) => tenant,
                Ok(None) => return Error::Unauthorized.into_response(),
                // The keys could not be read (503 or 500): not the caller's fault.
                Err(error) => return error.into_response(),
            }
        }
    };
    request.extensions_mut().insert(tenant);
    next.run(request).await
}

/// The credentials of `Authorization: Bearer <token>` (RFC 6750 §2.1): exactly one such
/// header, the scheme in any case, one token after it; anything else is no credentials.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let value = values.next()?.to_str().ok()?;
    if values.next().is_some() {
        return None;
    }
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim_start_matches(' ');
    let well_formed = scheme.eq_ignore_ascii_case("bearer")
        && !token.is_empty()
        && !token.bytes().any(|b| b.is_ascii_whitespace());
    well_formed.then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(
                header::AUTHORIZATION,
                HeaderValue::from_str(value).expect("a header value"),
            );
        }
        headers
    }

    #[test]
    fn one_bearer_token_is_read() {
        assert_eq!(bearer(&headers(&["Bearer idem_sk_ab"])), Some("idem_sk_ab"));
        assert_eq!(
            bearer(&headers(&["bearer  idem_sk_ab"])),
            Some("idem_sk_ab")
        );
        assert_eq!(bearer(&headers(&["BEARER idem_sk_ab"])), Some("idem_sk_ab"));
    }

    #[test]
    fn anything_else_is_no_credentials() {
        for refused in [
            &[][..],
            &["Basic dXNlcjpwYXNz"],
            &["Bearer"],
            &["Bearer "],
            &["Bearer a b"],
            &["Bearer a\tb"],
            &["idem_sk_ab"],
            &["Bearer a", "Bearer a"],
        ] {
            assert_eq!(bearer(&headers(refused)), None, "{refused:?}");
        }
    }
}
