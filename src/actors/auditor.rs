//! The auditor actor: buffers settled messages and writes their audit rows in
//! one PostgreSQL transaction per flush, when `audit_batch_size` messages are
//! buffered or the oldest has waited `audit_flush_interval`, whichever comes
//! first. Only after the commit does it acknowledge the offsets to their
//! partition actors. While a flush runs, or PostgreSQL is unreachable, its
//! mailbox is blocked: upstream stages pause rather than buffer without bound.

use std::time::Instant;

use actix::prelude::*;

use crate::config::PipelineSettings;
use crate::config::PostgresSettings;
use crate::pipeline::Settled;
use crate::stages::{Ack, Record};
use crate::store::audit_writer::{self, AuditWriter};
use crate::telemetry::events::{BatchAudited, Emit};
use crate::wait::{until_back, DependencyWait, Down, Patience};

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
        let wait = DependencyWait {
            min: self.settings.dependency_backoff_min,
            max: self.settings.dependency_backoff_max,
        };
        let write = async move {
            let started = Instant::now();
            // Audit rows never give up: the write waits until it lands.
            let written = until_back(wait, Patience::Forever, async || {
                let written = audit_writer::write_batch(&mut writer, &batch, &group).await;
                written.map_err(|e| Down::new("postgres", e))
            })
            .await;
            BatchAudited {
                batch: &batch,
                duplicates: &written.unwrap_or_default(),
                elapsed: started.elapsed(),
            }
            .emit();
            for (ack, offsets) in acks {
                Ack::Durable(offsets).tell(&ack);
            }
            writer
        };
        ctx.wait(write.into_actor(self).map(|writer, act, _| {
            act.writer = Some(writer);
            act.flushing = false;
        }));
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
