//! From payload bytes to a typed event and a message id.
//!
//! The payload is parsed once into a shallow view with every field optional,
//! so the message id can be derived even when the event itself is invalid;
//! the transaction body is then parsed on its own, so a schema error names
//! the field at fault.

use serde::Deserialize;
use serde_json::value::RawValue;
use uuid::Uuid;

use crate::handler_kind::Payload;
use crate::kafka::envelope::Envelope;
use crate::pipeline::domain_event::{self, DomainEvent};
use crate::pipeline::failure::Failure;
use crate::pipeline::message_id;
use crate::pipeline::route_table::{Handler, Routes};
use crate::pipeline::transaction::{Action, RawTransaction, TransactionEvent};

/// A decoded event, ready for enrichment.
#[derive(Debug, Clone)]
pub enum Event {
    Transaction(TransactionEvent),
    /// A domain event and its envelope's timestamp.
    Domain(DomainEvent, chrono::DateTime<chrono::Utc>),
    /// Taken as it is by a handler whose payload is [`Payload::Any`]
    /// (forwarded, or recorded in the audit trail only).
    Pass(Handler),
}

/// What decoding learned about a record, whether or not it is valid.
#[derive(Debug)]
pub struct Decoded {
    pub message_id: Uuid,
    /// The event's declared type, when it has one (for audit and metrics).
    pub event_type: Option<String>,
    pub event: Result<Event, Failure>,
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
pub fn decode(envelope: &Envelope, routes: &Routes, header_id: Option<Uuid>) -> Decoded {
    let position_id =
        || message_id::for_position(&envelope.topic, envelope.partition, envelope.offset);

    if envelope.unreadable_headers {
        return Decoded {
            message_id: position_id(),
            event_type: None,
            event: Err(Failure::undecodable("a record header name is not UTF-8")),
        };
    }
    let Some(payload) = envelope.payload.as_deref() else {
        return Decoded {
            message_id: header_id.unwrap_or_else(position_id),
            event_type: None,
            event: Err(Failure::undecodable("empty payload (tombstone)")),
        };
    };
    let shallow: Shallow<'_> = match serde_json::from_slice(payload) {
        Ok(s) => s,
        Err(e) => {
            return Decoded {
                message_id: header_id.unwrap_or_else(position_id),
                event_type: None,
                event: Err(Failure::undecodable(format!(
                    "payload is not a JSON object: {e}"
                ))),
            }
        }
    };

    // Domain envelope: `eventId` + `type` + `timestamp` + `data`.
    if let Some(event_id) = shallow.event_id.as_deref() {
        let event = match shallow.kind.as_deref() {
            None => Err(Failure::schema("missing field `type`")),
            Some(t) => match routes.handler(&envelope.topic, t) {
                None => Err(no_route(t, &envelope.topic)),
                Some(handler) => match handler.kind.spec().payload {
                    Payload::DomainEnvelope => timestamp(&shallow).and_then(|at| {
                        domain_event::decode(t, shallow.data.map(RawValue::get))
                            .map(|event| Event::Domain(event, at))
                    }),
                    Payload::Any => Ok(Event::Pass(handler)),
                    Payload::TransactionEvent => Err(Failure::schema(format!(
                        "`{t}` is routed to the {} handler, which takes transaction events (event_type, transaction), not an eventId envelope",
                        handler.kind
                    ))),
                },
            },
        };
        return Decoded {
            message_id: header_id.unwrap_or_else(|| message_id::from_event_id(event_id)),
            event_type: shallow.kind.as_deref().map(|t| t.replace('\0', "\u{FFFD}")),
            event,
        };
    }

    // Transaction event: `event_type` + `transaction` + `timestamp`.
    let Some(event_type) = shallow.event_type.as_deref() else {
        return Decoded {
            message_id: header_id.unwrap_or_else(position_id),
            event_type: shallow.kind.as_deref().map(|t| t.replace('\0', "\u{FFFD}")),
            event: Err(Failure::schema(
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
    let event = match routes.handler(&envelope.topic, event_type) {
        None => Err(no_route(event_type, &envelope.topic)),
        Some(handler) => match handler.kind.spec().payload {
            Payload::TransactionEvent => {
                decode_transaction(event_type, &shallow).map(Event::Transaction)
            }
            Payload::Any => Ok(Event::Pass(handler)),
            Payload::DomainEnvelope => Err(Failure::schema(format!(
                "`{event_type}` is routed to the {} handler, which takes domain envelopes (eventId, type, timestamp, data)",
                handler.kind
            ))),
        },
    };
    Decoded {
        message_id,
        event_type: Some(event_type.replace('\0', "\u{FFFD}")),
        event,
    }
}

fn no_route(event_type: &str, topic: &str) -> Failure {
    // The type is quoted clipped: it can be as long as the payload, which is
    // kept whole anyway.
    Failure::unknown_event_type(format!(
        "unknown event type `{}`: no route sends it to a handler on topic `{topic}`",
        crate::text::clip(event_type).replace('\0', "\u{FFFD}")
    ))
}

fn timestamp(shallow: &Shallow<'_>) -> Result<chrono::DateTime<chrono::Utc>, Failure> {
    let timestamp = shallow
        .timestamp
        .as_deref()
        .ok_or_else(|| Failure::schema("missing field `timestamp`"))?;
    chrono::DateTime::parse_from_rfc3339(timestamp)
        .map(|t| t.with_timezone(&chrono::Utc))
        .map_err(|e| {
            Failure::schema(format!(
                "field `timestamp`: `{timestamp}` is not RFC 3339: {e}"
            ))
        })
}

fn decode_transaction(
    event_type: &str,
    shallow: &Shallow<'_>,
) -> Result<TransactionEvent, Failure> {
    let action = Action::from_event_type(event_type).ok_or_else(|| {
        Failure::unknown_event_type(format!(
            "unknown event type `{event_type}` (expected one of {})",
            crate::handler_kind::TRANSACTION_EVENT_TYPES.join(", ")
        ))
    })?;
    let raw = shallow
        .transaction
        .ok_or_else(|| Failure::schema("missing field `transaction`"))?;
    let transaction: RawTransaction = serde_json::from_str(raw.get())
        .map_err(|e| Failure::schema(format!("field `transaction`: {e}")))?;
    TransactionEvent::new(action, transaction, timestamp(shallow)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn routes() -> Routes {
        Routes::new(
            &crate::config::Settings::from_overrides(&[])
                .expect("defaults")
                .routes,
        )
    }

    fn decode(envelope: &Envelope) -> Decoded {
        super::decode(envelope, &routes(), None)
    }

    fn envelope(payload: &[u8]) -> Envelope {
        Envelope {
            topic: Arc::from("transactions"),
            partition: 0,
            offset: 42,
            key: None,
            payload: Some(payload.to_vec()),
            headers: Vec::new(),
            unreadable_headers: false,
            timestamp_ms: None,
            received_at: chrono::Utc::now(),
        }
    }

    const CREATED: &str = r#"{"event_type":"transaction.created","transaction":{"id":"tx-1","user_id":"u1","transaction_type":"card","product":"Card","status":"completed","currency":"USD","amount":100.50,"created_at":"2024-01-01T12:00:00Z","metadata":{"merchant_name":"Starbucks","card_last_four":"1234"}},"timestamp":"2024-01-01T12:00:00Z","source":"test"}"#;

    #[test]
    fn seed_003_event_decodes_with_a_stable_id() {
        let d = decode(&envelope(CREATED.as_bytes()));
        let Ok(Event::Transaction(e)) = &d.event else {
            panic!("expected a transaction event, got {:?}", d.event)
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
            d.event.as_ref().map_err(|f| f.kind).err(),
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
        let f = d.event.expect_err("must fail");
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
            let Ok(Event::Transaction(e)) = d.event else {
                panic!("{text}: {:?}", d.event)
            };
            let amount = e.transaction.map(|t| t.amount.to_string());
            assert_eq!(amount.as_deref(), Some(exact));
        }
        for text in ["1e-400", "1e308", "0.123456789", r#""12.50""#] {
            let payload = CREATED.replace("100.50", text);
            let f = decode(&envelope(payload.as_bytes())).event.expect_err(text);
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
            .event
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
                d.event,
                Ok(Event::Domain(DomainEvent::UserCreated { .. }, _))
            ),
            "{:?}",
            d.event
        );
        assert_eq!(
            d.message_id.to_string(),
            "550e8400-e29b-41d4-a716-446655440001"
        );
        assert_eq!(d.event_type.as_deref(), Some("UserCreated"));
        let signed_id = Uuid::parse_str("550e8400-e29b-41d4-a716-446655440009").expect("uuid");
        let replayed = envelope(CREATED.as_bytes());
        assert_eq!(
            super::decode(&replayed, &routes(), Some(signed_id)).message_id,
            signed_id
        );
    }

    #[test]
    fn tombstone_is_undecodable() {
        let mut e = envelope(b"");
        e.payload = None;
        assert_eq!(
            decode(&e).event.map_err(|f| f.kind).err(),
            Some("undecodable")
        );
    }
}
