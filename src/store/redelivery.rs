//! Recognising a redelivery: a record read again (after a crash or a
//! rebalance, before its offset was committed) whose outcome at its
//! position is already durable in the audit trail. The ledger
//! (`applied_messages`) recognises what was applied; this recognises what
//! was parked: in the dead-letter queue (MESSAGE_DLQ) or the retry schedule
//! (MESSAGE_RETRY_SCHEDULED). Such a record is audited MESSAGE_DUPLICATE and
//! nothing is done again, so `audit reconcile` counts it as redelivered
//! instead of reporting two outcomes for one offset.
//!
//! A record is matched by its id, its exact position (topic, partition,
//! offset) and its payload's digest (on the receipt of the earlier
//! delivery): another record claiming the id (a producer's resend, a
//! replay's copy) has a position of its own, and a different record at a
//! reused position (a topic deleted and created again, whose ids derived
//! from the position repeat) has another digest: neither is a redelivery.

use std::collections::HashSet;

use diesel::sql_types::{Array, Int4, Int8, Text, Uuid as SqlUuid};
use diesel::QueryableByName;
use diesel_async::RunQueryDsl;
use uuid::Uuid;

use crate::pipeline::Message;
use crate::store::{PgPool, StoreError};

/// A message's id and the position its outcome is recorded under.
pub type Position = (Uuid, String, i32, i64);

#[derive(QueryableByName)]
struct Found {
    #[diesel(sql_type = SqlUuid)]
    message_id: Uuid,
    #[diesel(sql_type = Text)]
    topic: String,
    #[diesel(sql_type = Int4)]
    kafka_partition: i32,
    #[diesel(sql_type = Int8)]
    kafka_offset: i64,
}

/// The query behind [`recorded`]: ids, topics, partitions, offsets,
/// statuses, payload digests.
pub const RECORDED: &str =
    "SELECT DISTINCT a.message_id, a.topic, a.kafka_partition, a.kafka_offset \
       FROM unnest($1::uuid[], $2::text[], $3::int4[], $4::int8[], $6::bytea[]) \
            AS p(id, topic, part, off, digest) \
       JOIN audit_log a ON a.message_id = p.id AND a.topic = p.topic \
        AND a.kafka_partition = p.part AND a.kafka_offset = p.off \
      WHERE a.status = ANY($5) \
        AND EXISTS (SELECT 1 FROM audit_log r WHERE r.message_id = p.id \
             AND r.topic = p.topic AND r.kafka_partition = p.part \
             AND r.kafka_offset = p.off AND r.payload_sha256 = p.digest)";

/// The position of `message`, as the audit trail records it.
pub fn position(message: &Message) -> Position {
    let (topic, partition, offset) = message.position();
    (message.message_id, topic.to_owned(), partition, offset)
}

/// Of `messages`, the positions that already have an entry with one of
/// `statuses`: one indexed query (by message id), none when `messages` is
/// empty.
pub async fn recorded<'m>(
    pool: &PgPool,
    messages: impl IntoIterator<Item = &'m Message>,
    statuses: &[&str],
) -> Result<HashSet<Position>, StoreError> {
    let mut ids = Vec::new();
    let mut topics = Vec::new();
    let mut partitions = Vec::new();
    let mut offsets = Vec::new();
    let mut digests: Vec<Vec<u8>> = Vec::new();
    for m in messages {
        let (id, topic, partition, offset) = position(m);
        ids.push(id);
        topics.push(topic);
        partitions.push(partition);
        offsets.push(offset);
        digests.push(m.payload_sha256.to_vec());
    }
    if ids.is_empty() {
        return Ok(HashSet::new());
    }
    let statuses: Vec<String> = statuses.iter().map(|s| (*s).to_owned()).collect();
    let mut conn = pool
        .get()
        .await
        .map_err(|e| StoreError::Pool(e.to_string()))?;
    let found: Vec<Found> = diesel::sql_query(RECORDED)
        .bind::<Array<SqlUuid>, _>(ids)
        .bind::<Array<Text>, _>(topics)
        .bind::<Array<Int4>, _>(partitions)
        .bind::<Array<Int8>, _>(offsets)
        .bind::<Array<Text>, _>(statuses)
        .bind::<Array<diesel::sql_types::Bytea>, _>(digests)
        .load(&mut conn)
        .await?;
    Ok(found
        .into_iter()
        .map(|f| (f.message_id, f.topic, f.kafka_partition, f.kafka_offset))
        .collect())
}
