//! Managing operators over HTTP (the admin role): list, add (the token is
//! in the answer, once), rotate and revoke. The same functions as
//! `custodian operator …`; each change is a chained operator entry.

use actix_web::{delete, get, post, web, HttpResponse};
use serde::{Deserialize, Serialize};

use crate::api::auth::{Admin, Authorized};
use crate::api::error::{ApiError, ErrorBody};
use crate::api::read::conn;
use crate::api::responses::{Guarded, PostgresBacked, WithBody};
use crate::api::AppState;
use crate::operators::{self, Listed, OperatorError, Role};

impl From<OperatorError> for ApiError {
    fn from(e: OperatorError) -> ApiError {
        match e {
            OperatorError::Unknown(_) => ApiError::NotFound(e.to_string()),
            OperatorError::Exists(_) => ApiError::Conflict(e.to_string()),
            OperatorError::BadName(_) => ApiError::BadRequest(e.to_string()),
            OperatorError::Database(e) => {
                tracing::warn!(error = %e, "operators: PostgreSQL failed");
                ApiError::Unavailable("postgres")
            }
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Operators {
    /// Every operator, revoked ones too (never a token or its digest).
    #[schema(value_type = Vec<Object>)]
    pub operators: Vec<Listed>,
}

/// Every operator.
#[utoipa::path(tag = "operators", security(("bearer" = ["admin"])), responses((status = 200, description = "Every operator, oldest first", body = Operators), Guarded, PostgresBacked))]
#[get("/operators")]
pub async fn list(
    _: Authorized<Admin>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let mut conn = conn(&state).await?;
    let operators = operators::list(&mut conn).await?;
    Ok(HttpResponse::Ok().json(Operators { operators }))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewOperator {
    /// 1 to 100 of A-Z a-z 0-9 . _ @ -
    #[schema(min_length = 1, max_length = 100, pattern = r"^[A-Za-z0-9._@-]+$")]
    pub name: String,
    #[schema(value_type = String, example = "viewer")]
    pub role: Role,
}

/// An operator's token, shown once.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Token {
    pub name: String,
    /// Shown only in this answer; only its SHA-256 is kept.
    pub token: String,
}

/// Adds an operator; the answer carries their token, once.
#[utoipa::path(tag = "operators", security(("bearer" = ["admin"])), request_body = NewOperator, responses((status = 201, description = "Added; the token is shown only here", body = Token), (status = 400, description = "A name that is not allowed", body = ErrorBody), (status = 409, description = "The name exists (revoked names too)", body = ErrorBody), Guarded, WithBody, PostgresBacked))]
#[post("/operators")]
pub async fn add(
    Authorized(by, _): Authorized<Admin>,
    state: web::Data<AppState>,
    body: web::Json<NewOperator>,
) -> Result<HttpResponse, ApiError> {
    let mut conn = conn(&state).await?;
    let token = operators::add(&mut conn, &body.name, body.role, &by).await?;
    Ok(HttpResponse::Created()
        .insert_header(("Cache-Control", "no-store"))
        .json(Token {
            name: body.name.clone(),
            token,
        }))
}

/// Replaces an operator's token; the old one stops working at once.
#[utoipa::path(tag = "operators", security(("bearer" = ["admin"])), params(("name" = String, Path, description = "The operator's name")), responses((status = 200, description = "The new token, shown only here", body = Token), (status = 404, description = "No active operator of that name", body = ErrorBody), Guarded, PostgresBacked))]
#[post("/operators/{name}/rotate")]
pub async fn rotate(
    Authorized(by, _): Authorized<Admin>,
    state: web::Data<AppState>,
    name: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let mut conn = conn(&state).await?;
    let token = operators::rotate(&mut conn, &name, &by).await?;
    Ok(HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .json(Token {
            name: name.into_inner(),
            token,
        }))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Revoked {
    /// The operator whose token no longer works.
    pub revoked: String,
}

/// Revokes an operator's token, at once (the operator stays on record).
#[utoipa::path(tag = "operators", security(("bearer" = ["admin"])), params(("name" = String, Path, description = "The operator's name")), responses((status = 200, description = "Revoked", body = Revoked), (status = 404, description = "No active operator of that name", body = ErrorBody), Guarded, PostgresBacked))]
#[delete("/operators/{name}")]
pub async fn revoke(
    Authorized(by, _): Authorized<Admin>,
    state: web::Data<AppState>,
    name: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let mut conn = conn(&state).await?;
    operators::revoke(&mut conn, &name, &by).await?;
    Ok(HttpResponse::Ok().json(Revoked {
        revoked: name.into_inner(),
    }))
}
