//! From an outbox row to a Kafka record's headers, and what a refused send
//! means. The message id header is signed with `kafka.header_key`, as a
//! replay's is (see `pipeline::steering`), so custodian's consumer takes the
//! outbox event id as the message id and recognises a republished copy.

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::OwnedHeaders;

use crate::pipeline::message_id::MESSAGE_ID_HEADER;
use crate::pipeline::steering::{self, HeaderKey, Signed, SIGNATURE_HEADER};
use crate::relay::outbox::Pending;

/// The outbox row's event type.
pub const EVENT_TYPE_HEADER: &str = "custodian-event-type";
/// The outbox row's aggregate type (its aggregate id is the record key).
pub const AGGREGATE_TYPE_HEADER: &str = "custodian-aggregate-type";

/// The record headers for `row`, published with `payload` (its own, or
/// encoded): the row's own headers (steering names dropped: only the
/// relay's signed ones may steer), then the relay's, signed over `digest`
/// (of `payload`). `traceparent`, when given, is the record's (replacing
/// one in the row's headers).
pub fn headers(
    row: &Pending,
    digest: &[u8; 32],
    key: &HeaderKey,
    traceparent: Option<&str>,
) -> OwnedHeaders {
    let id = row.event_id.to_string();
    let signature = key.sign(&Signed {
        message_id: row.event_id,
        replayed_from: "",
        replay_count: 0,
        payload_sha256: digest,
    });
    let mut ours = vec![
        (MESSAGE_ID_HEADER, id.as_str()),
        (SIGNATURE_HEADER, signature.as_str()),
        (EVENT_TYPE_HEADER, row.event_type.as_str()),
        (AGGREGATE_TYPE_HEADER, row.aggregate_type.as_str()),
    ];
    if let Some(traceparent) = traceparent {
        ours.push(("traceparent", traceparent));
    }
    let theirs: Vec<(&str, Option<String>)> = row
        .headers
        .as_object()
        .into_iter()
        .flatten()
        .map(|(name, value)| {
            let text = match value {
                serde_json::Value::Null => None,
                serde_json::Value::String(s) => Some(s.clone()),
                other => Some(other.to_string()),
            };
            (name.as_str(), text)
        })
        .collect();
    steering::compose_headers(
        theirs
            .iter()
            .map(|(name, value)| (*name, value.as_deref().map(str::as_bytes))),
        &ours,
    )
}

/// Why a record was not sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendFailure {
    /// The event itself is at fault (too large, no such topic, not
    /// allowed): counted against it; its aggregate waits and retries.
    Refused(String),
    /// Kafka did not answer in time or is unreachable: nobody's fault; the
    /// relay waits and tries again, counting nothing against the event.
    Outage(String),
}

/// Classifies a send error where it is born.
pub fn classify(error: &KafkaError) -> SendFailure {
    use RDKafkaErrorCode as C;
    let refused = matches!(
        error.rdkafka_error_code(),
        Some(
            C::MessageSizeTooLarge
                | C::InvalidMessageSize
                | C::InvalidMessage
                | C::InvalidRecord
                | C::UnknownTopic
                | C::UnknownTopicOrPartition
                | C::UnknownPartition
                | C::InvalidTopic
                | C::TopicAuthorizationFailed
                | C::PolicyViolation
        )
    );
    if refused {
        SendFailure::Refused(error.to_string())
    } else {
        SendFailure::Outage(error.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kafka::envelope::Envelope;
    use rdkafka::message::Headers;
    use std::sync::Arc;
    use uuid::Uuid;

    fn row(headers: serde_json::Value) -> Pending {
        Pending {
            id: 7,
            event_id: Uuid::new_v4(),
            aggregate_type: "order".into(),
            aggregate_id: "o-1".into(),
            event_type: "OrderPlaced".into(),
            topic: "orders".into(),
            payload: Some(b"{}".to_vec()),
            headers,
            attempts: 0,
            traceparent: None,
        }
    }

    fn envelope(row: &Pending, headers: &OwnedHeaders) -> Envelope {
        Envelope {
            topic: Arc::from("orders"),
            partition: 0,
            offset: 0,
            key: Some(row.aggregate_id.as_bytes().to_vec()),
            payload: row.payload.clone(),
            headers: headers
                .iter()
                .map(|h| (h.key.to_owned(), h.value.map(<[u8]>::to_vec)))
                .collect(),
            unreadable_headers: false,
            timestamp_ms: None,
            received_at: chrono::Utc::now(),
        }
    }

    #[test]
    fn the_consumer_trusts_the_signed_event_id_and_nothing_the_row_smuggles() {
        let key = HeaderKey::new(b"0123456789abcdef0123456789abcdef");
        let forged = Uuid::new_v4().to_string();
        let row = row(serde_json::json!({
            "trace-id": "abc",
            "attempt": 2,
            MESSAGE_ID_HEADER: forged,
        }));
        let headers = headers(
            &row,
            &steering::payload_digest(row.payload.as_deref()),
            &key,
            None,
        );
        let e = envelope(&row, &headers);
        let steering = key.read(&e, &steering::payload_digest(e.payload.as_deref()));
        assert_eq!(steering.message_id, Some(row.event_id));
        assert!(steering.untrusted.is_empty());
        let named = |n: &str| e.headers.iter().filter(|(k, _)| k == n).count();
        assert_eq!(
            named(MESSAGE_ID_HEADER),
            1,
            "the row's own id header is dropped"
        );
        assert_eq!(named("trace-id"), 1);
        assert!(e
            .headers
            .iter()
            .any(|(k, v)| k == "attempt" && v.as_deref() == Some(b"2".as_slice())));
        // Another key (another deployment) does not trust it.
        let other = HeaderKey::new(b"another key, another deployment..");
        assert_eq!(
            other
                .read(&e, &steering::payload_digest(e.payload.as_deref()))
                .message_id,
            None
        );
    }

    #[test]
    fn refusals_and_outages_are_told_apart() {
        let too_large = KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge);
        assert!(matches!(classify(&too_large), SendFailure::Refused(_)));
        let timed_out = KafkaError::MessageProduction(RDKafkaErrorCode::MessageTimedOut);
        assert!(matches!(classify(&timed_out), SendFailure::Outage(_)));
        let down = KafkaError::MessageProduction(RDKafkaErrorCode::AllBrokersDown);
        assert!(matches!(classify(&down), SendFailure::Outage(_)));
    }
}
