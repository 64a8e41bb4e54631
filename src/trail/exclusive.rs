//! The one PostgreSQL advisory lock that keeps the trail's long-lived
//! changes apart: an erasure, a retention run and the archiving of a
//! partition each hold it for their whole run (on the session of their
//! reading connection), and placing or releasing a legal hold takes it in
//! its transaction. So a hold cannot appear half-way through an erasure, two
//! erasures never rewrite the same archive from the same manifest, and an
//! erasure never runs between a partition's export and its drop. A crashed
//! holder's session ends, and the lock with it.

use tokio_postgres::Client;

/// A constant reads the same in `pg_locks`. Not the relay leader's
/// (`relay::session::LOCK_KEY`), which a running relay holds for good.
pub const KEY: i64 = 0x6175_6469_7465_7863; // "auditexc"

/// Runs `work` holding the lock on `client`'s session, waiting for it first.
pub async fn with<T, E: From<tokio_postgres::Error>>(
    client: &Client,
    work: impl AsyncFnOnce() -> Result<T, E>,
) -> Result<T, E> {
    lock(client).await?;
    let done = work().await;
    unlock(client).await;
    done
}

/// Takes the lock on `client`'s session, waiting for it.
pub async fn lock(client: &Client) -> Result<(), tokio_postgres::Error> {
    client
        .execute("SELECT pg_advisory_lock($1)", &[&KEY])
        .await
        .map(|_| ())
}

/// Releases it. A failed unlock means the session is gone, and the lock
/// with it.
pub async fn unlock(client: &Client) {
    if let Err(e) = client
        .execute("SELECT pg_advisory_unlock($1)", &[&KEY])
        .await
    {
        tracing::debug!(error = %e, "unlocking the trail's advisory lock");
    }
}

/// The statement a diesel transaction takes the lock with (until it ends).
/// A hold waits at most `lock_timeout` for a running erasure, retention or
/// archive run, then answers "busy" rather than hang.
pub const IN_TRANSACTION: &str = "SELECT pg_advisory_xact_lock(7022629598041307235)";

/// How long placing or releasing a hold waits for the lock.
pub const HOLD_WAIT: &str = "SET LOCAL lock_timeout = '10s'";

#[cfg(test)]
mod tests {
    #[test]
    fn the_transaction_statement_names_the_same_lock_and_not_the_relays() {
        assert!(super::IN_TRANSACTION.contains(&super::KEY.to_string()));
        assert_ne!(super::KEY, crate::relay::session::LOCK_KEY);
    }
}
