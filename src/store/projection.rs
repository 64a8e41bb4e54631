//! The idempotency ledger (`applied_messages`) and the `transactions`
//! projection's SQL, and what a failed statement means.
//!
//! The handlers (`crate::handlers`) insert ledger rows and apply only the
//! ids that were new (`ON CONFLICT DO NOTHING RETURNING`), in one database
//! transaction, so the same event delivered twice changes nothing the
//! second time. A dead-lettered message never reaches the ledger, so it can
//! be replayed.
//!
//! When a statement fails, [`classify`] decides what it means: PostgreSQL
//! unreachable (pause, not the message's fault), a transient refusal
//! (timeout, deadlock: retry), or a permanent one (dead-letter).

use std::collections::HashMap;
use std::time::Duration;

use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::pipeline::failure::{Failure, Retry, Stage};
use crate::pipeline::transaction::{ProjectionWrite, TransactionRow};
use crate::retry::TryError;
use crate::store::pool::{ping_postgres, PgPool};
use crate::store::schema::transactions;
use crate::store::StoreError;

/// Whether this delivery applied the event, or an earlier one had (a
/// redelivery, a producer duplicate, or a second copy in the same batch).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    New,
    AlreadyApplied,
    /// The id was applied with another payload (SHA-256 given): this record
    /// is not a duplicate, and nothing of it was applied.
    Conflict([u8; 32]),
    /// Not attempted: an earlier delivery of this very record already
    /// parked it (in the retry schedule or the DLQ) before a crash or a
    /// rebalance read it again (`store::redelivery`).
    Redelivered,
}

/// One row of the `applied_messages` ledger: this id was applied, by this
/// handler kind, from a payload with this digest.
pub struct LedgerRow<'a> {
    pub message_id: Uuid,
    pub handler: &'a str,
    pub payload_sha256: &'a [u8; 32],
}

/// Whether a record with payload `digest` repeats what the ledger holds for
/// its id (`applied`: `None` for rows from before digests were kept).
pub fn repeat(applied: Option<&[u8; 32]>, digest: &[u8; 32]) -> Applied {
    match applied {
        Some(applied) if applied != digest => Applied::Conflict(*applied),
        _ => Applied::AlreadyApplied,
    }
}

/// Error texts PostgreSQL gives when the server itself is in trouble (diesel
/// does not expose their SQLSTATE: they all arrive as `Unknown`, so this
/// assumes the server's `lc_messages` is English, its default). While a
/// probe fails they mean "unavailable"; once it answers, a transient failure.
const SERVER_TROUBLE: &[&str] = &[
    "terminating connection",
    "the database system is",
    "too many connections",
    "could not extend file",
    "No space left on device",
    "out of memory",
    "cannot execute",
];

/// Error texts of transient refusals: the statement may well pass if tried
/// again (`kind`, needle).
const TRANSIENT: &[(&str, &str)] = &[
    (
        "database_timeout",
        "canceling statement due to statement timeout",
    ),
    (
        "database_timeout",
        "canceling statement due to lock timeout",
    ),
    ("database_timeout", "lock timeout"),
    ("database_conflict", "deadlock detected"),
    ("database_conflict", "could not serialize"),
    (
        "database_timeout",
        "canceling statement due to user request",
    ),
];

/// What a failed statement means for the message that caused it.
///
/// No connection from the pool, or any error while a `SELECT 1` probe fails:
/// [`TryError::Unavailable`] (wait, not an attempt). A timeout, a conflict,
/// a broken connection or server trouble while the probe answers: a
/// transient failure. Anything else the database answered: permanent.
pub async fn classify(pool: &PgPool, error: &StoreError) -> TryError {
    use diesel::result::{DatabaseErrorKind as K, Error as E};
    let text = error.to_string();
    // No connection at all: nothing to probe with, nothing was tried.
    if let StoreError::Pool(_) = error {
        return TryError::Unavailable {
            dependency: "postgres",
            error: text,
        };
    }
    if let Err(probe) = ping_postgres(pool, Duration::from_secs(2)).await {
        return TryError::Unavailable {
            dependency: "postgres",
            error: format!("{text} (probe: {probe})"),
        };
    }
    // PostgreSQL answers. A broken connection or a server in trouble is then
    // a transient failure of this statement: retried, and if it keeps
    // happening (the message itself breaks the backend) dead-lettered
    // rather than blocking its partition forever.
    let troubled = matches!(
        error,
        StoreError::Query(
            E::DatabaseError(
                K::UnableToSendCommand | K::ClosedConnection | K::ReadOnlyTransaction,
                _
            ) | E::BrokenTransactionManager
                | E::RollbackErrorOnCommit { .. }
        )
    ) || SERVER_TROUBLE.iter().any(|needle| text.contains(needle));
    if troubled {
        return TryError::Failed(transient("database_unavailable", text));
    }
    if let StoreError::Query(E::DatabaseError(K::SerializationFailure, _)) = error {
        return TryError::Failed(transient("database_conflict", text));
    }
    // A missing referenced row may just not be there yet: the event that
    // creates it can be on another partition (a user and its orders are keyed
    // differently). Retried with backoff, then parked.
    if let StoreError::Query(E::DatabaseError(K::ForeignKeyViolation, _)) = error {
        return TryError::Failed(transient("constraint_violation", text));
    }
    if let Some((kind, _)) = TRANSIENT.iter().find(|(_, needle)| text.contains(needle)) {
        return TryError::Failed(transient(kind, text));
    }
    let kind = match error {
        StoreError::Query(E::DatabaseError(
            K::UniqueViolation | K::NotNullViolation | K::CheckViolation,
            _,
        )) => "constraint_violation",
        _ => "database_rejected",
    };
    TryError::Failed(Failure::permanent(Stage::Process, kind, text))
}

/// Which of `ids` the ledger already has (their effect happened before),
/// with the payload digest each was applied with.
pub async fn already_applied(
    pool: &PgPool,
    ids: &[Uuid],
) -> Result<HashMap<Uuid, Option<[u8; 32]>>, StoreError> {
    let mut conn = pool
        .get()
        .await
        .map_err(|e| StoreError::Pool(e.to_string()))?;
    Ok(applied_digests(&mut conn, ids).await?)
}

/// [`already_applied`] on a connection the caller holds (inside its
/// transaction).
pub async fn applied_digests(
    conn: &mut AsyncPgConnection,
    ids: &[Uuid],
) -> QueryResult<HashMap<Uuid, Option<[u8; 32]>>> {
    use crate::store::schema::applied_messages as a;
    Ok(a::table
        .filter(a::message_id.eq_any(ids))
        .select((a::message_id, a::payload_sha256))
        .load::<(Uuid, Option<Vec<u8>>)>(conn)
        .await?
        .into_iter()
        .map(|(id, digest)| (id, digest.and_then(|d| <[u8; 32]>::try_from(d).ok())))
        .collect())
}

fn transient(kind: &'static str, message: String) -> Failure {
    Failure {
        stage: Stage::Process,
        retry: Retry::Transient,
        kind,
        message,
    }
}

/// Writes the folded transaction events to the `transactions` projection
/// (inside the caller's database transaction).
pub async fn write(
    conn: &mut AsyncPgConnection,
    writes: Vec<ProjectionWrite<'_>>,
) -> QueryResult<()> {
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
pub async fn insert_ledger(
    conn: &mut AsyncPgConnection,
    rows: &[LedgerRow<'_>],
) -> QueryResult<Vec<Uuid>> {
    use diesel::sql_types::{Array, Bytea, Text, Uuid as SqlUuid};
    let inserted: Vec<InsertedId> = diesel::sql_query(
        "INSERT INTO applied_messages (message_id, handler, payload_sha256) \
         SELECT * FROM unnest($1::uuid[], $2::text[], $3::bytea[]) \
         ON CONFLICT (message_id) DO NOTHING RETURNING message_id",
    )
    .bind::<Array<SqlUuid>, _>(rows.iter().map(|r| r.message_id).collect::<Vec<_>>())
    .bind::<Array<Text>, _>(rows.iter().map(|r| r.handler).collect::<Vec<_>>())
    .bind::<Array<Bytea>, _>(
        rows.iter()
            .map(|r| r.payload_sha256.as_slice())
            .collect::<Vec<_>>(),
    )
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
