//! `POST /audit/erasures`: an operator asks to erase a message's (or a
//! key's) personal fields and payload, live and archived (see
//! `trail::erase`). Every erasure is four-eyes: this makes a pending
//! request, and the erasure runs when a second person approves it
//! (`POST /approvals/{id}/approve`), audited as MESSAGE_ERASED entries of
//! the operator chain that name both.

use actix_web::{post, web, HttpResponse};
use serde::Deserialize;

use crate::api::approvals::AwaitingApproval;
use crate::api::auth::{Act, Authorized};
use crate::api::error::{ApiError, ErrorBody};
use crate::api::responses::{Guarded, PostgresBacked, WithBody};
use crate::api::AppState;
use crate::approvals::Action;

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
    /// Refused (400): who asks comes from the token.
    #[serde(default)]
    #[schema(ignore)]
    requested_by: Option<serde::de::IgnoredAny>,
}

/// Asks for an erasure: a pending request that a second person approves
/// (the erasure then runs) or rejects. The chain still verifies after it
/// and reports the entries as erased.
#[utoipa::path(tag = "audit", security(("bearer" = ["operator"])), request_body = EraseRequest, responses((status = 202, description = "A pending request; the erasure runs once a second person approves it", body = AwaitingApproval), (status = 400, description = "Neither or both of key and message_id, a blank reason, or a requested_by", body = ErrorBody), Guarded, WithBody, PostgresBacked))]
#[post("/audit/erasures")]
pub async fn erase(
    Authorized(actor, _): Authorized<Act>,
    state: web::Data<AppState>,
    body: web::Json<EraseRequest>,
) -> Result<HttpResponse, ApiError> {
    let r = body.into_inner();
    crate::api::why::no_requested_by(&r.requested_by)?;
    let action = match (r.key, r.message_id) {
        (Some(k), None) if !k.is_empty() && k.len() <= 10_000 && !k.contains('\0') => {
            Action::Erase {
                key: Some(k),
                message_id: None,
            }
        }
        (None, Some(id)) => Action::Erase {
            key: None,
            message_id: Some(id),
        },
        _ => {
            return Err(ApiError::BadRequest(
                "give key (1 to 10000 bytes, no NUL) or message_id, not both".into(),
            ))
        }
    };
    crate::api::approvals::request_approval(&state, action, 1, &r.reason, &actor).await
}
