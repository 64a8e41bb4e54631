//! The Supervisor: owns one partition actor per assigned partition.
//!
//! - On assignment it starts an actor per split queue, spreading them over
//!   the arbiters and wiring each to an enricher, processor and auditor
//!   chosen by partition number (so one partition always takes one path and
//!   keeps its order).
//! - On revocation it drains the revoked partitions (in parallel, bounded by
//!   the drain timeout), stops them, then answers the rebalance callback,
//!   which commits.
//! - If a partition actor fails it rewinds the partition to its durable
//!   watermark and starts a fresh actor on the same queue.
//! - On shutdown it drains everything, then stops.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use rdkafka::consumer::Consumer;
use rdkafka::Offset;

use crate::actors::messages::{
    Assigned, Drain, Drained, PartitionFailed, Revoked, Shutdown, Watermark,
};
use crate::actors::partition::{Downstream, PartitionActor, PartitionConfig, Stop};
use crate::kafka::{KafkaConsumer, PartitionQueue};
use crate::stages::{Batch, Prepared, Record};

/// The stages partition actors are wired to.
#[derive(Clone)]
pub struct Stages {
    pub enrichers: Vec<Recipient<Batch>>,
    pub processors: Vec<Recipient<Prepared>>,
    pub auditors: Vec<Recipient<Record>>,
}

struct Owned {
    addr: Addr<PartitionActor>,
    queue: Arc<PartitionQueue>,
    generation: u64,
}

pub struct Supervisor {
    consumer: Arc<KafkaConsumer>,
    stages: Stages,
    arbiters: Vec<ArbiterHandle>,
    next_arbiter: usize,
    batch_size: usize,
    max_in_flight: usize,
    max_in_flight_bytes: usize,
    drain_timeout: Duration,
    commit_interval: Duration,
    partitions: HashMap<(String, i32), Owned>,
    /// Where partition actors report for `GET /status`.
    status: Arc<crate::status::Registry>,
    /// Incarnations started so far (numbers partition actors).
    generations: u64,
    /// The operators' pauses, which every partition actor honours.
    flow: crate::flow::Flow,
    stall_after: Duration,
    shutting_down: bool,
}

impl Supervisor {
    pub fn new(
        consumer: Arc<KafkaConsumer>,
        stages: Stages,
        arbiters: Vec<ArbiterHandle>,
        pipeline: &crate::config::PipelineSettings,
        drain_timeout: Duration,
        commit_interval: Duration,
    ) -> Self {
        Supervisor {
            consumer,
            stages,
            arbiters,
            next_arbiter: 0,
            batch_size: pipeline.partition_batch_size,
            max_in_flight: pipeline.max_in_flight_per_partition,
            max_in_flight_bytes: pipeline.max_in_flight_bytes_per_partition,
            drain_timeout,
            commit_interval,
            partitions: HashMap::new(),
            status: Arc::default(),
            generations: 0,
            flow: crate::flow::Flow::unpaused(),
            stall_after: Duration::from_secs(60),
            shutting_down: false,
        }
    }

    /// Partition actors honour `flow`'s pauses and flag a stall after
    /// `stall_after` (by default: never paused, 60 s).
    pub fn flow(mut self, flow: crate::flow::Flow, stall_after: Duration) -> Self {
        self.flow = flow;
        self.stall_after = stall_after;
        self
    }

    /// Partition actors report to `registry` (by default a private one).
    pub fn reporting_to(mut self, registry: Arc<crate::status::Registry>) -> Self {
        self.status = registry;
        self
    }

    fn start_partition(
        &mut self,
        ctx: &mut Context<Self>,
        topic: String,
        partition: i32,
        queue: Arc<PartitionQueue>,
    ) {
        let pick = |n: usize| partition.unsigned_abs() as usize % n;
        let downstream = Downstream {
            enricher: self.stages.enrichers[pick(self.stages.enrichers.len())].clone(),
            processor: self.stages.processors[pick(self.stages.processors.len())].clone(),
            auditor: self.stages.auditors[pick(self.stages.auditors.len())].clone(),
        };
        let arbiter = &self.arbiters[self.next_arbiter % self.arbiters.len()];
        self.next_arbiter += 1;
        let consumer = Arc::clone(&self.consumer);
        let supervisor = ctx.address().recipient();
        self.generations += 1;
        let generation = self.generations;
        let config = PartitionConfig {
            generation,
            batch_size: self.batch_size,
            max_in_flight: self.max_in_flight,
            max_in_flight_bytes: self.max_in_flight_bytes,
            commit_interval: self.commit_interval,
            status: self.status.register(&topic, partition),
            flow: self.flow.clone(),
            stall_after: self.stall_after,
        };
        let actor_queue = Arc::clone(&queue);
        let actor_topic = topic.clone();
        let addr = PartitionActor::start_in_arbiter(arbiter, move |_| {
            PartitionActor::new(
                &actor_topic,
                partition,
                actor_queue,
                consumer,
                downstream,
                supervisor,
                config,
            )
        });
        self.partitions.insert(
            (topic, partition),
            Owned {
                addr,
                queue,
                generation,
            },
        );
    }

    /// Drains the given partitions concurrently, stops their actors, and
    /// resolves to the watermarks to commit (none for a partition whose drain
    /// timed out: its last commit stands and the rest is redelivered).
    fn drain(
        &mut self,
        keys: Vec<(String, i32)>,
    ) -> impl std::future::Future<Output = Vec<Watermark>> + 'static {
        // Leave the rebalance callback (which waits `drain_timeout`) time to
        // commit what drained.
        let timeout = self.drain_timeout.mul_f32(0.8);
        let owned: Vec<((String, i32), Owned)> = keys
            .into_iter()
            .filter_map(|key| self.partitions.remove(&key).map(|o| (key, o)))
            .collect();
        async move {
            let drains = owned.iter().map(|((topic, partition), o)| {
                let request = o.addr.send(Drain);
                async move {
                    let drained = match tokio::time::timeout(timeout, request).await {
                        Ok(Ok(drained)) => drained,
                        Ok(Err(_)) | Err(_) => {
                            tracing::warn!(
                                topic,
                                partition,
                                "partition drain timed out; undrained messages will be redelivered"
                            );
                            return None;
                        }
                    };
                    let Drained {
                        in_flight,
                        watermark,
                    } = drained;
                    if in_flight == 0 {
                        tracing::info!(topic, partition, ?watermark, "partition drained");
                    } else {
                        tracing::warn!(
                            topic,
                            partition,
                            in_flight,
                            ?watermark,
                            "partition drain incomplete; those messages will be redelivered"
                        );
                    }
                    watermark.map(|w| (topic.clone(), *partition, w))
                }
            });
            let watermarks = futures::future::join_all(drains).await;
            for (_, o) in owned {
                // Control path, once per partition and rebalance.
                o.addr.do_send(Stop);
            }
            watermarks.into_iter().flatten().collect()
        }
    }
}

impl Actor for Supervisor {
    type Context = Context<Self>;
}

impl Handler<Assigned> for Supervisor {
    type Result = ();

    fn handle(&mut self, msg: Assigned, ctx: &mut Self::Context) {
        if self.shutting_down {
            return;
        }
        for (topic, partition, queue) in msg.queues {
            if let Some(old) = self.partitions.remove(&(topic.clone(), partition)) {
                // `assign` invalidated the old queue; its actor must go.
                // Control path, once per partition and rebalance.
                old.addr.do_send(Stop);
            }
            self.start_partition(ctx, topic, partition, Arc::new(queue));
        }
    }
}

impl Handler<Revoked> for Supervisor {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, msg: Revoked, _ctx: &mut Self::Context) -> Self::Result {
        let drain = self.drain(msg.partitions);
        let done = msg.done;
        Box::pin(async move {
            let _ = done.send(drain.await);
        })
    }
}

impl Handler<PartitionFailed> for Supervisor {
    type Result = ();

    fn handle(&mut self, msg: PartitionFailed, ctx: &mut Self::Context) {
        let key = (msg.topic, msg.partition);
        let current = self.partitions.get(&key).map(|o| o.generation);
        if current != Some(msg.generation) {
            // A report from an incarnation already replaced or revoked.
            return;
        }
        let Some(owned) = self.partitions.remove(&key) else {
            return;
        };
        // Control path, once per failure.
        owned.addr.do_send(Stop);
        if self.shutting_down {
            return;
        }
        if let Some(offset) = msg.resume_at {
            if let Err(e) =
                self.consumer
                    .seek(&key.0, key.1, Offset::Offset(offset), Duration::ZERO)
            {
                tracing::error!(topic = key.0, partition = key.1, error = %e, "cannot rewind failed partition");
            }
        }
        tracing::warn!(topic = key.0, partition = key.1, resume_at = ?msg.resume_at, "restarting partition actor");
        let (topic, partition) = key;
        self.start_partition(ctx, topic, partition, owned.queue);
    }
}

impl Handler<Shutdown> for Supervisor {
    type Result = ResponseActFuture<Self, Vec<Watermark>>;

    fn handle(&mut self, _: Shutdown, _ctx: &mut Self::Context) -> Self::Result {
        self.shutting_down = true;
        let keys: Vec<_> = self.partitions.keys().cloned().collect();
        // Stopping lets go of the consumer, which can then be closed (see
        // `kafka/close.rs`).
        Box::pin(self.drain(keys).into_actor(self).map(|watermarks, _, ctx| {
            ctx.stop();
            watermarks
        }))
    }
}
