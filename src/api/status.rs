//! `GET /status` (where every owned partition stands, and the health of
//! Kafka, PostgreSQL and Redis) and `GET /status/samples` (the overview's
//! chart data). Both behind the token: offsets and errors are operational
//! detail.

use std::time::Duration;

use actix_web::{get, web, HttpResponse};
use chrono::Utc;

use crate::api::auth::{Authorized, Read};
use crate::api::responses::Guarded;
use crate::api::AppState;
use crate::status::report::{self, Dependencies, Dependency, StatusReport};
use crate::status::samples::Series;
use crate::store::pool::{ping_postgres, ping_redis};

/// Each dependency's probe, and Kafka's offset queries, answer within this.
const DEADLINE: Duration = Duration::from_secs(2);

/// Every owned partition: owner, state, committed offset, durable watermark,
/// high watermark, lag, in-flight count, last error; and dependency health.
#[utoipa::path(tag = "operations", security(("bearer" = ["viewer"])), responses((status = 200, description = "Partitions and dependency health", body = StatusReport), Guarded))]
#[get("/status")]
pub async fn status(_: Authorized<Read>, state: web::Data<AppState>) -> HttpResponse {
    let ((mut partitions, mut kafka), postgres, redis) = futures::join!(
        report::partitions(state.status.clone(), DEADLINE),
        ping_postgres(&state.postgres, DEADLINE),
        ping_redis(&state.redis, DEADLINE)
    );
    let assigned = state.health.assignment();
    if assigned.is_none() && kafka.ok {
        kafka = Dependency {
            ok: false,
            error: Some("no partition assignment yet".into()),
        };
    }
    partitions.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
    HttpResponse::Ok().json(StatusReport {
        instance: state.status.instance().to_owned(),
        generated_at: Utc::now(),
        assigned_partitions: assigned,
        health: Dependencies {
            kafka,
            postgres: Dependency::from(postgres),
            redis: Dependency::from(redis),
        },
        partitions,
        routes: crate::api::flow::route_gates(&state),
    })
}

/// Settled messages per second, dead letters, retries and lag, one point
/// per sample interval over the last hour (kept in memory).
#[utoipa::path(tag = "operations", security(("bearer" = ["viewer"])), responses((status = 200, description = "Chart points, oldest first", body = Series), Guarded))]
#[get("/status/samples")]
pub async fn samples(_: Authorized<Read>, state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(state.samples.series())
}
