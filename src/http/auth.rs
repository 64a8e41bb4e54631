//! Bearer-token authorisation for the API endpoints (everything but health,
//! readiness and metrics). The token comes from `http.api_token`; it is
//! compared in constant time, and never logged.

use std::future::{ready, Ready};

use actix_web::{dev::Payload, web, FromRequest, HttpRequest};
use secrecy::{ExposeSecret, SecretString};
use subtle::ConstantTimeEq;

use crate::http::error::ApiError;

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
        .and_then(|h| h.strip_prefix("Bearer "))
        .map(str::trim)
        .ok_or_else(|| ApiError::Unauthorized("Authorization must be `Bearer <token>`".into()))?;
    if bool::from(
        presented
            .as_bytes()
            .ct_eq(expected.expose_secret().as_bytes()),
    ) {
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
