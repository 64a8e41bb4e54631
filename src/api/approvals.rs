//! Four-eyes approval over HTTP: `GET /approvals` lists requests,
//! `POST /approvals/{id}/approve` and `/reject` decide one (a person other
//! than the requester, with the approver role). An approved request runs at
//! once: a bulk replay as a job, an erasure to its end.

use actix_web::{get, post, web, HttpResponse};
use serde::{Deserialize, Serialize};

use crate::api::auth::{Approve, Authorized, Read};
use crate::api::error::{ApiError, ErrorBody};
use crate::api::read::conn;
use crate::api::responses::{Guarded, PostgresBacked, WithBody};
use crate::api::AppState;
use crate::approvals::ready::{erase, ready, Ready};
use crate::approvals::{self, Action, Approval, ApprovalError};
use crate::dlq::replay::{DeadLetters, Request};
use crate::dlq::store::Filter;
use crate::operators::{Actor, Role};

impl From<ApprovalError> for ApiError {
    fn from(e: ApprovalError) -> ApiError {
        match e {
            ApprovalError::NotFound(_) => ApiError::NotFound(e.to_string()),
            ApprovalError::Decided { .. } => ApiError::Conflict(e.to_string()),
            ApprovalError::OwnRequest(_) => ApiError::Forbidden(e.to_string()),
            ApprovalError::BadReason => ApiError::BadRequest(e.to_string()),
            ApprovalError::Database(e) => {
                tracing::warn!(error = %e, "approval requests: PostgreSQL failed");
                ApiError::Unavailable("postgres")
            }
        }
    }
}

/// What a request that waits for approval answers (202).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AwaitingApproval {
    /// The pending request; a second person approves it at
    /// `POST /approvals/{id}/approve`.
    pub approval: Approval,
}

/// Makes a pending request of `action` (202).
pub async fn request_approval(
    state: &AppState,
    action: Action,
    entries: u64,
    reason: &str,
    by: &Actor,
) -> Result<HttpResponse, ApiError> {
    let mut db = conn(state).await?;
    let approval = approvals::create(
        &mut db,
        &action,
        entries,
        reason,
        by,
        state.operators.approval_ttl,
    )
    .await?;
    tracing::info!(request = approval.id, kind = %approval.kind, entries, by = %by.name, "four-eyes approval requested");
    Ok(HttpResponse::Accepted().json(AwaitingApproval { approval }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// `pending` (the default) or `all`.
    state: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Approvals {
    /// Newest first (at most 200). An erasure's key is shown to approvers
    /// only, and only while it is pending.
    pub requests: Vec<Approval>,
}

/// Approval requests: the pending ones (expired ones are expired first).
#[utoipa::path(tag = "operators", security(("bearer" = ["viewer"])), params(ListQuery), responses((status = 200, description = "Requests, newest first", body = Approvals), (status = 400, description = "state is neither pending nor all", body = ErrorBody), Guarded, PostgresBacked))]
#[get("/approvals")]
pub async fn list(
    Authorized(actor, _): Authorized<Read>,
    state: web::Data<AppState>,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let pending_only = match query.state.as_deref() {
        None | Some("pending") => true,
        Some("all") => false,
        Some(_) => return Err(ApiError::BadRequest("state: pending or all".into())),
    };
    let mut db = conn(&state).await?;
    let mut requests = approvals::list(&mut db, pending_only, 200).await?;
    if actor.role < Role::Approver {
        requests = requests.into_iter().map(Approval::without_key).collect();
    }
    Ok(HttpResponse::Ok().json(Approvals { requests }))
}

/// Why a request is approved or rejected.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Decision {
    #[schema(min_length = 1, max_length = 1000, pattern = r"\S")]
    pub reason: String,
}

/// A decided request, and what running it did.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DecisionMade {
    pub approval: Approval,
    /// For an approved request: the replay job, or the erasure's result.
    #[schema(value_type = Option<Object>)]
    pub outcome: Option<serde_json::Value>,
}

fn request_id(raw: &str) -> Result<i64, ApiError> {
    raw.parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| ApiError::BadRequest("approval_id: a positive integer".into()))
}

/// Approves a pending request and runs it, attributed to both people.
#[utoipa::path(tag = "operators", security(("bearer" = ["approver"])), params(("approval_id" = i64, Path, description = "The request's id")), request_body = Decision, responses((status = 200, description = "Approved and run (a replay as a job); `outcome` says what it did", body = DecisionMade), (status = 403, description = "The caller asked for it (under any credential)", body = ErrorBody), (status = 404, description = "No such request", body = ErrorBody), (status = 409, description = "Approved, rejected or expired already; or approved (and recorded) but running it failed, the message says why (a legal hold, a message still parked)", body = ErrorBody), Guarded, WithBody, PostgresBacked))]
#[post("/approvals/{approval_id}/approve")]
pub async fn approve(
    Authorized(approver, _): Authorized<Approve>,
    state: web::Data<AppState>,
    dlq: web::Data<DeadLetters>,
    id: web::Path<String>,
    body: web::Json<Decision>,
) -> Result<HttpResponse, ApiError> {
    let id = request_id(&id)?;
    let mut db = conn(&state).await?;
    let decided = approvals::decide(&mut db, id, &approver, true, &body.reason).await?;
    drop(db);
    let outcome = run(&state, dlq.into_inner(), &decided.request, &approver).await;
    let mut db = conn(&state).await?;
    approvals::record_outcome(&mut db, id, &outcome).await?;
    if let Some(error) = outcome.get("error") {
        return Err(ApiError::Conflict(format!(
            "request {id} is approved (recorded), but running it failed: {}",
            error.as_str().unwrap_or_default()
        )));
    }
    let mut approval = decided.request;
    approval.state = "approved".into();
    approval.decided_by = Some(approver.to_json());
    approval.decided_reason = Some(body.reason.trim().to_owned());
    approval.outcome = Some(outcome.clone());
    Ok(HttpResponse::Ok().json(DecisionMade {
        approval: approval.without_key(),
        outcome: Some(outcome),
    }))
}

/// Runs an approved request (a replay as a job); what it did, or why it
/// did not.
async fn run(
    state: &AppState,
    dlq: std::sync::Arc<DeadLetters>,
    request: &Approval,
    approver: &Actor,
) -> serde_json::Value {
    let done = match ready(request, approver) {
        Err(e) => Err(e),
        Ok(Ready::Replay {
            filter,
            all,
            limit,
            request,
        }) => crate::dlq::jobs::start(dlq, filter, all, limit, request)
            .await
            .map(|job| serde_json::json!({ "replay_job": job.id }))
            .map_err(|e| e.public_message()),
        Ok(Ready::Erase {
            selector,
            requester,
            reason,
        }) => erase(&state.audit, &selector, &requester, approver, &reason)
            .await
            .map(|erased| serde_json::json!({ "erased": erased })),
    };
    done.unwrap_or_else(|error| {
        tracing::warn!(%error, request = request.id, "an approved request did not run");
        serde_json::json!({ "error": error })
    })
}

/// Rejects a pending request: nothing runs.
#[utoipa::path(tag = "operators", security(("bearer" = ["approver"])), params(("approval_id" = i64, Path, description = "The request's id")), request_body = Decision, responses((status = 200, description = "Rejected", body = DecisionMade), (status = 403, description = "The caller asked for it (under any credential)", body = ErrorBody), (status = 404, description = "No such request", body = ErrorBody), (status = 409, description = "Approved, rejected or expired already", body = ErrorBody), Guarded, WithBody, PostgresBacked))]
#[post("/approvals/{approval_id}/reject")]
pub async fn reject(
    Authorized(approver, _): Authorized<Approve>,
    state: web::Data<AppState>,
    id: web::Path<String>,
    body: web::Json<Decision>,
) -> Result<HttpResponse, ApiError> {
    let id = request_id(&id)?;
    let mut db = conn(&state).await?;
    let decided = approvals::decide(&mut db, id, &approver, false, &body.reason).await?;
    let mut approval = decided.request.without_key();
    approval.state = "rejected".into();
    approval.decided_by = Some(approver.to_json());
    approval.decided_reason = Some(body.reason.trim().to_owned());
    approval.params = approval.params.filter(|_| approval.kind != "erase");
    Ok(HttpResponse::Ok().json(DecisionMade {
        approval,
        outcome: None,
    }))
}

/// A bulk replay over `operators.four_eyes_threshold` entries: made a
/// pending request (its 202), or none when it may run now.
pub async fn bulk_replay_gate(
    state: &AppState,
    dlq: &DeadLetters,
    filter: &Filter,
    all: bool,
    limit: usize,
    request: &Request,
) -> Result<Option<HttpResponse>, ApiError> {
    let gate = approvals::bulk_replay_gate(
        dlq,
        (filter, all, limit),
        request,
        state.operators.four_eyes_threshold,
    )
    .await?;
    let Some((action, entries)) = gate else {
        return Ok(None);
    };
    request_approval(state, action, entries, &request.reason, &request.actor)
        .await
        .map(Some)
}
