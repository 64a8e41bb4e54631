//! Bounded shutdown: SIGTERM ends `custodian run` within
//! `runtime.drain_timeout` + [`MARGIN`], whatever Kafka, PostgreSQL or Redis
//! do. `app.rs` drains first (bounded by the drain timeout), then runs the
//! final steps here, each on a detached thread with its own bound; a
//! watchdog ends the process if the orderly path overruns anyway.
//!
//! Why detached threads: librdkafka's synchronous commit, the event thread's
//! revocation callback and the consumer's close all block for as long as the
//! broker is unreachable (a sync commit waits until the group session
//! expires). On the runtime's blocking pool such a call would still hold up
//! the exit, because dropping a tokio runtime joins that pool. A step that
//! overruns its bound is left behind; the offsets it did not commit are
//! redelivered, which the offsets contract already allows.

use std::time::Duration;

use tokio::sync::oneshot;

/// SIGTERM to exit: at most `runtime.drain_timeout` plus this (README,
/// "Shutdown").
pub const MARGIN: Duration = Duration::from_secs(10);

/// The final synchronous offset commit.
pub const COMMIT_BOUND: Duration = Duration::from_secs(3);
/// The `kafka-events` thread finishing its current callback and exiting.
pub const EVENTS_BOUND: Duration = Duration::from_secs(1);
/// In-flight HTTP requests finishing.
pub const HTTP_BOUND: Duration = Duration::from_secs(2);
/// Closing the consumer: leaving the group, destroying the client.
pub const CLOSE_BOUND: Duration = Duration::from_secs(2);

/// The watchdog fires this much before the documented bound, so the exit
/// itself still lands inside it.
const WATCHDOG_LEAD: Duration = Duration::from_millis(500);

/// Exit status when the watchdog had to end the process (as `timeout(1)`).
pub const WATCHDOG_EXIT_CODE: i32 = 124;

/// Runs `step` on a thread of its own and waits up to `bound` for its
/// result; `None` if it did not finish (it is then left running, detached,
/// and nothing waits for it) or could not start.
pub async fn bounded<T, F>(name: &'static str, bound: Duration, step: F) -> Option<T>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let (done, result) = oneshot::channel();
    let spawned = std::thread::Builder::new()
        .name(format!("stop-{name}"))
        .spawn(move || {
            let _ = done.send(step());
        });
    if let Err(e) = spawned {
        tracing::warn!(step = name, error = %e, "cannot start shutdown step");
        return None;
    }
    match tokio::time::timeout(bound, result).await {
        Ok(Ok(value)) => Some(value),
        Ok(Err(_)) => {
            tracing::warn!(step = name, "shutdown step failed");
            None
        }
        Err(_) => {
            tracing::warn!(
                step = name,
                bound_ms = bound.as_millis() as u64,
                "shutdown step did not finish in time; leaving it behind"
            );
            None
        }
    }
}

/// The backstop, started when the signal arrives: if the process still runs
/// `drain_timeout + MARGIN` (less a lead for the exit itself) later, it logs
/// and exits with [`WATCHDOG_EXIT_CODE`]. Only for the `run` process: it
/// ends the whole process.
pub fn arm_watchdog(drain_timeout: Duration) {
    let bound = drain_timeout.saturating_add(MARGIN);
    let fire_after = bound.saturating_sub(WATCHDOG_LEAD);
    let spawned = std::thread::Builder::new()
        .name("stop-watchdog".into())
        .spawn(move || {
            std::thread::sleep(fire_after);
            tracing::error!(
                bound_ms = bound.as_millis() as u64,
                "shutdown overran its bound; exiting now (whatever was not committed is redelivered)"
            );
            std::process::exit(WATCHDOG_EXIT_CODE);
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot start the shutdown watchdog; shutdown is unguarded");
    }
}

// The final steps must fit in the margin before the watchdog fires.
const _: () = assert!(
    COMMIT_BOUND.as_millis()
        + EVENTS_BOUND.as_millis()
        + HTTP_BOUND.as_millis()
        + CLOSE_BOUND.as_millis()
        + WATCHDOG_LEAD.as_millis()
        < MARGIN.as_millis(),
    "the final shutdown steps leave the watchdog no room inside MARGIN"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_step_past_its_bound_is_left_behind_and_the_runtime_drops_without_it() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("runtime");
        let (release, blocked) = std::sync::mpsc::channel::<()>();
        let left = rt.block_on(bounded(
            "test-stuck",
            Duration::from_millis(50),
            move || {
                // Blocks until the test lets go, like a commit to a dead broker.
                let _ = blocked.recv();
                1
            },
        ));
        assert_eq!(left, None);
        let done = rt.block_on(bounded("test-quick", Duration::from_secs(5), || 2));
        assert_eq!(done, Some(2));
        // On the blocking pool the stuck step would make this drop wait.
        drop(rt);
        let _ = release.send(());
    }
}
