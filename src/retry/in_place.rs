//! Trying one message's work until it succeeds, fails for good, or runs out
//! of attempts.
//!
//! Three ways a try can fail, handled differently:
//! - `Unavailable`: the dependency does not answer (PostgreSQL down, no
//!   connection). Not the message's fault, so not an attempt: wait with the
//!   dependency backoff and try again, for as long as it takes. The partition
//!   pauses meanwhile and nothing is committed past the message.
//! - a transient `Failure` (statement timeout, deadlock, a downstream 5xx):
//!   an attempt. Retried in place after a capped, jittered exponential
//!   backoff, up to `retry.max_attempts`, then dead-lettered.
//! - a permanent `Failure` (a constraint violation, a 4xx): one attempt,
//!   dead-lettered at once.
//!
//! Every failed attempt is returned, so the audit trail shows each one.
//!
//! Waits (retry backoffs and dependency waits) end early when the partition
//! assignment that read the message ends (`revoked`): the message is then
//! the new owner's, and this one must not park it (see `actors/processor.rs`).

use std::future::Future;
use std::time::Duration;

use chrono::Utc;
use tokio_util::sync::CancellationToken;

use crate::config::RetrySettings;
use crate::failure::{AttemptFailure, TryError};
use crate::telemetry::retry::Retrying;
use crate::telemetry::Emit;
use crate::wait::backoff::Backoff;

use crate::wait::{wait_out_unless, DependencyWait, Down};

/// Sleeps `delay` unless `revoked` fires first; false when it did.
async fn sleep_unless(delay: Duration, revoked: &CancellationToken) -> bool {
    tokio::select! {
        () = tokio::time::sleep(delay) => true,
        () = revoked.cancelled() => false,
    }
}

/// Runs `op` until it succeeds (`Ok`), or fails permanently or
/// `max_attempts` times (`Err`). Either way, the failed attempts come back
/// in order. `topic` labels the retry metric. When `revoked` fires during a
/// wait, it stops and answers `Err` at once: the caller checks `revoked`
/// before parking anything.
pub async fn run<T, F, Fut>(
    policy: &RetrySettings,
    dependency: DependencyWait,
    topic: &str,
    revoked: &CancellationToken,
    mut op: F,
) -> (Result<T, ()>, Vec<AttemptFailure>)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, TryError>>,
{
    let mut failures: Vec<AttemptFailure> = Vec::new();
    let mut retry = Backoff::new(policy.backoff_min, policy.backoff_max);
    let mut down = dependency.backoff();
    loop {
        match op().await {
            Ok(value) => return (Ok(value), failures),
            Err(TryError::Unavailable { dependency, error }) => {
                if !wait_out_unless(&mut down, &Down::new(dependency, error), revoked).await {
                    return (Err(()), failures);
                }
            }
            Err(TryError::Failed(failure)) => {
                let attempt = failures.len() as u32 + 1;
                let give_up = failure.is_permanent() || attempt >= policy.max_attempts;
                let stage = failure.stage.as_str();
                let kind = failure.kind;
                failures.push(AttemptFailure {
                    attempt,
                    at: Utc::now(),
                    failure,
                });
                if give_up {
                    return (Err(()), failures);
                }
                let delay = retry.next_delay();
                Retrying {
                    topic,
                    stage,
                    kind,
                    attempt,
                    delay,
                }
                .emit();
                if !sleep_unless(delay, revoked).await {
                    return (Err(()), failures);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::failure::{Failure, Retry, Stage};
    use std::cell::Cell;

    fn policy(max_attempts: u32) -> RetrySettings {
        RetrySettings {
            max_attempts,
            backoff_min: Duration::from_millis(1),
            backoff_max: Duration::from_millis(2),
        }
    }

    const NO_WAIT: DependencyWait = DependencyWait {
        min: Duration::from_millis(1),
        max: Duration::from_millis(1),
    };

    fn transient() -> Failure {
        Failure {
            stage: Stage::Process,
            retry: Retry::Transient,
            kind: "database_timeout",
            message: "statement timeout".into(),
        }
    }

    #[tokio::test]
    async fn transient_failures_are_retried_until_success() {
        let calls = Cell::new(0);
        let (result, failures) = run(&policy(5), NO_WAIT, "t", &CancellationToken::new(), || {
            calls.set(calls.get() + 1);
            let n = calls.get();
            async move {
                if n < 3 {
                    Err(TryError::Failed(transient()))
                } else {
                    Ok(n)
                }
            }
        })
        .await;
        assert_eq!(result, Ok(3));
        assert_eq!(
            failures.iter().map(|f| f.attempt).collect::<Vec<_>>(),
            [1, 2]
        );
    }

    #[tokio::test]
    async fn transient_failures_stop_at_max_attempts() {
        let (result, failures) = run(
            &policy(3),
            NO_WAIT,
            "t",
            &CancellationToken::new(),
            || async { Err::<(), _>(TryError::Failed(transient())) },
        )
        .await;
        assert_eq!(result, Err(()));
        assert_eq!(failures.len(), 3);
    }

    #[tokio::test]
    async fn permanent_failures_are_not_retried_and_outages_are_not_attempts() {
        let calls = Cell::new(0);
        let (result, failures) = run(&policy(3), NO_WAIT, "t", &CancellationToken::new(), || {
            calls.set(calls.get() + 1);
            let n = calls.get();
            async move {
                if n <= 4 {
                    Err::<(), _>(TryError::Unavailable {
                        dependency: "postgres",
                        error: "down".into(),
                    })
                } else {
                    Err(TryError::Failed(Failure::schema("bad")))
                }
            }
        })
        .await;
        assert_eq!(result, Err(()));
        assert_eq!(calls.get(), 5, "four outages waited out, then one attempt");
        assert_eq!(failures.len(), 1);
        assert_eq!(failures[0].attempt, 1);
    }

    #[tokio::test]
    async fn a_revoked_assignment_ends_the_retries_at_the_next_wait() {
        let revoked = CancellationToken::new();
        let slow = RetrySettings {
            max_attempts: 1000,
            backoff_min: Duration::from_secs(3600),
            backoff_max: Duration::from_secs(3600),
        };
        let calls = Cell::new(0);
        let run = run(&slow, NO_WAIT, "t", &revoked, || {
            calls.set(calls.get() + 1);
            async { Err::<(), _>(TryError::Failed(transient())) }
        });
        revoked.cancel();
        // An hour's backoff: only the revocation can end this in time.
        let (result, failures) = tokio::time::timeout(Duration::from_secs(5), run)
            .await
            .expect("the revocation ends the wait");
        assert_eq!(result, Err(()));
        assert_eq!(calls.get(), 1, "no attempt after the revocation");
        assert_eq!(failures.len(), 1);
    }
}
