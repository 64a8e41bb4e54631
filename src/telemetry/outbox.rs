//! The transactional outbox's relay: the backlog of unpublished rows, and
//! the events it published or Kafka refused. Emitted by `relay::publisher`.

use prometheus::{Gauge, IntCounterVec, IntGauge, Registry};

use super::{Def, Emit};

pub(super) struct Metrics {
    /// Outbox rows not yet published (set by the relay that leads).
    pending: IntGauge,
    /// Age of the oldest unpublished outbox row (0 when none).
    oldest_pending_seconds: Gauge,
    /// Outbox events published and marked, by topic.
    published: IntCounterVec,
    /// Outbox events Kafka refused (their aggregate waits), by topic.
    refused: IntCounterVec,
}

impl Metrics {
    pub(super) fn register(r: &Registry) -> Self {
        Metrics {
            pending: Def {
                name: "outbox_pending",
                help: "Outbox rows not yet published.",
                labels: &[],
            }
            .gauge(r),
            oldest_pending_seconds: Def {
                name: "outbox_oldest_pending_seconds",
                help: "Age of the oldest unpublished outbox row.",
                labels: &[],
            }
            .float_gauge(r),
            published: Def {
                name: "outbox_published_total",
                help: "Outbox events published to Kafka and marked.",
                labels: &["topic"],
            }
            .counter_vec(r),
            refused: Def {
                name: "outbox_refused_total",
                help: "Outbox events Kafka refused; their aggregate waits and retries.",
                labels: &["topic"],
            }
            .counter_vec(r),
        }
    }
}

fn metrics() -> &'static Metrics {
    &super::metrics().outbox
}

/// The relay read the outbox's backlog: rows not yet published, and the
/// age of the oldest of them (0 when none).
pub struct OutboxBacklog {
    pub pending: i64,
    pub oldest_seconds: f64,
}

impl Emit for OutboxBacklog {
    fn emit(self) {
        let m = metrics();
        m.pending.set(self.pending);
        m.oldest_pending_seconds.set(self.oldest_seconds);
    }
}

/// The relay published an outbox event to `topic` (Kafka acknowledged it,
/// and the row is marked and audited).
pub struct OutboxPublished<'a> {
    pub topic: &'a str,
}

impl Emit for OutboxPublished<'_> {
    fn emit(self) {
        metrics().published.with_label_values(&[self.topic]).inc();
    }
}

/// Kafka refused an outbox event: its aggregate waits and tries again.
pub struct OutboxRefused<'a> {
    pub outbox_id: i64,
    pub aggregate_id: &'a str,
    pub topic: &'a str,
}

impl Emit for OutboxRefused<'_> {
    fn emit(self) {
        metrics().refused.with_label_values(&[self.topic]).inc();
        tracing::warn!(
            outbox_id = self.outbox_id,
            aggregate_id = %self.aggregate_id,
            topic = %self.topic,
            "relay: Kafka refused an event; its aggregate waits"
        );
    }
}
