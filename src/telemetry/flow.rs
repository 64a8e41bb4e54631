//! Flow control: http routes' circuit breakers and stalled partitions.
//! Emitted by `flow::gate` and the partition actors.

use prometheus::{IntCounterVec, IntGaugeVec, Registry};

use super::{Def, Emit};

pub(super) struct Metrics {
    /// 0 closed, 1 half-open, 2 open, by route.
    breaker_state: IntGaugeVec,
    /// Changes of a breaker's state, by route and the state it went to.
    breaker_changes: IntCounterVec,
    /// 1 while a partition's oldest in-flight message has waited longer
    /// than `flow.stall_after`.
    partition_stalled: IntGaugeVec,
}

impl Metrics {
    pub(super) fn register(r: &Registry) -> Self {
        Metrics {
            breaker_state: Def {
                name: "breaker_state",
                help: "An http route's circuit breaker: 0 closed, 1 half-open, 2 open.",
                labels: &["route"],
            }
            .gauge_vec(r),
            breaker_changes: Def {
                name: "breaker_changes_total",
                help: "Changes of an http route's circuit breaker, by the state it went to.",
                labels: &["route", "to"],
            }
            .counter_vec(r),
            partition_stalled: Def {
                name: "partition_stalled",
                help: "1 while a partition's oldest in-flight message has waited longer than flow.stall_after.",
                labels: &["topic", "partition"],
            }
            .gauge_vec(r),
        }
    }
}

fn metrics() -> &'static Metrics {
    &super::metrics().flow
}

/// A route's circuit breaker changed state.
pub struct BreakerChanged<'a> {
    pub route: &'a str,
    pub from: &'a str,
    pub to: &'a str,
    pub why: &'a str,
}

impl Emit for BreakerChanged<'_> {
    fn emit(self) {
        let m = metrics();
        let level = match self.to {
            "open" => 2,
            "half_open" => 1,
            _ => 0,
        };
        m.breaker_state.with_label_values(&[self.route]).set(level);
        m.breaker_changes
            .with_label_values(&[self.route, self.to])
            .inc();
        tracing::warn!(
            route = %self.route,
            from = self.from,
            to = self.to,
            why = %self.why,
            "circuit breaker changed"
        );
    }
}

/// A partition's oldest in-flight message started, or stopped, waiting
/// longer than `flow.stall_after`.
pub struct PartitionStall<'a> {
    pub topic: &'a str,
    pub partition: &'a str,
    /// The message waiting: its offset, and how long; none when the
    /// partition is no longer stalled.
    pub oldest: Option<(i64, std::time::Duration)>,
}

impl Emit for PartitionStall<'_> {
    fn emit(self) {
        let gauge = metrics()
            .partition_stalled
            .with_label_values(&[self.topic, self.partition]);
        match self.oldest {
            Some((offset, waited)) => {
                gauge.set(1);
                tracing::warn!(
                    topic = %self.topic,
                    partition = %self.partition,
                    offset,
                    waited_seconds = waited.as_secs(),
                    "partition stalled: its oldest in-flight message has no outcome yet"
                );
            }
            None => {
                gauge.set(0);
                tracing::info!(topic = %self.topic, partition = %self.partition, "partition no longer stalled");
            }
        }
    }
}
