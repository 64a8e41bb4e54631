//! HTTP delivery to downstream services (seeds 001 and 002, like Uber's
//! Kafka consumer proxy): one POST per message, paced by the route's rate
//! limit, and the answer classified.
//!
//! - 2xx: delivered.
//! - 429, 5xx, a timeout: transient (retried per `retry.*`, then parked).
//! - no connection at all: the downstream is down; the partition pauses
//!   (not an attempt) and resumes when it answers again.
//! - any other status (4xx, a redirect): permanent, parked with the status
//!   and the start of the body.
//!
//! The request carries the message id (`X-Custodian-Message-Id`, for the
//! downstream's own idempotency), the event type, topic, partition, offset
//! and key as headers; the body is the record's payload, byte for byte.

use std::time::Instant;

use crate::kafka::envelope::Envelope;
use crate::metrics::metrics;
use crate::pipeline::failure::{Failure, Retry, Stage};
use crate::pipeline::routes::HttpRoute;
use crate::retry::TryError;

/// Most bytes of a refusal's body kept in the error.
const BODY_EXCERPT: usize = 500;

/// The client every processor shares (connection pooling, no redirects).
pub fn client() -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("custodian/", env!("CARGO_PKG_VERSION")))
        .build()
}

fn failure(retry: Retry, kind: &'static str, message: String) -> TryError {
    TryError::Failed(Failure {
        stage: Stage::Process,
        retry,
        kind,
        message,
    })
}

/// One attempt at delivering `envelope` over `route`.
pub async fn forward(
    client: &reqwest::Client,
    route: &HttpRoute,
    envelope: &Envelope,
    message_id: uuid::Uuid,
    event_type: Option<&str>,
) -> Result<(), TryError> {
    if route.limiter.check().is_err() {
        metrics()
            .rate_limit_waits
            .with_label_values(&[&route.label])
            .inc();
        route.limiter.until_ready().await;
    }
    let mut request = client
        .post(&route.url)
        .timeout(route.timeout)
        .header("content-type", "application/json")
        .header("x-custodian-message-id", message_id.to_string())
        .header("x-kafka-topic", &*envelope.topic)
        .header("x-kafka-partition", envelope.partition.to_string())
        .header("x-kafka-offset", envelope.offset.to_string());
    if let Some(event_type) = event_type {
        if let Ok(value) = reqwest::header::HeaderValue::from_str(event_type) {
            request = request.header("x-event-type", value);
        }
    }
    if let Some(key) = envelope.key_text() {
        if let Ok(value) = reqwest::header::HeaderValue::from_str(&key) {
            request = request.header("x-kafka-key", value);
        }
    }
    let body = envelope.payload.clone().unwrap_or_default();
    let started = Instant::now();
    let answer = request.body(body).send().await;
    metrics()
        .downstream_seconds
        .with_label_values(&[&route.label])
        .observe(started.elapsed().as_secs_f64());
    let response = match answer {
        Ok(response) => response,
        Err(e) if e.is_timeout() => {
            count(route, "timeout");
            return Err(failure(
                Retry::Transient,
                "downstream_timeout",
                format!("no answer from {} within {:?}", route.label, route.timeout),
            ));
        }
        Err(e) if e.is_connect() => {
            count(route, "unreachable");
            return Err(TryError::Unavailable {
                dependency: "downstream",
                error: format!("{}: {}", route.label, e.without_url()),
            });
        }
        Err(e) => {
            count(route, "error");
            return Err(failure(
                Retry::Transient,
                "downstream_error",
                format!("{}: {}", route.label, e.without_url()),
            ));
        }
    };
    let status = response.status();
    if status.is_success() {
        count(route, "delivered");
        return Ok(());
    }
    let excerpt = match response.bytes().await {
        Ok(body) => String::from_utf8_lossy(&body[..body.len().min(BODY_EXCERPT)]).into_owned(),
        Err(_) => String::new(),
    };
    let message = format!(
        "{} answered HTTP {}: {excerpt}",
        route.label,
        status.as_u16()
    );
    if status.as_u16() == 429 || status.is_server_error() {
        count(route, "retryable");
        let kind = if status.as_u16() == 429 {
            "downstream_throttled"
        } else {
            "downstream_unavailable"
        };
        Err(failure(Retry::Transient, kind, message))
    } else {
        count(route, "rejected");
        Err(failure(Retry::Permanent, "downstream_rejected", message))
    }
}

fn count(route: &HttpRoute, outcome: &str) {
    metrics()
        .downstream_requests
        .with_label_values(&[&route.label, outcome])
        .inc();
}
