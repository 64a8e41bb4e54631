//! The idempotency ledger (`applied_messages`): what an id's application
//! looks like, and reads of it.
//!
//! The outcome writer (`crate::outcome`) inserts ledger rows and applies
//! only the ids that were new (`ON CONFLICT DO NOTHING RETURNING`), in the
//! transaction that holds their audit entries, so the same event delivered
//! twice changes nothing the second time. A dead-lettered message never
//! reaches the ledger, so it can be replayed.

use std::collections::HashMap;

use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::store::pool::PgPool;
use crate::store::StoreError;

/// Whether this delivery applied the event, or an earlier one had (a
/// redelivery, a producer duplicate, or a second copy in the same batch).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    New,
    Already,
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
        _ => Applied::Already,
    }
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
