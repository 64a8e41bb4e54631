//! The HTTP server (actix-web). Open: health, readiness, metrics, the
//! OpenAPI document (`/openapi.json`) and its Swagger UI (`/docs`). Behind
//! the bearer token: audit lifecycles, the dead-letter queue, replay, the
//! read API, transaction search and `POST /produce`, every answer with its
//! `masking.fields` masked (`masked.rs`) but an approver's unmask
//! (`unmask.rs`).

pub(crate) mod answers;
pub(crate) mod approvals;
pub(crate) mod audit;
pub(crate) mod auth;
pub(crate) mod body_deadline;
pub(crate) mod console;
pub(crate) mod deliveries;
pub(crate) mod dlq;
pub(crate) mod dlq_view;
pub(crate) mod erasure;
pub(crate) mod error;
pub mod explorer;
pub(crate) mod flow;
pub(crate) mod masked;
pub(crate) mod methods;
pub(crate) mod openapi;
pub(crate) mod operations;
pub(crate) mod operators;
pub(crate) mod params;
pub(crate) mod produce;
pub(crate) mod read;
pub(crate) mod replay_jobs;
pub(crate) mod request_id;
pub(crate) mod responses;
pub mod search;
pub(crate) mod status;
pub(crate) mod unmask;
pub(crate) mod whoami;
pub(crate) mod why;

use std::net::SocketAddr;
use std::sync::Arc;

use actix_web::dev::Server;
use actix_web::middleware::from_fn;
use actix_web::{web, App, HttpServer};
use utoipa_actix_web::AppExt;

use crate::config::HttpSettings;
use crate::dlq::replay::DeadLetters;
use crate::health::Health;
use crate::store::pool::RedisPool;
use crate::store::PgPool;
use crate::telemetry::api::RequestServed;
use crate::telemetry::Emit;

/// What handlers share.
pub struct AppState {
    pub postgres: PgPool,
    pub redis: RedisPool,
    pub health: Arc<Health>,
    /// `audit verify` and `audit reconcile` (`trail`).
    pub audit: crate::trail::Access,
    /// Where partition actors report (`GET /status`).
    pub status: Arc<crate::status::Registry>,
    /// The overview's chart samples (`GET /status/samples`).
    pub samples: Arc<crate::status::Samples>,
    /// Payload formats and the schema registry (`/ready` asks it).
    pub formats: Arc<crate::formats::Formats>,
    /// Four-eyes approval's threshold and time to live.
    pub operators: crate::config::OperatorsSettings,
    /// What every answer masks (`masking.fields`).
    pub masking: Arc<crate::masking::Masking>,
    /// The operators' pauses in force (`/flow`).
    pub flow: crate::flow::Flow,
    /// The http routes, with their gates (`/flow`, `/status`).
    pub endpoints: Arc<crate::delivery::Endpoints>,
    /// `kafka.topics`: what a pause may name.
    pub topics: Vec<String>,
}

/// Binds the server (port 0 picks one) and returns it with the bound address.
pub fn server(
    settings: &HttpSettings,
    state: AppState,
    dead_letters: Arc<DeadLetters>,
    produce_target: produce::ProduceTarget,
) -> std::io::Result<(Server, SocketAddr)> {
    let produce_target = web::Data::new(produce_target);
    let state = web::Data::new(state);
    let dead_letters = web::Data::from(dead_letters);
    if settings.api_token.is_some() {
        tracing::warn!(
            "http.api_token is set: whoever holds it acts as an unnamed admin; give each person \
             a token of their own with `custodian operator add`"
        );
    }
    let token = web::Data::new(auth::ApiToken(settings.api_token.clone()));
    let body_timeout = body_deadline::BodyTimeout(settings.body_timeout);
    let server = HttpServer::new(move || {
        // Every route is registered once, here; the OpenAPI document is
        // collected from the same registration, so the two cannot drift.
        let (app, api) = App::new()
            .into_utoipa_app()
            .openapi(openapi::base())
            .app_data(state.clone())
            .app_data(dead_letters.clone())
            .app_data(token.clone())
            .app_data(produce_target.clone())
            .app_data(body_timeout)
            .app_data(error::json_config())
            .app_data(error::path_config())
            .app_data(error::query_config())
            .service(operations::health)
            .service(operations::ready)
            .service(operations::prometheus)
            .service(explorer::search)
            .service(explorer::record)
            .service(unmask::unmask)
            .service(operations::message)
            .service(deliveries::list)
            .service(audit::verify)
            .service(audit::status)
            .service(audit::reconcile)
            .service(erasure::erase)
            .service(whoami::whoami)
            .service(approvals::list)
            .service(approvals::approve)
            .service(approvals::reject)
            .service(operators::list)
            .service(operators::add)
            .service(operators::rotate)
            .service(operators::revoke)
            // Before `/dlq/{message_id}` and `/replay/{message_id}`.
            .service(replay_jobs::by_kind)
            .service(replay_jobs::count)
            .service(replay_jobs::start)
            .service(replay_jobs::progress)
            .service(replay_jobs::resume)
            .service(dlq::list)
            .service(dlq::show)
            .service(dlq::discard)
            .service(dlq::replay_one)
            .service(dlq::replay_matching)
            .service(produce::produce)
            .service(read::user)
            .service(read::order)
            .service(read::transactions)
            // Before `/transactions/{id}`, which would take "search" as an id.
            .service(search::search)
            .service(read::transaction)
            .service(flow::list)
            .service(flow::pause)
            .service(flow::resume)
            .service(status::status)
            .service(status::samples)
            .split_for_parts();
        let allowed = web::Data::new(methods::Allowed::new(
            &api,
            &[openapi::PATHS, console::PATHS].concat(),
        ));
        // The last `wrap` is outermost: metrics see the final answer (and
        // the method the client sent), then errors become JSON, then an
        // over-long head is refused, then the body deadline, then HEAD is
        // routed as GET.
        app.app_data(allowed)
            .wrap(from_fn(auth::resolve))
            .wrap(from_fn(methods::head_as_get))
            .wrap(from_fn(body_deadline::limit))
            .wrap(from_fn(error::head_limits))
            .wrap(from_fn(error::json_errors))
            .wrap(from_fn(observe))
            .wrap(from_fn(request_id::assign))
            .configure(openapi::serve(api))
            .configure(console::serve)
            .default_service(web::to(methods::unrouted))
    })
    .workers(settings.workers)
    .disable_signals()
    .shutdown_timeout(5)
    .bind(&settings.bind)?;
    let addr = server
        .addrs()
        .first()
        .copied()
        .ok_or_else(|| std::io::Error::other("HTTP server bound no address"))?;
    Ok((server.run(), addr))
}

/// Counts and times every request by method, route pattern (bounded: the
/// pattern, never the concrete path) and status.
async fn observe(
    req: actix_web::dev::ServiceRequest,
    next: actix_web::middleware::Next<impl actix_web::body::MessageBody>,
) -> Result<actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>, actix_web::Error> {
    let started = std::time::Instant::now();
    let method: &'static str = match req.method().as_str() {
        "GET" => "GET",
        "POST" => "POST",
        "PUT" => "PUT",
        "DELETE" => "DELETE",
        "PATCH" => "PATCH",
        "HEAD" => "HEAD",
        "OPTIONS" => "OPTIONS",
        _ => "OTHER",
    };
    let response = next.call(req).await?;
    let route = response
        .request()
        .match_pattern()
        .unwrap_or_else(|| "unmatched".to_owned());
    let status = response.status().as_u16().to_string();
    RequestServed {
        method,
        route: &route,
        status: &status,
        elapsed: started.elapsed(),
    }
    .emit();
    Ok(response)
}
