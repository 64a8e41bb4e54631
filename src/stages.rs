//! The data path's messages between the stages (partition actor →
//! enricher → processor → auditor → dead-letter actor, and the
//! acknowledgement back). Data moves in batches; every data message carries
//! its [`Handoff`], so stages are wired with `Recipient`s and a test can put a
//! recording actor in place of any of them. Below the actors: the handlers
//! and the retry topic's publisher take a `Handoff` to acknowledge what they
//! made durable without importing the actors that own them.

use actix::prelude::*;

use crate::kafka::envelope::Envelope;
use crate::outcome::{Pending, Verdict};
use crate::pipeline::{Item, Settled};

/// Where a partition's batches go next, and where their acknowledgement returns.
#[derive(Clone)]
pub struct Handoff {
    pub processor: Recipient<Prepared>,
    pub auditor: Recipient<Record>,
    /// The partition actor that read the batch.
    pub ack: Recipient<Ack>,
    /// Cancelled when that partition actor stops (revocation, shutdown, or
    /// a failure that restarts it): its uncommitted records are then read
    /// again by the next owner, so work in flight for them stops waiting
    /// and nothing of theirs is parked (a stale DLQ entry otherwise).
    pub revoked: tokio_util::sync::CancellationToken,
}

impl Handoff {
    /// Hands messages to the auditor (waiting for mailbox room) and answers
    /// where its verdict will come. If the auditor is gone, the partition
    /// is told the offsets were lost, so it rereads them from its watermark.
    pub async fn submit(
        &self,
        pending: Vec<Pending>,
    ) -> Option<tokio::sync::oneshot::Receiver<Verdict>> {
        let offsets: Vec<i64> = pending.iter().map(|p| p.settled.envelope.offset).collect();
        let (verdict, answer) = tokio::sync::oneshot::channel();
        let sent = self
            .auditor
            .send(Record {
                pending,
                ack: Some(self.ack.clone()),
                revoked: Some(self.revoked.clone()),
                verdict: Some(verdict),
            })
            .await;
        match sent {
            Ok(()) => Some(answer),
            Err(e) => {
                self.lost(offsets, format!("auditor unavailable: {e}"));
                None
            }
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
    pub handoff: Handoff,
}

/// Enricher → processor: decoded and enriched records (or why they are not).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Prepared {
    pub items: Vec<Item>,
    pub handoff: Handoff,
}

/// Auditor → dead-letter actor: dead letters whose audit entries are
/// durable, to push to Redis; their offsets are acknowledged after the push.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Park {
    pub settled: Vec<Settled>,
    /// The partition actor to acknowledge (none for the retry worker's).
    pub ack: Option<Recipient<Ack>>,
    /// Cancelled when that partition's assignment ends: the push is then
    /// left to the next owner, which reads the records again.
    pub revoked: Option<tokio_util::sync::CancellationToken>,
}

/// Processor or retry worker → auditor: messages with their outcome
/// decided and what must be written for them (see [`crate::outcome`]).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Record {
    pub pending: Vec<Pending>,
    /// The partition actor to acknowledge (none for the retry worker).
    pub ack: Option<Recipient<Ack>>,
    pub revoked: Option<tokio_util::sync::CancellationToken>,
    /// Where the verdict goes once the flush committed.
    pub verdict: Option<tokio::sync::oneshot::Sender<Verdict>>,
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
