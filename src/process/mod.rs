//! How a processor carries out a batch of any handler kind. No actors
//! here: the processor actor hands a batch to [`settle`] and submits what
//! comes back to the outcome writer ([`crate::outcome`]).
//!
//! - The stored kinds (transactions, domain, audit) are decided here and
//!   written by the outcome writer, in the transaction that holds their
//!   ledger rows and audit entries (their SQL is in their folders under
//!   [`crate::handlers`], reached through `handlers::registry::write`).
//! - [`forward`]: the forwarded kind (http), one message at a time per key;
//!   its ledger row and delivery record go to the outcome writer too.
//! - [`submit`]: handing the settled batch to the outcome writer, waiting
//!   for its verdict, retrying a refused effect in place.
//!
//! Retries and dependency waits end when the batch's partition actor stops
//! (`Context::revoked`): its uncommitted records go to the next owner, so
//! failures of a revoked batch are not parked (that would leave a stale DLQ
//! entry for a message the next owner processes). Applied effects are still
//! recorded: they happened.

pub mod forward;
pub mod submit;

use std::sync::Arc;

use chrono::Utc;
use tokio_util::sync::CancellationToken;

use crate::config::RetrySettings;
use crate::dlq::Keys;
use crate::failure::{AttemptFailure, Failure};
use crate::handlers::registry::Task;
use crate::handlers::spec::Path;
use crate::outcome::{Effects, Pending};
use crate::pipeline::{Item, Outcome, Settled};
use crate::retry::deferred::gate::{Deferrals, Parking, Ticket};
use crate::retry::topic::publish::Republisher;
use crate::store::pool::RedisPool;
use crate::store::projection::Applied;
use crate::store::PgPool;
use crate::text::clip;
use crate::wait::DependencyWait;

/// What every batch of an instance's processors shares, built once at
/// start (`app/stages.rs`) and held by each processor behind an `Arc`.
pub struct Shared {
    pub pool: PgPool,
    /// The http routes' endpoints: URLs, timeouts, rate limits.
    pub http: Arc<crate::delivery::Endpoints>,
    pub client: reqwest::Client,
    /// Where routes with `cache_ttl` keep downstream answers.
    pub redis: RedisPool,
    pub keys: Keys,
    pub retry: RetrySettings,
    pub wait: DependencyWait,
    /// The retry topics of `retry_backend = "kafka"` routes.
    pub republisher: Republisher,
    /// Payload formats: what an http route sends for a schema topic's record.
    pub formats: Arc<crate::formats::Formats>,
}

/// What one batch's processing needs: the shared part, and the batch's own.
pub struct Context {
    pub shared: Arc<Shared>,
    /// The retry schedule of deferred http routes, through the processor's
    /// own connection (one per processor: a slow schedule query holds up
    /// only its own processor).
    pub parking: Parking,
    /// The batch's partition assignment ended (see the module comment).
    pub revoked: CancellationToken,
    /// Which of the batch's messages go to the retry schedule.
    pub deferrals: std::cell::RefCell<Deferrals>,
    /// What the outcome writer must write for a message, by offset (an
    /// http delivery's ledger row and record).
    pub effects: std::cell::RefCell<std::collections::HashMap<i64, Effects>>,
}

impl Context {
    /// A fresh batch of the partition whose assignment `revoked` ends.
    pub fn batch(shared: &Arc<Shared>, parking: &Parking, revoked: CancellationToken) -> Self {
        Context {
            shared: Arc::clone(shared),
            parking: parking.clone(),
            revoked,
            deferrals: Default::default(),
            effects: Default::default(),
        }
    }
}

impl std::ops::Deref for Context {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.shared
    }
}

/// One message's result: applied (and how), or not, with its failed attempts.
pub type Attempted = (Result<Applied, ()>, Vec<AttemptFailure>);

/// A batch's messages by outcome.
#[derive(Debug, Default)]
pub struct Settlement {
    /// Processed, or to be applied by the outcome writer.
    pub done: Vec<Pending>,
    /// To be parked in the dead-letter queue.
    pub failed: Vec<Pending>,
    /// To be parked in the retry schedule (deferred http routes).
    pub scheduled: Vec<(Pending, Ticket)>,
    /// Offsets whose result went missing: the partition reads them again.
    pub unaccounted: Vec<i64>,
}

/// Applies one batch and decides every message's outcome.
pub async fn settle(cx: &Context, items: Vec<Item>) -> Settlement {
    let mut results = apply(cx, &items).await.into_iter();
    let now = Utc::now();
    let mut settlement = Settlement::default();
    for Item {
        message: item,
        work,
    } in items
    {
        let (outcome, failures) = match &work {
            Ok(_) => match results.next().flatten() {
                Some((Ok(Applied::New), failures)) => (Outcome::Processed, failures),
                Some((Ok(Applied::Already), failures)) => (Outcome::AlreadyApplied, failures),
                Some((Ok(Applied::Redelivered), _)) => (Outcome::Redelivered, Vec::new()),
                Some((Ok(Applied::Conflict(applied)), mut failures)) => {
                    failures.push(AttemptFailure {
                        attempt: failures.len() as u32 + 1,
                        at: now,
                        failure: Failure::id_conflict(
                            item.message_id,
                            &applied,
                            &item.payload_sha256,
                        ),
                    });
                    (Outcome::DeadLettered, failures)
                }
                Some((Err(()), failures)) => (Outcome::DeadLettered, failures),
                None => {
                    // One result per change is the store's contract; if
                    // it broke, have the partition read these again.
                    settlement.unaccounted.push(item.envelope.offset);
                    continue;
                }
            },
            Err(failure) => (
                Outcome::DeadLettered,
                vec![AttemptFailure {
                    attempt: 1,
                    at: now,
                    failure: failure.clone(),
                }],
            ),
        };
        let ticket = cx
            .deferrals
            .borrow_mut()
            .tickets
            .remove(&item.envelope.offset);
        let outcome = match ticket {
            Some(_) => Outcome::RetryScheduled,
            None => outcome,
        };
        let mut effects = cx
            .effects
            .borrow_mut()
            .remove(&item.envelope.offset)
            .unwrap_or_default();
        if let (Ok(task), Outcome::Processed) = (work, outcome) {
            if task.kind().spec().path == Path::Stored {
                effects.apply = Some(task);
            }
        }
        let pending = Pending {
            settled: Settled {
                message: item,
                outcome,
                at: now,
                failures,
            },
            effects,
        };
        if let Some(ticket) = ticket {
            settlement.scheduled.push((pending, ticket));
        } else if outcome == Outcome::DeadLettered {
            settlement.failed.push(pending);
        } else {
            settlement.done.push(pending);
        }
    }
    settlement
}

/// One slot per task of `items` (the items that decoded), in order;
/// `None` where a result is missing (the caller rereads those).
///
/// Consecutive tasks on one path form a run: stored tasks go to PostgreSQL
/// together, forwarded tasks go out one by one. Runs are handled in offset
/// order, so a partition's order holds across kinds.
async fn apply(cx: &Context, items: &[Item]) -> Vec<Option<Attempted>> {
    let tasks: Vec<(&Task, &Item)> = items
        .iter()
        .filter_map(|item| item.work.as_ref().ok().map(|task| (task, item)))
        .collect();
    let mut results: Vec<Option<Attempted>> = Vec::with_capacity(tasks.len());
    let path = |t: &Task| t.kind().spec().path;
    let mut start = 0;
    while start < tasks.len() {
        let this = path(tasks[start].0);
        let end = tasks[start..]
            .iter()
            .position(|(t, _)| path(t) != this)
            .map_or(tasks.len(), |n| start + n);
        let run = &tasks[start..end];
        let mut outcome = match this {
            // Decided here, written by the outcome writer.
            Path::Stored => run.iter().map(|_| (Ok(Applied::New), Vec::new())).collect(),
            Path::Forwarded => {
                let run: Vec<&Item> = run.iter().map(|(_, item)| *item).collect();
                forward::forward(cx, &run).await
            }
        }
        .into_iter();
        results.extend((start..end).map(|_| outcome.next()));
        start = end;
    }
    results
}

/// The fields every log line about one message carries (retries, waits).
fn message_span(item: &Item) -> tracing::Span {
    let e = &item.envelope;
    tracing::info_span!(
        "message",
        eventId = %item.message_id,
        r#type = %clip(item.event_type.as_deref().unwrap_or("")),
        key = %clip(e.key_text().as_deref().unwrap_or("")),
        topic = %e.topic,
        partition = e.partition,
        offset = e.offset,
    )
}

/// Results for `n` tasks abandoned because their partition was revoked:
/// not applied, no attempt recorded (the processor parks nothing of a
/// revoked batch).
fn abandoned(n: usize) -> Vec<Attempted> {
    (0..n).map(|_| (Err(()), Vec::new())).collect()
}
