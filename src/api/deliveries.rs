//! `GET /deliveries`: recent http deliveries, newest first, with their
//! status, attempts and last answer: open ones (the retry schedule of
//! deferred routes) and finished ones (delivered, or given up and
//! dead-lettered). Each message's lifecycle (`GET /messages/{id}`) shows
//! its own.

use actix_web::{get, web, HttpResponse};
use serde::Deserialize;

use crate::api::auth::{Authorized, Read};
use crate::api::error::{ApiError, ErrorBody};
use crate::api::responses::{Guarded, PostgresBacked};
use crate::api::AppState;
use crate::delivery::record::{self, Delivery, STATUSES};
use crate::retry::deferred::read;

const DEFAULT_LIMIT: i64 = 100;
const MAX_LIMIT: i64 = 1000;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct DeliveriesQuery {
    /// Only this route (its downstream, `scheme://host[:port]`).
    route: Option<String>,
    /// `retrying`, `waiting` (open), `delivered` or `failed` (finished).
    status: Option<String>,
    /// Most entries (default 100, at most 1000).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<i64>,
}

/// `GET /deliveries`.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct DeliveriesPage {
    pub count: usize,
    pub deliveries: Vec<Delivery>,
}

/// Recent deliveries of http routes, newest first.
#[utoipa::path(tag = "deliveries", security(("bearer" = ["viewer"])), params(DeliveriesQuery), responses((status = 200, description = "Recent deliveries of http routes, open and finished, newest first", body = DeliveriesPage), (status = 400, description = "A parameter is not valid", body = ErrorBody), Guarded, PostgresBacked))]
#[get("/deliveries")]
pub async fn list(
    _: Authorized<Read>,
    state: web::Data<AppState>,
    query: web::Query<DeliveriesQuery>,
) -> Result<HttpResponse, ApiError> {
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::BadRequest(format!(
            "limit must be from 1 to {MAX_LIMIT}"
        )));
    }
    if let Some(status) = query.status.as_deref() {
        if !STATUSES.contains(&status) {
            return Err(ApiError::BadRequest(format!(
                "status must be one of {}",
                STATUSES.join(", ")
            )));
        }
    }
    if query
        .route
        .as_deref()
        .is_some_and(|r| r.is_empty() || r.len() > 300)
    {
        return Err(ApiError::BadRequest(
            "route must be 1 to 300 characters".into(),
        ));
    }
    let mut conn = state.postgres.get().await.map_err(|e| {
        tracing::warn!(error = %e, "no PostgreSQL connection for /deliveries");
        ApiError::Unavailable("postgres")
    })?;
    let deliveries = record::list(
        &mut conn,
        query.route.as_deref(),
        query.status.as_deref(),
        limit,
    )
    .await
    .map_err(|e| {
        tracing::warn!(error = %e, "deliveries query failed");
        ApiError::Unavailable("postgres")
    })?;
    Ok(HttpResponse::Ok().json(DeliveriesPage {
        count: deliveries.len(),
        deliveries,
    }))
}

/// `POST /replay/{id}` for a message in the retry schedule.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct RunNow {
    pub message_id: uuid::Uuid,
    /// Always `due_now`: the retry worker attempts it at its next round
    /// (behind any earlier message of its key).
    pub status: &'static str,
}

/// Makes a scheduled message due now, audited MESSAGE_REPLAYED on the
/// operator chain (who, why, `retry_schedule: due_now`); 404 when it is
/// not scheduled either.
pub async fn run_now(
    state: &AppState,
    id: uuid::Uuid,
    request: &crate::dlq::replay::Request,
) -> Result<HttpResponse, ApiError> {
    request.validate()?;
    let unavailable = |e: &dyn std::fmt::Display| {
        tracing::warn!(error = %e, "retry schedule: PostgreSQL failed for /replay");
        ApiError::Unavailable("postgres")
    };
    let mut conn = state.postgres.get().await.map_err(|e| unavailable(&e))?;
    let touched = read::due_now(&mut conn, id)
        .await
        .map_err(|e| unavailable(&e))?;
    let Some(t) = touched else {
        return Err(ApiError::NotFound(format!(
            "message {id} is neither in the dead-letter queue nor in the retry schedule"
        )));
    };
    let event = crate::store::audit::AuditEntry {
        message_id: id,
        status: crate::store::audit::REPLAYED,
        topic: &t.topic,
        kafka_partition: t.kafka_partition,
        kafka_offset: t.kafka_offset,
        message_key: t.message_key.as_deref().map(std::borrow::Cow::Borrowed),
        event_type: t.event_type.as_deref(),
        attempt: t.attempts,
        error: None,
        consumer_group: &t.consumer_group,
        occurred_at: chrono::Utc::now(),
        detail: Some({
            let mut detail = request.detail();
            detail["retry_schedule"] = "due_now".into();
            detail
        }),
        receipt: None,
        blinding: crate::store::chain::blinding(),
    };
    crate::outcome::chained::write_operator_event(&mut conn, &event)
        .await
        .map_err(|e| unavailable(&e))?;
    Ok(HttpResponse::Accepted().json(RunNow {
        message_id: id,
        status: "due_now",
    }))
}
