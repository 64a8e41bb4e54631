//! Writing the audit trail: a batch of settled messages becomes their
//! lifecycle rows plus one payload row per message, in one transaction.
//!
//! Lifecycle per outcome:
//! - processed:     MESSAGE_RECEIVED, MESSAGE_PROCESSED
//! - duplicate:     MESSAGE_RECEIVED, MESSAGE_DUPLICATE (the id was already
//!   applied and audited MESSAGE_PROCESSED; an id applied by a delivery that
//!   crashed before its audit is audited MESSAGE_PROCESSED now)
//! - dead-lettered: MESSAGE_RECEIVED, MESSAGE_FAILED (one per attempt), MESSAGE_DLQ
//! - retried, then processed: MESSAGE_RECEIVED, MESSAGE_FAILED (one per failed
//!   attempt), MESSAGE_PROCESSED (with the attempt that succeeded)
//!
//! Operators add MESSAGE_REPLAYED and MESSAGE_DISCARDED, with who and why in
//! `detail` (see [`write_operator_event`]).

use std::borrow::Cow;
use std::collections::HashSet;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::pipeline::{Outcome, Settled};
use crate::store::schema::message_audit;

pub const RECEIVED: &str = "MESSAGE_RECEIVED";
pub const PROCESSED: &str = "MESSAGE_PROCESSED";
pub const FAILED: &str = "MESSAGE_FAILED";
pub const DLQ: &str = "MESSAGE_DLQ";
pub const DUPLICATE: &str = "MESSAGE_DUPLICATE";
pub const REPLAYED: &str = "MESSAGE_REPLAYED";
pub const DISCARDED: &str = "MESSAGE_DISCARDED";

/// One lifecycle row to insert.
#[derive(Debug)]
pub struct NewAuditRow<'a> {
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
    /// On MESSAGE_RECEIVED: steering headers the record carried without
    /// custodian's signature (ignored, but on the record).
    pub detail: Option<serde_json::Value>,
}

#[derive(Debug)]
struct NewPayloadRow<'a> {
    message_id: Uuid,
    topic: &'a str,
    kafka_partition: i32,
    kafka_offset: i64,
    message_key: Option<&'a [u8]>,
    payload: Option<&'a [u8]>,
    headers: Option<serde_json::Value>,
    kafka_timestamp: Option<DateTime<Utc>>,
}

/// One audit row as read back (for `GET /messages/{id}` and tests).
#[derive(Debug, Queryable, Selectable, serde::Serialize, utoipa::ToSchema)]
#[diesel(table_name = message_audit)]
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

/// Headers as JSON: text values stay text, others are base64 and flagged.
pub fn headers_json(headers: &[(String, Option<Vec<u8>>)]) -> serde_json::Value {
    use base64::Engine;
    if headers.is_empty() {
        return serde_json::Value::Array(Vec::new());
    }
    headers
        .iter()
        .map(|(key, value)| match value.as_deref().map(std::str::from_utf8) {
            None => serde_json::json!({ "key": key, "value": null }),
            // jsonb cannot hold NUL: such values are written as base64 too.
            Some(Ok(text)) if !text.contains('\0') => {
                serde_json::json!({ "key": key, "value": text })
            }
            Some(_) => serde_json::json!({
                "key": key,
                "value": base64::engine::general_purpose::STANDARD.encode(value.as_deref().unwrap_or_default()),
                "encoding": "base64",
            }),
        })
        .collect()
}

/// PostgreSQL text cannot hold NUL; a key or error that has one keeps the
/// rest (the exact bytes are in `message_payloads` and the DLQ entry).
fn no_nul(text: Cow<'_, str>) -> Cow<'_, str> {
    if text.contains('\0') {
        Cow::Owned(text.replace('\0', "\u{FFFD}"))
    } else {
        text
    }
}

/// The lifecycle rows of a batch, in order. `processed` holds the ids that
/// already have a MESSAGE_PROCESSED row; it grows with this batch's.
pub fn lifecycle_rows<'a>(
    batch: &'a [Settled],
    group: &'a str,
    processed: &mut HashSet<Uuid>,
) -> Vec<NewAuditRow<'a>> {
    let mut rows = Vec::with_capacity(batch.len() * 2);
    for s in batch {
        let e = &s.envelope;
        let key = e.key_text().map(no_nul);
        let row = |status: &'static str, attempt: i32, error: Option<String>, at: DateTime<Utc>| {
            NewAuditRow {
                message_id: s.message_id,
                status,
                topic: &e.topic,
                kafka_partition: e.partition,
                kafka_offset: e.offset,
                message_key: key.clone(),
                event_type: s.event_type.as_deref(),
                attempt,
                error: error.map(|e| no_nul(Cow::Owned(e)).into_owned()),
                consumer_group: group,
                occurred_at: at,
                detail: None,
            }
        };
        let mut received = row(RECEIVED, 1, None, e.received_at);
        if !s.steering.untrusted.is_empty() {
            received.detail = Some(serde_json::json!({
                "untrusted_headers": s.steering.untrusted,
            }));
        }
        rows.push(received);
        for failed in &s.failures {
            let error = failed.failure.to_string();
            rows.push(row(FAILED, failed.attempt as i32, Some(error), failed.at));
        }
        let next_attempt = s.failures.len() as i32 + 1;
        match s.outcome {
            Outcome::Processed => {
                processed.insert(s.message_id);
                rows.push(row(PROCESSED, next_attempt, None, s.at));
            }
            Outcome::AlreadyApplied => {
                if processed.insert(s.message_id) {
                    rows.push(row(PROCESSED, next_attempt, None, s.at));
                } else {
                    rows.push(row(DUPLICATE, next_attempt, None, s.at));
                }
            }
            Outcome::DeadLettered => {
                let last = s.last_failure();
                rows.push(row(
                    DLQ,
                    last.map_or(1, |f| f.attempt as i32),
                    last.map(|f| f.failure.to_string()),
                    s.at,
                ));
            }
        }
    }
    rows
}

/// Writes a batch's lifecycle and payload rows in one transaction; returns
/// the topic of each message audited as a duplicate.
pub async fn write_batch(
    conn: &mut AsyncPgConnection,
    batch: &[Settled],
    group: &str,
) -> Result<Vec<String>, diesel::result::Error> {
    let already: Vec<Uuid> = batch
        .iter()
        .filter(|s| matches!(s.outcome, Outcome::AlreadyApplied))
        .map(|s| s.message_id)
        .collect();
    let payloads: Vec<NewPayloadRow<'_>> = batch
        .iter()
        .map(|s| NewPayloadRow {
            message_id: s.message_id,
            topic: &s.envelope.topic,
            kafka_partition: s.envelope.partition,
            kafka_offset: s.envelope.offset,
            message_key: s.envelope.key.as_deref(),
            payload: s.envelope.payload.as_deref(),
            headers: (!s.envelope.headers.is_empty()).then(|| headers_json(&s.envelope.headers)),
            kafka_timestamp: s.envelope.kafka_timestamp(),
        })
        .collect();
    conn.transaction(async |conn| {
        let mut processed: HashSet<Uuid> = if already.is_empty() {
            HashSet::new()
        } else {
            message_audit::table
                .filter(message_audit::message_id.eq_any(&already))
                .filter(message_audit::status.eq(PROCESSED))
                .select(message_audit::message_id)
                .distinct()
                .load::<Uuid>(conn)
                .await?
                .into_iter()
                .collect()
        };
        let rows = lifecycle_rows(batch, group, &mut processed);
        let duplicates: Vec<String> = rows
            .iter()
            .filter(|r| r.status == DUPLICATE)
            .map(|r| r.topic.to_owned())
            .collect();
        insert_payloads(conn, &payloads).await?;
        insert_lifecycle(conn, &rows).await?;
        Ok(duplicates)
    })
    .await
}

// Rows go in as one array per column (`INSERT … SELECT FROM unnest(…)`):
// a handful of bound parameters however large the batch, so PostgreSQL
// parses and plans one small statement instead of one with tens of
// thousands of parameters.

async fn insert_payloads(
    conn: &mut AsyncPgConnection,
    rows: &[NewPayloadRow<'_>],
) -> QueryResult<usize> {
    use diesel::sql_types::{
        Array, Bytea, Int4, Int8, Jsonb, Nullable, Text, Timestamptz, Uuid as SqlUuid,
    };
    diesel::sql_query(
        "INSERT INTO message_payloads \
           (message_id, topic, kafka_partition, kafka_offset, message_key, payload, headers, kafka_timestamp) \
         SELECT * FROM unnest($1::uuid[], $2::text[], $3::int4[], $4::int8[], $5::bytea[], $6::bytea[], $7::jsonb[], $8::timestamptz[]) \
         ON CONFLICT (message_id) DO NOTHING",
    )
    .bind::<Array<SqlUuid>, _>(rows.iter().map(|r| r.message_id).collect::<Vec<_>>())
    .bind::<Array<Text>, _>(rows.iter().map(|r| r.topic).collect::<Vec<_>>())
    .bind::<Array<Int4>, _>(rows.iter().map(|r| r.kafka_partition).collect::<Vec<_>>())
    .bind::<Array<Int8>, _>(rows.iter().map(|r| r.kafka_offset).collect::<Vec<_>>())
    .bind::<Array<Nullable<Bytea>>, _>(rows.iter().map(|r| r.message_key).collect::<Vec<_>>())
    .bind::<Array<Nullable<Bytea>>, _>(rows.iter().map(|r| r.payload).collect::<Vec<_>>())
    .bind::<Array<Nullable<Jsonb>>, _>(rows.iter().map(|r| r.headers.as_ref()).collect::<Vec<_>>())
    .bind::<Array<Nullable<Timestamptz>>, _>(rows.iter().map(|r| r.kafka_timestamp).collect::<Vec<_>>())
    .execute(conn)
    .await
}

async fn insert_lifecycle(
    conn: &mut AsyncPgConnection,
    rows: &[NewAuditRow<'_>],
) -> QueryResult<usize> {
    use diesel::sql_types::{
        Array, Int4, Int8, Jsonb, Nullable, Text, Timestamptz, Uuid as SqlUuid,
    };
    diesel::sql_query(
        "INSERT INTO message_audit \
           (message_id, status, topic, kafka_partition, kafka_offset, message_key, event_type, attempt, error, consumer_group, occurred_at, detail) \
         SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::int4[], $5::int8[], $6::text[], $7::text[], $8::int4[], $9::text[], $10::text[], $11::timestamptz[], $12::jsonb[])",
    )
    .bind::<Array<SqlUuid>, _>(rows.iter().map(|r| r.message_id).collect::<Vec<_>>())
    .bind::<Array<Text>, _>(rows.iter().map(|r| r.status).collect::<Vec<_>>())
    .bind::<Array<Text>, _>(rows.iter().map(|r| r.topic).collect::<Vec<_>>())
    .bind::<Array<Int4>, _>(rows.iter().map(|r| r.kafka_partition).collect::<Vec<_>>())
    .bind::<Array<Int8>, _>(rows.iter().map(|r| r.kafka_offset).collect::<Vec<_>>())
    .bind::<Array<Nullable<Text>>, _>(rows.iter().map(|r| r.message_key.as_deref()).collect::<Vec<_>>())
    .bind::<Array<Nullable<Text>>, _>(rows.iter().map(|r| r.event_type).collect::<Vec<_>>())
    .bind::<Array<Int4>, _>(rows.iter().map(|r| r.attempt).collect::<Vec<_>>())
    .bind::<Array<Nullable<Text>>, _>(rows.iter().map(|r| r.error.as_deref()).collect::<Vec<_>>())
    .bind::<Array<Text>, _>(rows.iter().map(|r| r.consumer_group).collect::<Vec<_>>())
    .bind::<Array<Timestamptz>, _>(rows.iter().map(|r| r.occurred_at).collect::<Vec<_>>())
    .bind::<Array<Nullable<Jsonb>>, _>(rows.iter().map(|r| r.detail.as_ref()).collect::<Vec<_>>())
    .execute(conn)
    .await
}

/// A message's lifecycle, in the order things happened (ties in insert
/// order).
pub async fn lifecycle(
    conn: &mut AsyncPgConnection,
    id: Uuid,
) -> Result<Vec<AuditRow>, diesel::result::Error> {
    message_audit::table
        .filter(message_audit::message_id.eq(id))
        .order((message_audit::occurred_at.asc(), message_audit::id.asc()))
        .select(AuditRow::as_select())
        .load(conn)
        .await
}

/// An operator's action on a dead-lettered message (replay, discard).
#[derive(Debug)]
pub struct OperatorEvent<'a> {
    pub message_id: Uuid,
    /// [`REPLAYED`] or [`DISCARDED`].
    pub status: &'static str,
    pub topic: &'a str,
    pub kafka_partition: i32,
    pub kafka_offset: i64,
    pub message_key: Option<&'a str>,
    pub event_type: Option<&'a str>,
    /// The replay count for a replay; the attempts so far for a discard.
    pub attempt: i32,
    pub consumer_group: &'a str,
    /// For a replay, when it started (before the publish), so the lifecycle
    /// lists it before the copy's own rows.
    pub occurred_at: DateTime<Utc>,
    /// Who, why, and for a replay where the new copy went.
    pub detail: serde_json::Value,
}

/// Appends one operator action to the message's lifecycle.
pub async fn write_operator_event(
    conn: &mut AsyncPgConnection,
    event: &OperatorEvent<'_>,
) -> QueryResult<()> {
    use message_audit::dsl as a;
    let key = event.message_key.map(|k| no_nul(Cow::Borrowed(k)));
    diesel::insert_into(message_audit::table)
        .values((
            a::message_id.eq(event.message_id),
            a::status.eq(event.status),
            a::topic.eq(event.topic),
            a::kafka_partition.eq(event.kafka_partition),
            a::kafka_offset.eq(event.kafka_offset),
            a::message_key.eq(key.as_deref()),
            a::event_type.eq(event.event_type),
            a::attempt.eq(event.attempt),
            a::consumer_group.eq(event.consumer_group),
            a::occurred_at.eq(event.occurred_at),
            a::detail.eq(&event.detail),
        ))
        .execute(conn)
        .await
        .map(|_| ())
}
