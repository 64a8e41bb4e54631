//! The pipeline's pure steps, free of actors and I/O: recognise a record's
//! shape and route, derive its message id, check its signed headers, and
//! hand its body to its kind's decoder (`handlers::registry::decode`).
//! Actors call these; tests call them directly.

pub(crate) mod decode;
pub mod message_id;
pub(crate) mod retry_headers;
pub mod route_table;
pub mod steering;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::failure::{AttemptFailure, Failure};
use crate::formats::{Formats, Readable, Schemas};
use crate::handlers::registry::Task;
use crate::kafka::envelope::Envelope;
use retry_headers::Origin;
use route_table::Routes;
use steering::{HeaderKey, Steering};

/// A record as read and identified: what it is, whatever becomes of it.
/// An [`Item`] carries one to its processor, a [`Settled`] to the audit
/// trail; both read its fields through `Deref`.
#[derive(Debug)]
pub struct Message {
    pub envelope: Envelope,
    pub message_id: Uuid,
    pub event_type: Option<String>,
    /// SHA-256 of the payload: what an id was applied with, and what a
    /// later record claiming the same id is compared against.
    pub payload_sha256: [u8; 32],
    /// The record's steering headers, checked.
    pub steering: Steering,
    /// Read from a retry topic: where the message came from and how many
    /// attempts it has had (signed retry headers, see `retry_headers`).
    pub retry: Option<Origin>,
    /// Its trace (empty unless traces are on): the stages' spans hang on it.
    pub trace: crate::otel::record::RecordTrace,
}

impl Message {
    /// Where the audit trail records this message's outcome: its own
    /// position, or for a retry record its original one.
    pub fn position(&self) -> (&str, i32, i64) {
        match &self.retry {
            Some(o) => (o.topic.as_str(), o.partition, o.offset),
            None => (
                &self.envelope.topic,
                self.envelope.partition,
                self.envelope.offset,
            ),
        }
    }
}

/// A record after decoding and enrichment: what a processor receives.
#[derive(Debug)]
pub struct Item {
    pub message: Message,
    pub work: Result<Task, Failure>,
}

impl std::ops::Deref for Item {
    type Target = Message;

    fn deref(&self) -> &Message {
        &self.message
    }
}

/// What a record is read with: its routes, and its topic's payload format
/// with the schemas its batch names (see `formats`).
pub struct Reading<'a> {
    pub routes: &'a Routes,
    pub formats: &'a Formats,
    pub schemas: &'a Schemas,
}

/// Decodes and enriches one record, routed by `reading.routes`; its
/// steering headers count only if signed with `key`.
pub fn prepare(
    envelope: Envelope,
    reading: &Reading<'_>,
    key: &HeaderKey,
    now: DateTime<Utc>,
) -> Item {
    let payload_sha256 = steering::payload_digest(envelope.payload.as_deref());
    let steering = key.read(&envelope, &payload_sha256);
    let retry = Origin::read(&envelope, key, steering.message_id, &payload_sha256);
    // A retry record goes by its original topic's routes and format.
    let topic = match &retry {
        Some(origin) => std::sync::Arc::from(origin.topic.as_str()),
        None => std::sync::Arc::clone(&envelope.topic),
    };
    let decoded =
        match reading
            .formats
            .readable(&topic, envelope.payload.as_deref(), reading.schemas)
        {
            Readable::AsIs if retry.is_none() => {
                decode::decode(&envelope, reading.routes, steering.message_id, now)
            }
            Readable::AsIs => decode::decode(
                &Envelope {
                    topic,
                    ..envelope.clone()
                },
                reading.routes,
                steering.message_id,
                now,
            ),
            // Decoded from its schema: read as the JSON it stands for; the
            // record keeps its own bytes.
            Readable::Decoded { json, .. } => decode::decode(
                &Envelope {
                    topic,
                    payload: Some(json),
                    ..envelope.clone()
                },
                reading.routes,
                steering.message_id,
                now,
            ),
            Readable::Failed(failure) => decode::Decoded {
                message_id: steering.message_id.unwrap_or_else(|| {
                    message_id::for_position(&envelope.topic, envelope.partition, envelope.offset)
                }),
                event_type: None,
                work: Err(failure),
            },
        };
    let work = decoded.work;
    Item {
        message: Message {
            envelope,
            message_id: decoded.message_id,
            event_type: decoded.event_type,
            payload_sha256,
            steering,
            retry,
            trace: Default::default(),
        },
        work,
    }
}

/// How a message ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Applied now.
    Processed,
    /// Its id was already applied, with the same payload, by an earlier
    /// delivery. (Another payload under an applied id is not a duplicate:
    /// it is dead-lettered as `id_conflict`.) The auditor audits
    /// it MESSAGE_DUPLICATE if that delivery's MESSAGE_PROCESSED row exists,
    /// and MESSAGE_PROCESSED if not (that delivery crashed before its audit).
    AlreadyApplied,
    /// Parked in the dead-letter queue; the last failed attempt is why.
    DeadLettered,
    /// Parked in the retry schedule of a deferred route (after a transient
    /// failure, or behind an earlier message of its key): settled for the
    /// offset, finished later by the retry worker.
    RetryScheduled,
    /// Read again after a crash or a rebalance, though an earlier delivery
    /// of this record already made its outcome durable at this position
    /// (parked in the dead-letter queue or the retry schedule): nothing is
    /// done again, and it is audited MESSAGE_DUPLICATE, a redelivery.
    Redelivered,
}

/// A message whose outcome is decided, on its way to the audit trail.
#[derive(Debug)]
pub struct Settled {
    pub message: Message,
    pub outcome: Outcome,
    /// When the outcome was reached (processing done, or DLQ push acknowledged).
    pub at: DateTime<Utc>,
    /// Every failed attempt, in order (empty for the common first-try success).
    pub failures: Vec<AttemptFailure>,
}

impl std::ops::Deref for Settled {
    type Target = Message;

    fn deref(&self) -> &Message {
        &self.message
    }
}

impl Settled {
    /// The failure that decided a dead letter (the last attempt's).
    pub fn last_failure(&self) -> Option<&AttemptFailure> {
        self.failures.last()
    }
}
