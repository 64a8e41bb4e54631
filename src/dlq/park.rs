//! Parking failed messages: the one path by which a message enters the
//! dead-letter queue, used by the dead-letter actor ([`Parker::push`],
//! after the outcome writer committed their entries and recognised
//! redeliveries) and the retry worker ([`Parker::park`], before its
//! transaction: its schedule row is the message's only other copy).
//!
//! A message whose MESSAGE_DLQ entry already exists at its position was
//! parked by an earlier delivery of the same record, which crashed (or lost
//! its partition) before its offset was committed: it is marked
//! [`Outcome::Redelivered`] and not pushed again. The others are pushed,
//! and the push is idempotent too: an id already parked from the same
//! record changes nothing in Redis (`redis::push`). That covers a crash
//! after the push and before the audit rows: the audit rows are then
//! written by the redelivery.

use std::collections::BTreeMap;

use crate::dlq::{store as queue, DlqEntry, Keys};
use crate::pipeline::{Outcome, Settled};
use crate::store::audit::DLQ;
use crate::store::pool::RedisPool;
use crate::store::{redelivery, PgPool};
use crate::telemetry::dlq::{DeadLettered, RedeliveryRecognised};
use crate::telemetry::Emit;
use crate::wait::Down;

/// What parking needs: where the audit trail is read, and where entries go.
#[derive(Clone)]
pub struct Parker {
    pub pool: PgPool,
    pub redis: RedisPool,
    pub keys: Keys,
    pub group: String,
}

impl Parker {
    /// Marks the redeliveries among `settled` (see the module comment) and
    /// pushes every other message's entry, topic by topic. Every failure is
    /// a dependency down: parking is never skipped, so callers wait and
    /// call again (a second call finds what the first already did).
    pub async fn park(&self, settled: &mut [Settled]) -> Result<(), Down> {
        let failed = settled
            .iter()
            .filter(|s| s.outcome == Outcome::DeadLettered)
            .map(|s| &s.message);
        let parked = redelivery::recorded(&self.pool, failed, &[DLQ])
            .await
            .map_err(|e| Down::new("postgres", e))?;
        for s in settled.iter_mut() {
            if s.outcome != Outcome::DeadLettered {
                continue;
            }
            if parked.contains(&redelivery::position(s)) {
                s.outcome = Outcome::Redelivered;
                RedeliveryRecognised {
                    settled: s,
                    then: "not parked again",
                }
                .emit();
            }
        }
        let dead = settled
            .iter()
            .filter(|s| s.outcome == Outcome::DeadLettered);
        self.push(dead).await
    }

    /// Pushes the entries of `settled`, topic by topic (idempotent: an id
    /// already parked from the same record changes nothing).
    pub async fn push<'s>(
        &self,
        settled: impl IntoIterator<Item = &'s Settled>,
    ) -> Result<(), Down> {
        let mut by_topic: BTreeMap<String, Vec<DlqEntry>> = BTreeMap::new();
        // With traces on, each push is a span of its record's trace, kept
        // whatever the sampling, and the entry keeps its context.
        let mut pushing = Vec::new();
        for s in settled {
            if let Some(mut entry) = DlqEntry::from_settled(s, &self.group) {
                if let Some(span) = s.trace.dead_letter(&entry.error_kind) {
                    entry.traceparent = crate::otel::context::traceparent_of(&span);
                    pushing.push(span);
                }
                by_topic.entry(entry.topic.clone()).or_default().push(entry);
            }
        }
        for (topic, entries) in &by_topic {
            let new = self.push_topic(topic, entries).await?;
            DeadLettered { topic, new }.emit();
            for entry in entries {
                entry.dead_lettered().emit();
            }
        }
        Ok(())
    }

    /// One push of a topic's entries. Redis answering but refusing (wrong
    /// key type, out of memory, read-only replica) needs an operator: it is
    /// a wait too.
    async fn push_topic(&self, topic: &str, entries: &[DlqEntry]) -> Result<usize, Down> {
        let mut conn = self.redis.get().await.map_err(|e| Down::new("redis", e))?;
        queue::push(&mut *conn, &self.keys, topic, entries)
            .await
            .map_err(|e| {
                if e.is_io_error() || e.is_timeout() || e.is_connection_dropped() {
                    Down::new("redis", e)
                } else {
                    Down::new("redis", format!("redis refuses dead-letter writes: {e}"))
                }
            })
    }
}
