//! Waiting until a dependency (PostgreSQL, Redis, a downstream) is back.
//!
//! An unavailable dependency is not the message's fault and not an attempt:
//! the work waits with capped, jittered backoff (each wait logged and
//! counted in `dependency_waits`) and tries again, for as long as its
//! [`Patience`] allows. Every "try until it answers" loop goes through
//! [`until_back`].

pub mod backoff;

use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::telemetry::pipeline::DependencyWaiting;
use crate::telemetry::Emit;
use crate::wait::backoff::Backoff;

/// How long to wait for a dependency that is down (not an attempt).
#[derive(Debug, Clone, Copy)]
pub struct DependencyWait {
    pub min: Duration,
    pub max: Duration,
}

impl DependencyWait {
    pub fn backoff(self) -> Backoff {
        Backoff::new(self.min, self.max)
    }
}

/// A dependency that did not answer: which, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Down {
    pub dependency: &'static str,
    pub error: String,
}

impl Down {
    pub fn new(dependency: &'static str, error: impl ToString) -> Self {
        Down {
            dependency,
            error: error.to_string(),
        }
    }
}

/// How long [`until_back`] keeps trying.
#[derive(Debug, Clone, Copy)]
pub enum Patience<'a> {
    /// Until it answers (audit rows, ledger rows of deliveries made).
    Forever,
    /// Until it answers or this partition assignment ends: the records are
    /// then the next owner's.
    UntilRevoked(&'a CancellationToken),
    /// Until it answers or this instant passes (start-up).
    Until(Instant),
}

/// Runs `op` until it succeeds, waiting out each [`Down`] with `wait`'s
/// backoff; the last `Down` once `patience` runs out.
pub async fn until_back<T>(
    wait: DependencyWait,
    patience: Patience<'_>,
    mut op: impl AsyncFnMut() -> Result<T, Down>,
) -> Result<T, Down> {
    let mut backoff = wait.backoff();
    loop {
        let down = match op().await {
            Ok(value) => return Ok(value),
            Err(down) => down,
        };
        let waited = match patience {
            Patience::Forever => {
                wait_out(&mut backoff, &down).await;
                true
            }
            Patience::UntilRevoked(revoked) => {
                wait_out_unless(&mut backoff, &down, revoked).await && !revoked.is_cancelled()
            }
            Patience::Until(deadline) if Instant::now() < deadline => {
                wait_out(&mut backoff, &down).await;
                true
            }
            Patience::Until(_) => false,
        };
        if !waited {
            return Err(down);
        }
    }
}

/// Waits out one period of a dependency's unavailability, counting it.
async fn wait_out(backoff: &mut Backoff, down: &Down) {
    let delay = backoff.next_delay();
    DependencyWaiting {
        dependency: down.dependency,
        error: &down.error,
        delay,
        what: "dependency unavailable: pausing",
    }
    .emit();
    tokio::time::sleep(delay).await;
}

/// `wait_out`, unless `revoked` fires first; false when it did (the wait
/// and the work behind it are abandoned).
pub(crate) async fn wait_out_unless(
    backoff: &mut Backoff,
    down: &Down,
    revoked: &CancellationToken,
) -> bool {
    tokio::select! {
        () = wait_out(backoff, down) => true,
        () = revoked.cancelled() => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    const NO_WAIT: DependencyWait = DependencyWait {
        min: Duration::from_millis(1),
        max: Duration::from_millis(1),
    };

    #[tokio::test]
    async fn tries_again_until_the_dependency_answers() {
        let calls = Cell::new(0);
        let got = until_back(NO_WAIT, Patience::Forever, || {
            calls.set(calls.get() + 1);
            let n = calls.get();
            async move {
                if n < 4 {
                    Err(Down::new("postgres", "refused"))
                } else {
                    Ok(n)
                }
            }
        })
        .await;
        assert_eq!(got, Ok(4));
    }

    #[tokio::test]
    async fn a_revocation_or_a_deadline_ends_the_wait_with_the_last_error() {
        let revoked = CancellationToken::new();
        revoked.cancel();
        let down = || async { Err::<(), _>(Down::new("redis", "no connection")) };
        let got = until_back(NO_WAIT, Patience::UntilRevoked(&revoked), down).await;
        assert_eq!(got, Err(Down::new("redis", "no connection")));
        let got = until_back(NO_WAIT, Patience::Until(Instant::now()), down).await;
        assert_eq!(got, Err(Down::new("redis", "no connection")));
    }
}
