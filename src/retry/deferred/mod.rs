//! The durable retry schedule in PostgreSQL for `retry = "deferred"` http
//! routes: a message whose delivery fails transiently is parked here instead
//! of holding its partition, and its key's later messages wait behind it.
//!
//! - [`store`]: the SQL (park in the same transaction as the audit entries,
//!   the cheap "does this key wait?" check, claiming due heads with
//!   `FOR UPDATE SKIP LOCKED`, completing, rescheduling).
//! - the processor's side (which messages of a batch wait, and parking them:
//!   audit entries and schedule rows in one transaction) is the http
//!   handler's: `handlers/http/deferral.rs`.
//! - [`read`]: the schedule for the API: open deliveries, a message's
//!   entry, "run it now".
//! - the retry worker every instance runs (re-attempts due entries with
//!   the retry backoff, ends each processed or dead-lettered, and so
//!   releases its key's waiters in order) delivers through the http
//!   handler, so it is the http handler's too:
//!   `handlers/http/retry_worker.rs`. This module is below both.
//!
//! The offset rule holds: a schedule row, committed with its audit entry, is
//! a durable outcome, so the partition may commit past it. Rebalances and
//! restarts change nothing: the schedule is just the table.

pub mod gate;
pub mod read;
pub mod store;
pub mod worker;

/// A failure of the schedule's own statements (PostgreSQL unreachable or
/// refusing): the caller waits and tries again, as for any audit write.
#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    #[error("retry schedule: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    #[error("retry schedule: {0}")]
    Connect(#[from] crate::outcome::connection::ConnectError),
    #[error("retry schedule: the outcome writer refused or stopped: {0}")]
    Outcome(String),
    #[error("retry schedule ledger: {0}")]
    Ledger(String),
    #[error("retry schedule dead-letter push: {0}")]
    Redis(String),
}
