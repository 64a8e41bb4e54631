//! The dead-letter views the console needs beyond `dlq.rs`: counts by error
//! kind, a preview of how many entries a filter matches, and bulk replay as
//! a job (`POST /replay/jobs`, progress at `GET /replay/jobs/{id}`, an
//! interrupted one run on by `POST /replay/jobs/{id}/resume`).

use actix_web::{get, post, web, HttpResponse};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::api::auth::{Act, Authorized, Read};
use crate::api::dlq::{message_id, BulkRequest};
use crate::api::error::{ApiError, ErrorBody};
use crate::api::responses::{Guarded, RedisBacked, WithBody};
use crate::api::AppState;
use crate::dlq::jobs::{self, Job, Resumed};
use crate::dlq::kinds::{self, KindCount};
use crate::dlq::replay::{DeadLetters, DlqError};
use crate::dlq::store::Filter;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Kinds {
    pub kinds: Vec<KindCount>,
}

/// Parked entries per error kind, most first.
#[utoipa::path(tag = "dead letters", security(("bearer" = ["viewer"])), responses((status = 200, description = "Counts by error kind", body = Kinds), Guarded, RedisBacked))]
#[get("/dlq/kinds")]
pub async fn by_kind(
    _: Authorized<Read>,
    state: web::Data<AppState>,
    dlq: web::Data<DeadLetters>,
) -> Result<HttpResponse, ApiError> {
    let mut conn = state.redis.get().await.map_err(redis_down)?;
    let kinds = kinds::counts(&mut *conn, dlq.keys())
        .await
        .map_err(redis_down)?;
    Ok(HttpResponse::Ok().json(Kinds { kinds }))
}

fn redis_down(e: impl std::fmt::Display) -> DlqError {
    DlqError::Unavailable {
        dependency: "redis",
        error: e.to_string(),
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct CountQuery {
    /// Only this topic.
    topic: Option<String>,
    /// Only this error kind.
    error_kind: Option<String>,
    /// Last failed at or after (RFC 3339).
    from: Option<DateTime<Utc>>,
    /// …and before.
    to: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Matching {
    /// Entries the filter matches now.
    pub count: u64,
}

/// How many entries a filter matches: the preview before a bulk replay.
#[utoipa::path(tag = "dead letters", security(("bearer" = ["viewer"])), params(CountQuery), responses((status = 200, description = "How many match", body = Matching), (status = 400, description = "A filter value is not valid", body = ErrorBody), Guarded, RedisBacked))]
#[get("/dlq/count")]
pub async fn count(
    _: Authorized<Read>,
    dlq: web::Data<DeadLetters>,
    query: web::Query<CountQuery>,
) -> Result<HttpResponse, ApiError> {
    let q = query.into_inner();
    let filter = Filter {
        topic: q.topic,
        error_kind: q.error_kind,
        from: q.from,
        to: q.to,
    };
    let count = jobs::count(&dlq, &filter).await?;
    Ok(HttpResponse::Ok().json(Matching { count }))
}

/// Starts a bulk replay of a filter as a job (who and why required, as for
/// `POST /replay`); answers at once with the job, which runs on.
#[utoipa::path(tag = "dead letters", security(("bearer" = ["operator"])), request_body = BulkRequest, responses((status = 202, description = "Started (a Job; follow it at /replay/jobs/{id}), or, over operators.four_eyes_threshold entries, a pending request (an AwaitingApproval) that runs once a second person approves it", body = Job), Guarded, WithBody, RedisBacked))]
#[post("/replay/jobs")]
pub async fn start(
    Authorized(actor, _): Authorized<Act>,
    state: web::Data<AppState>,
    dlq: web::Data<DeadLetters>,
    body: web::Json<BulkRequest>,
) -> Result<HttpResponse, ApiError> {
    let (filter, all, limit, request) = body.into_inner().into_parts(dlq.max_batch(), actor)?;
    if let Some(waiting) =
        crate::api::approvals::bulk_replay_gate(&state, &dlq, &filter, all, limit, &request).await?
    {
        return Ok(waiting);
    }
    let job = jobs::start(dlq.into_inner(), filter, all, limit, request).await?;
    Ok(HttpResponse::Accepted().json(job))
}

/// A replay job's progress (kept a week). A `running` job whose process
/// died is answered (and recorded) `interrupted`, its counts reconciled with
/// the audit trail.
#[utoipa::path(tag = "dead letters", security(("bearer" = ["viewer"])), params(("job_id" = uuid::Uuid, Path, description = "The job id")), responses((status = 200, description = "The job", body = Job), (status = 404, description = "No such job", body = ErrorBody), Guarded, RedisBacked))]
#[get("/replay/jobs/{job_id}")]
pub async fn progress(
    _: Authorized<Read>,
    dlq: web::Data<DeadLetters>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = job_id(&id)?;
    match jobs::get(&dlq, id).await? {
        Some(job) => Ok(HttpResponse::Ok().json(job)),
        None => Err(no_such_job(id)),
    }
}

fn job_id(path: &str) -> Result<uuid::Uuid, ApiError> {
    message_id(path).map_err(|_| ApiError::BadRequest("job_id: not a UUID".into()))
}

fn no_such_job(id: uuid::Uuid) -> ApiError {
    ApiError::NotFound(format!("no replay job {id}"))
}

/// A resume names no one: who resumes is the token's holder (the job's
/// replays keep the job's who and why; the audit rows of the resumed part
/// also name who resumed it). The body may be empty (`{}`).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResumeRequest {
    /// Refused (400): who asks comes from the token.
    #[serde(default)]
    #[schema(ignore)]
    pub requested_by: Option<serde::de::IgnoredAny>,
}

/// Runs an interrupted replay job on (stopped by a graceful stop, or its
/// process died), under this instance: the messages it already replayed (by
/// its MESSAGE_REPLAYED audit rows) are skipped, so each is replayed once.
#[utoipa::path(tag = "dead letters", security(("bearer" = ["operator"])), params(("job_id" = uuid::Uuid, Path, description = "The job id")), request_body = ResumeRequest, responses((status = 202, description = "Running again; follow it at /replay/jobs/{id}", body = Job), (status = 404, description = "No such job", body = ErrorBody), (status = 409, description = "The job is not interrupted (running, done or failed)", body = ErrorBody), Guarded, WithBody, RedisBacked))]
#[post("/replay/jobs/{job_id}/resume")]
pub async fn resume(
    Authorized(actor, _): Authorized<Act>,
    dlq: web::Data<DeadLetters>,
    id: web::Path<String>,
    body: web::Json<ResumeRequest>,
) -> Result<HttpResponse, ApiError> {
    let id = job_id(&id)?;
    crate::api::why::no_requested_by(&body.requested_by)?;
    match jobs::resume(dlq.into_inner(), id, &actor).await? {
        Resumed::Started(job) => Ok(HttpResponse::Accepted().json(job)),
        Resumed::NoSuchJob => Err(no_such_job(id)),
        Resumed::NotInterrupted(job) => Err(ApiError::Conflict(format!(
            "replay job {id} is {}; only an interrupted job can be resumed",
            job.state
        ))),
    }
}
