//! Expires pending requests on time: a task in every instance that, every
//! tenth of `operators.approval_ttl` (1 s to 1 min), records each request
//! past its time REQUEST_EXPIRED. Instances doing it side by side record
//! each once (the update re-checks the state under its row lock).

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::store::PgPool;

const MIN_INTERVAL: Duration = Duration::from_secs(1);
const MAX_INTERVAL: Duration = Duration::from_secs(60);

/// Starts the expiry task on the current runtime; it ends at `stop`.
pub fn spawn(pool: PgPool, ttl: Duration, stop: CancellationToken) -> tokio::task::JoinHandle<()> {
    let every = (ttl / 10).clamp(MIN_INTERVAL, MAX_INTERVAL);
    actix_rt::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            let expired = async {
                let mut conn = pool.get().await.map_err(|e| e.to_string())?;
                super::expire_due(&mut conn)
                    .await
                    .map_err(|e| e.to_string())
            };
            match expired.await {
                Ok(0) => {}
                Ok(n) => tracing::info!(expired = n, "four-eyes requests expired"),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot expire four-eyes requests now; trying again")
                }
            }
        }
    })
}
