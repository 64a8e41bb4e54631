//! What applies an event: one file per handler kind, and how a processor
//! carries out a batch with them. No actors here: the processor actor
//! hands a batch to [`settle`] and sends what comes back to its next stages.
//!
//! - [`HandlerKind`](crate::handler_kind::HandlerKind) (a leaf below the
//!   configuration and the decoder): every kind's name, event types,
//!   payload shape and path, in one table.
//! - [`transactions`], [`domain`], [`audit`]: kinds applied inside the
//!   ledger's PostgreSQL transaction (`stored.rs`).
//! - [`http`]: forwarded to a downstream URL, one message at a time.
//!
//! Adding a kind: its file here (how it applies or forwards a batch), an
//! arm in `HandlerKind` with its [`Spec`](crate::handler_kind::Spec), and
//! its arm where its path dispatches (`stored.rs`, or [`apply`] below for a
//! path of its own).
//!
//! Retries and dependency waits end when the batch's partition actor stops
//! (`Context::revoked`): its uncommitted records go to the next owner, so
//! failures of a revoked batch are not parked (that would leave a stale DLQ
//! entry for a message the next owner processes). Applied effects are still
//! recorded: they happened.

pub mod audit;
pub mod domain;
pub mod http;
pub(crate) mod stored;
pub mod transactions;

use std::sync::Arc;

use chrono::Utc;
use tokio_util::sync::CancellationToken;

use crate::config::RetrySettings;
use crate::dlq::Keys;
use crate::handler_kind::Path;
use crate::handlers::http::deferral::{Deferrals, Parking, Ticket};
use crate::pipeline::failure::{AttemptFailure, Failure, Stage};
use crate::pipeline::steering::hex;
use crate::pipeline::{Item, Outcome, Settled, Task};
use crate::retry::DependencyWait;
use crate::store::pool::RedisPool;
use crate::store::projection::Applied;
use crate::store::PgPool;
use crate::telemetry::events::{Emit, MessageSettled};
use crate::text::clip;

/// What one batch's processing needs.
pub struct Context {
    pub pool: PgPool,
    pub http: Arc<http::HttpRoutes>,
    pub client: reqwest::Client,
    /// Where routes with `cache_ttl` keep downstream answers.
    pub redis: RedisPool,
    pub keys: Keys,
    pub retry: RetrySettings,
    pub wait: DependencyWait,
    /// The batch's partition assignment ended (see the module comment).
    pub revoked: CancellationToken,
    /// The retry schedule of deferred http routes.
    pub parking: Parking,
    /// Which of the batch's messages go to the retry schedule.
    pub deferrals: std::cell::RefCell<Deferrals>,
}

/// One message's result: applied (and how), or not, with its failed attempts.
pub type Attempted = (Result<Applied, ()>, Vec<AttemptFailure>);

/// A batch's messages by outcome.
#[derive(Debug, Default)]
pub struct Settlement {
    /// Processed or already applied: on to the audit trail.
    pub done: Vec<Settled>,
    /// To be parked in the dead-letter queue.
    pub failed: Vec<Settled>,
    /// To be parked in the retry schedule (deferred http routes).
    pub scheduled: Vec<(Settled, Ticket)>,
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
        let (outcome, failures) = match work {
            Ok(_) => match results.next().flatten() {
                Some((Ok(Applied::New), failures)) => (Outcome::Processed, failures),
                Some((Ok(Applied::AlreadyApplied), failures)) => {
                    (Outcome::AlreadyApplied, failures)
                }
                Some((Ok(Applied::Redelivered), _)) => (Outcome::Redelivered, Vec::new()),
                Some((Ok(Applied::Conflict(applied)), mut failures)) => {
                    failures.push(AttemptFailure {
                        attempt: failures.len() as u32 + 1,
                        at: now,
                        failure: id_conflict(item.message_id, &applied, &item.payload_sha256),
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
                    failure,
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
        MessageSettled {
            topic: &item.envelope.topic,
            event_type: item.event_type.as_deref(),
            outcome,
            last_failure: failures.last(),
        }
        .emit();
        let settled = Settled {
            message: item,
            outcome,
            at: now,
            failures,
        };
        if let Some(ticket) = ticket {
            settlement.scheduled.push((settled, ticket));
        } else if outcome == Outcome::DeadLettered {
            settlement.failed.push(settled);
        } else {
            settlement.done.push(settled);
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
            Path::Stored => stored::apply(cx, run).await,
            Path::Forwarded => {
                let run: Vec<&Item> = run.iter().map(|(_, item)| *item).collect();
                http::forward(cx, &run).await
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

/// The failure of a record whose id was applied with other bytes: not a
/// duplicate (that would drop it silently), but a conflict to look at.
fn id_conflict(id: uuid::Uuid, applied: &[u8; 32], this: &[u8; 32]) -> Failure {
    Failure::permanent(
        Stage::Process,
        "id_conflict",
        format!(
            "message id {id} was applied with payload sha256 {}; this record's payload has sha256 {}",
            hex(applied),
            hex(this)
        ),
    )
}
