//! The owned copy of a Kafka record that travels through the actors.
//!
//! A `BorrowedMessage` points into librdkafka's memory and cannot cross to
//! another actor; `Envelope::from_borrowed` copies what custodian needs, once,
//! at the partition actor. The topic name is shared (`Arc<str>`) rather than
//! copied per message.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use rdkafka::message::{BorrowedMessage, Headers, Message};

/// One Kafka record, owned.
#[derive(Debug, Clone)]
pub struct Envelope {
    pub topic: Arc<str>,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    /// `None` for a tombstone.
    pub payload: Option<Vec<u8>>,
    /// Header name and value, in record order.
    pub headers: Vec<(String, Option<Vec<u8>>)>,
    /// Kafka's record timestamp, milliseconds since the epoch.
    pub timestamp_ms: Option<i64>,
    /// When this partition actor read the record.
    pub received_at: DateTime<Utc>,
}

impl Envelope {
    /// Copies a borrowed record. `topic` is the partition actor's shared name.
    pub fn from_borrowed(message: &BorrowedMessage<'_>, topic: &Arc<str>) -> Self {
        let headers = match message.headers() {
            Some(headers) => headers
                .iter()
                .map(|h| (h.key.to_string(), h.value.map(<[u8]>::to_vec)))
                .collect(),
            None => Vec::new(),
        };
        Envelope {
            topic: Arc::clone(topic),
            partition: message.partition(),
            offset: message.offset(),
            key: message.key().map(<[u8]>::to_vec),
            payload: message.payload().map(<[u8]>::to_vec),
            headers,
            timestamp_ms: message.timestamp().to_millis(),
            received_at: Utc::now(),
        }
    }

    /// The value of the first header called `name`.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| v.as_deref())
    }

    /// The key as text (lossy where it is not UTF-8), for audit rows and
    /// logs; borrowed when it already is text.
    pub fn key_text(&self) -> Option<std::borrow::Cow<'_, str>> {
        self.key.as_deref().map(String::from_utf8_lossy)
    }

    pub fn kafka_timestamp(&self) -> Option<DateTime<Utc>> {
        self.timestamp_ms.and_then(DateTime::from_timestamp_millis)
    }
}
