//! The Redis dead-letter queue: what an entry holds, where it is kept, and
//! the operations on it.
//!
//! Each parked message is one JSON entry, appended to the list
//! `<prefix>:<topic>` (with the default prefix, `LLEN dlq:<topic>` and
//! `LRANGE dlq:<topic> 0 -1` work as the seeds describe) and stored under its
//! message id in the hash `<prefix>:#messages` (lookup by id). `#` cannot
//! occur in a Kafka topic name, so the index never collides with a topic's
//! list. The push is acknowledged by Redis before the message's offset may be
//! committed; run Redis with `appendonly yes` and `appendfsync always` for
//! no loss window on a Redis crash.
//!
//! - [`store`]: the Redis commands (atomic Lua scripts).
//! - `park`: the one way a failed message is parked, by the dead-letter
//!   actor and the retry worker alike (a redelivery recognised, not parked
//!   twice).
//! - `operator`: the operator's handle ([`replay::DeadLetters`]) the HTTP
//!   API and the `custodian dlq` command use: looking (`list.rs`),
//!   discarding (`discard.rs`) and replaying ([`replay`]).

mod discard;
mod job_runs;
pub mod jobs;
pub(crate) mod kinds;
mod list;
pub(crate) mod lock;
pub(crate) mod operator;
pub(crate) mod park;
pub mod replay;
pub mod store;

use base64::Engine;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::failure::Retry;
use crate::kafka::envelope::headers_json;
use crate::kafka::envelope::Headers;
use crate::pipeline::Settled;
use crate::telemetry::dlq::MessageDeadLettered;
use crate::text::hex;

pub use crate::pipeline::steering::{REPLAYED_FROM_HEADER, REPLAY_COUNT_HEADER};
/// Informational headers a replayed record carries (who, why, when); the
/// steering ones (id, count, from) are signed, see `pipeline::steering`.
pub const REPLAYED_BY_HEADER: &str = "custodian-replayed-by";
pub const REPLAY_REASON_HEADER: &str = "custodian-replay-reason";
pub const REPLAYED_AT_HEADER: &str = "custodian-replayed-at";

/// The Redis key names, under one configurable prefix.
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    pub fn new(prefix: &str) -> Self {
        Keys {
            prefix: prefix.to_owned(),
        }
    }

    /// The list of a topic's entries, oldest first.
    pub fn list(&self, topic: &str) -> String {
        format!("{}:{topic}", self.prefix)
    }

    /// What precedes the topic in a list key.
    pub fn list_prefix(&self) -> String {
        format!("{}:", self.prefix)
    }

    /// The hash of every entry by message id.
    pub fn index(&self) -> String {
        format!("{}:#messages", self.prefix)
    }

    /// How many extra entries (same id, another record) each id has.
    pub fn extras(&self) -> String {
        format!("{}:#extras", self.prefix)
    }

    /// The set of topics that have had entries.
    pub fn topics(&self) -> String {
        format!("{}:#topics", self.prefix)
    }

    /// The time index (ids scored by last failure) a filter on `topic` and
    /// `error_kind` reads.
    pub fn by_time(&self, topic: Option<&str>, error_kind: Option<&str>) -> String {
        let p = &self.prefix;
        match (topic, error_kind) {
            (None, None) => format!("{p}:#by-time"),
            (Some(t), None) => format!("{p}:#by-time:t:{t}"),
            (None, Some(k)) => format!("{p}:#by-time:k:{k}"),
            (Some(t), Some(k)) => format!("{p}:#by-time:tk:{t}:{k}"),
        }
    }

    /// Every time index an entry of `topic` and `error_kind` is in.
    pub fn time_indexes(&self, topic: &str, error_kind: &str) -> [String; 4] {
        [
            self.by_time(None, None),
            self.by_time(Some(topic), None),
            self.by_time(None, Some(error_kind)),
            self.by_time(Some(topic), Some(error_kind)),
        ]
    }

    /// Which version of the time indexes has been built.
    pub fn index_version(&self) -> String {
        format!("{}:#by-time-version", self.prefix)
    }

    /// The lock an operator action holds on one entry.
    pub fn lock(&self, id: Uuid) -> String {
        format!("{}:#lock:{id}", self.prefix)
    }
}

/// Everything needed to understand and replay a failed message.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct DlqEntry {
    pub message_id: Uuid,
    /// Where the message was read (for one that went through a retry
    /// topic, its original position, so a replay goes back there).
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    /// `utf8` or `base64`: how `key` is written.
    pub key_encoding: Option<String>,
    pub key: Option<String>,
    /// `utf8` or `base64`: how `payload` is written.
    pub payload_encoding: String,
    /// The original payload, byte-exact once decoded per `payload_encoding`.
    pub payload: Option<String>,
    /// SHA-256 of the payload, hex (absent on entries parked by older
    /// versions).
    #[serde(default)]
    pub payload_sha256: Option<String>,
    /// SHA-256 of the record as its producer made it (key, payload and the
    /// headers not set by custodian), hex: a replayed copy failing again has
    /// the same one as its original, and replaces it rather than adding an
    /// entry.
    #[serde(default)]
    pub record_sha256: Option<String>,
    /// `[{"key", "value", "encoding"?}]`, in record order.
    #[schema(value_type = Vec<Object>)]
    pub headers: serde_json::Value,
    /// A header name was not UTF-8: it is written lossily (U+FFFD) in
    /// `headers`, so a replay cannot restore that name exactly.
    #[serde(default)]
    pub headers_unreadable: bool,
    pub kafka_timestamp: Option<DateTime<Utc>>,
    pub consumer_group: String,
    pub event_type: Option<String>,
    /// Attempts made before it was parked.
    pub attempts: u32,
    /// `permanent` or `transient` (transient: attempts ran out).
    #[serde(default)]
    pub error_class: String,
    pub error_kind: String,
    pub error: String,
    /// `decode`, `enrich` or `process`.
    pub stage: String,
    pub first_failed_at: DateTime<Utc>,
    pub last_failed_at: DateTime<Utc>,
    /// How often this message had been replayed before this failure.
    #[serde(default)]
    pub replay_count: u32,
    /// For a replayed copy: the `topic/partition/offset` it was replayed
    /// from (its signed `custodian-replayed-from` header).
    #[serde(default)]
    pub replayed_from: Option<String>,
    /// With traces on: the W3C `traceparent` of its dead-letter span, which
    /// a replay continues (the replayed record's `custodian-traceparent`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
}

impl DlqEntry {
    /// `topic/partition/offset`, as the `custodian-replayed-from` header
    /// writes it.
    pub fn position(&self) -> String {
        format!("{}/{}/{}", self.topic, self.partition, self.offset)
    }

    /// The log line of this entry once it is parked.
    pub fn dead_lettered(&self) -> MessageDeadLettered<'_> {
        MessageDeadLettered {
            message_id: self.message_id,
            event_type: self.event_type.as_deref(),
            key: self.key.as_deref(),
            topic: &self.topic,
            partition: self.partition,
            offset: self.offset,
            attempts: self.attempts,
            error_kind: &self.error_kind,
            stage: &self.stage,
        }
    }
}

/// Text stays text; anything else is base64.
fn encode(bytes: &[u8]) -> (String, &'static str) {
    match std::str::from_utf8(bytes) {
        Ok(text) => (text.to_owned(), "utf8"),
        Err(_) => (
            base64::engine::general_purpose::STANDARD.encode(bytes),
            "base64",
        ),
    }
}

fn decode(value: Option<&str>, encoding: &str) -> Result<Option<Vec<u8>>, base64::DecodeError> {
    match (value, encoding) {
        (None, _) => Ok(None),
        (Some(v), "base64") => base64::engine::general_purpose::STANDARD
            .decode(v)
            .map(Some),
        (Some(v), _) => Ok(Some(v.as_bytes().to_vec())),
    }
}

/// See [`DlqEntry::record_sha256`]: every part length-prefixed, absent
/// parts marked, custodian's own headers left out.
fn record_digest(e: &crate::kafka::envelope::Envelope) -> String {
    use sha2::{Digest, Sha256};
    fn part(hash: &mut Sha256, bytes: Option<&[u8]>) {
        match bytes {
            None => hash.update([0]),
            Some(b) => {
                hash.update([1]);
                hash.update((b.len() as u64).to_be_bytes());
                hash.update(b);
            }
        }
    }
    let mut hash = Sha256::new();
    part(&mut hash, e.key.as_deref());
    part(&mut hash, e.payload.as_deref());
    for (name, value) in e
        .headers
        .iter()
        .filter(|(n, _)| !n.starts_with("custodian-"))
    {
        part(&mut hash, Some(name.as_bytes()));
        part(&mut hash, value.as_deref());
    }
    hex(&hash.finalize())
}

impl DlqEntry {
    /// The entry for a dead-lettered message; `None` if it has no failure.
    pub fn from_settled(s: &Settled, group: &str) -> Option<Self> {
        let first = s.failures.first()?;
        let last = s.failures.last()?;
        let e = &s.envelope;
        let key = e.key.as_deref().map(encode);
        let payload = e.payload.as_deref().map(encode);
        // A retry record is parked under its original position, so a
        // replay goes back to the original topic.
        let (topic, partition, offset) = s.position();
        Some(DlqEntry {
            message_id: s.message_id,
            topic: topic.to_owned(),
            partition,
            offset,
            key_encoding: key.as_ref().map(|(_, enc)| (*enc).to_owned()),
            key: key.map(|(k, _)| k),
            payload_encoding: payload.as_ref().map_or("utf8", |(_, enc)| enc).to_owned(),
            payload: payload.map(|(p, _)| p),
            payload_sha256: Some(hex(&s.payload_sha256)),
            record_sha256: Some(record_digest(e)),
            headers: match &s.retry {
                // The retry topic's own headers are not the record's.
                Some(_) => headers_json(&crate::pipeline::retry_headers::without_retry_headers(
                    &e.headers,
                )),
                None => headers_json(&e.headers),
            },
            headers_unreadable: e.unreadable_headers,
            kafka_timestamp: e.kafka_timestamp(),
            consumer_group: group.to_owned(),
            event_type: s.event_type.clone(),
            attempts: last.attempt,
            error_class: match last.failure.retry {
                Retry::Permanent => "permanent",
                Retry::Transient => "transient",
            }
            .to_owned(),
            error_kind: last.failure.kind.to_owned(),
            error: last.failure.message.clone(),
            stage: last.failure.stage.as_str().to_owned(),
            first_failed_at: first.at,
            last_failed_at: last.at,
            replay_count: s.steering.replay_count,
            replayed_from: s.steering.replayed_from.clone(),
            traceparent: None,
        })
    }

    /// The original payload bytes.
    pub fn payload_bytes(&self) -> Result<Option<Vec<u8>>, base64::DecodeError> {
        decode(self.payload.as_deref(), &self.payload_encoding)
    }

    /// The original key bytes.
    pub fn key_bytes(&self) -> Result<Option<Vec<u8>>, base64::DecodeError> {
        decode(
            self.key.as_deref(),
            self.key_encoding.as_deref().unwrap_or("utf8"),
        )
    }

    /// The original headers, bytes restored, in record order.
    pub fn header_bytes(&self) -> Result<Headers, String> {
        headers_from_json(&self.headers)
    }
}

/// Headers written by [`headers_json`], bytes restored, in record order.
pub fn headers_from_json(headers: &serde_json::Value) -> Result<Headers, String> {
    let Some(headers) = headers.as_array() else {
        return Err("headers is not an array".into());
    };
    headers
        .iter()
        .map(|h| {
            let key = h["key"]
                .as_str()
                .ok_or_else(|| "a header has no key".to_string())?;
            let encoding = h["encoding"].as_str().unwrap_or("utf8");
            let value = decode(h["value"].as_str(), encoding).map_err(|e| e.to_string())?;
            Ok((key.to_owned(), value))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::failure::AttemptFailure;
    use crate::failure::Failure;
    use crate::kafka::envelope::Envelope;
    use crate::pipeline::{Message, Outcome};
    use std::sync::Arc;

    #[test]
    fn non_utf8_payload_key_and_headers_round_trip() {
        let raw = vec![0xff, 0x00, 0x80, b'x'];
        let settled = Settled {
            message: Message {
                envelope: Envelope {
                    topic: Arc::from("t"),
                    partition: 1,
                    offset: 7,
                    key: Some(vec![0xc3, 0x28]),
                    payload: Some(raw.clone()),
                    headers: vec![
                        ("h".into(), Some(vec![0xfe])),
                        ("n".into(), None),
                        ("t".into(), Some(b"text".to_vec())),
                        (REPLAY_COUNT_HEADER.into(), Some(b"2".to_vec())),
                    ],
                    unreadable_headers: false,
                    timestamp_ms: Some(1_700_000_000_000),
                    received_at: Utc::now(),
                },
                message_id: Uuid::new_v4(),
                event_type: None,
                payload_sha256: crate::pipeline::steering::payload_digest(Some(&raw)),
                steering: crate::pipeline::steering::Steering {
                    replay_count: 2,
                    ..Default::default()
                },
                retry: None,
                trace: Default::default(),
            },
            outcome: Outcome::DeadLettered,
            at: Utc::now(),
            failures: vec![AttemptFailure {
                attempt: 1,
                at: Utc::now(),
                failure: Failure::undecodable("bad"),
            }],
        };
        let entry = DlqEntry::from_settled(&settled, "g").expect("dead letter");
        assert_eq!(entry.payload_encoding, "base64");
        assert_eq!(entry.payload_bytes().expect("decodes"), Some(raw));
        assert_eq!(entry.key_encoding.as_deref(), Some("base64"));
        assert_eq!(entry.key_bytes().expect("decodes"), Some(vec![0xc3, 0x28]));
        assert_eq!(
            entry.header_bytes().expect("headers"),
            settled.envelope.headers
        );
        assert_eq!(entry.replay_count, 2);
        assert_eq!(entry.error_class, "permanent");
        let json = serde_json::to_string(&entry).expect("serialises");
        let back: DlqEntry = serde_json::from_str(&json).expect("parses");
        assert_eq!(back, entry);
    }
}
