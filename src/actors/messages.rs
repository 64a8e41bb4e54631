//! The actors' control messages: the Supervisor's drain and shutdown, and
//! a partition actor's failure report. (The data path's messages and the
//! `Handoff` wiring them are [`crate::stages`].)

use actix::prelude::*;

pub use crate::kafka::rebalance::{Assigned, Revoked, Watermark};

/// Supervisor → partition actor: stop reading, report when all is durable.
#[derive(Message)]
#[rtype(result = "Drained")]
pub struct Drain;

/// The partition's state after a drain.
#[derive(Debug, Clone, Copy, MessageResponse)]
pub struct Drained {
    /// Messages still in flight (0 unless the drain timed out).
    pub in_flight: usize,
    /// The offset stored for commit.
    pub watermark: Option<i64>,
}

/// Partition actor → Supervisor: it stopped because a stage failed.
#[derive(Message)]
#[rtype(result = "()")]
pub struct PartitionFailed {
    pub topic: String,
    pub partition: i32,
    /// Which incarnation failed: a report from an actor the Supervisor has
    /// already replaced is ignored.
    pub generation: u64,
    /// Where to resume so nothing undurable is skipped.
    pub resume_at: Option<i64>,
}

/// App → Supervisor: drain everything for shutdown; answers the watermarks
/// to commit.
#[derive(Message)]
#[rtype(result = "Vec<Watermark>")]
pub struct Shutdown;
