//! `POST /audit/erasures`: an operator erases a message's (or a key's)
//! personal fields and payload, live and archived, behind the token (see
//! `trail::erase`). Audited as MESSAGE_ERASED entries of the operator chain.

use actix_web::{post, web, HttpResponse};
use serde::Deserialize;

use crate::api::auth::Authorized;
use crate::api::error::{ApiError, ErrorBody};
use crate::api::responses::{Guarded, PostgresBacked, WithBody};
use crate::api::AppState;
use crate::trail::erase::{EraseError, Erased, Selector};
use crate::trail::AccessError;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EraseRequest {
    /// Every message with this key (as text); or `message_id`.
    #[schema(min_length = 1, max_length = 10000)]
    key: Option<String>,
    /// One message; or `key`.
    message_id: Option<uuid::Uuid>,
    /// Why (the request, the legal basis); recorded in the audit trail.
    #[schema(min_length = 1, max_length = 1000, pattern = r"\S")]
    reason: String,
    /// Who (default `api`).
    #[schema(min_length = 1, max_length = 200, pattern = r"\S")]
    requested_by: Option<String>,
}

/// Erases what the request names; the chain still verifies and reports
/// the entries as erased.
#[utoipa::path(tag = "audit", security(("bearer" = [])), request_body = EraseRequest, responses((status = 200, description = "Erased: the messages, live and archived entries, each archived period's new manifest", body = Erased), (status = 400, description = "Neither or both of key and message_id, or a blank reason", body = ErrorBody), (status = 404, description = "No message matches", body = ErrorBody), (status = 409, description = "A legal hold covers what would be erased, or a message is still parked in the dead-letter queue or the retry schedule: nothing was erased", body = ErrorBody), Guarded, WithBody, PostgresBacked))]
#[post("/audit/erasures")]
pub async fn erase(
    Authorized(caller): Authorized,
    state: web::Data<AppState>,
    body: web::Json<EraseRequest>,
) -> Result<HttpResponse, ApiError> {
    if !caller.may_approve() {
        return Err(ApiError::Forbidden(
            "erasing takes the approver or admin role".into(),
        ));
    }
    let r = body.into_inner();
    let selector = match (r.key, r.message_id) {
        (Some(k), None) if !k.is_empty() && k.len() <= 10_000 => Selector::Key(k),
        (None, Some(id)) => Selector::Message(id),
        _ => {
            return Err(ApiError::BadRequest(
                "give key (1 to 10000 bytes) or message_id, not both".into(),
            ))
        }
    };
    let blank = |s: &str| s.trim().is_empty();
    if blank(&r.reason) || r.reason.len() > 1000 {
        return Err(ApiError::BadRequest(
            "reason: 1 to 1000 characters, not blank".into(),
        ));
    }
    let by = r.requested_by.unwrap_or_else(|| "api".into());
    if blank(&by) || by.len() > 200 {
        return Err(ApiError::BadRequest(
            "requested_by: 1 to 200 characters, not blank".into(),
        ));
    }
    match state.audit.erase(&selector, &by, &r.reason).await {
        Ok(erased) => Ok(HttpResponse::Ok().json(erased)),
        Err(AccessError::Erase(e @ EraseError::BadInput(_))) => {
            Err(ApiError::BadRequest(e.to_string()))
        }
        Err(AccessError::Erase(e @ EraseError::NothingFound)) => {
            Err(ApiError::NotFound(e.to_string()))
        }
        Err(AccessError::Erase(
            e @ (EraseError::Held { .. } | EraseError::HeldMeanwhile(_) | EraseError::Pending(_)),
        )) => Err(ApiError::Conflict(e.to_string())),
        Err(AccessError::Erase(
            e @ (EraseError::Archive { .. } | EraseError::ArchiveAfterRecord { .. }),
        )) => {
            tracing::warn!(error = %e, "audit erase: the archive");
            Err(ApiError::Unavailable("the archive store"))
        }
        Err(e) => {
            tracing::warn!(error = %e, "audit erase failed");
            Err(ApiError::Unavailable("postgres"))
        }
    }
}
