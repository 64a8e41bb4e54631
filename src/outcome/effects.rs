//! The outcome writer's own SQL, on its transaction: the idempotency
//! ledger (`applied_messages`) and the http delivery records. (Each handler
//! kind's SQL is in its folder, `handlers/<kind>/sql.rs`, reached through
//! `handlers::registry::write`.) Every value is a
//! bound parameter; rows go in as one array per column (`unnest`), a fixed
//! handful of parameters whatever the batch size.

use std::collections::HashMap;

use tokio_postgres::Transaction;
use uuid::Uuid;

use crate::store::projection::LedgerRow;

type Result<T> = std::result::Result<T, tokio_postgres::Error>;

/// Inserts ledger rows; returns the ids that were not there yet. Rows are
/// sorted by id first: two writers inserting overlapping ids lock them in
/// one order, so they wait for each other instead of deadlocking.
pub async fn insert_ledger(tx: &Transaction<'_>, rows: &[LedgerRow<'_>]) -> Result<Vec<Uuid>> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let mut sorted: Vec<&LedgerRow<'_>> = rows.iter().collect();
    sorted.sort_unstable_by_key(|r| r.message_id);
    let ids: Vec<Uuid> = sorted.iter().map(|r| r.message_id).collect();
    let handlers: Vec<&str> = sorted.iter().map(|r| r.handler).collect();
    let digests: Vec<&[u8]> = sorted.iter().map(|r| r.payload_sha256.as_slice()).collect();
    let rows = tx
        .query(
            "INSERT INTO applied_messages (message_id, handler, payload_sha256) \
             SELECT * FROM unnest($1::uuid[], $2::text[], $3::bytea[]) \
             ON CONFLICT (message_id) DO NOTHING RETURNING message_id",
            &[&ids, &handlers, &digests],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// What the ledger holds for `ids`: the payload digest each was applied
/// with (`None` for rows from before digests were kept).
pub async fn applied_digests(
    tx: &Transaction<'_>,
    ids: &[Uuid],
) -> Result<HashMap<Uuid, Option<[u8; 32]>>> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let rows = tx
        .query(
            "SELECT message_id, payload_sha256 FROM applied_messages WHERE message_id = ANY($1)",
            &[&ids],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| {
            let digest: Option<&[u8]> = r.get(1);
            let digest = digest.and_then(|d| <[u8; 32]>::try_from(d).ok());
            (r.get::<_, Uuid>(0), digest)
        })
        .collect())
}

/// A finished http delivery, as `http_deliveries` records it.
#[derive(Debug, Clone)]
pub struct DeliveryRecord {
    pub message_id: Uuid,
    pub route: String,
    pub key: Option<Vec<u8>>,
    /// Where the message was first read (a retry record's original place).
    pub place: (String, i32, i64),
    pub event_type: Option<String>,
    /// Attempts made, the last included.
    pub attempts: u32,
    /// `delivered` or `failed`.
    pub status: &'static str,
    /// `HTTP 2xx`, or the last failure.
    pub answer: String,
}

/// Records a finished delivery (a replay that delivers it again rewrites
/// the row).
pub async fn write_delivery(tx: &Transaction<'_>, d: &DeliveryRecord) -> Result<()> {
    let attempts = i32::try_from(d.attempts).unwrap_or(i32::MAX).max(1);
    tx.execute(
        "INSERT INTO http_deliveries (message_id, route_label, status, attempts, last_answer, \
           message_key, topic, kafka_partition, kafka_offset, event_type) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
         ON CONFLICT (message_id) DO UPDATE SET route_label = EXCLUDED.route_label, \
           status = EXCLUDED.status, attempts = EXCLUDED.attempts, \
           last_answer = EXCLUDED.last_answer, finished_at = now()",
        &[
            &d.message_id,
            &d.route,
            &d.status,
            &attempts,
            &d.answer,
            &d.key,
            &d.place.0,
            &d.place.1,
            &d.place.2,
            &d.event_type,
        ],
    )
    .await?;
    Ok(())
}

/// Of `messages`, the positions that already have an entry with one of
/// `statuses` from a delivery of the same record (see `store::redelivery`):
/// one indexed query, none when `messages` is empty.
pub async fn recorded<'m>(
    tx: &Transaction<'_>,
    messages: impl IntoIterator<Item = &'m crate::pipeline::Message>,
    statuses: &[&str],
) -> Result<std::collections::HashSet<crate::store::redelivery::Position>> {
    let mut ids = Vec::new();
    let mut topics = Vec::new();
    let mut partitions = Vec::new();
    let mut offsets = Vec::new();
    let mut digests: Vec<&[u8]> = Vec::new();
    for m in messages {
        let (topic, partition, offset) = m.position();
        ids.push(m.message_id);
        topics.push(topic);
        partitions.push(partition);
        offsets.push(offset);
        digests.push(&m.payload_sha256[..]);
    }
    if ids.is_empty() {
        return Ok(Default::default());
    }
    let rows = tx
        .query(
            crate::store::redelivery::RECORDED,
            &[&ids, &topics, &partitions, &offsets, &statuses, &digests],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect())
}
