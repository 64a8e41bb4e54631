//! The dead-letter actor: parks failed messages in Redis, then passes them to
//! the auditor (MESSAGE_FAILED, MESSAGE_DLQ). The audit rows, and so the
//! offset commit, come only after Redis acknowledged the push; while Redis is
//! unreachable this actor waits with its mailbox blocked, which pauses the
//! partitions that have failures to park. A park whose partition was
//! revoked meanwhile (`Route::revoked`) is dropped: the next owner reads
//! those records again.

use std::collections::BTreeMap;

use actix::prelude::*;
use chrono::Utc;

use crate::actors::messages::Park;
use crate::backoff::Backoff;
use crate::config::PipelineSettings;
use crate::dlq::{store, DlqEntry, Keys};
use crate::metrics::metrics;
use crate::retry;
use crate::store::pool::RedisPool;
use crate::telemetry::clip;

pub struct DeadLetter {
    pub redis: RedisPool,
    pub keys: Keys,
    pub group: String,
    pub settings: PipelineSettings,
}

impl Actor for DeadLetter {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(self.settings.mailbox_capacity);
    }
}

impl Handler<Park> for DeadLetter {
    type Result = ();

    fn handle(&mut self, park: Park, ctx: &mut Self::Context) {
        let redis = self.redis.clone();
        let keys = self.keys.clone();
        let group = self.group.clone();
        let backoff = Backoff::new(
            self.settings.dependency_backoff_min,
            self.settings.dependency_backoff_max,
        );
        ctx.wait(park_all(redis, keys, group, backoff, park).into_actor(self));
    }
}

async fn park_all(redis: RedisPool, keys: Keys, group: String, mut backoff: Backoff, park: Park) {
    let Park { mut settled, route } = park;
    let mut by_topic: BTreeMap<String, Vec<DlqEntry>> = BTreeMap::new();
    for s in &settled {
        if let Some(entry) = DlqEntry::from_settled(s, &group) {
            by_topic.entry(entry.topic.clone()).or_default().push(entry);
        }
    }
    for (topic, entries) in &by_topic {
        loop {
            if route.revoked.is_cancelled() {
                tracing::info!(
                    count = settled.len(),
                    "partition revoked: dead letters left to its next owner"
                );
                return;
            }
            let pushed = match redis.get().await {
                Ok(mut conn) => store::push(&mut *conn, &keys, topic, entries)
                    .await
                    .map_err(|e| {
                        if e.is_io_error() || e.is_timeout() || e.is_connection_dropped() {
                            e.to_string()
                        } else {
                            // Redis answers but refuses (wrong key type, out of
                            // memory, read-only replica): an operator must act.
                            // Parking is never skipped, so the partition waits.
                            format!("redis refuses dead-letter writes: {e}")
                        }
                    }),
                Err(e) => Err(e.to_string()),
            };
            match pushed {
                Ok(new) => {
                    metrics().dlq.with_label_values(&[topic]).inc_by(new as u64);
                    for entry in entries {
                        // The error text can quote payload values: it stays in the DLQ
                        // entry and the audit row, out of the logs.
                        tracing::warn!(
                            eventId = %entry.message_id,
                            r#type = %clip(entry.event_type.as_deref().unwrap_or("")),
                            key = %clip(entry.key.as_deref().unwrap_or("")),
                            topic,
                            partition = entry.partition,
                            offset = entry.offset,
                            attempts = entry.attempts,
                            error_kind = %entry.error_kind,
                            stage = %entry.stage,
                            "message dead-lettered"
                        );
                    }
                    break;
                }
                Err(error) => {
                    // A revocation ends the wait; the loop's check drops the park.
                    retry::wait_out_unless(&mut backoff, "redis", &error, &route.revoked).await;
                }
            }
        }
    }
    drop(by_topic);
    let parked_at = Utc::now();
    for s in &mut settled {
        s.at = parked_at;
    }
    route.record(settled).await;
}
