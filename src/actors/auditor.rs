//! The auditor actor: buffers settled messages and writes their audit rows in
//! one PostgreSQL transaction per flush, when `audit_batch_size` messages are
//! buffered or the oldest has waited `audit_flush_interval`, whichever comes
//! first. Only after the commit does it acknowledge the offsets to their
//! partition actors. While a flush runs, or PostgreSQL is unreachable, its
//! mailbox is blocked: upstream stages pause rather than buffer without bound.

use std::time::Instant;

use actix::prelude::*;

use crate::actors::messages::{Ack, Record};
use crate::backoff::Backoff;
use crate::config::PipelineSettings;
use crate::config::PostgresSettings;
use crate::metrics::metrics;
use crate::pipeline::{Outcome, Settled};
use crate::retry;
use crate::store::audit;
use crate::store::audit_writer::AuditWriter;
use crate::telemetry::clip;

pub struct Auditor {
    /// Its own connection for the COPY; `None` while a flush has it.
    writer: Option<AuditWriter>,
    pub group: String,
    pub settings: PipelineSettings,
    buffer: Vec<Settled>,
    /// Who to acknowledge after the next flush, with which offsets.
    acks: Vec<(Recipient<Ack>, Vec<i64>)>,
    /// When the oldest buffered message arrived.
    oldest: Option<Instant>,
    flushing: bool,
}

impl Auditor {
    pub fn new(postgres: &PostgresSettings, group: String, settings: PipelineSettings) -> Self {
        Auditor {
            buffer: Vec::with_capacity(settings.audit_batch_size),
            writer: Some(AuditWriter::new(postgres)),
            group,
            settings,
            acks: Vec::new(),
            oldest: None,
            flushing: false,
        }
    }

    /// Hash-chains the entries it writes (the default) or not (`audit.chain`).
    pub fn chained(mut self, on: bool) -> Self {
        self.writer = self.writer.map(|w| w.chained(on));
        self
    }

    fn flush(&mut self, ctx: &mut Context<Self>) {
        if self.flushing || self.buffer.is_empty() {
            return;
        }
        let Some(mut writer) = self.writer.take() else {
            return;
        };
        self.flushing = true;
        self.oldest = None;
        let batch = std::mem::replace(
            &mut self.buffer,
            Vec::with_capacity(self.settings.audit_batch_size),
        );
        let acks = std::mem::take(&mut self.acks);
        let group = self.group.clone();
        let mut backoff = Backoff::new(
            self.settings.dependency_backoff_min,
            self.settings.dependency_backoff_max,
        );
        let write = async move {
            let started = Instant::now();
            loop {
                let written = audit::write_batch(&mut writer, &batch, &group)
                    .await
                    .map_err(|e| e.to_string());
                match written {
                    Ok(duplicates) => {
                        for topic in duplicates {
                            metrics().duplicates.with_label_values(&[topic]).inc();
                        }
                        break;
                    }
                    // Audit rows never give up: the write waits until it lands.
                    Err(error) => retry::wait_out(&mut backoff, "postgres", &error).await,
                }
            }
            let elapsed = started.elapsed().as_secs_f64();
            metrics().audit_flush_seconds.observe(elapsed);
            metrics()
                .db_latency_seconds
                .with_label_values(&["audit"])
                .observe(elapsed);
            metrics().audit_batch_size.observe(batch.len() as f64);
            metrics().audited.inc_by(batch.len() as u64);
            log_outcomes(&batch);
            let now = chrono::Utc::now();
            let now_ms = now.timestamp_millis();
            for settled in &batch {
                if let Some(ts) = settled.envelope.timestamp_ms {
                    metrics()
                        .end_to_end_seconds
                        .observe((now_ms - ts).max(0) as f64 / 1000.0);
                }
                let in_pipeline = now - settled.envelope.received_at;
                metrics().pipeline_seconds.observe(
                    in_pipeline.num_microseconds().unwrap_or(i64::MAX).max(0) as f64 / 1e6,
                );
            }
            for (ack, offsets) in acks {
                // Bounded by the partition's in-flight limit, not by a mailbox.
                ack.do_send(Ack::Durable(offsets));
            }
            writer
        };
        ctx.wait(write.into_actor(self).map(|writer, act, _| {
            act.writer = Some(writer);
            act.flushing = false;
        }));
    }
}

/// One debug line per message whose outcome just became durable, with the
/// fields an operator greps for and the latency from read to durable. Off at
/// the default `info` level: at full speed that is tens of thousands of
/// lines a second (`log.level = "info,custodian=debug"` turns it on).
fn log_outcomes(batch: &[Settled]) {
    if !tracing::enabled!(tracing::Level::DEBUG) {
        return;
    }
    let now = chrono::Utc::now();
    for s in batch {
        let e = &s.envelope;
        let outcome = match s.outcome {
            Outcome::Processed => "processed",
            Outcome::AlreadyApplied => "duplicate",
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

impl Actor for Auditor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(self.settings.mailbox_capacity);
        // Check at a fraction of the interval so a message waits at most
        // about one interval.
        let tick =
            (self.settings.audit_flush_interval / 4).max(std::time::Duration::from_millis(1));
        ctx.run_interval(tick, |act, ctx| {
            if act
                .oldest
                .is_some_and(|t| t.elapsed() >= act.settings.audit_flush_interval)
            {
                act.flush(ctx);
            }
        });
    }
}

impl Handler<Record> for Auditor {
    type Result = ();

    fn handle(&mut self, record: Record, ctx: &mut Self::Context) {
        self.oldest.get_or_insert_with(Instant::now);
        self.acks.push((
            record.ack,
            record.settled.iter().map(|s| s.envelope.offset).collect(),
        ));
        self.buffer.extend(record.settled);
        if self.buffer.len() >= self.settings.audit_batch_size {
            self.flush(ctx);
        }
    }
}
