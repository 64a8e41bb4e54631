//! The messages the rebalance callbacks (`context.rs`, on the Kafka event
//! thread) send to the Supervisor: partitions assigned, partitions revoked,
//! and the watermarks the Supervisor answers with.

use actix::prelude::*;

use crate::kafka::PartitionQueue;

/// Rebalance callback → Supervisor: new partitions, with their split queues.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Assigned {
    pub queues: Vec<(String, i32, PartitionQueue)>,
}

/// A partition's durable watermark: the offset to commit.
pub type Watermark = (String, i32, i64);

/// Rebalance callback → Supervisor: drain these; answer on `done` with the
/// watermarks to commit.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Revoked {
    pub partitions: Vec<(String, i32)>,
    pub done: std::sync::mpsc::Sender<Vec<Watermark>>,
}
