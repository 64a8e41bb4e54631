//! The one place an outcome becomes durable. For a flush of settled
//! messages (one or more partitions' batches), one PostgreSQL transaction
//! holds the ledger rows, the stored effects (projection upserts), the
//! retry schedule's rows, the http delivery records and the chained audit
//! entries (`writer`); after it commits, the dead-letter pushes go to
//! Redis (idempotent), and only then are the offsets acknowledged.
//!
//! Its front door is the auditor actor (`actors/auditor.rs`): processors
//! decide and carry out effects that leave the process (an http delivery, a
//! retry record), then hand every message, with what must be written for it
//! ([`Effects`]), to the auditor of its partition (`handlers/submit.rs`). The retry
//! worker hands its outcomes to the same auditors, so within a process each
//! partition's chain has one writer; across instances the unique
//! `(chain_id, chain_seq)` is the barrier.
//!
//! - `append`: linking entries to their chains and the binary COPY.
//! - `chained`: the single-entry path (operator actions, the relay), on
//!   chains of their own, with the same linking step.
//! - `connection`: the writer's own tokio-postgres connection (COPY).
//! - [`crash_point`]: where the crash tests kill the process.
//! - `effects`: the stored effects' SQL.
//! - `writer`: the transaction: resolve, write, link, COPY, commit.
//! - `refusal`: what a refused statement means for its message.

pub(crate) mod append;
pub(crate) mod chained;
pub(crate) mod connection;
pub mod crash_point;
pub(crate) mod effects;
pub(crate) mod refusal;
pub(crate) mod writer;

use futures::future::BoxFuture;

use crate::failure::Failure;

/// A flush that did not land. The auditor waits and tries again: outcomes
/// never give up.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error(transparent)]
    Connect(#[from] connection::ConnectError),
    #[error("outcome write failed: {0}")]
    Write(#[from] tokio_postgres::Error),
    #[error("audit chain: {0}")]
    Chain(String),
}

use crate::handlers::registry::Task;
use crate::pipeline::Settled;

/// Statements that commit in the same transaction as a message's audit
/// entries (the retry schedule's rows). They may run more than once: a
/// chain collision rolls the transaction back and it is written again.
pub trait Alongside: Send + Sync {
    fn run<'a>(
        &'a self,
        tx: &'a tokio_postgres::Transaction<'a>,
    ) -> BoxFuture<'a, Result<(), tokio_postgres::Error>>;
}

/// What must be written for a message besides its audit entries.
#[derive(Default)]
pub struct Effects {
    /// A stored kind's work (or an http delivery's ledger row): its ledger
    /// row, and its effect if the id is new. The writer decides the
    /// outcome: processed, a duplicate, or an id conflict (dead-lettered).
    pub apply: Option<Task>,
    /// The record of a finished http delivery.
    pub delivery: Option<effects::DeliveryRecord>,
    /// Retry schedule statements (a deferral's insert; the retry worker's
    /// reschedule or completion).
    pub schedule: Option<Box<dyn Alongside>>,
    /// The `detail` of the outcome entry (RETRY_SCHEDULED: route, due time).
    pub detail: Option<serde_json::Value>,
    /// Continues a delivery the retry worker attempts: no receipt (the
    /// first delivery's entry has it), no RETRY_SCHEDULED entry, and a
    /// MESSAGE_PROCESSED entry carries this attempt.
    pub continues: Option<i32>,
    /// Already pushed to the DLQ before the transaction (the retry worker,
    /// whose schedule row is the only other copy): not pushed again.
    pub pushed: bool,
}

impl std::fmt::Debug for Effects {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Effects")
            .field("apply", &self.apply.as_ref().map(Task::message_id))
            .field("delivery", &self.delivery.is_some())
            .field("schedule", &self.schedule.is_some())
            .field("continues", &self.continues)
            .finish_non_exhaustive()
    }
}

/// A settled message and what must be written for it.
#[derive(Debug)]
pub struct Pending {
    pub settled: Settled,
    pub effects: Effects,
}

impl From<Settled> for Pending {
    fn from(settled: Settled) -> Self {
        Pending {
            settled,
            effects: Effects::default(),
        }
    }
}

/// The writer's answer for one submission (one partition's batch).
#[derive(Debug, Default)]
pub struct Verdict {
    /// Set when the database refused one message's effect: nothing of it,
    /// nor of anything after it in the submission, was written; everything
    /// before it was, and is acknowledged.
    pub refused: Option<Refused>,
}

/// A message whose effect the database refused, and the messages after it.
#[derive(Debug)]
pub struct Refused {
    pub pending: Pending,
    pub failure: Failure,
    /// The submission's later messages, not written: they follow it.
    pub held: Vec<Pending>,
}
