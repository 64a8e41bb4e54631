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
use diesel::upsert::excluded;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::kafka::envelope::Envelope;
use crate::pipeline::failure::{Failure, Stage};
use crate::pipeline::transaction::{fold, ProjectionWrite, TransactionChange, TransactionRow};
use crate::store::pool::{ping_postgres, PgPool};
use crate::store::schema::{applied_messages, transactions};
use crate::store::StoreError;

const HANDLER: &str = "transactions";
const LEDGER_ROWS_PER_STATEMENT: usize = 65_535 / 5;
const UPSERT_ROWS_PER_STATEMENT: usize = 65_535 / 18;

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

#[derive(Insertable)]
#[diesel(table_name = applied_messages)]
struct LedgerRow<'a> {
    message_id: Uuid,
    handler: &'a str,
    topic: &'a str,
    kafka_partition: i32,
    kafka_offset: i64,
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
            if changes.len() == 1 {
                return Ok(vec![Err(refused(&batch_error))]);
            }
            // The database answers but refused the batch: find the culprit(s).
            let mut results = Vec::with_capacity(changes.len());
            for change in changes {
                match apply_in_one_transaction(pool, std::slice::from_ref(change)).await {
                    Ok(mut one) => results.push(one.pop().unwrap_or(Ok(Applied::New))),
                    Err(e) => {
                        probe(pool, &e).await?;
                        results.push(Err(refused(&e)));
                    }
                }
            }
            Ok(results)
        }
    }
}

async fn probe(pool: &PgPool, cause: &StoreError) -> Result<(), Unavailable> {
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
        .map(|(c, e)| LedgerRow {
            message_id: c.message_id,
            handler: HANDLER,
            topic: &e.topic,
            kafka_partition: e.partition,
            kafka_offset: e.offset,
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
            for chunk in ledger.chunks(LEDGER_ROWS_PER_STATEMENT) {
                let inserted: Vec<Uuid> = diesel::insert_into(applied_messages::table)
                    .values(chunk)
                    .on_conflict_do_nothing()
                    .returning(applied_messages::message_id)
                    .get_results(conn)
                    .await?;
                new_ids.extend(inserted);
            }
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

async fn write(conn: &mut AsyncPgConnection, writes: Vec<ProjectionWrite>) -> QueryResult<()> {
    let mut upserts: Vec<TransactionRow> = Vec::with_capacity(writes.len());
    for w in writes {
        match w {
            ProjectionWrite::Upsert(row) => upserts.push(*row),
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
    for chunk in upserts.chunks(UPSERT_ROWS_PER_STATEMENT) {
        use transactions::dsl as t;
        diesel::insert_into(t::transactions)
            .values(chunk)
            .on_conflict(t::id)
            .do_update()
            .set((
                t::user_id.eq(excluded(t::user_id)),
                t::transaction_type.eq(excluded(t::transaction_type)),
                t::product.eq(excluded(t::product)),
                t::status.eq(excluded(t::status)),
                t::currency.eq(excluded(t::currency)),
                t::amount.eq(excluded(t::amount)),
                t::created_at.eq(excluded(t::created_at)),
                t::metadata.eq(excluded(t::metadata)),
                t::enrichment.eq(excluded(t::enrichment)),
                t::enriched.eq(excluded(t::enriched)),
                t::enriched_at.eq(excluded(t::enriched_at)),
                t::searchable_content.eq(excluded(t::searchable_content)),
                t::version.eq(t::version + excluded(t::version)),
                t::last_event_type.eq(excluded(t::last_event_type)),
                t::last_message_id.eq(excluded(t::last_message_id)),
                t::updated_at.eq(excluded(t::updated_at)),
                t::deleted_at.eq(excluded(t::deleted_at)),
            ))
            .execute(conn)
            .await?;
    }
    Ok(())
}
