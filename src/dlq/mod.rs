//! The Redis dead-letter queue.
//!
//! Each parked message is one JSON entry, appended to the list `dlq:<topic>`
//! (so `LLEN` and `LRANGE` work as the seeds describe) and stored under its
//! message id in the hash `dlq:messages` (lookup by id). Both writes happen in
//! one Lua script, and only if the id is not parked already, so a redelivered
//! failure does not park the same message twice. The push is acknowledged by
//! Redis before the message's offset may be committed; run Redis with
//! `appendonly yes` (and `appendfsync always` for no loss window on a Redis
//! crash).

use base64::Engine;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::pipeline::{Outcome, Settled};
use crate::store::audit::headers_json;

/// The hash of every parked entry, by message id.
pub const BY_ID: &str = "dlq:messages";

pub fn list_key(topic: &str) -> String {
    format!("dlq:{topic}")
}

/// Everything needed to understand and replay a failed message.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DlqEntry {
    pub message_id: Uuid,
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    /// `utf8` or `base64`: how `key` and `payload` are written.
    pub key_encoding: Option<String>,
    pub key: Option<String>,
    pub payload_encoding: String,
    /// The original payload, byte-exact once decoded per `payload_encoding`.
    pub payload: Option<String>,
    pub headers: serde_json::Value,
    pub kafka_timestamp: Option<DateTime<Utc>>,
    pub consumer_group: String,
    pub event_type: Option<String>,
    pub attempts: u32,
    pub error_kind: String,
    pub error: String,
    pub stage: String,
    pub first_failed_at: DateTime<Utc>,
    pub last_failed_at: DateTime<Utc>,
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

impl DlqEntry {
    /// The entry for a dead-lettered message; `None` for other outcomes.
    pub fn from_settled(s: &Settled, group: &str) -> Option<Self> {
        let Outcome::DeadLettered { failure, attempts } = &s.outcome else {
            return None;
        };
        let e = &s.envelope;
        let key = e.key.as_deref().map(encode);
        let payload = e.payload.as_deref().map(encode);
        Some(DlqEntry {
            message_id: s.message_id,
            topic: e.topic.to_string(),
            partition: e.partition,
            offset: e.offset,
            key_encoding: key.as_ref().map(|(_, enc)| (*enc).to_owned()),
            key: key.map(|(k, _)| k),
            payload_encoding: payload.as_ref().map_or("utf8", |(_, enc)| enc).to_owned(),
            payload: payload.map(|(p, _)| p),
            headers: headers_json(&e.headers),
            kafka_timestamp: e.kafka_timestamp(),
            consumer_group: group.to_owned(),
            event_type: s.event_type.clone(),
            attempts: *attempts,
            error_kind: failure.kind.to_owned(),
            error: failure.message.clone(),
            stage: failure.stage.as_str().to_owned(),
            first_failed_at: s.failed_at.unwrap_or(s.at),
            last_failed_at: s.at,
        })
    }

    /// The original payload bytes.
    pub fn payload_bytes(&self) -> Result<Option<Vec<u8>>, base64::DecodeError> {
        decode(self.payload.as_deref(), &self.payload_encoding)
    }

    pub fn key_bytes(&self) -> Result<Option<Vec<u8>>, base64::DecodeError> {
        decode(
            self.key.as_deref(),
            self.key_encoding.as_deref().unwrap_or("utf8"),
        )
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

/// KEYS[1] = the topic's list, KEYS[2] = the by-id hash;
/// ARGV = id1, json1, id2, json2, …  Returns how many were newly parked.
const PUSH_SCRIPT: &str = r"
local pushed = 0
for i = 1, #ARGV, 2 do
  if redis.call('HSETNX', KEYS[2], ARGV[i], ARGV[i + 1]) == 1 then
    redis.call('RPUSH', KEYS[1], ARGV[i + 1])
    pushed = pushed + 1
  end
end
return pushed
";

/// Parks entries of one topic; returns how many were new. An `Err` means
/// Redis did not acknowledge, and nothing may be committed past them.
pub async fn push<C: redis::aio::ConnectionLike>(
    conn: &mut C,
    topic: &str,
    entries: &[DlqEntry],
) -> Result<usize, redis::RedisError> {
    let script = redis::Script::new(PUSH_SCRIPT);
    let mut invocation = script.key(list_key(topic));
    invocation.key(BY_ID);
    for entry in entries {
        let json = serde_json::to_string(entry).map_err(|e| {
            redis::RedisError::from((
                redis::ErrorKind::Client,
                "cannot serialise DLQ entry",
                e.to_string(),
            ))
        })?;
        invocation.arg(entry.message_id.to_string()).arg(json);
    }
    invocation.invoke_async(conn).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kafka::envelope::Envelope;
    use crate::pipeline::failure::Failure;
    use std::sync::Arc;

    #[test]
    fn non_utf8_payload_round_trips_through_base64() {
        let raw = vec![0xff, 0x00, 0x80, b'x'];
        let settled = Settled {
            envelope: Envelope {
                topic: Arc::from("t"),
                partition: 1,
                offset: 7,
                key: Some(b"k1".to_vec()),
                payload: Some(raw.clone()),
                headers: vec![("h".into(), Some(vec![0xfe]))],
                unreadable_headers: false,
                timestamp_ms: Some(1_700_000_000_000),
                received_at: Utc::now(),
            },
            message_id: Uuid::new_v4(),
            event_type: None,
            outcome: Outcome::DeadLettered {
                failure: Failure::undecodable("bad"),
                attempts: 1,
            },
            at: Utc::now(),
            failed_at: None,
        };
        let entry = DlqEntry::from_settled(&settled, "g").expect("dead letter");
        assert_eq!(entry.payload_encoding, "base64");
        assert_eq!(entry.payload_bytes().expect("decodes"), Some(raw));
        assert_eq!(entry.key.as_deref(), Some("k1"));
        assert_eq!(entry.headers[0]["encoding"], "base64");
        let json = serde_json::to_string(&entry).expect("serialises");
        let back: DlqEntry = serde_json::from_str(&json).expect("parses");
        assert_eq!(back, entry);
    }
}
