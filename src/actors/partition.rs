//! The partition actor: one per assigned partition. It reads its partition's
//! own queue in offset order, hands batches to its enricher, and commits the
//! durable watermark (every `kafka.commit_interval` while it moves) as
//! acknowledgements come back (see `kafka/offsets.rs` for the contract). On
//! drain it reports the final watermark, which the rebalance callback or the
//! shutdown path commits synchronously.
//!
//! Reading is a small state machine: at most one receive is pending (and it
//! is the only thing cancelled on drain, so no record read is ever dropped),
//! at most one batch is being handed over, and no read starts while the
//! partition has `max_in_flight` records (or `max_in_flight_bytes` of them)
//! without a durable outcome. That limit is what pauses the partition when a
//! dependency is down, and what bounds memory by bytes, not only by count.

use std::sync::Arc;

use actix::prelude::*;
use futures::{FutureExt, StreamExt};
use tokio::sync::oneshot;

use crate::actors::messages::{Drain, Drained, PartitionFailed};
use crate::kafka::commit;
use crate::kafka::envelope::Envelope;
use crate::kafka::offsets::OffsetTracker;
use crate::kafka::{KafkaConsumer, PartitionQueue};
use crate::stages::{Ack, Batch, Handoff};
use crate::status::registry::{PartitionStatus, State};
use crate::telemetry::kafka::{
    PartitionCommitted, PartitionForgotten, PartitionInFlight, RecordsRead,
};
use crate::telemetry::Emit;

/// Where a partition actor's batches go; the ack recipient is its own address.
#[derive(Clone)]
pub struct Downstream {
    pub enricher: Recipient<Batch>,
    pub processor: Recipient<crate::stages::Prepared>,
    pub auditor: Recipient<crate::stages::Record>,
}

pub struct PartitionActor {
    topic: Arc<str>,
    partition: i32,
    /// The partition number as a metric label.
    partition_label: String,
    queue: Arc<PartitionQueue>,
    consumer: Arc<KafkaConsumer>,
    downstream: Downstream,
    supervisor: Recipient<PartitionFailed>,
    generation: u64,
    batch_size: usize,
    max_in_flight: usize,
    max_in_flight_bytes: usize,
    tracker: OffsetTracker,
    /// The pending receive, if any (cancellable).
    reading: Option<SpawnHandle>,
    /// On a retry topic's partition: records read but not yet due.
    due: crate::retry::topic::due::DueGate,
    /// A batch is being handed to the enricher.
    handing_over: bool,
    /// A durable watermark not yet committed.
    uncommitted: Option<i64>,
    commit_interval: std::time::Duration,
    draining: bool,
    drain_waiters: Vec<oneshot::Sender<Drained>>,
    /// This incarnation's assignment: cancelled when the actor stops, so
    /// retries and dependency waits of its records end (see `Handoff`).
    revoked: tokio_util::sync::CancellationToken,
    /// What `GET /status` shows of this partition.
    status: Arc<PartitionStatus>,
    span: tracing::Span,
}

pub struct PartitionConfig {
    /// This incarnation's number, echoed in `PartitionFailed`.
    pub generation: u64,
    pub batch_size: usize,
    pub max_in_flight: usize,
    /// Most bytes of records between read and durable outcome.
    pub max_in_flight_bytes: usize,
    /// How often a moved watermark is committed.
    pub commit_interval: std::time::Duration,
    /// This incarnation's cell in the status registry.
    pub status: Arc<PartitionStatus>,
}

impl PartitionActor {
    pub fn new(
        topic: &str,
        partition: i32,
        queue: Arc<PartitionQueue>,
        consumer: Arc<KafkaConsumer>,
        downstream: Downstream,
        supervisor: Recipient<PartitionFailed>,
        config: PartitionConfig,
    ) -> Self {
        PartitionActor {
            span: tracing::info_span!("partition", topic, partition),
            topic: Arc::from(topic),
            partition,
            partition_label: partition.to_string(),
            queue,
            consumer,
            downstream,
            supervisor,
            generation: config.generation,
            batch_size: config.batch_size,
            max_in_flight: config.max_in_flight,
            max_in_flight_bytes: config.max_in_flight_bytes,
            tracker: OffsetTracker::new(),
            reading: None,
            due: crate::retry::topic::due::DueGate::new(topic),
            handing_over: false,
            uncommitted: None,
            commit_interval: config.commit_interval,
            draining: false,
            drain_waiters: Vec::new(),
            revoked: tokio_util::sync::CancellationToken::new(),
            status: config.status,
        }
    }

    fn schedule_read(&mut self, ctx: &mut Context<Self>) {
        if self.reading.is_some()
            || self.handing_over
            || self.draining
            || self.tracker.in_flight() + self.batch_size > self.max_in_flight
            || self.tracker.in_flight_bytes() >= self.max_in_flight_bytes
        {
            if !self.draining && self.reading.is_none() && !self.handing_over {
                self.status.set_state(State::Paused);
            }
            return;
        }
        self.status.set_state(State::Running);
        if let Some(wait) = self.due.wait(chrono::Utc::now()) {
            // The head record is not due: wait for it without reading on.
            let handle = ctx.run_later(wait, |act, ctx| {
                act.reading = None;
                let ready = act.due.release(chrono::Utc::now());
                act.hand_over(ready, ctx);
            });
            self.reading = Some(handle);
            return;
        }
        let queue = Arc::clone(&self.queue);
        let topic = Arc::clone(&self.topic);
        let max = self.batch_size;
        let span = self.span.clone();
        let status = Arc::clone(&self.status);
        let read = async move { read_batch(&queue, &topic, max, &span, &status).await };
        let handle = ctx.spawn(read.into_actor(self).map(|records, act, ctx| {
            act.reading = None;
            let ready = act.due.admit(records, chrono::Utc::now());
            act.hand_over(ready, ctx);
        }));
        self.reading = Some(handle);
    }

    fn hand_over(&mut self, records: Vec<Envelope>, ctx: &mut Context<Self>) {
        if records.is_empty() {
            self.schedule_read(ctx);
            return;
        }
        for record in &records {
            self.tracker.register(record.offset, record.size());
        }
        RecordsRead {
            topic: &self.topic,
            count: records.len(),
        }
        .emit();
        self.update_gauge();
        let handoff = Handoff {
            processor: self.downstream.processor.clone(),
            auditor: self.downstream.auditor.clone(),
            ack: ctx.address().recipient(),
            revoked: self.revoked.clone(),
        };
        let offsets: Vec<i64> = records.iter().map(|r| r.offset).collect();
        self.handing_over = true;
        let send = self.downstream.enricher.send(Batch { records, handoff });
        ctx.spawn(send.into_actor(self).map(move |sent, act, ctx| {
            act.handing_over = false;
            act.maybe_finish_drain();
            match sent {
                Ok(()) => act.schedule_read(ctx),
                Err(e) => act.fail(ctx, offsets, format!("enricher unavailable: {e}")),
            }
        }));
    }

    /// Notes a moved watermark; `commit_watermark` sends it.
    fn advance_watermark(&mut self) {
        if let Some(watermark) = self.tracker.advance() {
            self.uncommitted = Some(watermark);
        }
    }

    /// Commits the durable watermark if it moved since the last commit
    /// (asynchronously: the drain path commits synchronously at the end).
    fn commit_watermark(&mut self) {
        let Some(watermark) = self.uncommitted.take() else {
            return;
        };
        let committed = commit::watermark(&*self.consumer, &self.topic, self.partition, watermark);
        match committed {
            Ok(()) => PartitionCommitted {
                topic: &self.topic,
                partition: &self.partition_label,
                offset: watermark,
            }
            .emit(),
            Err(e) => self.span.in_scope(|| {
                tracing::warn!(watermark, error = %e, "offset commit failed; retrying at the next interval");
                self.uncommitted = Some(watermark);
            }),
        }
    }

    fn update_gauge(&self) {
        PartitionInFlight {
            topic: &self.topic,
            partition: &self.partition_label,
            in_flight: self.tracker.in_flight(),
        }
        .emit();
        self.status
            .set_progress(self.tracker.watermark(), self.tracker.in_flight());
    }

    fn drained(&self) -> Drained {
        Drained {
            in_flight: self.tracker.in_flight(),
            watermark: self.tracker.watermark(),
        }
    }

    fn maybe_finish_drain(&mut self) {
        if self.draining && !self.handing_over && self.tracker.in_flight() == 0 {
            let report = self.drained();
            for waiter in self.drain_waiters.drain(..) {
                let _ = waiter.send(report);
            }
        }
    }

    /// A downstream stage dropped records: stop, and let the Supervisor
    /// restart this partition from its watermark so they are read again.
    fn fail(&mut self, ctx: &mut Context<Self>, offsets: Vec<i64>, reason: String) {
        self.span.in_scope(|| {
            tracing::error!(lost = offsets.len(), %reason, "partition pipeline failed; restarting from the durable watermark")
        });
        self.draining = true;
        self.status.set_state(State::Draining);
        self.status.set_error(&reason);
        // Control path, once per failure; must not be lost to a full mailbox.
        self.supervisor.do_send(PartitionFailed {
            topic: self.topic.to_string(),
            partition: self.partition,
            generation: self.generation,
            resume_at: self.tracker.watermark(),
        });
        ctx.stop();
    }
}

/// Waits for at least one record, then takes whatever else is already
/// queued, up to `max`.
async fn read_batch(
    queue: &PartitionQueue,
    topic: &Arc<str>,
    max: usize,
    span: &tracing::Span,
    status: &PartitionStatus,
) -> Vec<Envelope> {
    let mut stream = queue.stream();
    let mut records = Vec::with_capacity(max.min(1024));
    match stream.next().await {
        Some(Ok(message)) => records.push(Envelope::from_borrowed(&message, topic)),
        Some(Err(e)) => {
            span.in_scope(|| tracing::warn!(error = %e, "kafka partition error"));
            status.set_error(&format!("kafka: {e}"));
            return records;
        }
        None => return records,
    }
    while records.len() < max {
        match stream.next().now_or_never() {
            Some(Some(Ok(message))) => records.push(Envelope::from_borrowed(&message, topic)),
            Some(Some(Err(e))) => {
                span.in_scope(|| tracing::warn!(error = %e, "kafka partition error"));
                status.set_error(&format!("kafka: {e}"));
                break;
            }
            _ => break,
        }
    }
    records
}

impl Actor for PartitionActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.span
            .in_scope(|| tracing::info!("partition actor started"));
        ctx.run_interval(self.commit_interval, |act, _| act.commit_watermark());
        self.schedule_read(ctx);
    }

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        // Whatever this incarnation still has in flight is uncommitted and
        // will be read again by the next owner: stop working on it.
        self.revoked.cancel();
        PartitionForgotten {
            topic: &self.topic,
            partition: &self.partition_label,
        }
        .emit();
        self.span.in_scope(
            || tracing::info!(watermark = ?self.tracker.watermark(), "partition actor stopped"),
        );
    }
}

impl Handler<Ack> for PartitionActor {
    type Result = ();

    fn handle(&mut self, ack: Ack, ctx: &mut Self::Context) {
        match ack {
            Ack::Durable(offsets) => {
                for offset in offsets {
                    self.tracker.complete(offset);
                }
                self.advance_watermark();
                self.update_gauge();
                self.maybe_finish_drain();
                self.schedule_read(ctx);
            }
            Ack::Lost { offsets, reason } => self.fail(ctx, offsets, reason),
        }
    }
}

impl Handler<Drain> for PartitionActor {
    type Result = ResponseFuture<Drained>;

    fn handle(&mut self, _: Drain, ctx: &mut Self::Context) -> Self::Result {
        self.draining = true;
        self.status.set_state(State::Draining);
        if let Some(handle) = self.reading.take() {
            // The receive is cancellation-safe: no record is lost.
            ctx.cancel_future(handle);
        }
        let (tx, rx) = oneshot::channel();
        self.drain_waiters.push(tx);
        self.maybe_finish_drain();
        let fallback = self.drained();
        Box::pin(async move { rx.await.unwrap_or(fallback) })
    }
}

/// Supervisor → partition actor: stop now (after a drain).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Stop;

impl Handler<Stop> for PartitionActor {
    type Result = ();

    fn handle(&mut self, _: Stop, ctx: &mut Self::Context) {
        ctx.stop();
    }
}
