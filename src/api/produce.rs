//! `POST /produce`: validates a domain event envelope, keys it
//! (userId, orderId, orderId, sku), publishes it (as JSON, or with
//! `?format=avro|protobuf|json-schema` in the Confluent wire format with its
//! subject's latest schema), and answers 202 with where it went once Kafka
//! acknowledged it.

use std::time::Duration;

use actix_web::{post, web, HttpResponse};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::value::RawValue;

use crate::api::answers::{EventEnvelope, Produced};
use crate::api::auth::{Act, Authorized};
use crate::api::error::{ApiError, ErrorBody};
use crate::api::responses::{Guarded, WithBody};
use crate::handlers::domain::event;
use crate::handlers::domain::EVENT_TYPES;
use crate::telemetry::api::EventProduced;
use crate::telemetry::Emit;

/// Where `POST /produce` publishes.
pub struct ProduceTarget {
    pub producer: FutureProducer,
    pub topic: String,
}

#[derive(serde::Deserialize)]
struct Envelope<'a> {
    #[serde(rename = "eventId", borrow)]
    event_id: Option<&'a RawValue>,
    #[serde(rename = "type", default)]
    kind: Option<String>,
    #[serde(default)]
    timestamp: Option<String>,
    #[serde(default, borrow)]
    data: Option<&'a RawValue>,
}

/// Checks the envelope field by field; the error names the field.
fn validate(body: &[u8]) -> Result<(uuid::Uuid, String, String), String> {
    let envelope: Envelope<'_> =
        serde_json::from_slice(body).map_err(|e| format!("body: not a JSON object: {e}"))?;
    let event_id = envelope
        .event_id
        .ok_or("eventId: required")?
        .get()
        .trim_matches('"')
        .parse::<uuid::Uuid>()
        .map_err(|_| "eventId: must be a UUID".to_string())?;
    let kind = envelope.kind.ok_or("type: required")?;
    if !EVENT_TYPES.contains(&kind.as_str()) {
        return Err(format!("type: must be one of {}", EVENT_TYPES.join(", ")));
    }
    let timestamp = envelope.timestamp.ok_or("timestamp: required")?;
    chrono::DateTime::parse_from_rfc3339(&timestamp)
        .map_err(|_| "timestamp: must be RFC 3339".to_string())?;
    let data = envelope.data.ok_or("data: required")?;
    // Domain errors read "field `data.x`: why"; answer "data.x: why".
    let event = event::decode(&kind, Some(data.get())).map_err(|f| {
        f.message
            .strip_prefix("field `")
            .map(|rest| rest.replacen('`', "", 1))
            .unwrap_or(f.message)
    })?;
    Ok((event_id, kind, event.key().to_owned()))
}

/// How to write the event (`?format=…&subject=…`).
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ProduceQuery {
    /// `json` (the default), `avro`, `protobuf` or `json-schema`: the
    /// latter in the Confluent wire format, with `subject`'s latest schema
    /// from the schema registry.
    format: Option<String>,
    /// The registry subject (default `<topic>-value`).
    subject: Option<String>,
}

/// The event in `query`'s format: as it is, or encoded with its subject's
/// latest schema.
async fn encoded(
    state: &crate::api::AppState,
    topic: &str,
    query: ProduceQuery,
    body: &[u8],
) -> Result<Vec<u8>, ApiError> {
    use crate::formats::registry::FetchError;
    use crate::formats::schema::Kind;
    let kind = match query.format.as_deref() {
        None | Some("json") => return Ok(body.to_vec()),
        Some("avro") => Kind::Avro,
        Some("protobuf") => Kind::Protobuf,
        Some("json-schema") => Kind::JsonSchema,
        Some(_) => {
            return Err(ApiError::BadRequest(
                "format: json, avro, protobuf or json-schema".into(),
            ))
        }
    };
    let registry = state.formats.registry().ok_or_else(|| {
        ApiError::BadRequest("format: needs schema_registry.url, which is not configured".into())
    })?;
    let subject = query.subject.unwrap_or_else(|| format!("{topic}-value"));
    let encoder = crate::formats::encode::Encoder::new(registry, &subject, kind, None)
        .await
        .map_err(|e| match e {
            FetchError::Unavailable(error) => {
                tracing::warn!(%error, "POST /produce: the schema registry");
                ApiError::Unavailable(crate::formats::REGISTRY)
            }
            other => ApiError::BadRequest(format!("subject: {other}")),
        })?;
    encoder
        .encode(body)
        .map_err(|e| ApiError::BadRequest(format!("body: does not fit subject {subject}: {e}")))
}

#[utoipa::path(tag = "events", security(("bearer" = ["operator"])), params(ProduceQuery), request_body(content = EventEnvelope, description = "A domain envelope: eventId, type, timestamp, data (at most 256 KiB). `data.amount` (OrderPlaced, PaymentSettled) is a JSON number, not a string, that NUMERIC(24,8) holds exactly: at most 16 digits before the point and 8 after; it is never rounded."), responses((status = 202, description = "Kafka acknowledged it", body = Produced), (status = 502, description = "Kafka did not acknowledge", body = ErrorBody), (status = 503, description = "The schema registry does not answer (with a format)", body = ErrorBody), Guarded, WithBody))]
#[post("/produce")]
pub async fn produce(
    _: Authorized<Act>,
    target: web::Data<ProduceTarget>,
    state: web::Data<crate::api::AppState>,
    query: web::Query<ProduceQuery>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let (event_id, kind, key) = validate(&body).map_err(ApiError::BadRequest)?;
    let payload = encoded(&state, &target.topic, query.into_inner(), &body).await?;
    let record = FutureRecord::to(&target.topic)
        .key(key.as_bytes())
        .payload(payload.as_slice());
    let delivery = target
        .producer
        .send(record, Duration::from_secs(10))
        .await
        .map_err(|(e, _)| ApiError::BadGateway(format!("Kafka did not acknowledge: {e}")))?;
    EventProduced {
        event_id: &event_id.to_string(),
        kind: &kind,
        key: &key,
        topic: &target.topic,
        partition: delivery.partition,
        offset: delivery.offset,
    }
    .emit();
    Ok(HttpResponse::Accepted().json(Produced {
        event_id,
        topic: target.topic.clone(),
        partition: delivery.partition,
        offset: delivery.offset,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_error_names_the_field() {
        let ok = br#"{"eventId":"550e8400-e29b-41d4-a716-446655440001","type":"UserCreated","timestamp":"2025-01-11T12:00:00Z","data":{"userId":"u-1","name":"A","email":"a@x.io"}}"#;
        assert_eq!(validate(ok).expect("valid").2, "u-1");
        let exact = br#"{"eventId":"550e8400-e29b-41d4-a716-446655440001","type":"OrderPlaced","timestamp":"2025-01-11T12:00:00Z","data":{"orderId":"o-1","userId":"u","amount":99999999.99999999}}"#;
        assert_eq!(validate(exact).expect("valid").2, "o-1");
        for (body, field) in [
            (&br#"{"type":"UserCreated"}"#[..], "eventId"),
            (br#"{"eventId":"nope","type":"UserCreated"}"#, "eventId"),
            (br#"{"eventId":"550e8400-e29b-41d4-a716-446655440001","type":"Nope"}"#, "type"),
            (br#"{"eventId":"550e8400-e29b-41d4-a716-446655440001","type":"UserCreated","timestamp":"x"}"#, "timestamp"),
            (br#"{"eventId":"550e8400-e29b-41d4-a716-446655440001","type":"UserCreated","timestamp":"2025-01-11T12:00:00Z"}"#, "data"),
            (br#"{"eventId":"550e8400-e29b-41d4-a716-446655440001","type":"UserCreated","timestamp":"2025-01-11T12:00:00Z","data":{"userId":"u","name":"n","email":"x"}}"#, "data.email"),
            (br#"{"eventId":"550e8400-e29b-41d4-a716-446655440001","type":"OrderPlaced","timestamp":"2025-01-11T12:00:00Z","data":{"orderId":"o","userId":"u","amount":1e308}}"#, "data.amount"),
            (br#"{"eventId":"550e8400-e29b-41d4-a716-446655440001","type":"PaymentSettled","timestamp":"2025-01-11T12:00:00Z","data":{"orderId":"o","amount":1e-400}}"#, "data.amount"),
            (b"[1,2]", "body"),
        ] {
            let e = validate(body).expect_err(field);
            assert!(e.starts_with(field), "{field}: {e}");
        }
    }
}
