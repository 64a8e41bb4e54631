//! The audit: outcomes made durable. The outcome writer's PostgreSQL writes
//! (projection, then audit), each audited batch (its size, flush time,
//! duplicates), and, per message, the latency from Kafka and from the read
//! to the durable outcome; one debug line per outcome. Emitted by the
//! outcome writer and the auditor.

use std::time::Duration;

use prometheus::{Histogram, HistogramVec, IntCounter, IntCounterVec, Registry};

use super::{Def, Emit};
use crate::pipeline::{Outcome, Settled};
use crate::text::clip;

pub(super) struct Metrics {
    /// Seconds per PostgreSQL write, by operation (seed 004's name).
    db_latency_seconds: HistogramVec,
    /// Records skipped because their id was already applied, by topic.
    duplicates: IntCounterVec,
    /// Messages per audit flush.
    batch_size: Histogram,
    /// Seconds per audit flush (one PostgreSQL transaction).
    flush_seconds: Histogram,
    /// Messages whose audit rows are committed.
    audited: IntCounter,
    /// Seconds from the record's Kafka timestamp to its durable audit.
    end_to_end_seconds: Histogram,
    /// Seconds from the partition actor reading the record to its outcome
    /// being durable: custodian's own share of the end-to-end latency.
    pipeline_seconds: Histogram,
}

impl Metrics {
    pub(super) fn register(r: &Registry) -> Self {
        // 0.5 ms to about 260 s, 25 % apart.
        let fine = || prometheus::exponential_buckets(0.0005, 1.25, 60).expect("static buckets");
        Metrics {
            db_latency_seconds: Def {
                name: "db_latency_seconds",
                help: "Seconds per PostgreSQL write.",
                labels: &["operation"],
            }
            .latency_vec(r),
            duplicates: Def {
                name: "duplicates_total",
                help: "Records skipped as already applied.",
                labels: &["topic"],
            }
            .counter_vec(r),
            batch_size: Def {
                name: "audit_batch_size",
                help: "Messages per audit flush.",
                labels: &[],
            }
            .histogram(
                r,
                vec![1.0, 10.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2000.0, 5000.0],
            ),
            flush_seconds: Def {
                name: "audit_flush_seconds",
                help: "Seconds per audit flush.",
                labels: &[],
            }
            .histogram(
                r,
                prometheus::exponential_buckets(0.001, 2.0, 14).expect("static buckets"),
            ),
            audited: Def {
                name: "messages_audited_total",
                help: "Messages whose audit rows are committed.",
                labels: &[],
            }
            .counter(r),
            end_to_end_seconds: Def {
                name: "end_to_end_latency_seconds",
                help: "Seconds from Kafka timestamp to durable outcome.",
                labels: &[],
            }
            .histogram(r, fine()),
            pipeline_seconds: Def {
                name: "pipeline_latency_seconds",
                help: "Seconds from the partition actor reading a record to its durable outcome (time waiting in Kafka excluded).",
                labels: &[],
            }
            .histogram(r, fine()),
        }
    }
}

fn metrics() -> &'static Metrics {
    &super::metrics().trail
}

/// Duplicates audited so far, over all topics (the console's chart samples).
pub fn duplicates_total() -> u64 {
    super::total(&metrics().duplicates) as u64
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
        m.flush_seconds.observe(elapsed);
        m.db_latency_seconds
            .with_label_values(&["audit"])
            .observe(elapsed);
        m.batch_size.observe(self.batch.len() as f64);
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
