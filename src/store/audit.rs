//! The audit trail's entries: what a batch of settled messages becomes, and
//! the operator actions on dead letters. Entries go to `audit_log` (see
//! `audit_writer` for the COPY); `message_audit` is the view that shows each
//! step as a row.
//!
//! Lifecycle per outcome (as `message_audit` shows it):
//! - processed:     MESSAGE_RECEIVED, MESSAGE_PROCESSED
//! - duplicate:     MESSAGE_RECEIVED, MESSAGE_DUPLICATE (the id was already
//!   applied and audited MESSAGE_PROCESSED; an id applied by a delivery that
//!   crashed before its audit is audited MESSAGE_PROCESSED now)
//! - redelivered:   MESSAGE_RECEIVED, MESSAGE_DUPLICATE (a record read again
//!   after a crash whose outcome at its position, parked in the DLQ or the
//!   retry schedule, was already durable: see `store::redelivery`)
//! - dead-lettered: MESSAGE_RECEIVED, MESSAGE_FAILED (one per attempt), MESSAGE_DLQ
//! - retried, then processed: MESSAGE_RECEIVED, MESSAGE_FAILED (one per failed
//!   attempt), MESSAGE_PROCESSED (with the attempt that succeeded)
//! - deferred (`retry = "deferred"`): MESSAGE_RECEIVED, MESSAGE_FAILED,
//!   MESSAGE_RETRY_SCHEDULED (or only MESSAGE_RETRY_SCHEDULED for a message
//!   waiting behind its key), then the schedule's own MESSAGE_FAILED rows and
//!   MESSAGE_PROCESSED or MESSAGE_DLQ (see `schedule`)
//!
//! MESSAGE_RECEIVED is not an entry of its own: the receipt (when it was
//! read, the original record) rides on the first entry of each delivery.
//! Operators add MESSAGE_REPLAYED and MESSAGE_DISCARDED, with who and why in
//! `detail` (see `outcome::chained::write_operator_event`).

use std::borrow::Cow;
use std::collections::HashSet;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::kafka::envelope::headers_json;
use crate::pipeline::{Outcome, Settled};
use crate::store::chain::Fields;
use crate::store::schema::audit_log;

pub const RECEIVED: &str = "MESSAGE_RECEIVED";
pub const PROCESSED: &str = "MESSAGE_PROCESSED";
pub const FAILED: &str = "MESSAGE_FAILED";
pub const DLQ: &str = "MESSAGE_DLQ";
pub const DUPLICATE: &str = "MESSAGE_DUPLICATE";
pub const REPLAYED: &str = "MESSAGE_REPLAYED";
pub const DISCARDED: &str = "MESSAGE_DISCARDED";
/// Parked in the retry schedule (a deferred route): not finished, not lost.
pub const RETRY_SCHEDULED: &str = "MESSAGE_RETRY_SCHEDULED";

/// One entry of `audit_log`.
#[derive(Debug)]
pub struct AuditEntry<'a> {
    pub message_id: Uuid,
    pub status: &'static str,
    pub topic: &'a str,
    pub kafka_partition: i32,
    pub kafka_offset: i64,
    pub message_key: Option<Cow<'a, str>>,
    pub event_type: Option<&'a str>,
    pub attempt: i32,
    pub error: Option<String>,
    pub consumer_group: &'a str,
    pub occurred_at: DateTime<Utc>,
    /// Who and why, for operator actions.
    pub detail: Option<serde_json::Value>,
    /// On the first entry of a delivery: its receipt.
    pub receipt: Option<Receipt<'a>>,
    /// Blinds the personal fields in the chain (encoding version 2):
    /// [`chain::blinding`](crate::store::chain::blinding).
    pub blinding: [u8; crate::store::chain::BLINDING_LEN],
}

impl AuditEntry<'_> {
    /// What the entry's hash covers, as entry `seq` of `chain`.
    pub fn fields<'s>(&'s self, chain: &'s str, seq: i64) -> Fields<'s> {
        let receipt = self.receipt.as_ref();
        Fields {
            chain,
            seq,
            message_id: self.message_id,
            status: self.status,
            topic: self.topic,
            kafka_partition: self.kafka_partition,
            kafka_offset: self.kafka_offset,
            message_key: self.message_key.as_deref(),
            event_type: self.event_type,
            attempt: self.attempt,
            error: self.error.as_deref(),
            consumer_group: self.consumer_group,
            occurred_at: self.occurred_at,
            detail: self.detail.as_ref(),
            received_at: receipt.map(|r| r.received_at),
            received_detail: receipt.and_then(|r| r.detail.as_ref()),
            key_bytes: receipt.and_then(|r| r.key),
            headers: receipt.and_then(|r| r.headers.as_ref()),
            kafka_timestamp: receipt.and_then(|r| r.kafka_timestamp),
            payload_sha256: receipt.map(|r| &r.payload_sha256[..]),
            blinding: Some(&self.blinding),
            erased_digest: None,
        }
    }
}

/// A delivery's receipt: when it was read, and the record as it came.
#[derive(Debug)]
pub struct Receipt<'a> {
    pub received_at: DateTime<Utc>,
    /// Steering headers the record carried without custodian's signature
    /// (ignored, but on the record).
    pub detail: Option<serde_json::Value>,
    pub key: Option<&'a [u8]>,
    pub payload: Option<&'a [u8]>,
    pub headers: Option<serde_json::Value>,
    pub kafka_timestamp: Option<DateTime<Utc>>,
    pub payload_sha256: &'a [u8; 32],
}

/// One audit row as read back: from the `message_audit` view (for
/// `GET /messages/{id}` and tests) or from `audit_log` by the explorer
/// (`GET /messages`). The view's columns are `audit_log`'s first fourteen,
/// so their SQL types are read from `audit_log`'s schema: the view has no
/// `table!` of its own (diesel would let one be written to).
#[derive(Debug, Queryable, Selectable, QueryableByName, serde::Serialize, utoipa::ToSchema)]
#[diesel(table_name = audit_log)]
pub struct AuditRow {
    pub id: i64,
    pub message_id: Uuid,
    pub status: String,
    pub topic: String,
    pub kafka_partition: i32,
    pub kafka_offset: i64,
    pub message_key: Option<String>,
    pub event_type: Option<String>,
    pub attempt: i32,
    pub error: Option<String>,
    pub consumer_group: String,
    pub occurred_at: DateTime<Utc>,
    pub recorded_at: DateTime<Utc>,
    /// Who and why, for operator actions.
    pub detail: Option<serde_json::Value>,
}

/// PostgreSQL text cannot hold NUL; a key or error that has one keeps the
/// rest (the exact bytes are in `message_payloads` and the DLQ entry).
pub(crate) fn no_nul(text: Cow<'_, str>) -> Cow<'_, str> {
    if text.contains('\0') {
        Cow::Owned(text.replace('\0', "\u{FFFD}"))
    } else {
        text
    }
}

/// The entries of a batch, in order. `processed` holds the ids that
/// already have a MESSAGE_PROCESSED entry; it grows with this batch's.
pub fn entries<'a>(
    batch: &'a [Settled],
    group: &'a str,
    processed: &mut HashSet<Uuid>,
) -> Vec<AuditEntry<'a>> {
    let mut entries = Vec::with_capacity(batch.len());
    for s in batch {
        let e = &s.envelope;
        // With traces on, every entry names its record's trace.
        let traced = s
            .trace
            .trace_id(s.outcome == Outcome::DeadLettered)
            .map(|id| serde_json::json!({ "trace_id": id }));
        let key = e.key_text().map(no_nul);
        // A retry record's entries go under its original position, where
        // reconciliation looks for the message's outcome.
        let (topic, partition, offset) = s.position();
        let entry =
            |status: &'static str, attempt: i32, error: Option<String>, at: DateTime<Utc>| {
                AuditEntry {
                    message_id: s.message_id,
                    status,
                    topic,
                    kafka_partition: partition,
                    kafka_offset: offset,
                    message_key: key.clone(),
                    event_type: s.event_type.as_deref(),
                    attempt,
                    error: error.map(|e| no_nul(Cow::Owned(e)).into_owned()),
                    consumer_group: group,
                    occurred_at: at,
                    detail: traced.clone(),
                    receipt: None,
                    blinding: crate::store::chain::blinding(),
                }
            };
        let first = entries.len();
        // A redelivery's attempts repeat what its first delivery recorded.
        let failures = match s.outcome {
            Outcome::Redelivered => &[][..],
            _ => &s.failures[..],
        };
        for failed in failures {
            let error = failed.failure.to_string();
            entries.push(entry(FAILED, failed.attempt as i32, Some(error), failed.at));
        }
        // A retry record's attempts continue the ones made before it.
        let before = s.retry.as_ref().map_or(0, |o| o.attempt as i32);
        let next_attempt = before + failures.len() as i32 + 1;
        match s.outcome {
            Outcome::Processed => {
                processed.insert(s.message_id);
                entries.push(entry(PROCESSED, next_attempt, None, s.at));
            }
            Outcome::AlreadyApplied => {
                let status = if processed.insert(s.message_id) {
                    PROCESSED
                } else {
                    DUPLICATE
                };
                entries.push(entry(status, next_attempt, None, s.at));
            }
            Outcome::Redelivered => {
                // Flagged: reconcile never takes it for the offset's outcome.
                let mut duplicate = entry(DUPLICATE, next_attempt, None, s.at);
                let mut detail = serde_json::json!({ "redelivery": true });
                if let Some(Some(trace_id)) = traced.as_ref().map(|t| t.get("trace_id")) {
                    detail["trace_id"] = trace_id.clone();
                }
                duplicate.detail = Some(detail);
                entries.push(duplicate);
            }
            Outcome::RetryScheduled => {
                let last = s.last_failure();
                entries.push(entry(
                    RETRY_SCHEDULED,
                    next_attempt,
                    last.map(|f| f.failure.to_string()),
                    s.at,
                ));
            }
            Outcome::DeadLettered => {
                let last = s.last_failure();
                entries.push(entry(
                    DLQ,
                    last.map_or(1, |f| f.attempt as i32),
                    last.map(|f| f.failure.to_string()),
                    s.at,
                ));
            }
        }
        entries[first].receipt = Some(Receipt {
            received_at: e.received_at,
            detail: (!s.steering.untrusted.is_empty())
                .then(|| serde_json::json!({ "untrusted_headers": s.steering.untrusted })),
            key: e.key.as_deref(),
            payload: e.payload.as_deref(),
            headers: (!e.headers.is_empty()).then(|| headers_json(&e.headers)),
            kafka_timestamp: e.kafka_timestamp(),
            payload_sha256: &s.payload_sha256,
        });
    }
    entries
}

/// A message's lifecycle, in the order things happened (ties in insert
/// order).
pub async fn lifecycle(
    conn: &mut AsyncPgConnection,
    id: Uuid,
) -> Result<Vec<AuditRow>, diesel::result::Error> {
    // A receipt and its delivery's first entry share an id; the receipt
    // comes first.
    diesel::sql_query(
        "SELECT id, message_id, status, topic, kafka_partition, kafka_offset, message_key, \
         event_type, attempt, error, consumer_group, occurred_at, recorded_at, detail \
         FROM message_audit WHERE message_id = $1 \
         ORDER BY occurred_at, id, status <> $2",
    )
    .bind::<diesel::sql_types::Uuid, _>(id)
    .bind::<diesel::sql_types::Text, _>(RECEIVED)
    .load(conn)
    .await
}
