//! Operational endpoints: liveness, readiness, metrics (open), and a
//! message's audit lifecycle (behind the token; its errors do not quote
//! masked values).

use std::time::Duration;

use actix_web::{get, web, HttpResponse};
use uuid::Uuid;

use crate::api::answers::{Health, KafkaReadiness, Lifecycle, Readiness};
use crate::api::auth::{Authorized, Read};
use crate::api::dlq::message_id;
use crate::api::error::{ApiError, ErrorBody};
use crate::api::responses::{Guarded, PostgresBacked};
use crate::api::AppState;
use crate::delivery::send::answer_key;
use crate::dlq::replay::DeadLetters;
use crate::store::audit;
use crate::store::pool::{ping_postgres, ping_redis};

const PROBE_DEADLINE: Duration = Duration::from_secs(2);

/// Liveness: the process serves HTTP.
#[utoipa::path(tag = "operations", responses((status = 200, description = "The process serves HTTP", body = Health)))]
#[get("/health")]
pub async fn health() -> HttpResponse {
    HttpResponse::Ok().json(Health { status: "ok" })
}

/// Readiness: Kafka assignment known, PostgreSQL and Redis answering, and
/// the audit checkpoints reaching `audit.checkpoint_file`.
#[utoipa::path(tag = "operations", responses((status = 200, description = "Kafka assignment known, PostgreSQL and Redis answer, the checkpoint file (if any) takes checkpoints", body = Readiness), (status = 503, description = "Names the failing dependency", body = Readiness)))]
#[get("/ready")]
pub async fn ready(state: web::Data<AppState>) -> HttpResponse {
    let registry = async {
        let registry = state.formats.registry()?;
        Some(
            tokio::time::timeout(PROBE_DEADLINE, registry.ping())
                .await
                .unwrap_or_else(|_| Err("no answer in 2 s".into())),
        )
    };
    let (postgres, redis, registry) = futures::join!(
        ping_postgres(&state.postgres, PROBE_DEADLINE),
        ping_redis(&state.redis, PROBE_DEADLINE),
        registry
    );
    let assignment = state.health.assignment();
    let mut failing = Vec::new();
    if assignment.is_none() {
        failing.push("kafka");
    }
    if postgres.is_err() {
        failing.push("postgres");
    }
    if redis.is_err() {
        failing.push("redis");
    }
    if matches!(registry, Some(Err(_))) {
        failing.push(crate::formats::REGISTRY);
    }
    // A checkpoint file that stopped taking lines: a truncated trail would
    // go unnoticed, so this instance does not call itself ready.
    let checkpoint_file = state.audit.status().checkpoint_file_error();
    if checkpoint_file.is_some() {
        failing.push("audit_checkpoint_file");
    }
    let ready = failing.is_empty();
    let body = Readiness {
        status: if ready { "ready" } else { "unavailable" },
        failing,
        kafka: KafkaReadiness {
            assigned_partitions: assignment,
        },
        postgres: postgres.err().map(|e| e.to_string()),
        redis: redis.err(),
        schema_registry: registry.and_then(Result::err),
        audit_checkpoint_file: checkpoint_file,
    };
    if ready {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

/// Prometheus text exposition. The DLQ depth gauge is read from Redis now
/// (if Redis does not answer quickly, the last value stays).
#[utoipa::path(tag = "operations", responses((status = 200, description = "Prometheus text exposition", body = String, content_type = "text/plain")))]
#[get("/metrics")]
pub async fn prometheus(dlq: web::Data<DeadLetters>) -> HttpResponse {
    if let Ok(Err(e)) = tokio::time::timeout(PROBE_DEADLINE, dlq.depths()).await {
        tracing::debug!(error = %e, "dlq depth not refreshed");
    }
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(crate::telemetry::render())
}

/// A message whose entries are all in archived periods: where, and what.
async fn archived(state: &AppState, id: Uuid) -> Result<HttpResponse, ApiError> {
    let not_found = || ApiError::NotFound(format!("no audit record for message {id}"));
    let shown = state.audit.show(id).await.map_err(|e| {
        tracing::warn!(error = %e, "searching the audit archive failed");
        ApiError::Unavailable("audit archive")
    })?;
    if shown.archived.entries.is_empty() {
        return Err(not_found());
    }
    // Errors quoting a masked value lose it (the payload is the first
    // delivery's, archived with it).
    let payload = shown.archived.entries.iter().find_map(|e| {
        e.payload
            .as_deref()
            .map(|p| state.masking.payload(&e.topic, p))
    });
    let scrub = |mut e: super::answers::ArchivedEntry| {
        if let (Some(error), Some(p)) = (&e.error, &payload) {
            e.error = Some(p.scrub(error));
        }
        e
    };
    Ok(HttpResponse::Ok().json(super::answers::ArchivedLifecycle {
        message_id: id,
        archived: true,
        store_url: shown.store_url.unwrap_or_default(),
        partitions: shown.archived.partitions.clone(),
        files: shown.archived.files.clone(),
        lifecycle: shown
            .archived
            .entries
            .iter()
            .map(super::answers::ArchivedEntry::from)
            .map(scrub)
            .collect(),
    }))
}

/// A message's whole audit lifecycle, oldest first.
#[utoipa::path(tag = "audit", security(("bearer" = ["viewer"])), params(("message_id" = uuid::Uuid, Path, description = "The message id")), responses((status = 200, description = "The audit lifecycle, in order (an `ArchivedLifecycle` when its periods are archived)", body = Lifecycle), (status = 404, description = "No audit record", body = ErrorBody), Guarded, PostgresBacked))]
#[get("/messages/{message_id}")]
pub async fn message(
    _: Authorized<Read>,
    state: web::Data<AppState>,
    dlq: web::Data<DeadLetters>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id: Uuid = message_id(&id)?;
    let mut conn = state.postgres.get().await.map_err(|e| {
        tracing::warn!(error = %e, "no PostgreSQL connection for /messages");
        ApiError::Unavailable("postgres")
    })?;
    let mut rows = audit::lifecycle(&mut conn, id).await.map_err(|e| {
        // A read by key fails only when the database is in trouble.
        tracing::warn!(error = %e, "audit lifecycle query failed");
        ApiError::Unavailable("postgres")
    })?;
    if rows.is_empty() {
        return archived(&state, id).await;
    }
    super::masked::audit_rows(&mut conn, &state.masking, &mut rows).await?;
    let delivery = crate::delivery::record::one(&mut conn, id)
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, "delivery query failed");
            ApiError::Unavailable("postgres")
        })?;
    // A kept downstream answer, if its route caches them (best effort).
    let lookup = async {
        let mut conn = state.redis.get().await.ok()?;
        redis::cmd("GET")
            .arg(answer_key(dlq.keys(), id))
            .query_async::<Option<String>>(&mut *conn)
            .await
            .ok()
            .flatten()
    };
    let answer: Option<serde_json::Value> = tokio::time::timeout(PROBE_DEADLINE, lookup)
        .await
        .ok()
        .flatten()
        .and_then(|json| serde_json::from_str(&json).ok());
    Ok(HttpResponse::Ok().json(Lifecycle {
        message_id: id,
        lifecycle: rows,
        downstream_answer: answer,
        retry_schedule: delivery.clone().filter(|d| d.is_open()),
        delivery,
    }))
}
