//! Applying transaction events to the `transactions` projection.
//!
//! A batch is applied in one database transaction: first the message ids go
//! into the `applied_messages` ledger (`ON CONFLICT DO NOTHING RETURNING`),
//! and only the ids that were new are folded into projection writes. The same
//! event delivered twice therefore changes nothing the second time.
//!
//! When a batch fails, the database is probed: if it does not answer, the
//! caller is told it is unavailable (and pauses); if it answers, each event is
//! applied alone so the one the database refuses is dead-lettered with its
//! error while the others go through.

use std::collections::HashSet;
use std::time::Duration;

use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::kafka::envelope::Envelope;
use crate::pipeline::failure::{Failure, Stage};
use crate::pipeline::transaction::{fold, ProjectionWrite, TransactionChange, TransactionRow};
use crate::store::pool::{ping_postgres, PgPool};
use crate::store::schema::transactions;
use crate::store::StoreError;

const HANDLER: &str = "transactions";

/// Whether this delivery applied the event, or an earlier one had (a
/// redelivery, a producer duplicate, or a second copy in the same batch).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    New,
    AlreadyApplied,
}

/// PostgreSQL did not answer; nothing of the batch is known to be applied.
#[derive(Debug, thiserror::Error)]
#[error("postgres unavailable: {0}")]
pub struct Unavailable(pub String);

struct LedgerRow<'a> {
    message_id: Uuid,
    handler: &'a str,
}

/// Applies `changes` (each with the record it came from), returning one
/// result per change in the same order.
pub async fn apply(
    pool: &PgPool,
    changes: &[(&TransactionChange, &Envelope)],
) -> Result<Vec<Result<Applied, Failure>>, Unavailable> {
    if changes.is_empty() {
        return Ok(Vec::new());
    }
    match apply_in_one_transaction(pool, changes).await {
        Ok(applied) => Ok(applied),
        Err(batch_error) => {
            probe(pool, &batch_error).await?;
            // The database answers but did not take the batch: apply the
            // events one by one, each retried a few times, so a deadlock or a
            // lock timeout passes and only an event the database keeps
            // refusing is dead-lettered.
            let mut results = Vec::with_capacity(changes.len());
            for change in changes {
                results.push(apply_alone(pool, change).await?);
            }
            Ok(results)
        }
    }
}

/// How often one event is tried alone before the refusal counts as its own.
const ATTEMPTS_ALONE: u32 = 3;

async fn apply_alone(
    pool: &PgPool,
    change: &(&TransactionChange, &Envelope),
) -> Result<Result<Applied, Failure>, Unavailable> {
    let mut refusal = None;
    for attempt in 0..ATTEMPTS_ALONE {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt))).await;
        }
        match apply_in_one_transaction(pool, std::slice::from_ref(change)).await {
            Ok(mut one) => return Ok(one.pop().unwrap_or(Ok(Applied::New))),
            Err(e) => {
                probe(pool, &e).await?;
                refusal = Some(e);
            }
        }
    }
    Ok(Err(refusal.map_or_else(
        || Failure::permanent(Stage::Process, "database_rejected", "refused"),
        |e| refused(&e),
    )))
}

/// Error texts PostgreSQL gives for conditions of the server, not of the
/// statement (diesel does not expose their SQLSTATE: they all arrive as
/// `Unknown`). A match means "unavailable, retry later".
const ENVIRONMENTAL: &[&str] = &[
    "deadlock detected",
    "could not serialize",
    "lock timeout",
    "canceling statement due to",
    "could not extend file",
    "No space left on device",
    "out of memory",
    "terminating connection",
    "the database system is",
    "too many connections",
];

/// Did the database refuse the statement, or did the statement not get an
/// answer? The second is never the message's fault: no connection from the
/// pool, a connection that broke, a serialization conflict. Those, and any
/// error while a `SELECT 1` probe fails, mean "unavailable, retry later".
async fn probe(pool: &PgPool, cause: &StoreError) -> Result<(), Unavailable> {
    use diesel::result::{DatabaseErrorKind as K, Error as E};
    let no_answer = match cause {
        StoreError::Pool(_) => true,
        StoreError::Query(E::DatabaseError(kind, _)) => matches!(
            kind,
            K::UnableToSendCommand
                | K::ClosedConnection
                | K::SerializationFailure
                | K::ReadOnlyTransaction
        ),
        StoreError::Query(E::BrokenTransactionManager | E::RollbackErrorOnCommit { .. }) => true,
        StoreError::Query(other) => {
            let text = other.to_string();
            ENVIRONMENTAL.iter().any(|needle| text.contains(needle))
        }
    };
    if no_answer {
        return Err(Unavailable(cause.to_string()));
    }
    ping_postgres(pool, Duration::from_secs(2))
        .await
        .map_err(|probe| Unavailable(format!("{cause} (probe: {probe})")))
}

fn refused(error: &StoreError) -> Failure {
    use diesel::result::{DatabaseErrorKind as K, Error as E};
    let kind = match error {
        StoreError::Query(E::DatabaseError(
            K::UniqueViolation | K::ForeignKeyViolation | K::NotNullViolation | K::CheckViolation,
            _,
        )) => "constraint_violation",
        _ => "database_rejected",
    };
    Failure::permanent(Stage::Process, kind, error.to_string())
}

async fn apply_in_one_transaction(
    pool: &PgPool,
    changes: &[(&TransactionChange, &Envelope)],
) -> Result<Vec<Result<Applied, Failure>>, StoreError> {
    let mut conn = pool
        .get()
        .await
        .map_err(|e| StoreError::Pool(e.to_string()))?;
    let ledger: Vec<LedgerRow<'_>> = changes
        .iter()
        .map(|(c, _)| LedgerRow {
            message_id: c.message_id,
            handler: HANDLER,
        })
        .collect();
    // A message delivered twice within one batch counts once.
    let mut ids_seen = HashSet::with_capacity(changes.len());
    let first: Vec<bool> = changes
        .iter()
        .map(|(c, _)| ids_seen.insert(c.message_id))
        .collect();
    let first = &first;
    let new_ids = conn
        .transaction(async |conn| {
            let mut new_ids: HashSet<Uuid> = HashSet::with_capacity(ledger.len());
            new_ids.extend(insert_ledger(conn, &ledger).await?);
            let fresh: Vec<&TransactionChange> = changes
                .iter()
                .enumerate()
                .filter(|(i, (c, _))| new_ids.contains(&c.message_id) && first[*i])
                .map(|(_, (c, _))| *c)
                .collect();
            write(conn, fold(&fresh)).await?;
            Ok::<_, diesel::result::Error>(new_ids)
        })
        .await?;
    Ok(changes
        .iter()
        .zip(first)
        .map(|((c, _), first)| {
            Ok(if !first || !new_ids.contains(&c.message_id) {
                Applied::AlreadyApplied
            } else {
                Applied::New
            })
        })
        .collect())
}

async fn write(conn: &mut AsyncPgConnection, writes: Vec<ProjectionWrite<'_>>) -> QueryResult<()> {
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
                use transactions::dsl as t;
                diesel::update(t::transactions.find(id))
                    .set((
                        t::deleted_at.eq(deleted_at),
                        t::updated_at.eq(deleted_at),
                        t::version.eq(t::version + version_delta),
                        t::last_event_type.eq("transaction.deleted"),
                        t::last_message_id.eq(last_message_id),
                    ))
                    .execute(conn)
                    .await?;
            }
        }
    }
    if !upserts.is_empty() {
        // One lock order for every processor: concurrent batches touching the
        // same ids wait for each other instead of deadlocking.
        upserts.sort_unstable_by(|a, b| a.tx.id.cmp(&b.tx.id));
        upsert(conn, &upserts).await?;
    }
    Ok(())
}

#[derive(QueryableByName)]
struct InsertedId {
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    message_id: Uuid,
}

// Rows go in as one array per column (`INSERT … SELECT FROM unnest(…)`): a
// fixed handful of bound parameters whatever the batch size.

/// Inserts ledger rows; returns the ids that were not there yet.
async fn insert_ledger(
    conn: &mut AsyncPgConnection,
    rows: &[LedgerRow<'_>],
) -> QueryResult<Vec<Uuid>> {
    use diesel::sql_types::{Array, Text, Uuid as SqlUuid};
    let inserted: Vec<InsertedId> = diesel::sql_query(
        "INSERT INTO applied_messages (message_id, handler) \
         SELECT * FROM unnest($1::uuid[], $2::text[]) \
         ON CONFLICT (message_id) DO NOTHING RETURNING message_id",
    )
    .bind::<Array<SqlUuid>, _>(rows.iter().map(|r| r.message_id).collect::<Vec<_>>())
    .bind::<Array<Text>, _>(rows.iter().map(|r| r.handler).collect::<Vec<_>>())
    .load(conn)
    .await?;
    Ok(inserted.into_iter().map(|r| r.message_id).collect())
}

/// Upserts projection rows (one per transaction id); `version` is added.
async fn upsert(conn: &mut AsyncPgConnection, rows: &[TransactionRow<'_>]) -> QueryResult<usize> {
    let unenriched = serde_json::Value::Object(Default::default());
    use diesel::sql_types::{
        Array, Bool, Int8, Jsonb, Nullable, Numeric, Text, Timestamptz, Uuid as SqlUuid,
    };
    diesel::sql_query(
        "INSERT INTO transactions (id, user_id, transaction_type, product, status, currency, amount, created_at, \
           metadata, enrichment, enriched, enriched_at, searchable_content, version, last_event_type, \
           last_message_id, updated_at, deleted_at) \
         SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], \
           $7::numeric[], $8::timestamptz[], $9::jsonb[], $10::jsonb[], $11::bool[], $12::timestamptz[], \
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
    )
    .bind::<Array<Text>, _>(rows.iter().map(|r| r.tx.id.as_str()).collect::<Vec<_>>())
    .bind::<Array<Text>, _>(rows.iter().map(|r| r.tx.user_id.as_str()).collect::<Vec<_>>())
    .bind::<Array<Text>, _>(rows.iter().map(|r| r.tx.transaction_type.as_str()).collect::<Vec<_>>())
    .bind::<Array<Nullable<Text>>, _>(rows.iter().map(|r| r.tx.product.as_deref()).collect::<Vec<_>>())
    .bind::<Array<Text>, _>(rows.iter().map(|r| r.tx.status.as_str()).collect::<Vec<_>>())
    .bind::<Array<Text>, _>(rows.iter().map(|r| r.tx.currency.as_str()).collect::<Vec<_>>())
    .bind::<Array<Numeric>, _>(rows.iter().map(|r| &r.tx.amount).collect::<Vec<_>>())
    .bind::<Array<Nullable<Timestamptz>>, _>(rows.iter().map(|r| r.tx.created_at).collect::<Vec<_>>())
    .bind::<Array<Jsonb>, _>(rows.iter().map(|r| &r.tx.metadata).collect::<Vec<_>>())
    .bind::<Array<Jsonb>, _>(rows.iter().map(|r| r.enrichment.map_or(&unenriched, |e| &e.data)).collect::<Vec<_>>())
    .bind::<Array<Bool>, _>(rows.iter().map(|r| r.enrichment.is_some_and(|e| e.enriched)).collect::<Vec<_>>())
    .bind::<Array<Nullable<Timestamptz>>, _>(rows.iter().map(|r| r.enrichment.and_then(|e| e.enriched_at)).collect::<Vec<_>>())
    .bind::<Array<Text>, _>(rows.iter().map(|r| r.enrichment.map_or("", |e| e.searchable_content.as_str())).collect::<Vec<_>>())
    .bind::<Array<Int8>, _>(rows.iter().map(|r| r.version).collect::<Vec<_>>())
    .bind::<Array<Text>, _>(rows.iter().map(|r| r.last_event_type).collect::<Vec<_>>())
    .bind::<Array<SqlUuid>, _>(rows.iter().map(|r| r.last_message_id).collect::<Vec<_>>())
    .bind::<Array<Timestamptz>, _>(rows.iter().map(|r| r.updated_at).collect::<Vec<_>>())
    .bind::<Array<Nullable<Timestamptz>>, _>(rows.iter().map(|r| r.deleted_at).collect::<Vec<_>>())
    .execute(conn)
    .await
}
