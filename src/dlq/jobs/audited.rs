//! What the audit trail says a replay job replayed: its MESSAGE_REPLAYED
//! rows, which name it in `detail.job_id` (`dlq/replay.rs` writes them, the
//! partial index of migration 000014 finds them). A job's counts are
//! reconciled with them when it stops, and a resumed job skips their ids.

use std::collections::HashSet;

use diesel::sql_types::Text;
use diesel::QueryableByName;
use diesel_async::RunQueryDsl;
use uuid::Uuid;

use crate::dlq::operator::{postgres_down, DlqError};
use crate::store::PgPool;

/// A job's MESSAGE_REPLAYED rows.
#[derive(Debug, Default)]
pub struct Audited {
    /// How many rows.
    pub rows: u64,
    /// The messages they are about (each once).
    pub ids: HashSet<Uuid>,
}

#[derive(QueryableByName)]
struct Row {
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    message_id: Uuid,
}

/// The MESSAGE_REPLAYED rows of job `job`. The predicate is the index's
/// (`status` and `detail->>'job_id'`), so only the job's rows are read.
pub async fn replayed(postgres: &PgPool, job: Uuid) -> Result<Audited, DlqError> {
    let mut conn = postgres.get().await.map_err(postgres_down)?;
    let rows: Vec<Row> = diesel::sql_query(
        "SELECT message_id FROM audit_log \
         WHERE status = 'MESSAGE_REPLAYED' AND detail->>'job_id' = $1",
    )
    .bind::<Text, _>(job.to_string())
    .load(&mut conn)
    .await
    .map_err(postgres_down)?;
    Ok(Audited {
        rows: rows.len() as u64,
        ids: rows.into_iter().map(|r| r.message_id).collect(),
    })
}
