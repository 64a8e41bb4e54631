//! The processor actor: carries out a batch's events with their handlers
//! ([`crate::handlers`]), then submits every message, with what must be
//! written for it, to its partition's auditor ([`crate::outcome`]) and
//! waits for the verdict, retrying in place a message whose effect the
//! database refused.
//!
//! One batch per partition at a time: a partition's next batch waits
//! (queued here, in order) until the one before it is durable, so its
//! order holds, while the batches of the processor's other partitions go
//! on, and their outcomes share the auditor's group commits. While a batch
//! waits out an outage, or a refused message is retried, its partition
//! pauses: nothing of it is acknowledged meanwhile, so no offset moves, and
//! what queues behind it is bounded by the partition's in-flight limits.
//! The processor does not wait for dead letters to reach Redis: the
//! auditor hands them to the dead-letter actor after its commit, so Redis
//! is a dependency only of the partitions with something to park.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use actix::prelude::*;

use crate::handlers::registry::Task;
use crate::handlers::spec::Path;
use crate::outcome::Pending;
use crate::pipeline::Item;
use crate::process::submit::submit;
use crate::process::{self, Settlement};
use crate::stages::{Handoff, Prepared};

pub struct Processor {
    /// What every batch needs (pools, endpoints, client, retry policies).
    pub shared: Arc<process::Shared>,
    /// The retry schedule of deferred routes, on this processor's own
    /// connection.
    pub parking: crate::retry::deferred::gate::Parking,
    /// `pipeline.mailbox_capacity`.
    pub mailbox_capacity: usize,
    /// Per partition with a batch in progress, the batches behind it.
    pub queues: HashMap<(Arc<str>, i32), VecDeque<Prepared>>,
    /// Batches waiting in `queues`, and the senders held until there is
    /// room again (see [`Processor::room`]).
    pub waiting: usize,
    pub held: VecDeque<tokio::sync::oneshot::Sender<()>>,
}

impl Actor for Processor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(self.mailbox_capacity);
    }
}

impl Handler<Prepared> for Processor {
    /// Resolves once the batch is taken: at once while there is room
    /// behind the batches in progress ([`Processor::room`]), else when one
    /// of the waiting ones starts. The enricher waits for it, so a full processor holds
    /// its partitions back (what waits here stays bounded).
    type Result = ResponseFuture<()>;

    fn handle(&mut self, batch: Prepared, ctx: &mut Self::Context) -> Self::Result {
        let Some(key) = batch
            .items
            .first()
            .map(|i| (Arc::clone(&i.envelope.topic), i.envelope.partition))
        else {
            return Box::pin(async {});
        };
        match self.queues.get_mut(&key) {
            Some(behind) => {
                behind.push_back(batch);
                self.waiting += 1;
            }
            None => {
                self.queues.insert(key.clone(), VecDeque::new());
                self.start(key, batch, ctx);
            }
        }
        if self.waiting <= self.room() {
            return Box::pin(async {});
        }
        let (room, taken) = tokio::sync::oneshot::channel();
        self.held.push_back(room);
        Box::pin(async move {
            let _ = taken.await;
        })
    }
}

impl Processor {
    /// How many batches may wait behind others before a sender is held: a
    /// quarter of `pipeline.mailbox_capacity` (at least one), so a
    /// partition's next batch is ready when its current one is durable,
    /// and no more (what waits is memory: a batch holds its records,
    /// decoded).
    fn room(&self) -> usize {
        (self.mailbox_capacity / 4).max(1)
    }

    /// Processes `batch` of partition `key`, then the next one queued
    /// behind it.
    fn start(&mut self, key: (Arc<str>, i32), batch: Prepared, ctx: &mut Context<Self>) {
        let cx =
            process::Context::batch(&self.shared, &self.parking, batch.handoff.revoked.clone());
        let work = async move { run_batch(&cx, batch).await };
        ctx.spawn(work.into_actor(self).map(move |(), act, ctx| {
            match act.queues.get_mut(&key).and_then(VecDeque::pop_front) {
                Some(next) => {
                    act.waiting -= 1;
                    if act.waiting <= act.room() {
                        if let Some(room) = act.held.pop_front() {
                            let _ = room.send(());
                        }
                    }
                    act.start(key, next, ctx)
                }
                None => {
                    act.queues.remove(&key);
                }
            }
        }));
    }
}

/// Settles one batch and submits it, segment by segment (see [`segments`]).
async fn run_batch(cx: &process::Context, batch: Prepared) {
    let Prepared { items, handoff } = batch;
    for segment in segments(items) {
        if !settle_segment(cx, &handoff, segment).await {
            return;
        }
    }
}

/// Settles and submits one segment; false when the partition was revoked.
async fn settle_segment(cx: &process::Context, handoff: &Handoff, items: Vec<Item>) -> bool {
    if cx.revoked.is_cancelled() {
        // Its next owner reads these again.
        return false;
    }
    let Settlement {
        done,
        failed,
        scheduled,
        unaccounted,
    } = process::settle(cx, items).await;
    if !unaccounted.is_empty() {
        tracing::error!(
            count = unaccounted.len(),
            "processing results missing: rereading"
        );
        handoff.lost(unaccounted, "processing results missing");
    }
    let (to_topic, scheduled): (Vec<_>, Vec<_>) = scheduled
        .into_iter()
        .partition(|(_, t)| cx.http.get(t.route).is_some_and(|r| r.retry_topic));
    let mut pending: Vec<Pending> = done;
    pending.extend(scheduled.into_iter().map(|(p, t)| cx.parking.park(p, &t)));
    if !to_topic.is_empty() {
        match cx.republisher.republish(to_topic, handoff, cx.wait).await {
            Some(published) => pending.extend(published),
            None => return false,
        }
    }
    if cx.revoked.is_cancelled() {
        if !failed.is_empty() {
            tracing::info!(
                count = failed.len(),
                "partition revoked: failed messages left to its next owner"
            );
        }
    } else {
        pending.extend(failed);
    }
    pending.sort_by_key(|p| p.settled.envelope.offset);
    submit(handoff, &cx.retry, pending).await;
    !cx.revoked.is_cancelled()
}

/// Splits a batch where a forwarded message follows a stored one: the
/// stored effects before it are made durable (and any refusal retried)
/// before it is delivered, so a partition's order holds across kinds. A
/// batch of one kind is one segment.
fn segments(items: Vec<Item>) -> Vec<Vec<Item>> {
    let path = |item: &Item| item.work.as_ref().ok().map(|t: &Task| t.kind().spec().path);
    let mut segments: Vec<Vec<Item>> = Vec::new();
    let mut current: Vec<Item> = Vec::new();
    let mut stored = false;
    for item in items {
        match path(&item) {
            Some(Path::Forwarded) if stored => {
                segments.push(std::mem::take(&mut current));
                stored = false;
            }
            Some(Path::Stored) => stored = true,
            _ => {}
        }
        current.push(item);
    }
    if !current.is_empty() {
        segments.push(current);
    }
    segments
}
