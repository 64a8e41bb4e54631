//! The relay's audit entry: MESSAGE_PUBLISHED, one per event Kafka
//! acknowledged, with where it landed. It opens the lifecycle of the id
//! that custodian's consumer then continues (RECEIVED, PROCESSED …).
//!
//! Every relay audit write goes through [`write_published`], so a change to
//! how `audit_log` rows are written (a hash chain, say) has one place to go.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::pipeline::steering;
use crate::relay::outbox::Pending;
use crate::store::schema::audit_log;

pub const PUBLISHED: &str = "MESSAGE_PUBLISHED";

/// `audit_log.consumer_group` of the relay's rows: it publishes, it is no
/// consumer group, and this names who wrote them.
pub const RELAY_GROUP: &str = "custodian-relay";

/// One acknowledged publish.
#[derive(Debug)]
pub struct Published<'a> {
    pub row: &'a Pending,
    pub partition: i32,
    pub offset: i64,
    pub at: DateTime<Utc>,
}

/// Appends a MESSAGE_PUBLISHED row per event (one statement, bound values).
pub async fn write_published(
    conn: &mut AsyncPgConnection,
    published: &[Published<'_>],
) -> QueryResult<()> {
    use audit_log::dsl as a;
    if published.is_empty() {
        return Ok(());
    }
    let rows: Vec<_> = published
        .iter()
        .map(|p| {
            let digest = steering::payload_digest(p.row.payload.as_deref());
            (
                a::message_id.eq(p.row.event_id),
                a::status.eq(PUBLISHED),
                a::topic.eq(p.row.topic.as_str()),
                a::kafka_partition.eq(p.partition),
                a::kafka_offset.eq(p.offset),
                a::message_key.eq(Some(p.row.aggregate_id.as_str())),
                a::event_type.eq(Some(p.row.event_type.as_str())),
                a::attempt.eq(p.row.attempts.saturating_add(1)),
                a::consumer_group.eq(RELAY_GROUP),
                a::occurred_at.eq(p.at),
                a::detail.eq(Some(serde_json::json!({
                    "outbox_id": p.row.id,
                    "aggregate_type": p.row.aggregate_type,
                    "aggregate_id": p.row.aggregate_id,
                    "payload_sha256": steering::hex(&digest),
                }))),
            )
        })
        .collect();
    diesel::insert_into(audit_log::table)
        .values(rows)
        .execute(conn)
        .await
        .map(|_| ())
}
