//! `GET /audit/verify` and `GET /audit/reconcile`: the auditor's two checks
//! (see `trail`) behind the token; and `GET /audit/status`, the cheap read
//! the console shows. Verify is bounded by a time budget, says whether it
//! reached every chain, and runs at most `trail::CONCURRENT_VERIFIES` at
//! once: more wait up to `trail::VERIFY_WAIT`, then answer 429.

use std::time::Duration;

use actix_web::{get, web, HttpResponse};
use chrono::{DateTime, Utc};
use serde::Deserialize;

use crate::api::auth::{Authorized, Read};
use crate::api::error::{ApiError, ErrorBody};
use crate::api::responses::{Guarded, PostgresBacked};
use crate::api::AppState;
use crate::trail::reconcile::{Range, ReconcileError, Report as ReconcileReport, Request};
use crate::trail::status::AuditStatus;
use crate::trail::verify::Report as VerifyReport;
use crate::trail::AccessError;

const DEFAULT_BUDGET_MS: u64 = 10_000;
const MAX_BUDGET_MS: u64 = 120_000;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct VerifyQuery {
    /// Longest the check may run, in milliseconds (default 10000, at most
    /// 120000); past it the answer says `complete: false`.
    #[param(minimum = 1, maximum = 120000)]
    budget_ms: Option<u64>,
    /// Start each chain at its latest checkpoint in `audit.checkpoint_file`
    /// instead of at its first entry.
    #[serde(default)]
    from_checkpoints: bool,
}

/// Recomputes every audit chain; names the first break of each, and the
/// rows outside the chains custodian did not write.
#[utoipa::path(tag = "audit", security(("bearer" = ["viewer"])), params(VerifyQuery), responses((status = 200, description = "The summary: `holds` is true when every chain and checkpoint holds, no stray row was found, this instance can append to its checkpoint file, and every chain was reached within the budget", body = VerifyReport), (status = 429, description = "Too many verifies at once (at most 2; more wait up to 5 s); try again after Retry-After", body = ErrorBody), Guarded, PostgresBacked))]
#[get("/audit/verify")]
pub async fn verify(
    _: Authorized<Read>,
    state: web::Data<AppState>,
    query: web::Query<VerifyQuery>,
) -> Result<HttpResponse, ApiError> {
    let q = query.into_inner();
    let budget = q.budget_ms.unwrap_or(DEFAULT_BUDGET_MS);
    if budget == 0 || budget > MAX_BUDGET_MS {
        return Err(ApiError::BadRequest(format!(
            "budget_ms: 1 to {MAX_BUDGET_MS}"
        )));
    }
    let deadline = std::time::Instant::now() + Duration::from_millis(budget);
    let report = state
        .audit
        .verify(None, q.from_checkpoints, Some(deadline))
        .await
        .map_err(answer)?;
    Ok(HttpResponse::Ok().json(report))
}

/// The checkpointer's latest result and the latest verify's, as this
/// instance knows them: a read of memory, no query.
#[utoipa::path(tag = "audit", security(("bearer" = ["viewer"])), responses((status = 200, description = "The checkpointer (signing, last signed, the checkpoint file's state) and the latest verify (null before the first)", body = AuditStatus), Guarded))]
#[get("/audit/status")]
pub async fn status(_: Authorized<Read>, state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(state.audit.status().snapshot())
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ReconcileQuery {
    /// The topic to reconcile.
    topic: String,
    /// One partition (default: all).
    partition: Option<i32>,
    /// First offset to check (with `to_offset`).
    from_offset: Option<i64>,
    /// Last offset to check, included (with `from_offset`).
    to_offset: Option<i64>,
    /// Check from the first offset at or after this time (RFC 3339).
    since: Option<DateTime<Utc>>,
}

/// One terminal outcome per offset: gaps, doubles and totals by outcome.
#[utoipa::path(tag = "audit", security(("bearer" = ["viewer"])), params(ReconcileQuery), responses((status = 200, description = "Per partition: the range checked, totals by outcome, gaps and doubles; `holds` is true when there are none", body = ReconcileReport), (status = 404, description = "custodian does not consume the topic, or the broker does not know it", body = ErrorBody), (status = 503, description = "PostgreSQL or Kafka does not answer", body = ErrorBody), Guarded))]
#[get("/audit/reconcile")]
pub async fn reconcile(
    _: Authorized<Read>,
    state: web::Data<AppState>,
    query: web::Query<ReconcileQuery>,
) -> Result<HttpResponse, ApiError> {
    let q = query.into_inner();
    let range = match (q.from_offset, q.to_offset, q.since) {
        (None, None, None) => Range::Committed,
        (Some(from), Some(to), None) => Range::Offsets { from, to },
        (None, None, Some(since)) => Range::Since(since),
        _ => {
            return Err(ApiError::BadRequest(
                "give from_offset and to_offset together, or since, or neither".into(),
            ))
        }
    };
    let request = Request {
        topic: q.topic,
        partition: q.partition,
        range,
    };
    let report = state.audit.reconcile(&request).await.map_err(answer)?;
    Ok(HttpResponse::Ok().json(report))
}

/// Input faults are the client's; the rest means a dependency is down.
fn answer(e: AccessError) -> ApiError {
    match e {
        AccessError::Reconcile(
            ReconcileError::UnknownTopic(_) | ReconcileError::NotConsumed(_),
        ) => ApiError::NotFound(e.to_string()),
        AccessError::Reconcile(
            ReconcileError::BadRange(_) | ReconcileError::UnknownPartition(..),
        ) => ApiError::BadRequest(e.to_string()),
        AccessError::Reconcile(ReconcileError::Kafka(_)) => {
            tracing::warn!(error = %e, "audit reconcile: kafka");
            ApiError::Unavailable("kafka")
        }
        AccessError::CheckpointFile { .. } => ApiError::Internal(anyhow::anyhow!(e.to_string())),
        AccessError::Busy => ApiError::TooManyRequests(e.to_string()),
        _ => {
            tracing::warn!(error = %e, "audit check: postgres");
            ApiError::Unavailable("postgres")
        }
    }
}
