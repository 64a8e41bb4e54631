//! Flow control over HTTP: the pauses in force and each http route's gate
//! (`GET /flow`), pausing and resuming a topic, a partition or a route
//! (`POST /flow/pause`, `POST /flow/resume`, operator role). Each pause and
//! resume is a chained operator entry; every instance honours it within
//! `flow.poll_interval` (this one at once).

use actix_web::{get, post, web, HttpResponse};
use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};

use crate::api::auth::{Act, Authorized, Read};
use crate::api::error::{ApiError, ErrorBody};
use crate::api::read::{conn, query_failed};
use crate::api::responses::{Guarded, PostgresBacked, WithBody};
use crate::api::why::no_requested_by;
use crate::api::AppState;
use crate::flow::pauses::{self, FlowError, Pause, Target};
use crate::status::report::{BreakerRow, RouteRow};

/// `{"topic": …, "partition"?: …, "reason": …}` or `{"route": …, "reason": …}`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FlowRequest {
    /// One of `kafka.topics` (alone: every partition of it).
    pub topic: Option<String>,
    /// With `topic`: only this partition.
    #[schema(minimum = 0)]
    pub partition: Option<i32>,
    /// An http route, by its label as `GET /flow` lists it (the URL
    /// without credentials or query).
    pub route: Option<String>,
    /// Why; recorded in the audit trail. Not blank.
    #[schema(min_length = 1, max_length = 1000, pattern = r"\S")]
    pub reason: String,
    /// Refused (400): who asks comes from the token.
    #[serde(default)]
    #[schema(ignore)]
    pub requested_by: Option<IgnoredAny>,
}

/// `GET /flow`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct FlowState {
    /// The pauses in force, oldest first (from PostgreSQL: every instance's).
    pub pauses: Vec<Pause>,
    /// Each http route's gate on this instance.
    pub routes: Vec<RouteRow>,
}

/// The gates of this instance's http routes.
pub fn route_gates(state: &AppState) -> Vec<RouteRow> {
    state
        .endpoints
        .all()
        .iter()
        .map(|r| RouteRow {
            route: r.label.clone(),
            paused_by: r.gate.paused(),
            breaker: r.gate.breaker().map(|b| BreakerRow {
                state: b.state.as_str().to_owned(),
                for_seconds: b.for_seconds,
                consecutive_failures: b.consecutive_failures,
            }),
        })
        .collect()
}

/// The target a request names, checked against the configuration.
fn target(state: &AppState, body: &FlowRequest) -> Result<Target, ApiError> {
    no_requested_by(&body.requested_by)?;
    if !crate::approvals::reason_ok(&body.reason) {
        return Err(ApiError::BadRequest(
            "reason: required, at most 1000 characters, no control characters".into(),
        ));
    }
    let routes: Vec<&str> = state
        .endpoints
        .all()
        .iter()
        .map(|r| r.label.as_str())
        .collect();
    Target::checked(
        body.topic.clone(),
        body.partition,
        body.route.clone(),
        &state.topics,
        &routes,
    )
    .map_err(ApiError::BadRequest)
}

impl From<FlowError> for ApiError {
    fn from(e: FlowError) -> ApiError {
        match e {
            FlowError::AlreadyPaused(_) => ApiError::Conflict(e.to_string()),
            FlowError::NotPaused(_) => ApiError::NotFound(e.to_string()),
            FlowError::Database(e) => query_failed(e),
        }
    }
}

/// The pauses in force and each route's gate.
#[utoipa::path(tag = "flow", security(("bearer" = ["viewer"])), responses((status = 200, description = "Pauses in force (every instance's) and this instance's route gates", body = FlowState), Guarded, PostgresBacked))]
#[get("/flow")]
pub async fn list(
    _: Authorized<Read>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let mut db = conn(&state).await?;
    let pauses = pauses::active(&mut db).await.map_err(query_failed)?;
    Ok(HttpResponse::Ok().json(FlowState {
        pauses,
        routes: route_gates(&state),
    }))
}

/// Pauses (or resumes) what `body` names, then reads the pauses again at
/// once on this instance.
async fn change(
    state: &AppState,
    actor: &crate::identity::Actor,
    body: &FlowRequest,
    pausing: bool,
) -> Result<Pause, ApiError> {
    let target = target(state, body)?;
    let mut db = conn(state).await?;
    let changed = if pausing {
        pauses::pause(&mut db, &target, &body.reason, actor).await?
    } else {
        pauses::resume(&mut db, &target, &body.reason, actor).await?
    };
    state.flow.poke();
    let what = if pausing { "paused" } else { "resumed" };
    tracing::warn!(target = %target.describe(), by = %actor.name, reason = %body.reason.trim(), "{what}");
    Ok(changed)
}

/// Pauses a topic, one partition of it, or an http route, on every instance.
#[utoipa::path(tag = "flow", security(("bearer" = ["operator"])), request_body = FlowRequest, responses((status = 201, description = "Paused (chained FLOW_PAUSED); every instance holds it within flow.poll_interval", body = Pause), (status = 400, description = "No such topic or route, both or neither named, or no reason", body = ErrorBody), (status = 409, description = "Paused already", body = ErrorBody), Guarded, WithBody, PostgresBacked))]
#[post("/flow/pause")]
pub async fn pause(
    Authorized(actor, _): Authorized<Act>,
    state: web::Data<AppState>,
    body: web::Json<FlowRequest>,
) -> Result<HttpResponse, ApiError> {
    let paused = change(&state, &actor, &body, true).await?;
    Ok(HttpResponse::Created().json(paused))
}

/// Resumes a pause; what it held continues where it stopped.
#[utoipa::path(tag = "flow", security(("bearer" = ["operator"])), request_body = FlowRequest, responses((status = 200, description = "Resumed (chained FLOW_RESUMED)", body = Pause), (status = 400, description = "No such topic or route, both or neither named, or no reason", body = ErrorBody), (status = 404, description = "Not paused", body = ErrorBody), Guarded, WithBody, PostgresBacked))]
#[post("/flow/resume")]
pub async fn resume(
    Authorized(actor, _): Authorized<Act>,
    state: web::Data<AppState>,
    body: web::Json<FlowRequest>,
) -> Result<HttpResponse, ApiError> {
    let resumed = change(&state, &actor, &body, false).await?;
    Ok(HttpResponse::Ok().json(resumed))
}
