//! Retries: transient failures retried in place (`retry::in_place`, the
//! handlers' submit), and the deferred schedule's depth and oldest due entry
//! per route (read by the retry worker).

use std::time::Duration;

use prometheus::{GaugeVec, IntCounterVec, IntGaugeVec, Registry};

use super::{Def, Emit};

pub(super) struct Metrics {
    /// Transient failures retried in place, by topic, stage and kind.
    retries: IntCounterVec,
    /// Open entries of the retry schedule, by route.
    schedule_depth: IntGaugeVec,
    /// How long the oldest due schedule entry has been due, by route.
    schedule_oldest_due_seconds: GaugeVec,
}

impl Metrics {
    pub(super) fn register(r: &Registry) -> Self {
        Metrics {
            retries: Def {
                name: "retries_total",
                help: "Transient failures retried in place.",
                labels: &["topic", "stage", "kind"],
            }
            .counter_vec(r),
            schedule_depth: Def {
                name: "retry_schedule_depth",
                help: "Open entries of the retry schedule.",
                labels: &["route"],
            }
            .gauge_vec(r),
            schedule_oldest_due_seconds: Def {
                name: "retry_schedule_oldest_due_seconds",
                help: "How long the oldest due retry schedule entry has been due.",
                labels: &["route"],
            }
            .float_gauge_vec(r),
        }
    }
}

fn metrics() -> &'static Metrics {
    &super::metrics().retry
}

/// Retries in place so far, over all labels (the console's chart samples).
pub fn retries_total() -> u64 {
    super::total(&metrics().retries) as u64
}

/// A transient failure, retried in place after `delay` (`retry::run`).
pub struct Retrying<'a> {
    pub topic: &'a str,
    pub stage: &'a str,
    pub kind: &'a str,
    pub attempt: u32,
    pub delay: Duration,
}

impl Emit for Retrying<'_> {
    fn emit(self) {
        metrics()
            .retries
            .with_label_values(&[self.topic, self.stage, self.kind])
            .inc();
        tracing::info!(
            topic = self.topic,
            attempt = self.attempt,
            error_kind = self.kind,
            retry_in_ms = self.delay.as_millis() as u64,
            "transient failure: retrying in place"
        );
    }
}

/// The retry worker read the schedule: per route, its open entries and how
/// many seconds the oldest due one has been due. Routes not listed have
/// none, and lose their series.
pub struct RetryScheduleRead<'a> {
    pub depths: &'a [(String, i64, f64)],
}

impl Emit for RetryScheduleRead<'_> {
    fn emit(self) {
        let m = metrics();
        m.schedule_depth.reset();
        m.schedule_oldest_due_seconds.reset();
        for (route, depth, oldest) in self.depths {
            m.schedule_depth.with_label_values(&[route]).set(*depth);
            m.schedule_oldest_due_seconds
                .with_label_values(&[route])
                .set(*oldest);
        }
    }
}
