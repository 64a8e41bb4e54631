//! The owned copy of a Kafka record that travels through the actors.
//!
//! A `BorrowedMessage` points into librdkafka's memory and cannot cross to
//! another actor; `Envelope::from_borrowed` copies what custodian needs, once,
//! at the partition actor. The topic name is shared (`Arc<str>`) rather than
//! copied per message.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use rdkafka::message::{BorrowedMessage, Headers as _, Message};

/// Header names and values, in record order.
pub type Headers = Vec<(String, Option<Vec<u8>>)>;

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
    pub headers: Headers,
    /// A header name was not UTF-8 (librdkafka's binding cannot read it):
    /// the record is dead-lettered as undecodable, its payload intact.
    pub unreadable_headers: bool,
    /// Kafka's record timestamp, milliseconds since the epoch.
    pub timestamp_ms: Option<i64>,
    /// When this partition actor read the record.
    pub received_at: DateTime<Utc>,
}

impl Envelope {
    /// Copies a borrowed record. `topic` is the partition actor's shared name.
    pub fn from_borrowed(message: &BorrowedMessage<'_>, topic: &Arc<str>) -> Self {
        // rdkafka's header iterator panics on a name that is not UTF-8;
        // any producer can send one, so contain it here.
        let read =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match message.headers() {
                Some(headers) => headers
                    .iter()
                    .map(|h| (h.key.to_string(), h.value.map(<[u8]>::to_vec)))
                    .collect(),
                None => Vec::new(),
            }));
        let (headers, unreadable_headers) = match read {
            Ok(headers) => (headers, false),
            Err(_) => (Vec::new(), true),
        };
        Envelope {
            topic: Arc::clone(topic),
            partition: message.partition(),
            offset: message.offset(),
            key: message.key().map(<[u8]>::to_vec),
            payload: message.payload().map(<[u8]>::to_vec),
            headers,
            unreadable_headers,
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

    /// The record timestamp, when it is one PostgreSQL can store (years 1
    /// to 9999; producers can set any value).
    pub fn kafka_timestamp(&self) -> Option<DateTime<Utc>> {
        use chrono::Datelike;
        self.timestamp_ms
            .and_then(DateTime::from_timestamp_millis)
            .filter(|t| (1..=9999).contains(&t.year()))
    }
}
