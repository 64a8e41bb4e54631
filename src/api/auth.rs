//! Bearer-token authorisation for the API endpoints (everything but health,
//! readiness and metrics). The token is the shared `http.api_token`
//! (compared in constant time) or an operator's own (`operators`: looked up
//! by its SHA-256, revocation effective at once); it is never logged.

use actix_web::{dev::Payload, web, FromRequest, HttpRequest};
use futures::future::LocalBoxFuture;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::api::error::ApiError;
use crate::operators::Caller;

/// The configured token, or none (the API is then closed).
pub struct ApiToken(pub Option<SecretString>);

/// Present in a handler's arguments: the request carried a valid token,
/// the shared one or an operator's.
pub struct Authorized(pub Caller);

async fn check(req: HttpRequest) -> Result<Authorized, ApiError> {
    let shared = req
        .app_data::<web::Data<ApiToken>>()
        .and_then(|d| d.get_ref().0.clone());
    let Some(header) = req.headers().get(actix_web::http::header::AUTHORIZATION) else {
        if shared.is_none() {
            return Err(ApiError::Forbidden(
                "the API is disabled: no http.api_token is configured (or send an operator's token)"
                    .into(),
            ));
        }
        return Err(ApiError::Unauthorized(
            "missing Authorization: Bearer <token>".into(),
        ));
    };
    let presented = header
        .to_str()
        .ok()
        .and_then(|h| h.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
        .ok_or_else(|| ApiError::Unauthorized("Authorization must be `Bearer <token>`".into()))?;
    // Digests first: equal lengths, so the comparison time says nothing
    // about the token's length either.
    if let Some(expected) = &shared {
        let digest = Sha256::digest(presented.as_bytes());
        let expected = Sha256::digest(expected.expose_secret().as_bytes());
        if bool::from(digest.ct_eq(&expected)) {
            return Ok(Authorized(Caller::Shared));
        }
    }
    // An operator's: found by its digest (a lookup by a random token's
    // digest says nothing of other tokens).
    let presented = presented.to_owned();
    let state = req
        .app_data::<web::Data<crate::api::AppState>>()
        .ok_or_else(|| ApiError::Forbidden("the token is not valid".into()))?;
    let mut conn = state
        .postgres
        .get()
        .await
        .map_err(|_| ApiError::Unavailable("postgres"))?;
    match crate::operators::authenticate(&mut conn, &presented).await {
        // Until every endpoint declares its role: a viewer only reads.
        Ok(Some(Caller::Operator { name, role, .. }))
            if role == crate::operators::Role::Viewer
                && !matches!(*req.method(), actix_web::http::Method::GET | actix_web::http::Method::HEAD) =>
        {
            Err(ApiError::Forbidden(format!(
                "operator {name} is a viewer: reading only"
            )))
        }
        Ok(Some(caller)) => Ok(Authorized(caller)),
        Ok(None) if shared.is_none() => Err(ApiError::Forbidden(
            "the token is not valid (no http.api_token is configured, and no active operator has it)"
                .into(),
        )),
        Ok(None) => Err(ApiError::Forbidden("the token is not valid".into())),
        Err(e) => {
            tracing::warn!(error = %e, "authenticating an operator's token");
            Err(ApiError::Unavailable("postgres"))
        }
    }
}

impl FromRequest for Authorized {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        Box::pin(check(req.clone()))
    }
}
