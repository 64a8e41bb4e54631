//! The partition timer: keeps `audit.partitions_ahead` partitions of
//! `audit_log` ready (a failure is logged and tried again next time, with
//! the partitions ahead as the margin), and with `audit.seal_after` seals
//! every period that ended at least that long ago.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::Access;

pub async fn run(
    access: Access,
    interval: Duration,
    seal_after: Option<Duration>,
    stop: CancellationToken,
) {
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(interval) => {}
        }
        match access.ensure_partitions().await {
            Ok(created) if !created.is_empty() => {
                tracing::info!(partitions = ?created, "audit_log partitions created ahead");
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "creating audit_log partitions ahead failed; trying again next round")
            }
        }
        let Some(after) = seal_after else { continue };
        // Bounded by the configuration check (at most 100 years).
        let Some(before) = chrono::Duration::from_std(after)
            .ok()
            .and_then(|after| chrono::Utc::now().checked_sub_signed(after))
        else {
            continue;
        };
        if let Err(e) = access.seal(before).await {
            tracing::warn!(error = %e, "sealing ended audit periods failed; trying again next round");
        }
    }
}
