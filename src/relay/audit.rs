//! The relay's audit entry: MESSAGE_PUBLISHED, one per event Kafka
//! acknowledged, with where it landed. It opens the lifecycle of the id
//! that custodian's consumer then continues (RECEIVED, PROCESSED …).
//!
//! Every relay audit write goes through [`write_published`], onto the
//! relay's own hash chain.

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use diesel::QueryResult;
use diesel_async::AsyncPgConnection;

use crate::relay::outbox::Pending;
use crate::store::audit::AuditEntry;

pub const PUBLISHED: &str = "MESSAGE_PUBLISHED";

/// `audit_log.consumer_group` of the relay's rows: it publishes, it is no
/// consumer group, and this names who wrote them.
pub const RELAY_GROUP: &str = "custodian-relay";

/// One acknowledged publish.
#[derive(Debug)]
pub struct Published<'a> {
    pub row: &'a Pending,
    /// SHA-256 of the payload as published (encoded, under
    /// `relay.encodings`).
    pub payload_sha256: [u8; 32],
    pub partition: i32,
    pub offset: i64,
    pub at: DateTime<Utc>,
}

/// The audit chain of the relay's entries. Only the relay holding the
/// advisory lock writes, so it never races another writer for a sequence
/// number; if it ever did, the unique (chain, seq) refuses the loser's
/// transaction, and its events are published again and deduplicated by id.
pub const RELAY_CHAIN: &str = "relay";

/// Appends a MESSAGE_PUBLISHED entry per event to the relay's chain, in the
/// caller's transaction (bound values only).
pub async fn write_published(
    conn: &mut AsyncPgConnection,
    published: &[Published<'_>],
) -> QueryResult<()> {
    for p in published {
        let entry = AuditEntry {
            message_id: p.row.event_id,
            status: PUBLISHED,
            topic: &p.row.topic,
            kafka_partition: p.partition,
            kafka_offset: p.offset,
            message_key: Some(Cow::Borrowed(&p.row.aggregate_id)),
            event_type: Some(&p.row.event_type),
            attempt: p.row.attempts.saturating_add(1),
            error: None,
            consumer_group: RELAY_GROUP,
            occurred_at: p.at,
            detail: Some(serde_json::json!({
                "outbox_id": p.row.id,
                "aggregate_type": p.row.aggregate_type,
                // The aggregate id is the entry's key (blinded, erasable):
                // not repeated here, where the hash covers it as it is.
                "payload_sha256": crate::text::hex(&p.payload_sha256),
            })),
            receipt: None,
            blinding: crate::store::chain::blinding(),
        };
        crate::outcome::chained::append_chained(conn, RELAY_CHAIN, &entry).await?;
    }
    Ok(())
}
