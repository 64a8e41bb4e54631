//! `POST /messages/{message_id}/unmask`: an approver or admin (or the
//! shared token, an admin) sees one message's record with its
//! `masking.fields` in clear. Each time is first a chained MESSAGE_UNMASKED
//! entry of the operator chain (who, which message, why, which pointers);
//! only once it is committed is the record answered, so no unmasked value
//! leaves without its entry. Viewers and operators are refused (403).

use actix_web::{post, web, HttpResponse};
use diesel_async::AsyncConnection;
use serde::Deserialize;

use crate::api::auth::Authorized;
use crate::api::dlq::message_id;
use crate::api::error::{ApiError, ErrorBody};
use crate::api::explorer::{record_view, RecordView};
use crate::api::read::{conn, query_failed};
use crate::api::responses::{Guarded, PostgresBacked, WithBody};
use crate::api::AppState;
use crate::dlq::replay::operator_text;
use crate::operators::Caller;
use crate::store::audit;
use crate::trail::operator;

/// Why the values are needed.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UnmaskRequest {
    /// Why; recorded in the audit trail. Not blank; no control characters
    /// but line breaks and tabs.
    #[schema(min_length = 1, max_length = 1000, pattern = r"\S")]
    reason: String,
}

/// The name the entry records for the caller (the shared token names no
/// one).
fn name(caller: &Caller) -> &str {
    match caller {
        Caller::Shared => "shared-token",
        Caller::Operator { name, .. } => name,
    }
}

/// Shows one message's record unmasked, once its MESSAGE_UNMASKED entry
/// (who, why, which pointers) is in the trail.
#[utoipa::path(tag = "audit", security(("bearer" = [])), params(("message_id" = uuid::Uuid, Path, description = "The message id")), request_body = UnmaskRequest, responses((status = 200, description = "The record in clear (`unmasked` names the pointers shown), after a chained MESSAGE_UNMASKED entry", body = RecordView), (status = 403, description = "Not an approver or admin (or the token is wrong)", body = ErrorBody), (status = 404, description = "No record kept for this id: nothing recorded", body = ErrorBody), Guarded, WithBody, PostgresBacked))]
#[post("/messages/{message_id}/unmask")]
pub async fn unmask(
    Authorized(caller): Authorized,
    state: web::Data<AppState>,
    id: web::Path<String>,
    body: web::Json<UnmaskRequest>,
) -> Result<HttpResponse, ApiError> {
    if !caller.may_approve() {
        return Err(ApiError::Forbidden(
            "unmasking takes the approver or admin role".into(),
        ));
    }
    let id = message_id(&id)?;
    let reason = operator_text("reason", &body.reason, 1000, true)?.to_owned();
    let mut conn = conn(&state).await?;
    let view = record_view(&mut conn, id, &state.masking, true).await?;
    let first = audit::lifecycle(&mut conn, id)
        .await
        .map_err(query_failed)?
        .into_iter()
        .next();
    let detail = serde_json::json!({
        "requested_by": name(&caller),
        "role": match &caller {
            Caller::Shared => "admin",
            Caller::Operator { role, .. } => role.as_str(),
        },
        "reason": reason,
        "pointers": view.unmasked,
    });
    let action = operator::Action {
        message_id: id,
        status: operator::UNMASKED,
        topic: &view.topic,
        kafka_partition: view.partition,
        kafka_offset: view.offset,
        consumer_group: first
            .as_ref()
            .map_or(operator::GROUP, |e| e.consumer_group.as_str()),
        // The key is the message's; the entry holds nothing of it.
        message_key: None,
        detail,
    };
    conn.transaction(async |conn| operator::record(conn, action).await)
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, "recording an unmask failed: nothing shown");
            ApiError::Unavailable("postgres")
        })?;
    Ok(HttpResponse::Ok().json(view))
}
