//! From payload bytes to a message id and its handler kind's task.
//!
//! The payload is parsed once into a shallow view with every field optional,
//! so the message id can be derived even when the event itself is invalid;
//! its shape (a domain envelope or a transaction event) and its route pick
//! the handler kind, whose decoder (`handlers/<kind>/`) parses the body on
//! its own, so a schema error names the field at fault.

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::value::RawValue;
use uuid::Uuid;

use crate::failure::Failure;
use crate::handlers::registry::{self, Task};
use crate::handlers::spec::{Body, Payload};
use crate::kafka::envelope::Envelope;
use crate::pipeline::message_id;
use crate::pipeline::route_table::Routes;

/// What decoding learned about a record, whether or not it is valid.
#[derive(Debug)]
pub struct Decoded {
    pub message_id: Uuid,
    /// The event's declared type, when it has one (for audit and metrics).
    pub event_type: Option<String>,
    /// What its handler kind made of it, or why it could not.
    pub work: Result<Task, Failure>,
}

#[derive(Deserialize)]
struct Shallow<'a> {
    #[serde(rename = "eventId", default, borrow)]
    event_id: Option<std::borrow::Cow<'a, str>>,
    #[serde(rename = "type", default, borrow)]
    kind: Option<std::borrow::Cow<'a, str>>,
    #[serde(default, borrow)]
    event_type: Option<std::borrow::Cow<'a, str>>,
    #[serde(default, borrow)]
    timestamp: Option<std::borrow::Cow<'a, str>>,
    #[serde(default, borrow)]
    transaction: Option<&'a RawValue>,
    #[serde(default, borrow)]
    data: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct TransactionId<'a> {
    #[serde(default, borrow)]
    id: Option<std::borrow::Cow<'a, str>>,
}

/// Decodes `envelope`; `routes` says which handler (and so which shape) an
/// event type has. An event type with no route is an unknown event type.
/// `header_id` is the id a custodian-signed header gives (see `steering`).
pub fn decode(
    envelope: &Envelope,
    routes: &Routes,
    header_id: Option<Uuid>,
    now: DateTime<Utc>,
) -> Decoded {
    let position_id =
        || message_id::for_position(&envelope.topic, envelope.partition, envelope.offset);

    if envelope.unreadable_headers {
        return Decoded {
            message_id: position_id(),
            event_type: None,
            work: Err(Failure::undecodable("a record header name is not UTF-8")),
        };
    }
    let Some(payload) = envelope.payload.as_deref() else {
        return Decoded {
            message_id: header_id.unwrap_or_else(position_id),
            event_type: None,
            work: Err(Failure::undecodable("empty payload (tombstone)")),
        };
    };
    let shallow: Shallow<'_> = match serde_json::from_slice(payload) {
        Ok(s) => s,
        Err(e) => {
            return Decoded {
                message_id: header_id.unwrap_or_else(position_id),
                event_type: None,
                work: Err(Failure::undecodable(format!(
                    "payload is not a JSON object: {e}"
                ))),
            }
        }
    };

    // Domain envelope: `eventId` + `type` + `timestamp` + `data`.
    if let Some(event_id) = shallow.event_id.as_deref() {
        let message_id = header_id.unwrap_or_else(|| message_id::from_event_id(event_id));
        let work = match shallow.kind.as_deref() {
            None => Err(Failure::schema("missing field `type`")),
            Some(t) => routed(
                &envelope.topic,
                routes,
                (t, Payload::DomainEnvelope),
                &shallow,
                message_id,
                now,
            ),
        };
        return Decoded {
            message_id,
            event_type: shallow.kind.as_deref().map(|t| t.replace('\0', "\u{FFFD}")),
            work,
        };
    }

    // Transaction event: `event_type` + `transaction` + `timestamp`.
    let Some(event_type) = shallow.event_type.as_deref() else {
        return Decoded {
            message_id: header_id.unwrap_or_else(position_id),
            event_type: shallow.kind.as_deref().map(|t| t.replace('\0', "\u{FFFD}")),
            work: Err(Failure::schema(
                "event has neither `eventId`/`type` nor `event_type`",
            )),
        };
    };
    let transaction_id = shallow
        .transaction
        .and_then(|raw| serde_json::from_str::<TransactionId<'_>>(raw.get()).ok())
        .and_then(|t| t.id.map(|id| id.into_owned()));
    let message_id = header_id.unwrap_or_else(|| {
        match (transaction_id.as_deref(), shallow.timestamp.as_deref()) {
            (Some(tx), Some(ts)) => message_id::for_transaction_event(tx, event_type, ts),
            _ => position_id(),
        }
    });
    let work = routed(
        &envelope.topic,
        routes,
        (event_type, Payload::TransactionEvent),
        &shallow,
        message_id,
        now,
    );
    Decoded {
        message_id,
        event_type: Some(event_type.replace('\0', "\u{FFFD}")),
        work,
    }
}

/// The task of a record of `shape` whose type is `event_type`: its route's
/// kind must take that shape (or any), then the kind decodes the body.
fn routed(
    topic: &str,
    routes: &Routes,
    (event_type, shape): (&str, Payload),
    shallow: &Shallow<'_>,
    message_id: Uuid,
    now: DateTime<Utc>,
) -> Result<Task, Failure> {
    let handler = routes
        .handler(topic, event_type)
        .ok_or_else(|| no_route(event_type, topic))?;
    let kind = handler.kind;
    match (shape, kind.spec().payload) {
        (_, Payload::Any) => {}
        (given, taken) if given == taken => {}
        (_, Payload::TransactionEvent) => return Err(Failure::schema(format!(
            "`{event_type}` is routed to the {kind} handler, which takes transaction events (event_type, transaction), not an eventId envelope"
        ))),
        (_, Payload::DomainEnvelope) => return Err(Failure::schema(format!(
            "`{event_type}` is routed to the {kind} handler, which takes domain envelopes (eventId, type, timestamp, data)"
        ))),
    }
    let body = Body {
        event_type,
        timestamp: shallow.timestamp.as_deref(),
        transaction: shallow.transaction,
        data: shallow.data,
    };
    registry::decode(handler, &body, message_id, now)
}

fn no_route(event_type: &str, topic: &str) -> Failure {
    // The type is quoted clipped: it can be as long as the payload, which is
    // kept whole anyway.
    Failure::unknown_event_type(format!(
        "unknown event type `{}`: no route sends it to a handler on topic `{topic}`",
        crate::text::clip(event_type).replace('\0', "\u{FFFD}")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handlers::domain::event::{DomainChange, DomainEvent};
    use crate::handlers::transactions::event::{Action, TransactionChange};

    fn routes() -> Routes {
        Routes::new(
            &crate::config::Settings::from_overrides(&[])
                .expect("defaults")
                .routes,
        )
    }

    fn decode(envelope: &Envelope) -> Decoded {
        super::decode(envelope, &routes(), None, chrono::Utc::now())
    }

    fn envelope(payload: &[u8]) -> Envelope {
        Envelope::at("transactions", 0, 42, Some(payload))
    }

    const CREATED: &str = r#"{"event_type":"transaction.created","transaction":{"id":"tx-1","user_id":"u1","transaction_type":"card","product":"Card","status":"completed","currency":"USD","amount":100.50,"created_at":"2024-01-01T12:00:00Z","metadata":{"merchant_name":"Starbucks","card_last_four":"1234"}},"timestamp":"2024-01-01T12:00:00Z","source":"test"}"#;

    #[test]
    fn seed_003_event_decodes_with_a_stable_id() {
        let d = decode(&envelope(CREATED.as_bytes()));
        let Ok(Task::Transaction(TransactionChange { event: e, .. })) = &d.work else {
            panic!("expected a transaction event, got {:?}", d.work)
        };
        assert_eq!(e.action, Action::Created);
        assert_eq!(e.transaction_id, "tx-1");
        assert_eq!(
            d.message_id,
            message_id::for_transaction_event(
                "tx-1",
                "transaction.created",
                "2024-01-01T12:00:00Z"
            )
        );
        // The same event at another offset is the same message.
        let mut other = envelope(CREATED.as_bytes());
        other.offset = 99;
        assert_eq!(decode(&other).message_id, d.message_id);
    }

    #[test]
    fn garbage_is_undecodable_with_a_positional_id() {
        let d = decode(&envelope(b"\xff\x00not json"));
        assert_eq!(
            d.work.as_ref().map_err(|f| f.kind).err(),
            Some("undecodable")
        );
        assert_eq!(
            d.message_id,
            message_id::for_position("transactions", 0, 42)
        );
    }

    #[test]
    fn unknown_event_type_is_permanent() {
        let payload = CREATED.replace("transaction.created", "transaction.exploded");
        let d = decode(&envelope(payload.as_bytes()));
        let f = d.work.expect_err("must fail");
        assert_eq!(f.kind, "unknown_event_type");
        assert!(f.is_permanent());
    }

    #[test]
    fn amounts_are_exact_or_refused_naming_the_field() {
        for (text, exact) in [
            ("99999999.99999999", "99999999.99999999"),
            ("1234567890123456.12345678", "1234567890123456.12345678"),
            ("-3.50", "-3.5"),
        ] {
            let payload = CREATED.replace("100.50", text);
            let d = decode(&envelope(payload.as_bytes()));
            let Ok(Task::Transaction(TransactionChange { event: e, .. })) = d.work else {
                panic!("{text}: {:?}", d.work)
            };
            let amount = e.transaction.map(|t| t.amount.to_string());
            assert_eq!(amount.as_deref(), Some(exact));
        }
        for text in ["1e-400", "1e308", "0.123456789", r#""12.50""#] {
            let payload = CREATED.replace("100.50", text);
            let f = decode(&envelope(payload.as_bytes())).work.expect_err(text);
            assert_eq!(f.kind, "schema_violation");
            assert!(
                f.message.starts_with("field `transaction.amount`: "),
                "{text}: {}",
                f.message
            );
        }
    }

    #[test]
    fn missing_field_is_named() {
        let payload = CREATED.replace(r#""user_id":"u1","#, "");
        let f = decode(&envelope(payload.as_bytes()))
            .work
            .expect_err("must fail");
        assert_eq!(f.kind, "schema_violation");
        assert!(f.message.contains("user_id"), "{}", f.message);
    }

    #[test]
    fn event_id_is_honoured_and_header_wins() {
        let payload =
            br#"{"eventId":"550e8400-e29b-41d4-a716-446655440001","type":"UserCreated","timestamp":"2025-01-11T12:00:00Z","data":{"userId":"u-1","name":"Alice","email":"a@example.com"}}"#;
        let d = decode(&envelope(payload));
        assert!(
            matches!(
                d.work,
                Ok(Task::Domain(DomainChange {
                    event: DomainEvent::UserCreated { .. },
                    ..
                }))
            ),
            "{:?}",
            d.work
        );
        assert_eq!(
            d.message_id.to_string(),
            "550e8400-e29b-41d4-a716-446655440001"
        );
        assert_eq!(d.event_type.as_deref(), Some("UserCreated"));
        let signed_id = Uuid::parse_str("550e8400-e29b-41d4-a716-446655440009").expect("uuid");
        let replayed = envelope(CREATED.as_bytes());
        assert_eq!(
            super::decode(&replayed, &routes(), Some(signed_id), chrono::Utc::now()).message_id,
            signed_id
        );
    }

    #[test]
    fn tombstone_is_undecodable() {
        let mut e = envelope(b"");
        e.payload = None;
        assert_eq!(
            decode(&e).work.map_err(|f| f.kind).err(),
            Some("undecodable")
        );
    }
}
