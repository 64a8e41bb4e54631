//! `POST /messages/{message_id}/unmask`: an approver or admin (or the
//! shared token, an admin) sees one message's record with its
//! `masking.fields` in clear. Each time is first a chained MESSAGE_UNMASKED
//! entry of the operator chain (who, which message, why, which pointers);
//! only once it is committed is the record answered, so no unmasked value
//! leaves without its entry. Viewers and operators are refused (403)
//! before the body is read.

use actix_web::{post, web, HttpResponse};
use diesel_async::AsyncConnection;

use crate::api::auth::{Approve, Authorized};
use crate::api::dlq::message_id;
use crate::api::error::{ApiError, ErrorBody};
use crate::api::explorer::{record_view, RecordView};
use crate::api::read::{conn, query_failed};
use crate::api::responses::{Guarded, PostgresBacked, WithBody};
use crate::api::why::Why;
use crate::api::AppState;
use crate::store::audit;
use crate::trail::operator;

/// Shows one message's record unmasked, once its MESSAGE_UNMASKED entry
/// (who, why, which pointers) is in the trail.
#[utoipa::path(tag = "audit", security(("bearer" = ["approver"])), params(("message_id" = uuid::Uuid, Path, description = "The message id")), request_body = Why, responses((status = 200, description = "The record in clear (`unmasked` names the pointers shown), after a chained MESSAGE_UNMASKED entry", body = RecordView), (status = 404, description = "No record kept for this id: nothing recorded", body = ErrorBody), Guarded, WithBody, PostgresBacked))]
#[post("/messages/{message_id}/unmask")]
pub async fn unmask(
    Authorized(actor, _): Authorized<Approve>,
    state: web::Data<AppState>,
    id: web::Path<String>,
    body: web::Json<Why>,
) -> Result<HttpResponse, ApiError> {
    let id = message_id(&id)?;
    let request = body.into_inner().of(actor)?;
    request.validate()?;
    let mut conn = conn(&state).await?;
    let view = record_view(&mut conn, id, (&state.masking, &state.formats), true).await?;
    let first = audit::lifecycle(&mut conn, id)
        .await
        .map_err(query_failed)?
        .into_iter()
        .next();
    // Who (name; credential, role, channel, address, request id), why,
    // and what was shown.
    let mut detail = request.detail();
    detail["pointers"] = serde_json::json!(view.unmasked);
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
