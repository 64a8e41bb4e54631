//! HTTP delivery to downstream services (seeds 001 and 002, like Uber's
//! Kafka consumer proxy): one POST per message, paced by the route's rate
//! limit, and the answer classified.
//!
//! - 2xx: delivered.
//! - 429, 500 and other 5xx, a timeout: transient (retried per `retry.*`,
//!   then parked).
//! - the downstream is down: no connection (refused, unreachable, or not
//!   within the connect timeout), or 502/503/504 (a gateway saying its
//!   backend is down). Not the message's fault and not an attempt: the
//!   partition pauses with capped backoff and resumes when it answers.
//! - any other status (4xx, a redirect): permanent, parked with the status
//!   and the start of the body.
//!
//! The request carries the message id (`X-Custodian-Message-Id`, for the
//! downstream's own idempotency), the event type, topic, partition, offset
//! and key as headers; the body is the record's payload, byte for byte.

use std::time::Instant;

use super::Endpoint;
use crate::failure::TryError;
use crate::failure::{Failure, Retry, Stage};
use crate::kafka::envelope::Envelope;
use crate::telemetry::delivery::{
    DeliveryFinished, DeliveryStarted, DownstreamOutcome, DownstreamRequested, RateLimited,
};
use crate::telemetry::Emit;

/// Runs `f` when dropped.
fn scopeguard(f: impl FnOnce()) -> impl Drop {
    struct Guard<F: FnOnce()>(Option<F>);
    impl<F: FnOnce()> Drop for Guard<F> {
        fn drop(&mut self) {
            if let Some(f) = self.0.take() {
                f();
            }
        }
    }
    Guard(Some(f))
}

/// How long a connection may take before the downstream counts as down.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

/// How long keeping an answer in Redis may take before it is skipped.
const CACHE_DEADLINE: std::time::Duration = std::time::Duration::from_millis(500);

/// Most bytes of a refusal's body kept in the error.
const BODY_EXCERPT: usize = 500;

/// The client every processor shares (connection pooling, no redirects).
pub fn client() -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(CONNECT_TIMEOUT)
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

/// A downstream's answer to a delivery, as kept in Redis when the route asks.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Answer {
    pub route: String,
    pub status: u16,
    pub body: String,
    pub at: chrono::DateTime<chrono::Utc>,
}

/// Most bytes of a kept answer's body.
const ANSWER_BYTES: usize = 4096;

/// The Redis key of a message's kept answer.
pub fn answer_key(keys: &crate::dlq::Keys, message_id: uuid::Uuid) -> String {
    format!("{}#response:{message_id}", keys.list_prefix())
}

/// Keeps `answer` for `ttl`. The cache is a convenience: a failure is
/// logged, never fatal to the delivery.
pub async fn keep_answer(
    redis: &crate::store::pool::RedisPool,
    keys: &crate::dlq::Keys,
    message_id: uuid::Uuid,
    answer: &Answer,
    ttl: std::time::Duration,
) {
    let kept = async {
        let json = serde_json::to_string(answer).map_err(|e| e.to_string())?;
        let mut conn = redis.get().await.map_err(|e| e.to_string())?;
        redis::cmd("SET")
            .arg(answer_key(keys, message_id))
            .arg(json)
            .arg("PX")
            .arg(ttl.as_millis().max(1) as u64)
            .query_async::<()>(&mut *conn)
            .await
            .map_err(|e| e.to_string())
    };
    match tokio::time::timeout(CACHE_DEADLINE, kept).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => tracing::warn!(%message_id, error, "downstream answer not cached"),
        Err(_) => tracing::warn!(%message_id, "downstream answer not cached: redis too slow"),
    }
}

/// One attempt at delivering `envelope` (read from `topic`, its own or,
/// for a retry record, its original one) over `route`; the 2xx answer. A
/// schema topic's record goes as the JSON it decodes to, or as it is with
/// `forward = "original"` (see `formats::forward`).
///
/// The route's gate goes first: while the route is paused or its circuit
/// breaker is open, nothing is sent and the answer is "unavailable" (not
/// an attempt: the message waits); each delivery that goes tells the
/// breaker how it ended.
///
/// With traces on, the attempt is a client span of the record's trace,
/// whose context the request carries (`traceparent`).
pub async fn forward(
    client: &reqwest::Client,
    route: &Endpoint,
    (formats, topic): (&crate::formats::Formats, &str),
    (envelope, trace): (&Envelope, &crate::otel::record::RecordTrace),
    message_id: uuid::Uuid,
    event_type: Option<&str>,
) -> Result<Answer, TryError> {
    let pass = route.gate.admit().map_err(|error| TryError::Unavailable {
        dependency: crate::flow::gate::ROUTE,
        error,
    })?;
    let span = trace.http(&route.label);
    let context = span
        .as_ref()
        .map_or_else(|| trace.context(), crate::otel::context::headers_of);
    let attempt = attempt(
        client,
        route,
        (formats, topic),
        (envelope, &context),
        message_id,
        event_type,
    );
    let result = match &span {
        Some(span) => tracing::Instrument::instrument(attempt, span.clone()).await,
        None => attempt.await,
    };
    if let Some(span) = &span {
        match &result {
            Ok(answer) => {
                span.record("http.response.status_code", answer.status);
            }
            Err(e) => {
                let kind = match e {
                    TryError::Unavailable { dependency, .. } => *dependency,
                    TryError::Failed(f) => f.kind,
                };
                span.record("error.type", kind);
                span.record("otel.status_code", "ERROR");
            }
        }
    }
    if let Some(outcome) = for_breaker(&result) {
        route.gate.record(pass, outcome);
    }
    result
}

/// How a delivery's result counts for its route's breaker: the
/// downstream's failures against it, its answers (a refusal of the message
/// included) for it; none when no request was made (the registry down, a
/// record that does not decode).
fn for_breaker(result: &Result<Answer, TryError>) -> Option<crate::flow::breaker::Outcome> {
    use crate::flow::breaker::Outcome;
    match result {
        Ok(_) => Some(Outcome::Answered),
        Err(TryError::Unavailable { dependency, .. }) => {
            (*dependency == "downstream").then_some(Outcome::Failed)
        }
        Err(TryError::Failed(f)) if f.kind == "downstream_rejected" => Some(Outcome::Answered),
        Err(TryError::Failed(f)) if f.kind.starts_with("downstream_") => Some(Outcome::Failed),
        Err(TryError::Failed(_)) => None,
    }
}

/// [`forward`] past the gate: the request, and its answer classified.
async fn attempt(
    client: &reqwest::Client,
    route: &Endpoint,
    (formats, topic): (&crate::formats::Formats, &str),
    (envelope, context): (&Envelope, &[(String, String)]),
    message_id: uuid::Uuid,
    event_type: Option<&str>,
) -> Result<Answer, TryError> {
    use crate::formats::forward::NotReady;
    let body = match formats
        .body(topic, envelope.payload.as_deref(), route.forward_original)
        .await
    {
        Ok(body) => body,
        Err(NotReady::Outage(error)) => {
            return Err(TryError::Unavailable {
                dependency: crate::formats::REGISTRY,
                error,
            })
        }
        Err(NotReady::Unreadable(e)) => {
            return Err(TryError::Failed(crate::failure::Failure::permanent(
                crate::failure::Stage::Process,
                crate::formats::SCHEMA_MISMATCH,
                e,
            )))
        }
    };
    if route.limiter.check().is_err() {
        RateLimited {
            route: &route.label,
        }
        .emit();
        route.limiter.until_ready().await;
    }
    let mut request = client
        .post(&route.url)
        .timeout(route.timeout)
        .header("content-type", body.content_type)
        .header("x-custodian-message-id", message_id.to_string())
        .header("x-kafka-topic", &*envelope.topic)
        .header("x-kafka-partition", envelope.partition.to_string())
        .header("x-kafka-offset", envelope.offset.to_string());
    for (name, value) in context {
        request = request.header(name, value);
    }
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
    let body = body.bytes;
    DeliveryStarted {
        route: &route.label,
    }
    .emit();
    // Counted down however the request ends (dropped futures included).
    let _in_flight = scopeguard(|| {
        DeliveryFinished {
            route: &route.label,
        }
        .emit()
    });
    let started = Instant::now();
    let answer = request.body(body).send().await;
    DownstreamRequested {
        route: &route.label,
        elapsed: started.elapsed(),
    }
    .emit();
    let response = match answer {
        Ok(response) => response,
        Err(e) if e.is_connect() => {
            count(route, "unreachable");
            return Err(TryError::Unavailable {
                dependency: "downstream",
                error: format!("{}: cannot connect", route.label),
            });
        }
        Err(e) if e.is_timeout() => {
            count(route, "timeout");
            return Err(failure(
                Retry::Transient,
                "downstream_timeout",
                format!("no answer from {} within {:?}", route.label, route.timeout),
            ));
        }
        Err(_) => {
            count(route, "error");
            return Err(failure(
                Retry::Transient,
                "downstream_error",
                format!("{}: the request failed", route.label),
            ));
        }
    };
    let status = response.status();
    if matches!(status.as_u16(), 502..=504) {
        count(route, "unavailable");
        return Err(TryError::Unavailable {
            dependency: "downstream",
            error: format!("{} answered HTTP {}", route.label, status.as_u16()),
        });
    }
    let body = read_capped(response, ANSWER_BYTES).await;
    if status.is_success() {
        count(route, "delivered");
        return Ok(Answer {
            route: route.label.clone(),
            status: status.as_u16(),
            body: String::from_utf8_lossy(&body[..body.len().min(ANSWER_BYTES)]).into_owned(),
            at: chrono::Utc::now(),
        });
    }
    let excerpt = String::from_utf8_lossy(&body[..body.len().min(BODY_EXCERPT)]).into_owned();
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

/// Up to `limit` bytes of the body (the rest is not read).
async fn read_capped(mut response: reqwest::Response, limit: usize) -> Vec<u8> {
    let mut body = Vec::new();
    while body.len() < limit {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                body.extend_from_slice(&chunk[..chunk.len().min(limit - body.len())])
            }
            _ => break,
        }
    }
    body
}

fn count(route: &Endpoint, outcome: &str) {
    DownstreamOutcome {
        route: &route.label,
        outcome,
    }
    .emit();
}
