//! What custodian reports while it works, one small type per event (in the
//! manner of Vector's `internal_events`): each emits its log line and its
//! metrics in one place, so names and labels stay the same wherever the
//! event happens. Code that does the work says `Event { .. }.emit()`.

use std::time::Duration;

use uuid::Uuid;

use crate::failure::AttemptFailure;
use crate::metrics::{metrics, Metrics};
use crate::pipeline::{Outcome, Settled};
use crate::text::clip;

/// An event: emitting it logs and counts it.
pub trait Emit {
    fn emit(self);
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
                .with_label_values(&[self.topic, Metrics::type_label(self.event_type)])
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

/// A topic's failed messages were parked in Redis (`new` of them were not
/// there yet); each of them is a [`MessageDeadLettered`].
pub struct DeadLettered<'a> {
    pub topic: &'a str,
    pub new: usize,
}

impl Emit for DeadLettered<'_> {
    fn emit(self) {
        metrics()
            .dlq
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

/// A flush's ledger rows and stored effects went to PostgreSQL (inside
/// the outcome writer's transaction, before its audit entries).
pub struct ProjectionWritten {
    pub elapsed: Duration,
}

impl Emit for ProjectionWritten {
    fn emit(self) {
        metrics()
            .db_latency_seconds
            .with_label_values(&["projection"])
            .observe(self.elapsed.as_secs_f64());
    }
}

/// An auditor's batch is durable: its outcomes may be acknowledged.
pub struct BatchAudited<'a> {
    pub batch: &'a [Settled],
    /// The topic of each message audited as a duplicate.
    pub duplicates: &'a [String],
    pub elapsed: Duration,
}

impl Emit for BatchAudited<'_> {
    fn emit(self) {
        let m = metrics();
        for topic in self.duplicates {
            m.duplicates.with_label_values(&[topic]).inc();
        }
        let elapsed = self.elapsed.as_secs_f64();
        m.audit_flush_seconds.observe(elapsed);
        m.db_latency_seconds
            .with_label_values(&["audit"])
            .observe(elapsed);
        m.audit_batch_size.observe(self.batch.len() as f64);
        m.audited.inc_by(self.batch.len() as u64);
        let now = chrono::Utc::now();
        let now_ms = now.timestamp_millis();
        for settled in self.batch {
            if let Some(ts) = settled.envelope.timestamp_ms {
                m.end_to_end_seconds
                    .observe((now_ms - ts).max(0) as f64 / 1000.0);
            }
            let in_pipeline = now - settled.envelope.received_at;
            m.pipeline_seconds
                .observe(in_pipeline.num_microseconds().unwrap_or(i64::MAX).max(0) as f64 / 1e6);
        }
        log_outcomes(self.batch, now);
    }
}

/// One debug line per message whose outcome just became durable, with the
/// fields an operator greps for and the latency from read to durable. Off at
/// the default `info` level: at full speed that is tens of thousands of
/// lines a second (`log.level = "info,custodian=debug"` turns it on).
fn log_outcomes(batch: &[Settled], now: chrono::DateTime<chrono::Utc>) {
    if !tracing::enabled!(tracing::Level::DEBUG) {
        return;
    }
    for s in batch {
        let e = &s.envelope;
        let outcome = match s.outcome {
            Outcome::Processed => "processed",
            Outcome::AlreadyApplied | Outcome::Redelivered => "duplicate",
            Outcome::DeadLettered => "dead_lettered",
            Outcome::RetryScheduled => "retry_scheduled",
        };
        tracing::debug!(
            eventId = %s.message_id,
            r#type = %clip(s.event_type.as_deref().unwrap_or("")),
            key = %clip(e.key_text().as_deref().unwrap_or("")),
            topic = %e.topic,
            partition = e.partition,
            offset = e.offset,
            attempts = s.failures.len() + 1,
            latency_ms = (now - e.received_at).num_milliseconds(),
            outcome,
            "message outcome durable"
        );
    }
}

/// A delivery waited for its route's rate limit.
pub struct RateLimited<'a> {
    pub route: &'a str,
}

impl Emit for RateLimited<'_> {
    fn emit(self) {
        metrics()
            .rate_limit_waits
            .with_label_values(&[self.route])
            .inc();
    }
}

/// A downstream request ended (answered or not) after `elapsed`.
pub struct DownstreamRequested<'a> {
    pub route: &'a str,
    pub elapsed: Duration,
}

impl Emit for DownstreamRequested<'_> {
    fn emit(self) {
        metrics()
            .downstream_seconds
            .with_label_values(&[self.route])
            .observe(self.elapsed.as_secs_f64());
    }
}

/// What a downstream request came to (`delivered`, `transient`, …).
pub struct DownstreamOutcome<'a> {
    pub route: &'a str,
    pub outcome: &'a str,
}

impl Emit for DownstreamOutcome<'_> {
    fn emit(self) {
        metrics()
            .downstream_requests
            .with_label_values(&[self.route, self.outcome])
            .inc();
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

/// A partition actor read records and registered them in flight.
pub struct RecordsRead<'a> {
    pub topic: &'a str,
    pub count: usize,
}

impl Emit for RecordsRead<'_> {
    fn emit(self) {
        metrics()
            .consumed
            .with_label_values(&[self.topic])
            .inc_by(self.count as u64);
    }
}

/// The relay published an outbox event to `topic` (Kafka acknowledged it,
/// and the row is marked and audited).
pub struct OutboxPublished<'a> {
    pub topic: &'a str,
}

impl Emit for OutboxPublished<'_> {
    fn emit(self) {
        metrics()
            .outbox_published
            .with_label_values(&[self.topic])
            .inc();
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
        metrics()
            .outbox_refused
            .with_label_values(&[self.topic])
            .inc();
        tracing::warn!(
            outbox_id = self.outbox_id,
            aggregate_id = %self.aggregate_id,
            topic = %self.topic,
            "relay: Kafka refused an event; its aggregate waits"
        );
    }
}

/// `POST /produce` published an event and Kafka acknowledged it.
pub struct EventProduced<'a> {
    pub event_id: &'a str,
    pub kind: &'a str,
    pub key: &'a str,
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
}

impl Emit for EventProduced<'_> {
    fn emit(self) {
        metrics()
            .produced
            .with_label_values(&[self.topic, self.kind])
            .inc();
        tracing::info!(
            event_id = %self.event_id,
            r#type = %clip(self.kind),
            key = %clip(self.key),
            topic = %self.topic,
            partition = self.partition,
            offset = self.offset,
            "event produced"
        );
    }
}

/// The HTTP server answered a request: by method, route pattern (bounded:
/// the pattern, never the concrete path) and status.
pub struct RequestServed<'a> {
    pub method: &'a str,
    pub route: &'a str,
    pub status: &'a str,
    pub elapsed: Duration,
}

impl Emit for RequestServed<'_> {
    fn emit(self) {
        let m = metrics();
        m.http_requests
            .with_label_values(&[self.method, self.route, self.status])
            .inc();
        m.http_latency_seconds
            .with_label_values(&[self.method, self.route])
            .observe(self.elapsed.as_secs_f64());
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
