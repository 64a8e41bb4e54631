//! The dead-letter API: list, show, replay (one or a filtered batch) and
//! discard. Every endpoint here requires the bearer token; the entries
//! shown have their `masking.fields` masked (a replay still sends the
//! original bytes).

use actix_web::{delete, get, post, web, HttpResponse};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use uuid::Uuid;

use crate::api::answers::Discarded;
use crate::api::auth::{Act, Authorized, Read};
use crate::api::deliveries::RunNow;
use crate::api::dlq_view::{self, DlqPage, DlqView};
use crate::api::error::{ApiError, ErrorBody};
use crate::api::responses::{Guarded, RedisBacked, WithBody};
use crate::api::why::{no_requested_by, Why};
use crate::dlq::replay::{BulkReport, DeadLetters, DlqError, Replayed, Request};
use crate::dlq::store::Filter;
use crate::identity::Actor;

/// Parses a path's message id, or answers 400 naming the parameter.
pub fn message_id(raw: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw).map_err(|e| ApiError::BadRequest(format!("message_id: {e}")))
}

const MAX_PAGE: usize = 1000;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only this topic.
    topic: Option<String>,
    /// Only this error kind (`decode`, `invalid`, …).
    error_kind: Option<String>,
    /// Only entries that last failed at or after this time (RFC 3339).
    from: Option<DateTime<Utc>>,
    /// …and before this time.
    to: Option<DateTime<Utc>>,
    /// Entries to skip.
    #[serde(default)]
    offset: usize,
    /// Page size (default 50).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
}

/// `GET /dlq`: matching entries, oldest first, paged with `offset`/`limit`.
#[utoipa::path(tag = "dead letters", security(("bearer" = ["viewer"])), params(ListQuery), responses((status = 200, description = "A page of entries (one per id), oldest last failure first", body = DlqPage), (status = 429, description = "Too many listings at once (at most 4; more wait up to 5 s); try again after Retry-After", body = ErrorBody), Guarded, RedisBacked))]
#[get("/dlq")]
pub async fn list(
    _: Authorized<Read>,
    dlq: web::Data<DeadLetters>,
    query: web::Query<ListQuery>,
    state: web::Data<crate::api::AppState>,
) -> Result<HttpResponse, ApiError> {
    let q = query.into_inner();
    let limit = q.limit.unwrap_or(50);
    if limit == 0 || limit > MAX_PAGE {
        return Err(ApiError::BadRequest(format!("limit: 1 to {MAX_PAGE}")));
    }
    let filter = Filter {
        topic: q.topic,
        error_kind: q.error_kind,
        from: q.from,
        to: q.to,
    };
    let page = dlq.list(&filter, q.offset, limit).await?;
    Ok(HttpResponse::Ok().json(DlqPage {
        offset: q.offset,
        limit,
        count: page.entries.len(),
        next_offset: page.next_offset,
        entries: dlq_view::page(&state.masking, &state.formats, page.entries).await,
    }))
}

/// `GET /dlq/{message_id}`: one entry.
#[utoipa::path(tag = "dead letters", security(("bearer" = ["viewer"])), params(("message_id" = uuid::Uuid, Path, description = "The message id")), responses((status = 200, description = "The entry, masked; on a schema topic with its payload decoded", body = DlqView), (status = 404, description = "Not parked", body = ErrorBody), (status = 422, description = "The stored entry cannot be read", body = ErrorBody), Guarded, RedisBacked))]
#[get("/dlq/{message_id}")]
pub async fn show(
    _: Authorized<Read>,
    dlq: web::Data<DeadLetters>,
    id: web::Path<String>,
    state: web::Data<crate::api::AppState>,
) -> Result<HttpResponse, ApiError> {
    let entry = dlq.get(message_id(&id)?).await?;
    Ok(HttpResponse::Ok().json(dlq_view::view(&state.masking, &state.formats, entry).await))
}

/// `DELETE /dlq/{message_id}` with `{"reason": …}`.
#[utoipa::path(tag = "dead letters", security(("bearer" = ["operator"])), params(("message_id" = uuid::Uuid, Path, description = "The message id")), request_body = Why, responses((status = 200, description = "Discarded, audited MESSAGE_DISCARDED", body = Discarded), (status = 404, description = "Not parked", body = ErrorBody), (status = 409, description = "Another replay or discard is in progress, or the entry changed", body = ErrorBody), (status = 422, description = "The stored entry cannot be read", body = ErrorBody), (status = 500, description = "PostgreSQL refused the audit row: nothing was done", body = ErrorBody), Guarded, WithBody, RedisBacked))]
#[delete("/dlq/{message_id}")]
pub async fn discard(
    Authorized(actor, _): Authorized<Act>,
    dlq: web::Data<DeadLetters>,
    id: web::Path<String>,
    body: web::Json<Why>,
) -> Result<HttpResponse, ApiError> {
    let request = body.into_inner().of(actor)?;
    let entry = dlq.discard(message_id(&id)?, &request).await?;
    Ok(HttpResponse::Ok().json(Discarded {
        discarded: entry.message_id,
        topic: entry.topic,
    }))
}

/// `POST /replay/{message_id}` with `{"reason": …}` (documented by
/// [`Why`]).
#[utoipa::path(tag = "dead letters", security(("bearer" = ["operator"])), params(("message_id" = uuid::Uuid, Path, description = "The message id")), request_body = Why, responses((status = 200, description = "Republished, audited MESSAGE_REPLAYED, removed", body = Replayed), (status = 202, description = "Not parked but waiting in the retry schedule: due now, attempted once at the retry worker's next round", body = RunNow), (status = 404, description = "Neither parked nor scheduled", body = ErrorBody), (status = 409, description = "Another replay or discard is in progress", body = ErrorBody), (status = 422, description = "The stored entry cannot be republished", body = ErrorBody), (status = 502, description = "Kafka refused the publish", body = ErrorBody), (status = 500, description = "PostgreSQL refused the audit row: nothing was done", body = ErrorBody), Guarded, WithBody, RedisBacked))]
#[post("/replay/{message_id}")]
pub async fn replay_one(
    Authorized(actor, _): Authorized<Act>,
    dlq: web::Data<DeadLetters>,
    state: web::Data<crate::api::AppState>,
    id: web::Path<String>,
    body: web::Json<Why>,
) -> Result<HttpResponse, ApiError> {
    let id = message_id(&id)?;
    let request = body.into_inner().of(actor)?;
    match dlq.replay(id, &request).await {
        Ok(replayed) => Ok(HttpResponse::Ok().json(replayed)),
        // Not parked in the DLQ: perhaps waiting in the retry schedule.
        Err(DlqError::NotFound(_)) => crate::api::deliveries::run_now(&state, id, &request).await,
        Err(e) => Err(e.into()),
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkRequest {
    topic: Option<String>,
    error_kind: Option<String>,
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
    /// Most entries to replay (default the smaller of 100 and
    /// dlq.replay_max_batch; at most dlq.replay_max_batch).
    #[schema(minimum = 1)]
    limit: Option<usize>,
    /// Required (true) to replay with no filter at all.
    #[serde(default)]
    all: bool,
    /// Why; recorded in the audit trail. Not blank.
    #[schema(min_length = 1, max_length = 1000, pattern = r"\S")]
    reason: String,
    /// Refused (400): who asks comes from the token.
    #[serde(default)]
    #[schema(ignore)]
    requested_by: Option<serde::de::IgnoredAny>,
}

impl BulkRequest {
    /// The filter, `all`, the limit (defaulted from `max_batch`) and
    /// who/why (`actor`, the token's holder).
    pub fn into_parts(
        self,
        max_batch: usize,
        actor: Actor,
    ) -> Result<(Filter, bool, usize, Request), ApiError> {
        no_requested_by(&self.requested_by)?;
        let filter = Filter {
            topic: self.topic,
            error_kind: self.error_kind,
            from: self.from,
            to: self.to,
        };
        let request = Request {
            actor,
            reason: self.reason,
            approver: None,
        };
        let limit = self.limit.unwrap_or(max_batch.min(100));
        Ok((filter, self.all, limit, request))
    }
}

/// `POST /replay` with a filter: replays matching entries, rate-limited, and
/// reports how many were replayed, skipped and failed.
#[utoipa::path(tag = "dead letters", security(("bearer" = ["operator"])), request_body = BulkRequest, responses((status = 200, description = "How many were replayed, skipped and failed", body = BulkReport), (status = 202, description = "Over operators.four_eyes_threshold entries: a pending request, run once a second person approves it", body = crate::api::approvals::AwaitingApproval), (status = 429, description = "Too many listings at once; try again after Retry-After", body = ErrorBody), Guarded, WithBody, RedisBacked))]
#[post("/replay")]
pub async fn replay_matching(
    Authorized(actor, _): Authorized<Act>,
    state: web::Data<crate::api::AppState>,
    dlq: web::Data<DeadLetters>,
    body: web::Json<BulkRequest>,
) -> Result<HttpResponse, ApiError> {
    let (filter, all, limit, request) = body.into_inner().into_parts(dlq.max_batch(), actor)?;
    if let Some(waiting) =
        crate::api::approvals::bulk_replay_gate(&state, &dlq, &filter, all, limit, &request).await?
    {
        return Ok(waiting);
    }
    let report = dlq.replay_matching(&filter, all, limit, &request).await?;
    Ok(HttpResponse::Ok().json(report))
}
