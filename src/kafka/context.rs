//! The consumer context: rebalance callbacks and librdkafka's logs.
//!
//! Callbacks run on the `kafka-events` thread that polls the main queue
//! (`events.rs`), never on an actor's arbiter, so this may block:
//! - on assignment, each partition's queue is split off right away (before
//!   any fetch for it can land on the main queue) and handed to the
//!   Supervisor, which starts one partition actor per queue;
//! - on revocation, it asks the Supervisor to drain the revoked partitions
//!   (stop reading, wait until every in-flight outcome is durable, store the
//!   watermark), waits up to the drain timeout, then commits synchronously,
//!   so the next owner resumes exactly after the last durable outcome.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use actix::Recipient;
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaResult;
use rdkafka::TopicPartitionList;

use crate::health::Health;
use crate::kafka::commit::commit_watermarks;
use crate::kafka::rebalance::{Assigned, Revoked};
use crate::kafka::KafkaConsumer;

pub struct KafkaContext {
    consumer: OnceLock<Weak<KafkaConsumer>>,
    assigned: OnceLock<Recipient<Assigned>>,
    revoked: OnceLock<Recipient<Revoked>>,
    drain_timeout: Duration,
    health: Arc<Health>,
    /// Set once the Supervisor has drained for shutdown: later revocations
    /// (the consumer closing) have nothing left to drain.
    closing: AtomicBool,
}

impl KafkaContext {
    pub fn new(drain_timeout: Duration, health: Arc<Health>) -> Self {
        KafkaContext {
            consumer: OnceLock::new(),
            assigned: OnceLock::new(),
            revoked: OnceLock::new(),
            drain_timeout,
            health,
            closing: AtomicBool::new(false),
        }
    }

    /// Wires the context to its consumer and Supervisor; call before `subscribe`.
    pub fn connect(
        &self,
        consumer: Weak<KafkaConsumer>,
        assigned: Recipient<Assigned>,
        revoked: Recipient<Revoked>,
    ) {
        let _ = self.consumer.set(consumer);
        let _ = self.assigned.set(assigned);
        let _ = self.revoked.set(revoked);
    }

    /// Everything is drained; revocations from now on only commit.
    pub fn close(&self) {
        self.closing.store(true, Ordering::Release);
    }

    fn partitions(tpl: &TopicPartitionList) -> Vec<(String, i32)> {
        tpl.elements()
            .iter()
            .map(|e| (e.topic().to_owned(), e.partition()))
            .collect()
    }
}

impl ClientContext for KafkaContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => {
                tracing::error!(facility = fac, "librdkafka: {log_message}")
            }
            RDKafkaLogLevel::Warning => tracing::warn!(facility = fac, "librdkafka: {log_message}"),
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                tracing::info!(facility = fac, "librdkafka: {log_message}")
            }
            RDKafkaLogLevel::Debug => tracing::debug!(facility = fac, "librdkafka: {log_message}"),
        }
    }

    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        tracing::warn!(error = %error, reason, "kafka client error");
    }

    /// librdkafka's statistics (only if `kafka.extra` sets
    /// `statistics.interval.ms`) are not read: lag is `status::lag`, from
    /// the broker's offsets. Ignoring them keeps rdkafka from logging each.
    fn stats_raw(&self, _statistics: &[u8]) {}
}

impl ConsumerContext for KafkaContext {
    fn pre_rebalance(&self, base: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Revoke(tpl) = rebalance else {
            return;
        };
        let partitions = Self::partitions(tpl);
        tracing::info!(count = partitions.len(), "partitions revoked: draining");
        self.health.set_assignment(None);
        let revoked = self
            .revoked
            .get()
            .filter(|_| !self.closing.load(Ordering::Acquire));
        let Some(revoked) = revoked else {
            return;
        };
        let (done, wait) = std::sync::mpsc::channel();
        // Control path, one message per rebalance: no mailbox bound needed.
        if revoked.try_send(Revoked { partitions, done }).is_err() {
            return;
        }
        match wait.recv_timeout(self.drain_timeout) {
            Ok(watermarks) => commit_watermarks(base, &watermarks, "revocation"),
            Err(_) => tracing::warn!(
                timeout_ms = self.drain_timeout.as_millis() as u64,
                "drain did not finish in time; undrained messages will be redelivered"
            ),
        }
    }

    fn post_rebalance(&self, _base: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                let partitions = Self::partitions(tpl);
                tracing::info!(count = partitions.len(), "partitions assigned");
                self.health.set_assignment(Some(partitions.len()));
                let Some(consumer) = self.consumer.get().and_then(Weak::upgrade) else {
                    return;
                };
                let queues = partitions
                    .into_iter()
                    .filter_map(|(topic, partition)| {
                        let queue = consumer.split_partition_queue(&topic, partition);
                        if queue.is_none() {
                            tracing::error!(topic, partition, "cannot split partition queue");
                        }
                        queue.map(|q| (topic, partition, q))
                    })
                    .collect();
                if let Some(assigned) = self.assigned.get() {
                    if assigned.try_send(Assigned { queues }).is_err() {
                        tracing::error!("supervisor unavailable: assignment not started");
                    }
                }
            }
            Rebalance::Revoke(_) => {}
            Rebalance::Error(e) => tracing::error!(error = %e, "rebalance error"),
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        match result {
            Ok(()) => tracing::debug!(partitions = offsets.count(), "offsets committed"),
            Err(rdkafka::error::KafkaError::ConsumerCommit(
                rdkafka::types::RDKafkaErrorCode::NoOffset,
            )) => {}
            Err(e) => {
                tracing::warn!(error = %e, "offset commit failed; will retry at next interval")
            }
        }
    }
}
