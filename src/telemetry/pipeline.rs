//! Messages through the pipeline: each one's outcome as its handler decided
//! it (processed, or failed at a stage), and the waits for a dependency that
//! does not answer. Emitted by the auditor, `wait::until_back` and the relay.

use std::time::Duration;

use prometheus::{IntCounterVec, Registry};

use super::{Def, Emit};
use crate::failure::AttemptFailure;
use crate::pipeline::Outcome;
use crate::text::clip;

pub(super) struct Metrics {
    /// Records applied, by topic and event type.
    processed: IntCounterVec,
    /// Records that failed, by topic, stage and kind.
    failed: IntCounterVec,
    /// Times a stage waited for an unreachable dependency.
    dependency_waits: IntCounterVec,
}

impl Metrics {
    pub(super) fn register(r: &Registry) -> Self {
        Metrics {
            processed: Def {
                name: "messages_processed_total",
                help: "Records applied.",
                labels: &["topic", "type"],
            }
            .counter_vec(r),
            failed: Def {
                name: "messages_failed_total",
                help: "Records that failed.",
                labels: &["topic", "stage", "kind"],
            }
            .counter_vec(r),
            dependency_waits: Def {
                name: "dependency_waits_total",
                help: "Waits for an unreachable dependency.",
                labels: &["dependency"],
            }
            .counter_vec(r),
        }
    }
}

fn metrics() -> &'static Metrics {
    &super::metrics().pipeline
}

/// Records processed so far, over all topics and types (the console's
/// chart samples).
pub fn processed_total() -> u64 {
    super::total(&metrics().processed) as u64
}

/// The bounded label for an event type: known types, else `other`.
fn type_label(event_type: Option<&str>) -> &'static str {
    crate::handlers::transactions::EVENT_TYPES
        .into_iter()
        .find(|t| Some(*t) == event_type)
        .unwrap_or("other")
}

/// A message's outcome was decided by its handler (`handlers::settle`).
pub struct MessageSettled<'a> {
    pub topic: &'a str,
    pub event_type: Option<&'a str>,
    pub outcome: Outcome,
    /// The attempt that decided a dead letter.
    pub last_failure: Option<&'a AttemptFailure>,
}

impl Emit for MessageSettled<'_> {
    fn emit(self) {
        match self.outcome {
            Outcome::Processed => metrics()
                .processed
                .with_label_values(&[self.topic, type_label(self.event_type)])
                .inc(),
            Outcome::AlreadyApplied | Outcome::RetryScheduled | Outcome::Redelivered => {}
            Outcome::DeadLettered => {
                if let Some(last) = self.last_failure {
                    let failure = &last.failure;
                    metrics()
                        .failed
                        .with_label_values(&[self.topic, failure.stage.as_str(), failure.kind])
                        .inc();
                }
            }
        }
    }
}

/// A dependency did not answer; the work waits `delay` (`wait::until_back`,
/// the relay's loop).
pub struct DependencyWaiting<'a> {
    pub dependency: &'a str,
    pub error: &'a str,
    pub delay: Duration,
    /// What waits, and what happens next: the log line.
    pub what: &'a str,
}

impl Emit for DependencyWaiting<'_> {
    fn emit(self) {
        metrics()
            .dependency_waits
            .with_label_values(&[self.dependency])
            .inc();
        tracing::warn!(
            dependency = self.dependency,
            error = %clip(self.error),
            retry_in_ms = self.delay.as_millis() as u64,
            "{}",
            self.what
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_event_type_is_labelled_other() {
        let known = crate::handlers::transactions::EVENT_TYPES[0];
        assert_eq!(type_label(Some(known)), known);
        assert_eq!(type_label(Some("made.up")), "other");
        assert_eq!(type_label(None), "other");
    }
}
