//! The stored effects' SQL, on the outcome writer's transaction: the
//! idempotency ledger (`applied_messages`), the `transactions` projection,
//! the domain projections (`users`, `orders`, `payments`, `inventory`), the
//! http delivery records and the retry schedule's rows. Every value is a
//! bound parameter; rows go in as one array per column (`unnest`), a fixed
//! handful of parameters whatever the batch size.

use std::collections::HashMap;

use tokio_postgres::types::ToSql;
use tokio_postgres::Transaction;
use uuid::Uuid;

use crate::pipeline::domain_event::{DomainChange, DomainEvent};
use crate::pipeline::transaction::{ProjectionWrite, TransactionRow};
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

/// Writes folded transaction events to the `transactions` projection.
pub async fn write_transactions(
    tx: &Transaction<'_>,
    writes: Vec<ProjectionWrite<'_>>,
) -> Result<()> {
    let mut upserts: Vec<TransactionRow<'_>> = Vec::with_capacity(writes.len());
    for w in writes {
        match w {
            ProjectionWrite::Upsert(row) => upserts.push(row),
            ProjectionWrite::SoftDelete {
                id,
                deleted_at,
                version_delta,
                last_message_id,
            } => {
                tx.execute(
                    "UPDATE transactions SET deleted_at = $2, updated_at = $2, \
                       version = version + $3, last_event_type = 'transaction.deleted', \
                       last_message_id = $4 WHERE id = $1",
                    &[&id, &deleted_at, &version_delta, &last_message_id],
                )
                .await?;
            }
        }
    }
    if !upserts.is_empty() {
        // One lock order for every writer (see `insert_ledger`).
        upserts.sort_unstable_by(|a, b| a.tx.id.cmp(&b.tx.id));
        upsert_transactions(tx, &upserts).await?;
    }
    Ok(())
}

/// Upserts projection rows (one per transaction id); `version` is added.
/// Amounts travel as text and are cast: exact, whatever their scale.
async fn upsert_transactions(tx: &Transaction<'_>, rows: &[TransactionRow<'_>]) -> Result<u64> {
    let unenriched = serde_json::Value::Object(Default::default());
    let ids: Vec<&str> = rows.iter().map(|r| r.tx.id.as_str()).collect();
    let users: Vec<&str> = rows.iter().map(|r| r.tx.user_id.as_str()).collect();
    let types: Vec<&str> = rows
        .iter()
        .map(|r| r.tx.transaction_type.as_str())
        .collect();
    let products: Vec<Option<&str>> = rows.iter().map(|r| r.tx.product.as_deref()).collect();
    let statuses: Vec<&str> = rows.iter().map(|r| r.tx.status.as_str()).collect();
    let currencies: Vec<&str> = rows.iter().map(|r| r.tx.currency.as_str()).collect();
    let amounts: Vec<String> = rows.iter().map(|r| r.tx.amount.to_string()).collect();
    let created: Vec<_> = rows.iter().map(|r| r.tx.created_at).collect();
    let metadata: Vec<&serde_json::Value> = rows.iter().map(|r| &r.tx.metadata).collect();
    let enrichment: Vec<&serde_json::Value> = rows
        .iter()
        .map(|r| r.enrichment.map_or(&unenriched, |e| &e.data))
        .collect();
    let enriched: Vec<bool> = rows
        .iter()
        .map(|r| r.enrichment.is_some_and(|e| e.enriched))
        .collect();
    let enriched_at: Vec<_> = rows
        .iter()
        .map(|r| r.enrichment.and_then(|e| e.enriched_at))
        .collect();
    let searchable: Vec<&str> = rows
        .iter()
        .map(|r| r.enrichment.map_or("", |e| e.searchable_content.as_str()))
        .collect();
    let versions: Vec<i64> = rows.iter().map(|r| r.version).collect();
    let last_types: Vec<&str> = rows.iter().map(|r| r.last_event_type).collect();
    let last_ids: Vec<Uuid> = rows.iter().map(|r| r.last_message_id).collect();
    let updated: Vec<_> = rows.iter().map(|r| r.updated_at).collect();
    let deleted: Vec<_> = rows.iter().map(|r| r.deleted_at).collect();
    let params: [&(dyn ToSql + Sync); 18] = [
        &ids,
        &users,
        &types,
        &products,
        &statuses,
        &currencies,
        &amounts,
        &created,
        &metadata,
        &enrichment,
        &enriched,
        &enriched_at,
        &searchable,
        &versions,
        &last_types,
        &last_ids,
        &updated,
        &deleted,
    ];
    tx.execute(
        "INSERT INTO transactions (id, user_id, transaction_type, product, status, currency, amount, created_at, \
           metadata, enrichment, enriched, enriched_at, searchable_content, version, last_event_type, \
           last_message_id, updated_at, deleted_at) \
         SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], \
           $7::text[]::numeric[], $8::timestamptz[], $9::jsonb[], $10::jsonb[], $11::bool[], $12::timestamptz[], \
           $13::text[], $14::int8[], $15::text[], $16::uuid[], $17::timestamptz[], $18::timestamptz[]) \
         ON CONFLICT (id) DO UPDATE SET \
           user_id = EXCLUDED.user_id, transaction_type = EXCLUDED.transaction_type, \
           product = EXCLUDED.product, status = EXCLUDED.status, currency = EXCLUDED.currency, \
           amount = EXCLUDED.amount, created_at = EXCLUDED.created_at, metadata = EXCLUDED.metadata, \
           enrichment = EXCLUDED.enrichment, enriched = EXCLUDED.enriched, \
           enriched_at = EXCLUDED.enriched_at, searchable_content = EXCLUDED.searchable_content, \
           version = transactions.version + EXCLUDED.version, \
           last_event_type = EXCLUDED.last_event_type, last_message_id = EXCLUDED.last_message_id, \
           updated_at = EXCLUDED.updated_at, deleted_at = EXCLUDED.deleted_at",
        &params,
    )
    .await
}

/// Applies one domain event. Few and interdependent (an order needs its
/// user): in offset order, one statement each. Upserts: an event with new
/// facts about a known key updates its row; the foreign keys refuse an
/// order for an unknown user or a payment for an unknown order.
pub async fn apply_domain(tx: &Transaction<'_>, change: &DomainChange) -> Result<()> {
    let at = change.occurred_at;
    let id = change.message_id;
    match &change.event {
        DomainEvent::UserCreated {
            user_id,
            name,
            email,
            created_at,
        } => {
            tx.execute(
                "INSERT INTO users (id, name, email, created_at, updated_at, last_message_id) \
                 VALUES ($1, $2, $3, $4, $5, $6) \
                 ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, email = EXCLUDED.email, \
                   created_at = EXCLUDED.created_at, updated_at = EXCLUDED.updated_at, \
                   last_message_id = EXCLUDED.last_message_id",
                &[user_id, name, email, created_at, &at, &id],
            )
            .await?;
        }
        DomainEvent::OrderPlaced {
            order_id,
            user_id,
            amount,
            currency,
            items,
        } => {
            tx.execute(
                "INSERT INTO orders (id, user_id, amount, currency, items, placed_at, updated_at, \
                   last_message_id) VALUES ($1, $2, $3::text::numeric, $4, $5, $6, $6, $7) \
                 ON CONFLICT (id) DO UPDATE SET user_id = EXCLUDED.user_id, \
                   amount = EXCLUDED.amount, currency = EXCLUDED.currency, items = EXCLUDED.items, \
                   updated_at = EXCLUDED.updated_at, last_message_id = EXCLUDED.last_message_id",
                &[
                    order_id,
                    user_id,
                    &amount.to_string(),
                    currency,
                    items,
                    &at,
                    &id,
                ],
            )
            .await?;
        }
        DomainEvent::PaymentSettled {
            order_id,
            payment_id,
            amount,
            status,
        } => {
            tx.execute(
                "INSERT INTO payments (order_id, payment_id, amount, status, settled_at, updated_at, \
                   last_message_id) VALUES ($1, $2, $3::text::numeric, $4, $5, $5, $6) \
                 ON CONFLICT (order_id) DO UPDATE SET payment_id = EXCLUDED.payment_id, \
                   amount = EXCLUDED.amount, status = EXCLUDED.status, \
                   settled_at = EXCLUDED.settled_at, updated_at = EXCLUDED.updated_at, \
                   last_message_id = EXCLUDED.last_message_id",
                &[order_id, payment_id, &amount.to_string(), status, &at, &id],
            )
            .await?;
        }
        DomainEvent::InventoryAdjusted { sku, delta, .. } => {
            tx.execute(
                "INSERT INTO inventory (sku, quantity, updated_at, last_message_id) \
                 VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (sku) DO UPDATE SET quantity = inventory.quantity + EXCLUDED.quantity, \
                   updated_at = EXCLUDED.updated_at, last_message_id = EXCLUDED.last_message_id",
                &[sku, delta, &at, &id],
            )
            .await?;
        }
    }
    Ok(())
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
