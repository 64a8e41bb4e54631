//! `GET /whoami`: who the request's token says the caller is (an
//! operator's name and role, or the shared token), and how the request came.

use actix_web::{get, HttpResponse};
use serde::Serialize;

use crate::api::auth::{Authorized, Read};
use crate::api::responses::Guarded;
use crate::identity::SHARED_NAME;

/// The caller, as its credential says.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct WhoAmI {
    /// The operator's name; null for the shared `http.api_token`.
    name: Option<String>,
    /// `viewer`, `operator`, `approver` or `admin` (the shared token: `admin`).
    role: String,
    /// The credential's id; null for the shared token.
    credential: Option<i64>,
    /// True for the shared token, which names no one.
    shared: bool,
    /// `api` or `console`, as operator entries record it.
    channel: String,
    /// This request's id (also in the `X-Request-Id` answer header).
    request_id: Option<String>,
}

#[utoipa::path(tag = "operators", security(("bearer" = ["viewer"])), responses((status = 200, description = "The caller, from its token", body = WhoAmI), Guarded))]
#[get("/whoami")]
pub async fn whoami(Authorized(actor, _): Authorized<Read>) -> HttpResponse {
    let shared = actor.credential.is_none() && actor.name == SHARED_NAME;
    let channel = serde_json::to_value(actor.channel)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    HttpResponse::Ok().json(WhoAmI {
        name: (!shared).then(|| actor.name.clone()),
        role: actor.role.as_str().into(),
        credential: actor.credential,
        shared,
        channel,
        request_id: actor.request_id,
    })
}
