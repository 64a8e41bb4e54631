//! `GET /whoami`: who the request's token says the caller is (an
//! operator's name and role, or the shared token).

use actix_web::{get, HttpResponse};
use serde::Serialize;

use crate::api::auth::Authorized;
use crate::api::responses::Guarded;
use crate::operators::Caller;

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
}

#[utoipa::path(tag = "operators", security(("bearer" = [])), responses((status = 200, description = "The caller, from its token", body = WhoAmI), Guarded))]
#[get("/whoami")]
pub async fn whoami(Authorized(caller): Authorized) -> HttpResponse {
    let answer = match caller {
        Caller::Shared => WhoAmI {
            name: None,
            role: "admin".into(),
            credential: None,
            shared: true,
        },
        Caller::Operator { id, name, role } => WhoAmI {
            name: Some(name),
            role: role.as_str().into(),
            credential: Some(id),
            shared: false,
        },
    };
    HttpResponse::Ok().json(answer)
}
