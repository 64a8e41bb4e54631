//! Keeps `http_deliveries` to `deliveries.retention`: a task in every
//! instance with an http route deletes the records of deliveries that
//! finished longer ago than that. They are the operator's summary, not
//! evidence: the audit trail keeps every attempt. Instances prune the same
//! rows side by side harmlessly (a delete finds what is left).

use std::time::Duration;

use diesel::sql_types::Double;
use diesel_async::RunQueryDsl;
use tokio_util::sync::CancellationToken;

use crate::store::{PgPool, StoreError};

/// Rows deleted per statement, so a large backlog does not hold one long
/// transaction.
const CHUNK: i64 = 10_000;
/// Bounds of the pause between prunes (a tenth of the retention).
const MIN_INTERVAL: Duration = Duration::from_secs(1);
const MAX_INTERVAL: Duration = Duration::from_secs(600);

/// Deletes the records finished more than `retention` ago; answers how
/// many.
pub async fn prune(pool: &PgPool, retention: Duration) -> Result<usize, StoreError> {
    let mut conn = pool
        .get()
        .await
        .map_err(|e| StoreError::Pool(e.to_string()))?;
    let mut total = 0;
    loop {
        let deleted = diesel::sql_query(
            // The age again outside: a replay may rewrite a chosen row
            // (finished_at = now()) before it is deleted.
            "DELETE FROM http_deliveries WHERE message_id IN ( \
               SELECT message_id FROM http_deliveries \
                WHERE finished_at < now() - make_interval(secs => $1) \
                LIMIT $2) \
             AND finished_at < now() - make_interval(secs => $1)",
        )
        .bind::<Double, _>(retention.as_secs_f64())
        .bind::<diesel::sql_types::BigInt, _>(CHUNK)
        .execute(&mut conn)
        .await?;
        total += deleted;
        if (deleted as i64) < CHUNK {
            return Ok(total);
        }
    }
}

/// Starts the pruning when some route is an http route (on the current
/// runtime); it ends at `stop`.
pub fn spawn(
    settings: &crate::config::Settings,
    pool: PgPool,
    routes: &super::Endpoints,
    stop: CancellationToken,
) -> Option<tokio::task::JoinHandle<()>> {
    if routes.all().is_empty() {
        return None;
    }
    let retention = settings.deliveries.retention;
    Some(actix_rt::spawn(run(pool, retention, stop)))
}

/// Prunes every tenth of `retention` (1 s to 10 min) until `stop`.
async fn run(pool: PgPool, retention: Duration, stop: CancellationToken) {
    let interval = (retention / 10).clamp(MIN_INTERVAL, MAX_INTERVAL);
    loop {
        let pruned = tokio::select! {
            () = stop.cancelled() => return,
            pruned = prune(&pool, retention) => pruned,
        };
        match pruned {
            Ok(0) => {}
            Ok(n) => tracing::debug!(records = n, "old http delivery records pruned"),
            // The next round tries again; nothing depends on it meanwhile.
            Err(e) => tracing::warn!(error = %e, "pruning http delivery records failed"),
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(interval) => {}
        }
    }
}
