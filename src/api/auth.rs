//! Bearer-token authorisation for the API endpoints (everything but health,
//! readiness and metrics). The token is the shared `http.api_token`
//! (compared in constant time) or an operator's own (`operators`: looked up
//! by its SHA-256, revocation effective at once); it is never logged.
//!
//! Each endpoint declares the least role it takes twice, checked against
//! each other by a test: in its type (`Authorized<Act>`) and in its OpenAPI
//! security requirement (`("bearer" = ["operator"])`).

use std::marker::PhantomData;

use actix_web::{dev::Payload, web, FromRequest, HttpRequest};
use futures::future::LocalBoxFuture;
use secrecy::SecretString;

use crate::api::error::ApiError;
use crate::operators::{Actor, Caller, Channel, Role};

/// The configured token, or none (the API is then closed).
pub struct ApiToken(pub Option<SecretString>);

/// The least role an endpoint takes.
pub trait Least {
    const ROLE: Role;
}

/// Reads: status, the explorer, dead letters, search (`viewer`).
pub struct Read;
/// Replays, discards, produces, starts jobs (`operator`).
pub struct Act;
/// Approves or rejects requests, unmasks (`approver`).
pub struct Approve;
/// Manages operators (`admin`).
pub struct Admin;

impl Least for Read {
    const ROLE: Role = Role::Viewer;
}
impl Least for Act {
    const ROLE: Role = Role::Operator;
}
impl Least for Approve {
    const ROLE: Role = Role::Approver;
}
impl Least for Admin {
    const ROLE: Role = Role::Admin;
}

/// Present in a handler's arguments: the request carried a valid token
/// whose role is at least `R`'s; who, how and where.
pub struct Authorized<R: Least = Read>(pub Actor, pub PhantomData<R>);

/// The header the console sets on its requests (`console`); without it a
/// request's channel is `api`.
pub const CHANNEL_HEADER: &str = "x-custodian-channel";

fn actor(req: &HttpRequest, caller: &Caller) -> Actor {
    let channel = match req.headers().get(CHANNEL_HEADER).map(|v| v.as_bytes()) {
        Some(b"console") => Channel::Console,
        _ => Channel::Api,
    };
    let client = req.peer_addr().map(|a| a.ip().to_string());
    let request_id = crate::api::request_id::of(req);
    Actor::new(caller, channel, client, request_id)
}

fn permit<R: Least>(req: &HttpRequest, caller: Caller) -> Result<Authorized<R>, ApiError> {
    let role = caller.role();
    if role < R::ROLE {
        let who = match &caller {
            Caller::Shared => "the shared token".to_owned(),
            Caller::Operator { name, .. } => format!("operator {name}"),
        };
        return Err(ApiError::Forbidden(format!(
            "{who} is a {role}; this takes the {} role",
            R::ROLE
        )));
    }
    Ok(Authorized(actor(req, &caller), PhantomData))
}

async fn caller(req: &HttpRequest) -> Result<Caller, ApiError> {
    let shared = req
        .app_data::<web::Data<ApiToken>>()
        .and_then(|d| d.get_ref().0.clone());
    let Some(header) = req.headers().get(actix_web::http::header::AUTHORIZATION) else {
        return Err(ApiError::Unauthorized(
            "missing Authorization: Bearer <token> (an operator's, from `custodian operator add`)"
                .into(),
        ));
    };
    let presented = header
        .to_str()
        .ok()
        .and_then(|h| h.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
        .ok_or_else(|| ApiError::Unauthorized("Authorization must be `Bearer <token>`".into()))?;
    if crate::operators::is_shared(shared.as_ref(), presented) {
        return Ok(Caller::Shared);
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
        Ok(Some(caller)) => Ok(caller),
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

/// The caller [`resolve`] found, for the extractor to take.
struct Resolved(Result<Caller, ApiError>);

/// The middleware: resolves the token's holder before any extractor runs,
/// so a handler's first argument, [`Authorized`], answers at once, and a
/// request with too little role gets its 403 before its body is read (a
/// body's 400 says nothing to someone who may not call the endpoint).
pub async fn resolve(
    req: actix_web::dev::ServiceRequest,
    next: actix_web::middleware::Next<impl actix_web::body::MessageBody>,
) -> Result<actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>, actix_web::Error> {
    use actix_web::HttpMessage as _;
    if req
        .headers()
        .contains_key(actix_web::http::header::AUTHORIZATION)
    {
        let found = caller(req.request()).await;
        req.extensions_mut().insert(Resolved(found));
    }
    next.call(req).await
}

impl<R: Least + 'static> FromRequest for Authorized<R> {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        use actix_web::HttpMessage as _;
        let resolved = req.extensions_mut().remove::<Resolved>();
        let req = req.clone();
        Box::pin(async move {
            let caller = match resolved {
                Some(Resolved(found)) => found?,
                None => caller(&req).await?,
            };
            permit::<R>(&req, caller)
        })
    }
}
