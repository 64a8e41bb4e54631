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

use crate::config::PipelineSettings;
use crate::dlq::{redis as queue, DlqEntry, Keys};
use crate::stages::Park;
use crate::store::pool::RedisPool;
use crate::telemetry::events::{DeadLettered, Emit};
use crate::wait::{until_back, DependencyWait, Down, Patience};

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
        let wait = DependencyWait {
            min: self.settings.dependency_backoff_min,
            max: self.settings.dependency_backoff_max,
        };
        ctx.wait(park_all(redis, keys, group, wait, park).into_actor(self));
    }
}

async fn park_all(redis: RedisPool, keys: Keys, group: String, wait: DependencyWait, park: Park) {
    let Park { mut settled, route } = park;
    let mut by_topic: BTreeMap<String, Vec<DlqEntry>> = BTreeMap::new();
    for s in &settled {
        if let Some(entry) = DlqEntry::from_settled(s, &group) {
            by_topic.entry(entry.topic.clone()).or_default().push(entry);
        }
    }
    for (topic, entries) in &by_topic {
        let pushed = if route.revoked.is_cancelled() {
            None
        } else {
            let patience = Patience::UntilRevoked(&route.revoked);
            until_back(wait, patience, async || {
                push(&redis, &keys, topic, entries).await
            })
            .await
            .ok()
        };
        let Some(new) = pushed else {
            tracing::info!(
                count = settled.len(),
                "partition revoked: dead letters left to its next owner"
            );
            return;
        };
        DeadLettered { topic, new }.emit();
        for entry in entries {
            entry.dead_lettered().emit();
        }
    }
    drop(by_topic);
    let parked_at = Utc::now();
    for s in &mut settled {
        s.at = parked_at;
    }
    route.record(settled).await;
}

/// One push of a topic's entries; every failure is a wait. Redis answering
/// but refusing (wrong key type, out of memory, read-only replica) needs an
/// operator: parking is never skipped, so the partition waits for that too.
async fn push(
    redis: &RedisPool,
    keys: &Keys,
    topic: &str,
    entries: &[DlqEntry],
) -> Result<usize, Down> {
    let mut conn = redis.get().await.map_err(|e| Down::new("redis", e))?;
    queue::push(&mut *conn, keys, topic, entries)
        .await
        .map_err(|e| {
            if e.is_io_error() || e.is_timeout() || e.is_connection_dropped() {
                Down::new("redis", e)
            } else {
                Down::new("redis", format!("redis refuses dead-letter writes: {e}"))
            }
        })
}
