//! The data path's messages between the stages (partition actor →
//! enricher → processor → dead-letter actor → auditor, and the
//! acknowledgement back). Data moves in batches; every data message carries
//! its [`Route`], so stages are wired with `Recipient`s and a test can put a
//! recording actor in place of any of them. Below the actors: the handlers
//! and the retry topic's publisher take a `Route` to acknowledge what they
//! made durable without importing the actors that own them.

use actix::prelude::*;

use crate::kafka::envelope::Envelope;
use crate::pipeline::{Item, Settled};

/// Where a partition's batches go next, and where their acknowledgement returns.
#[derive(Clone)]
pub struct Route {
    pub processor: Recipient<Prepared>,
    pub dead_letter: Recipient<Park>,
    pub auditor: Recipient<Record>,
    /// The partition actor that read the batch.
    pub ack: Recipient<Ack>,
    /// Cancelled when that partition actor stops (revocation, shutdown, or
    /// a failure that restarts it): its uncommitted records are then read
    /// again by the next owner, so work in flight for them stops waiting
    /// and nothing of theirs is parked (a stale DLQ entry otherwise).
    pub revoked: tokio_util::sync::CancellationToken,
}

impl Route {
    /// Hands settled messages to the auditor (waiting for mailbox room). If
    /// the auditor is gone, the partition is told the offsets were lost, so
    /// it rereads them from its watermark.
    pub async fn record(&self, settled: Vec<Settled>) {
        let offsets: Vec<i64> = settled.iter().map(|s| s.envelope.offset).collect();
        let sent = self
            .auditor
            .send(Record {
                settled,
                ack: self.ack.clone(),
            })
            .await;
        if let Err(e) = sent {
            self.lost(offsets, format!("auditor unavailable: {e}"));
        }
    }

    /// Tells the partition actor a stage could not take these offsets: it
    /// restarts from its watermark so they are read again.
    pub fn lost(&self, offsets: Vec<i64>, reason: impl Into<String>) {
        let reason = reason.into();
        Ack::Lost { offsets, reason }.tell(&self.ack);
    }
}

/// Partition actor → enricher: records read, in offset order.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Batch {
    pub records: Vec<Envelope>,
    pub route: Route,
}

/// Enricher → processor: decoded and enriched records (or why they are not).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Prepared {
    pub items: Vec<Item>,
    pub route: Route,
}

/// Processor → dead-letter actor: failed messages to park in Redis.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Park {
    pub settled: Vec<Settled>,
    pub route: Route,
}

/// Processor or dead-letter actor → auditor: messages with a final outcome.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Record {
    pub settled: Vec<Settled>,
    pub ack: Recipient<Ack>,
}

/// Auditor → partition actor: what became durable (or was lost on the way).
#[derive(Message)]
#[rtype(result = "()")]
pub enum Ack {
    /// These offsets' outcomes are durable.
    Durable(Vec<i64>),
    /// A stage could not take these offsets; the partition must restart from
    /// its watermark so they are read again.
    Lost { offsets: Vec<i64>, reason: String },
}

impl Ack {
    /// Sends this to the partition actor without waiting for mailbox room:
    /// acknowledgements are bounded by the partition's in-flight limit, not
    /// by a mailbox.
    pub fn tell(self, partition: &Recipient<Ack>) {
        partition.do_send(self);
    }
}
