//! The processor actor: applies a batch's events to the projections, then
//! sends processed messages to the auditor and failed ones to the
//! dead-letter actor.
//!
//! The whole batch goes in one PostgreSQL transaction. If that fails and
//! PostgreSQL is unreachable, the actor waits (capped backoff) with its
//! mailbox blocked, so the partitions feeding it pause; nothing is
//! acknowledged meanwhile, so no offset moves. If PostgreSQL answered, the
//! events are applied one by one, in offset order, each retried in place on
//! a transient failure (`retry.*`), so only the events the database keeps
//! refusing are dead-lettered, and the partition's order is kept.
//!
//! Retries and dependency waits end when the batch's partition actor stops
//! (`Route::revoked`): its uncommitted records go to the next owner, so
//! failures of a revoked batch are not parked (that would leave a stale DLQ
//! entry for a message the next owner processes). Applied effects are still
//! recorded: they happened.

use std::sync::Arc;

use actix::prelude::*;
use chrono::Utc;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::actors::messages::{Ack, Park, Prepared};
use crate::config::{PipelineSettings, RetrySettings};
use crate::delivery;
use crate::dlq::Keys;
use crate::keyed;
use crate::metrics::{metrics, Metrics};
use crate::pipeline::failure::{Failure, Stage};
use crate::pipeline::routes::Routes;
use crate::pipeline::steering::hex;
use crate::pipeline::{Item, Outcome, Settled, Task};
use crate::retry::{self, AttemptFailure, DependencyWait, TryError};
use crate::schedule::gate::{self, Deferrals, Parking};
use crate::store::pool::RedisPool;
use crate::store::projection::{self, Applied, Digested};
use crate::store::PgPool;
use crate::telemetry::clip;

pub struct Processor {
    pub pool: PgPool,
    pub settings: PipelineSettings,
    pub retry: RetrySettings,
    pub routes: Arc<Routes>,
    pub client: reqwest::Client,
    /// Where routes with `cache_ttl` keep downstream answers.
    pub redis: RedisPool,
    pub keys: Keys,
    /// The retry schedule of deferred routes.
    pub parking: Parking,
}

impl Actor for Processor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(self.settings.mailbox_capacity);
    }
}

impl Handler<Prepared> for Processor {
    type Result = ();

    fn handle(&mut self, batch: Prepared, ctx: &mut Self::Context) {
        let work = Work {
            pool: self.pool.clone(),
            routes: Arc::clone(&self.routes),
            client: self.client.clone(),
            redis: self.redis.clone(),
            keys: self.keys.clone(),
            retry: self.retry.clone(),
            wait: DependencyWait {
                min: self.settings.dependency_backoff_min,
                max: self.settings.dependency_backoff_max,
            },
            revoked: batch.route.revoked.clone(),
            parking: self.parking.clone(),
            deferrals: Default::default(),
        };
        ctx.wait(async move { work.process(batch).await }.into_actor(self));
    }
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

/// What one batch's processing needs.
struct Work {
    pool: PgPool,
    routes: Arc<Routes>,
    client: reqwest::Client,
    redis: RedisPool,
    keys: Keys,
    retry: RetrySettings,
    wait: DependencyWait,
    /// The batch's partition assignment ended (see the module comment).
    revoked: CancellationToken,
    parking: Parking,
    /// Which of the batch's messages go to the retry schedule.
    deferrals: std::cell::RefCell<Deferrals>,
}

/// One message's result: applied (and how), or not, with its failed attempts.
type Attempted = (Result<Applied, ()>, Vec<AttemptFailure>);

impl Work {
    /// Applies one batch and routes every message to its next stage.
    async fn process(&self, batch: Prepared) {
        let Prepared { items, route } = batch;
        let mut results = self.apply(&items).await.into_iter();

        let now = Utc::now();
        let mut done = Vec::with_capacity(items.len());
        let mut failed = Vec::new();
        let mut scheduled = Vec::new();
        let mut unaccounted = Vec::new();
        for item in items {
            let (outcome, failures) = match item.work {
                Ok(_) => match results.next().flatten() {
                    Some((Ok(Applied::New), failures)) => (Outcome::Processed, failures),
                    Some((Ok(Applied::AlreadyApplied), failures)) => {
                        (Outcome::AlreadyApplied, failures)
                    }
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
                        unaccounted.push(item.envelope.offset);
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
            let ticket = self
                .deferrals
                .borrow_mut()
                .tickets
                .remove(&item.envelope.offset);
            let outcome = match ticket {
                Some(_) => Outcome::RetryScheduled,
                None => outcome,
            };
            let topic = &item.envelope.topic;
            match outcome {
                Outcome::Processed => metrics()
                    .processed
                    .with_label_values(&[topic, Metrics::type_label(item.event_type.as_deref())])
                    .inc(),
                Outcome::AlreadyApplied | Outcome::RetryScheduled => {}
                Outcome::DeadLettered => {
                    if let Some(last) = failures.last() {
                        metrics()
                            .failed
                            .with_label_values(&[
                                topic,
                                last.failure.stage.as_str(),
                                last.failure.kind,
                            ])
                            .inc();
                    }
                }
            }
            let settled = Settled {
                envelope: item.envelope,
                message_id: item.message_id,
                event_type: item.event_type,
                payload_sha256: item.payload_sha256,
                steering: item.steering,
                outcome,
                at: now,
                failures,
            };
            if let Some(ticket) = ticket {
                scheduled.push((settled, ticket));
            } else if outcome == Outcome::DeadLettered {
                failed.push(settled);
            } else {
                done.push(settled);
            }
        }

        if !unaccounted.is_empty() {
            tracing::error!(
                count = unaccounted.len(),
                "processing results missing: rereading"
            );
            // Bounded by the partition's in-flight limit, not by a mailbox.
            route.ack.do_send(Ack::Lost {
                offsets: unaccounted,
                reason: "processing results missing".into(),
            });
        }
        if !done.is_empty() {
            route.record(done).await;
        }
        if !scheduled.is_empty() {
            self.parking.park(scheduled, &route, self.wait).await;
        }
        if !failed.is_empty() && self.revoked.is_cancelled() {
            tracing::info!(
                count = failed.len(),
                "partition revoked: failed messages left to its next owner"
            );
        } else if !failed.is_empty() {
            let offsets: Vec<i64> = failed.iter().map(|s| s.envelope.offset).collect();
            let ack = route.ack.clone();
            let sent = route
                .dead_letter
                .clone()
                .send(Park {
                    settled: failed,
                    route,
                })
                .await;
            if let Err(e) = sent {
                // Bounded by the partition's in-flight limit, not by a mailbox.
                ack.do_send(Ack::Lost {
                    offsets,
                    reason: format!("dead-letter actor unavailable: {e}"),
                });
            }
        }
    }

    /// One slot per task of `items` (the items that decoded), in order;
    /// `None` where a result is missing (the caller rereads those).
    ///
    /// Consecutive tasks of one kind form a run: stored tasks (projections)
    /// go to PostgreSQL together, forwarded tasks go out one by one. Runs are
    /// handled in offset order, so a partition's order holds across kinds.
    async fn apply(&self, items: &[Item]) -> Vec<Option<Attempted>> {
        let tasks: Vec<(&Task, &Item)> = items
            .iter()
            .filter_map(|item| item.work.as_ref().ok().map(|task| (task, item)))
            .collect();
        let mut results: Vec<Option<Attempted>> = Vec::with_capacity(tasks.len());
        let is_forward = |t: &Task| matches!(t, Task::Forward { .. });
        let mut start = 0;
        while start < tasks.len() {
            let forward = is_forward(tasks[start].0);
            let end = tasks[start..]
                .iter()
                .position(|(t, _)| is_forward(t) != forward)
                .map_or(tasks.len(), |n| start + n);
            let run = &tasks[start..end];
            let mut outcome = if forward {
                let run: Vec<&Item> = run.iter().map(|(_, item)| *item).collect();
                self.forward(&run).await
            } else {
                self.store(run).await
            }
            .into_iter();
            results.extend((start..end).map(|_| outcome.next()));
            start = end;
        }
        results
    }

    /// Applies projection tasks: the batch in one transaction, or one by
    /// one with retries when PostgreSQL refuses the batch.
    async fn store(&self, run: &[(&Task, &Item)]) -> Vec<Attempted> {
        if run.is_empty() {
            return Vec::new();
        }
        let changes: Vec<Digested<'_>> = run
            .iter()
            .map(|(task, item)| (*task, &item.payload_sha256))
            .collect();
        let changes = &changes[..];
        let mut down = self.wait.backoff();
        loop {
            let error = match projection::apply(&self.pool, changes).await {
                Ok(applied) => return applied.into_iter().map(|a| (Ok(a), Vec::new())).collect(),
                Err(error) => error,
            };
            match projection::classify(&self.pool, &error).await {
                TryError::Unavailable { dependency, error } => {
                    if !retry::wait_out_unless(&mut down, dependency, &error, &self.revoked).await {
                        return abandoned(run.len());
                    }
                }
                TryError::Failed(_) => break,
            }
        }
        // PostgreSQL answers but refused the batch: one event at a time, in
        // offset order, each with its own attempts.
        let mut results = Vec::with_capacity(changes.len());
        for (change, (_, item)) in changes.iter().zip(run) {
            let one = std::slice::from_ref(change);
            let topic = &*item.envelope.topic;
            let attempted = retry::run(&self.retry, self.wait, topic, &self.revoked, || async {
                match projection::apply(&self.pool, one).await {
                    Ok(mut applied) => Ok(applied.pop().unwrap_or(Applied::New)),
                    Err(error) => Err(projection::classify(&self.pool, &error).await),
                }
            })
            .instrument(message_span(item))
            .await;
            results.push(attempted);
        }
        results
    }

    /// Delivers HTTP tasks in offset order per key (several keys at once
    /// when a route sets `concurrency`), one result each;
    /// ids the ledger already has are not sent again. Each delivery goes to
    /// the ledger as soon as it is made, so a new owner of the partition
    /// does not send it again.
    async fn forward(&self, items: &[&Item]) -> Vec<Attempted> {
        if items.is_empty() {
            return Vec::new();
        }
        let ids: Vec<uuid::Uuid> = items.iter().map(|i| i.message_id).collect();
        let mut down = self.wait.backoff();
        let done = loop {
            match projection::already_applied(&self.pool, &ids).await {
                Ok(done) => break done,
                Err(e) => {
                    let error = e.to_string();
                    if !retry::wait_out_unless(&mut down, "postgres", &error, &self.revoked).await {
                        return abandoned(items.len());
                    }
                }
            }
        };
        let keys = gate::deferred_keys(items, &self.routes);
        let Some(waiting) = self.parking.waiting(keys, self.wait, &self.revoked).await else {
            return abandoned(items.len());
        };
        self.deferrals.borrow_mut().add_waiting(waiting);
        let done = std::cell::RefCell::new(done);
        let done = &done;
        // Different keys go at once up to the routes' `concurrency`; one
        // key's messages stay in order (see `keyed`).
        let limit = items
            .iter()
            .filter_map(|item| match &item.work {
                Ok(Task::Forward { route, .. }) => self.routes.http(*route).map(|r| r.concurrency),
                _ => None,
            })
            .max()
            .unwrap_or(1);
        let lanes = keyed::lanes(items.iter().map(|item| item.envelope.key.as_deref()));
        keyed::run(lanes, limit, |i| async move {
            let item = items[i];
            let (task, index, route) = match &item.work {
                Ok(task @ Task::Forward { route, .. }) => {
                    (Some(task), *route, self.routes.http(*route))
                }
                _ => (None, 0, None),
            };
            let (Some(task), Some(route)) = (task, route) else {
                let failure =
                    Failure::permanent(Stage::Process, "no_route", "the HTTP route is gone");
                let attempt = AttemptFailure {
                    attempt: 1,
                    at: Utc::now(),
                    failure,
                };
                return (Err(()), vec![attempt]);
            };
            let applied = done.borrow().get(&item.message_id).copied();
            if let Some(applied) = applied {
                let repeat = projection::repeat(applied.as_ref(), &item.payload_sha256);
                return (Ok(repeat), Vec::new());
            }
            if self
                .deferrals
                .borrow_mut()
                .waits(index, route, &item.envelope)
            {
                // Behind an earlier message of its key: parked untried.
                return (Err(()), Vec::new());
            }
            done.borrow_mut()
                .insert(item.message_id, Some(item.payload_sha256));
            let topic = &*item.envelope.topic;
            let policy = gate::first_attempt(route, &self.retry);
            let (result, failures) = retry::run(&policy, self.wait, topic, &self.revoked, || {
                delivery::forward(
                    &self.client,
                    route,
                    &item.envelope,
                    item.message_id,
                    item.event_type.as_deref(),
                )
            })
            .instrument(message_span(item))
            .await;
            match &result {
                Ok(answer) => {
                    self.remember((task, &item.payload_sha256)).await;
                    if let Some(ttl) = route.cache_ttl {
                        delivery::keep_answer(
                            &self.redis,
                            &self.keys,
                            item.message_id,
                            answer,
                            ttl,
                        )
                        .await;
                    }
                }
                // Not delivered: a later copy may try again.
                Err(()) => {
                    done.borrow_mut().remove(&item.message_id);
                    self.deferrals.borrow_mut().defer(
                        index,
                        route,
                        &item.envelope,
                        &failures,
                        &self.retry,
                    );
                }
            }
            (result.map(|_| Applied::New), failures)
        })
        .await
    }

    /// Writes a delivered task's ledger row, waiting out PostgreSQL outages.
    /// (Until it is written the offset is not acknowledged: a crash before
    /// it means the message is delivered again, at least once.) Not
    /// cancelled by a revocation: the delivery happened, and the ledger row
    /// is what stops the next owner from sending it again.
    async fn remember(&self, task: Digested<'_>) {
        let mut down = self.wait.backoff();
        loop {
            match projection::apply(&self.pool, std::slice::from_ref(&task)).await {
                Ok(_) => return,
                Err(e) => retry::wait_out(&mut down, "postgres", &e.to_string()).await,
            }
        }
    }
}

/// Results for `n` tasks abandoned because their partition was revoked:
/// not applied, no attempt recorded (`process` parks nothing of a revoked
/// batch).
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
