//! The dead-letter queue: messages parked in Redis (and their log line),
//! redeliveries of records already parked, each topic's list depth, and the
//! operators' replays and discards. Emitted by `dlq` and the outcome writer.

use prometheus::{IntCounterVec, IntGaugeVec, Registry};
use uuid::Uuid;

use super::{Def, Emit};
use crate::pipeline::Settled;
use crate::text::clip;

pub(super) struct Metrics {
    /// Records parked in the dead-letter queue (seed 004's name).
    parked: IntCounterVec,
    /// Entries in each topic's dead-letter list (read from Redis at scrape).
    depth: IntGaugeVec,
    /// Operator replays and discards, by topic and result.
    replays: IntCounterVec,
}

impl Metrics {
    pub(super) fn register(r: &Registry) -> Self {
        Metrics {
            parked: Def {
                name: "dlq_count_total",
                help: "Records parked in the dead-letter queue.",
                labels: &["topic"],
            }
            .counter_vec(r),
            depth: Def {
                name: "dlq_depth",
                help: "Entries in the topic's dead-letter list.",
                labels: &["topic"],
            }
            .gauge_vec(r),
            replays: Def {
                name: "replays_total",
                help: "Dead letters replayed or discarded by an operator.",
                labels: &["topic", "result"],
            }
            .counter_vec(r),
        }
    }
}

fn metrics() -> &'static Metrics {
    &super::metrics().dlq
}

/// Messages parked so far, over all topics (the console's chart samples).
pub fn parked_total() -> u64 {
    super::total(&metrics().parked) as u64
}

/// A topic's failed messages were parked in Redis (`new` of them were not
/// there yet); each of them is a [`MessageDeadLettered`].
pub struct DeadLettered<'a> {
    pub topic: &'a str,
    pub new: usize,
}

impl Emit for DeadLettered<'_> {
    fn emit(self) {
        metrics()
            .parked
            .with_label_values(&[self.topic])
            .inc_by(self.new as u64);
    }
}

/// One message parked in Redis (`DlqEntry::dead_lettered`). The error text
/// can quote payload values: it stays in the DLQ entry and the audit row,
/// out of the logs.
pub struct MessageDeadLettered<'a> {
    pub message_id: Uuid,
    pub event_type: Option<&'a str>,
    pub key: Option<&'a str>,
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    pub attempts: u32,
    pub error_kind: &'a str,
    pub stage: &'a str,
}

impl Emit for MessageDeadLettered<'_> {
    fn emit(self) {
        tracing::warn!(
            eventId = %self.message_id,
            r#type = %clip(self.event_type.unwrap_or("")),
            key = %clip(self.key.unwrap_or("")),
            topic = self.topic,
            partition = self.partition,
            offset = self.offset,
            attempts = self.attempts,
            error_kind = %self.error_kind,
            stage = %self.stage,
            "message dead-lettered"
        );
    }
}

/// A record read again whose outcome at its position was already durable
/// (parked by an earlier delivery): audited as a duplicate.
pub struct RedeliveryRecognised<'a> {
    pub settled: &'a Settled,
    /// What is done with it beyond the duplicate entry.
    pub then: &'static str,
}

impl Emit for RedeliveryRecognised<'_> {
    fn emit(self) {
        let s = self.settled;
        tracing::info!(
            eventId = %s.message_id,
            topic = %s.envelope.topic,
            partition = s.envelope.partition,
            offset = s.envelope.offset,
            then = self.then,
            "redelivered record already parked: audited as a duplicate"
        );
    }
}

/// The dead-letter lists' depths were read from Redis, per topic (before a
/// scrape of `/metrics`, or for an operator).
pub struct DlqDepthRead<'a> {
    pub depths: &'a [(String, u64)],
}

impl Emit for DlqDepthRead<'_> {
    fn emit(self) {
        for (topic, depth) in self.depths {
            metrics()
                .depth
                .with_label_values(&[topic])
                .set(i64::try_from(*depth).unwrap_or(i64::MAX));
        }
    }
}

/// An operator acted on a dead letter (`replayed`, `discarded`, …).
pub struct DeadLetterActed<'a> {
    pub topic: &'a str,
    pub result: &'a str,
}

impl Emit for DeadLetterActed<'_> {
    fn emit(self) {
        metrics()
            .replays
            .with_label_values(&[self.topic, self.result])
            .inc();
    }
}
