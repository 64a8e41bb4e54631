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
//!
//! An operator's pause (`flow`) holds it too: it reads nothing while a
//! pause of its topic or of itself is in force (or before the pauses are
//! first read), and a batch read just as a pause came is kept, not handed
//! over, so nothing past its position is committed. It resumes when the
//! pause does. And when its oldest in-flight message has waited longer than
//! `flow.stall_after`, it flags itself stalled, naming that message.

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
use crate::telemetry::flow::PartitionStall;
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
    /// The operators' pauses in force.
    flow: crate::flow::Flow,
    /// Records read as a pause came: handed over when it ends.
    held: Vec<Envelope>,
    /// When each batch in flight was read, by its last offset (for stalls:
    /// the oldest in-flight record is the watermark, read with the first
    /// batch that reaches it).
    read_at: std::collections::VecDeque<(i64, chrono::DateTime<chrono::Utc>)>,
    stall_after: std::time::Duration,
    stalled: bool,
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
    /// The operators' pauses in force.
    pub flow: crate::flow::Flow,
    /// `flow.stall_after`.
    pub stall_after: std::time::Duration,
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
            flow: config.flow,
            held: Vec::new(),
            read_at: std::collections::VecDeque::new(),
            stall_after: config.stall_after,
            stalled: false,
        }
    }

    fn schedule_read(&mut self, ctx: &mut Context<Self>) {
        if self.reading.is_some() || self.handing_over || self.draining {
            return;
        }
        if self.hold(ctx) {
            return;
        }
        if self.tracker.in_flight() + self.batch_size > self.max_in_flight
            || self.tracker.in_flight_bytes() >= self.max_in_flight_bytes
        {
            self.status.set_state(State::Paused);
            return;
        }
        self.status.set_state(State::Running);
        if !self.held.is_empty() {
            // Read as a pause came, which has ended.
            let records = std::mem::take(&mut self.held);
            self.hand_over(records, ctx);
            return;
        }
        if let Some(wait) = self.due.wait(chrono::Utc::now()) {
            // The head record is not due: wait for it without reading on.
            let handle = ctx.run_later(wait, |act, ctx| {
                act.reading = None;
                let ready = act.due.release(chrono::Utc::now());
                act.hand_over_unless_held(ready, ctx);
            });
            self.reading = Some(handle);
            return;
        }
        let queue = Arc::clone(&self.queue);
        let topic = Arc::clone(&self.topic);
        let max = self.batch_size;
        let span = self.span.clone();
        let status = Arc::clone(&self.status);
        let (mut changes, partition) = (self.flow.changes(), self.partition);
        let read = async move {
            // A pause that comes while the partition waits for records ends
            // the wait (the receive is cancellation-safe), so it shows as
            // held at once.
            tokio::select! {
                records = read_batch(&queue, &topic, max, &span, &status) => records,
                () = paused(&mut changes, &topic, partition) => Vec::new(),
            }
        };
        let handle = ctx.spawn(read.into_actor(self).map(|records, act, ctx| {
            act.reading = None;
            let ready = act.due.admit(records, chrono::Utc::now());
            act.hand_over_unless_held(ready, ctx);
        }));
        self.reading = Some(handle);
    }

    /// Hands `records` over, unless a pause came while they were read (or
    /// waited to be due): then they are kept, until it ends.
    fn hand_over_unless_held(&mut self, records: Vec<Envelope>, ctx: &mut Context<Self>) {
        if self.held_now().is_some() {
            self.held.extend(records);
            self.schedule_read(ctx);
            return;
        }
        self.hand_over(records, ctx);
    }

    /// Why an operator's pause holds this partition now, if one does.
    fn held_now(&self) -> Option<String> {
        self.flow.now().holding(&self.topic, self.partition)
    }

    /// True while a pause holds this partition: then it waits for the
    /// pauses to change (the wait is the pending "read", so a drain
    /// cancels it) and reads nothing.
    fn hold(&mut self, ctx: &mut Context<Self>) -> bool {
        let mut changes = self.flow.changes();
        let why = changes
            .borrow_and_update()
            .holding(&self.topic, self.partition);
        let Some(why) = why else {
            self.status.set_held(None);
            return false;
        };
        self.status.set_state(State::Held);
        self.status.set_held(Some(why));
        let wait = async move {
            if changes.changed().await.is_err() {
                // No one reads the pauses any more: look again later.
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
        };
        let handle = ctx.spawn(wait.into_actor(self).map(|(), act, ctx| {
            act.reading = None;
            act.schedule_read(ctx);
        }));
        self.reading = Some(handle);
        true
    }

    /// Flags (or clears) a stall: the oldest in-flight record waiting
    /// longer than `flow.stall_after`.
    fn check_stall(&mut self) {
        let now = chrono::Utc::now();
        let oldest = match (self.tracker.in_flight(), self.tracker.watermark()) {
            (0, _) | (_, None) => {
                self.read_at.clear();
                None
            }
            (_, Some(offset)) => {
                while self.read_at.front().is_some_and(|(last, _)| *last < offset) {
                    self.read_at.pop_front();
                }
                self.read_at.front().map(|(_, at)| (offset, *at))
            }
        };
        let late =
            oldest.filter(|(_, at)| (now - *at).to_std().unwrap_or_default() > self.stall_after);
        match (late, self.stalled) {
            (Some((offset, since)), stalled) => {
                if stalled && self.status.stalled().is_some_and(|s| s.offset == offset) {
                    return;
                }
                // Newly stalled, or another message is now the oldest late one.
                self.stalled = true;
                self.status
                    .set_stalled(Some(crate::status::registry::Stall { offset, since }));
                PartitionStall {
                    topic: &self.topic,
                    partition: &self.partition_label,
                    oldest: Some((offset, (now - since).to_std().unwrap_or_default())),
                }
                .emit();
            }
            (None, true) => {
                self.stalled = false;
                self.status.set_stalled(None);
                PartitionStall {
                    topic: &self.topic,
                    partition: &self.partition_label,
                    oldest: None,
                }
                .emit();
            }
            _ => {}
        }
    }

    fn hand_over(&mut self, records: Vec<Envelope>, ctx: &mut Context<Self>) {
        if records.is_empty() {
            self.schedule_read(ctx);
            return;
        }
        for record in &records {
            self.tracker.register(record.offset, record.size());
        }
        if let Some(last) = records.last() {
            self.read_at.push_back((last.offset, chrono::Utc::now()));
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

/// Resolves when a pause holds partition `partition` of `topic` (never, if
/// no one reads the pauses any more).
async fn paused(
    changes: &mut tokio::sync::watch::Receiver<Arc<crate::flow::active::Active>>,
    topic: &str,
    partition: i32,
) {
    loop {
        if changes
            .borrow_and_update()
            .holding(topic, partition)
            .is_some()
        {
            return;
        }
        if changes.changed().await.is_err() {
            return std::future::pending().await;
        }
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
        let every = (self.stall_after / 4).clamp(
            std::time::Duration::from_millis(100),
            std::time::Duration::from_secs(5),
        );
        ctx.run_interval(every, |act, _| act.check_stall());
        self.schedule_read(ctx);
    }

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        // Whatever this incarnation still has in flight is uncommitted and
        // will be read again by the next owner: stop working on it.
        self.revoked.cancel();
        if self.stalled {
            PartitionStall {
                topic: &self.topic,
                partition: &self.partition_label,
                oldest: None,
            }
            .emit();
        }
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
