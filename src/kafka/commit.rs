//! The one place offsets are committed. What is committed is always a
//! partition's durable watermark: the offset after the last record whose
//! outcome is durable, with every record before it durable too
//! (`offsets.rs` tracks it; the partition actor advances it on each
//! `Ack::Durable`). The rust-rdkafka `at_least_once` contract: automatic
//! offset storing is off, so nothing else moves an offset.
//!
//! - [`watermark`]: asynchronously, every `kafka.commit_interval`, by the
//!   partition actor while it runs;
//! - [`commit_watermarks`]: synchronously, after a drain: at revocation
//!   (the rebalance context, before the partition moves) and at shutdown.

use rdkafka::consumer::{CommitMode, Consumer, ConsumerContext};
use rdkafka::error::KafkaResult;
use rdkafka::{Offset, TopicPartitionList};

use crate::kafka::rebalance::Watermark;

/// Commits one partition's durable watermark asynchronously (the client
/// sends it; a failure shows at the next commit or in the commit callback).
pub fn watermark<C: Consumer<X>, X: ConsumerContext>(
    consumer: &C,
    topic: &str,
    partition: i32,
    watermark: i64,
) -> KafkaResult<()> {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Offset(watermark))?;
    consumer.commit(&tpl, CommitMode::Async)
}

/// Commits partition watermarks synchronously (revocation, shutdown).
pub fn commit_watermarks<C: Consumer<X>, X: ConsumerContext>(
    consumer: &C,
    watermarks: &[Watermark],
    when: &str,
) {
    if watermarks.is_empty() {
        return;
    }
    let mut tpl = TopicPartitionList::new();
    for (topic, partition, offset) in watermarks {
        if let Err(e) = tpl.add_partition_offset(topic, *partition, Offset::Offset(*offset)) {
            tracing::error!(topic, partition, offset, error = %e, "invalid offset to commit");
        }
    }
    match consumer.commit(&tpl, CommitMode::Sync) {
        Ok(()) => tracing::info!(partitions = watermarks.len(), when, "offsets committed"),
        Err(e) => tracing::warn!(
            error = %e,
            when,
            "offset commit failed; the uncommitted messages will be redelivered"
        ),
    }
}
