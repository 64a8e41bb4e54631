//! The transactions kind's SQL, on the outcome writer's transaction: a
//! flush's transaction events, folded per transaction id, written to the
//! `transactions` projection. Every value is a bound parameter; rows go in
//! as one array per column (`unnest`), a fixed handful of parameters
//! whatever the batch size.

use tokio_postgres::types::ToSql;
use tokio_postgres::Transaction;
use uuid::Uuid;

use super::event::{fold, ProjectionWrite, TransactionChange, TransactionRow};

type Result<T> = std::result::Result<T, tokio_postgres::Error>;

/// Folds `changes` (in offset order) and writes them.
pub async fn write(tx: &Transaction<'_>, changes: &[&TransactionChange]) -> Result<()> {
    if changes.is_empty() {
        return Ok(());
    }
    write_transactions(tx, fold(changes)).await
}

/// Writes folded transaction events to the `transactions` projection.
async fn write_transactions(tx: &Transaction<'_>, writes: Vec<ProjectionWrite<'_>>) -> Result<()> {
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
        // One lock order for every writer (see `outcome::effects::insert_ledger`).
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
