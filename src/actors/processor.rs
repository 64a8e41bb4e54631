//! The processor actor: applies a batch's events to the projections in one
//! PostgreSQL transaction, then sends processed messages to the auditor and
//! failed ones to the dead-letter actor.
//!
//! While PostgreSQL is unreachable it waits (capped backoff) with its mailbox
//! blocked, so the partitions feeding it pause instead of failing; nothing is
//! acknowledged meanwhile, so no offset moves.

use actix::prelude::*;
use chrono::Utc;

use crate::actors::messages::{Ack, Park, Prepared, Record};
use crate::backoff::Backoff;
use crate::config::PipelineSettings;
use crate::metrics::{metrics, Metrics};
use crate::pipeline::{Outcome, Settled, Task};
use crate::store::projection::{self, Applied};
use crate::store::PgPool;

pub struct Processor {
    pub pool: PgPool,
    pub settings: PipelineSettings,
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
        let pool = self.pool.clone();
        let backoff = Backoff::new(
            self.settings.dependency_backoff_min,
            self.settings.dependency_backoff_max,
        );
        ctx.wait(process(pool, backoff, batch).into_actor(self));
    }
}

/// Applies one batch and routes every message to its next stage.
async fn process(pool: PgPool, mut backoff: Backoff, batch: Prepared) {
    let Prepared { items, route } = batch;
    let changes: Vec<_> = items
        .iter()
        .filter_map(|item| match &item.work {
            Ok(Task::Transaction(change)) => Some((change, &item.envelope)),
            Err(_) => None,
        })
        .collect();
    let mut results = loop {
        match projection::apply(&pool, &changes).await {
            Ok(results) => break results.into_iter(),
            Err(unavailable) => {
                let delay = backoff.next_delay();
                metrics()
                    .dependency_waits
                    .with_label_values(&["postgres"])
                    .inc();
                tracing::warn!(error = %unavailable, retry_in_ms = delay.as_millis() as u64, "postgres unavailable: pausing");
                tokio::time::sleep(delay).await;
            }
        }
    };
    drop(changes);

    let now = Utc::now();
    let mut done = Vec::with_capacity(items.len());
    let mut failed = Vec::new();
    for item in items {
        let outcome = match item.work {
            Ok(Task::Transaction(_)) => match results.next() {
                Some(Ok(Applied::New)) => Outcome::Processed,
                Some(Ok(Applied::AlreadyApplied)) => Outcome::AlreadyApplied,
                Some(Err(failure)) => Outcome::DeadLettered {
                    failure,
                    attempts: 1,
                },
                None => Outcome::Processed,
            },
            Err(failure) => Outcome::DeadLettered {
                failure,
                attempts: 1,
            },
        };
        let topic = &item.envelope.topic;
        match &outcome {
            Outcome::Processed => metrics()
                .processed
                .with_label_values(&[topic, Metrics::type_label(item.event_type.as_deref())])
                .inc(),
            Outcome::AlreadyApplied => {}
            Outcome::DeadLettered { failure, .. } => metrics()
                .failed
                .with_label_values(&[topic, failure.stage.as_str(), failure.kind])
                .inc(),
        }
        let settled = Settled {
            failed_at: matches!(outcome, Outcome::DeadLettered { .. }).then_some(now),
            envelope: item.envelope,
            message_id: item.message_id,
            event_type: item.event_type,
            outcome,
            at: now,
        };
        if settled.failed_at.is_some() {
            failed.push(settled);
        } else {
            done.push(settled);
        }
    }

    if !done.is_empty() {
        let offsets: Vec<i64> = done.iter().map(|s| s.envelope.offset).collect();
        let sent = route
            .auditor
            .send(Record {
                settled: done,
                ack: route.ack.clone(),
            })
            .await;
        if let Err(e) = sent {
            // Bounded by the partition's in-flight limit, not by a mailbox.
            route.ack.do_send(Ack::Lost {
                offsets,
                reason: format!("auditor unavailable: {e}"),
            });
        }
    }
    if !failed.is_empty() {
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
            ack.do_send(Ack::Lost {
                offsets,
                reason: format!("dead-letter actor unavailable: {e}"),
            });
        }
    }
}
