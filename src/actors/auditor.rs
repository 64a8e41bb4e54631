//! The auditor actor, the front door of [`crate::outcome`]: buffers
//! submissions (a partition's batch, or the retry worker's outcomes) and
//! makes them durable in one PostgreSQL transaction per flush. Flushes are
//! group commits: one starts as soon as a submission arrives and none is
//! running; what arrives meanwhile goes in the next (at most
//! `audit_batch_size` messages, whole submissions, at least one), which
//! starts when it ends. After the
//! commit it hands the dead letters to the dead-letter actor (which
//! acknowledges them once Redis has them), acknowledges every other offset,
//! and answers each submission's verdict.
//!
//! Backpressure: every submitter waits for its verdict before it submits
//! again (a processor's batch, the retry worker's outcome), so the buffer
//! holds at most one batch per submitter. While PostgreSQL is unreachable
//! the flush waits, no verdict comes, and the partitions pause.
//!
//! Each partition has one auditor (the Supervisor picks it by partition
//! number, the retry worker likewise), so each chain has one writer here.

use std::time::Instant;

use actix::prelude::*;

use crate::config::{PipelineSettings, PostgresSettings};
use crate::outcome::writer::{Writer, Written};
use crate::outcome::{Pending, Refused, Verdict};
use crate::stages::{Ack, Park, Record};
use crate::telemetry::pipeline::MessageSettled;
use crate::telemetry::trail::BatchAudited;
use crate::telemetry::Emit;
use crate::wait::{until_back, DependencyWait, Down, Patience};

pub struct Auditor {
    /// `None` while a flush has it.
    writer: Option<Writer>,
    pub settings: PipelineSettings,
    /// Where dead letters go once their entries are durable.
    dead_letter: Recipient<Park>,
    buffer: Vec<Record>,
    flushing: bool,
}

impl Auditor {
    pub fn new(
        postgres: &PostgresSettings,
        group: String,
        settings: PipelineSettings,
        dead_letter: Recipient<Park>,
    ) -> Self {
        Auditor {
            writer: Some(Writer::new(postgres, group)),
            settings,
            dead_letter,
            buffer: Vec::new(),
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
        // Whole submissions, up to `audit_batch_size` messages (at least one).
        let mut taken = 0;
        let mut count = 0;
        for r in &self.buffer {
            if count > 0 && count + r.pending.len() > self.settings.audit_batch_size {
                break;
            }
            count += r.pending.len();
            taken += 1;
        }
        let records: Vec<Record> = self.buffer.drain(..taken).collect();
        let wait = DependencyWait {
            min: self.settings.dependency_backoff_min,
            max: self.settings.dependency_backoff_max,
        };
        let dead_letter = self.dead_letter.clone();
        let write = async move {
            let started = Instant::now();
            let (mut pending, rest): (Vec<Vec<Pending>>, Vec<_>) = records
                .into_iter()
                .map(|r| (r.pending, (r.ack, r.revoked, r.verdict)))
                .unzip();
            // Outcomes never give up: the write waits until it lands.
            let written = until_back(wait, Patience::Forever, async || {
                let written = writer.commit(&mut pending).await;
                written.map_err(|e| Down::new("postgres", e))
            })
            .await
            .unwrap_or_default();
            let elapsed = started.elapsed();
            for ((pending, (ack, revoked, verdict)), written) in
                pending.into_iter().zip(rest).zip(written)
            {
                answer(
                    pending,
                    written,
                    elapsed,
                    (ack, revoked, verdict),
                    &dead_letter,
                );
            }
            writer
        };
        ctx.spawn(write.into_actor(self).map(|writer, act, ctx| {
            act.writer = Some(writer);
            act.flushing = false;
            // What arrived meanwhile goes at once: a flush is the pace.
            if !act.buffer.is_empty() {
                act.flush(ctx);
            }
        }));
    }
}

type Reply = (
    Option<Recipient<Ack>>,
    Option<tokio_util::sync::CancellationToken>,
    Option<tokio::sync::oneshot::Sender<Verdict>>,
);

/// After the commit: dead letters to the dead-letter actor, the other
/// offsets acknowledged, the verdict answered.
fn answer(
    mut pending: Vec<Pending>,
    written: Written,
    elapsed: std::time::Duration,
    (ack, revoked, verdict): Reply,
    dead_letter: &Recipient<Park>,
) {
    let refused = written.refused.map(|(i, failure)| {
        let mut held = pending.split_off(i);
        let first = held.remove(0);
        Refused {
            pending: first,
            failure,
            held,
        }
    });
    let settled: Vec<_> = pending.into_iter().map(|p| p.settled).collect();
    BatchAudited {
        batch: &settled,
        duplicates: &written.duplicates,
        elapsed,
    }
    .emit();
    for s in &settled {
        MessageSettled {
            topic: &s.envelope.topic,
            event_type: s.event_type.as_deref(),
            outcome: s.outcome,
            last_failure: s.last_failure(),
        }
        .emit();
    }
    let mut durable = Vec::with_capacity(settled.len());
    let mut push = Vec::new();
    let mut to_push = written.push.into_iter().peekable();
    for (i, s) in settled.into_iter().enumerate() {
        if to_push.next_if_eq(&i).is_some() {
            push.push(s);
        } else {
            durable.push(s.envelope.offset);
        }
    }
    if let Some(ack) = &ack {
        if !durable.is_empty() {
            Ack::Durable(durable).tell(ack);
        }
    }
    if !push.is_empty() {
        crate::outcome::crash_point::reached("after_commit");
        let offsets: Vec<i64> = push.iter().map(|s| s.envelope.offset).collect();
        let parked = dead_letter.send(Park {
            settled: push,
            ack: ack.clone(),
            revoked,
        });
        actix::spawn(async move {
            if let Err(e) = parked.await {
                if let Some(ack) = ack {
                    let reason = format!("dead-letter actor unavailable: {e}");
                    Ack::Lost { offsets, reason }.tell(&ack);
                }
            }
        });
    }
    if let Some(verdict) = verdict {
        // The sender may have stopped waiting (its partition was revoked).
        let _ = verdict.send(Verdict { refused });
    }
}

impl Actor for Auditor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(self.settings.mailbox_capacity);
    }
}

impl Handler<Record> for Auditor {
    type Result = ();

    fn handle(&mut self, record: Record, ctx: &mut Self::Context) {
        if record.pending.is_empty() {
            if let Some(verdict) = record.verdict {
                let _ = verdict.send(Verdict::default());
            }
            return;
        }
        self.buffer.push(record);
        // Group commit: a flush starts as soon as the previous one ends;
        // what arrives while one runs goes in the next.
        self.flush(ctx);
    }
}
