//! Bearer-token authorisation for the API endpoints (everything but health,
//! readiness and metrics). The token comes from `http.api_token`; it is
//! compared in constant time, and never logged.

use std::future::{ready, Ready};

use actix_web::{dev::Payload, web, FromRequest, HttpRequest};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::api::error::ApiError;

/// The configured token, or none (the API is then closed).
pub struct ApiToken(pub Option<SecretString>);

/// Present in a handler's arguments: the request carried the right token.
pub struct Authorized;

fn check(req: &HttpRequest) -> Result<Authorized, ApiError> {
    let Some(ApiToken(Some(expected))) = req.app_data::<web::Data<ApiToken>>().map(|d| d.get_ref())
    else {
        return Err(ApiError::Forbidden(
            "the API is disabled: no http.api_token is configured".into(),
        ));
    };
    let Some(header) = req.headers().get(actix_web::http::header::AUTHORIZATION) else {
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
    let presented = Sha256::digest(presented.as_bytes());
    let expected = Sha256::digest(expected.expose_secret().as_bytes());
    if bool::from(presented.ct_eq(&expected)) {
        Ok(Authorized)
    } else {
        Err(ApiError::Forbidden("the token is not valid".into()))
    }
}

impl FromRequest for Authorized {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(check(req))
    }
}
