//! Kafka: client settings, the rebalance context and its messages, the owned record type, the
//! per-partition offset tracker, committing offsets (`commit.rs`, the one
//! place), closing at shutdown and the development broker.

pub mod client;
pub(crate) mod close;
pub(crate) mod commit;
pub(crate) mod context;
pub mod dev_broker;
pub mod envelope;
pub(crate) mod events;
pub(crate) mod offsets;
pub(crate) mod rebalance;

/// The consumer custodian runs: a stream consumer with the rebalance context.
pub type KafkaConsumer = rdkafka::consumer::StreamConsumer<context::KafkaContext>;
/// One partition's own message queue, split off the consumer.
pub type PartitionQueue =
    rdkafka::consumer::stream_consumer::StreamPartitionQueue<context::KafkaContext>;
