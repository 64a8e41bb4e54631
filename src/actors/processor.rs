//! The processor actor: applies a batch's events with their handlers
//! ([`crate::handlers`]), then sends processed messages to the auditor and
//! failed ones to the dead-letter actor.
//!
//! A batch is handled with the mailbox blocked (`ctx.wait`): while a
//! handler waits out an outage, the partitions feeding this processor
//! pause, and nothing is acknowledged meanwhile, so no offset moves. Failed
//! messages are handed to the dead-letter actor without waiting for it to
//! park them (see `park`): Redis is a dependency only of the partitions
//! with something to park.

use std::sync::Arc;

use actix::prelude::*;

use crate::config::{PipelineSettings, RetrySettings};
use crate::dlq::Keys;
use crate::handlers::http::HttpRoutes;
use crate::handlers::{self, Settlement};
use crate::pipeline::Settled;
use crate::retry::DependencyWait;
use crate::stages::{Park, Prepared, Route};
use crate::store::pool::RedisPool;
use crate::store::PgPool;

pub struct Processor {
    pub pool: PgPool,
    pub settings: PipelineSettings,
    pub retry: RetrySettings,
    /// The http routes' URLs and rate limits (shared by every processor).
    pub http: Arc<HttpRoutes>,
    pub client: reqwest::Client,
    /// Where routes with `cache_ttl` keep downstream answers.
    pub redis: RedisPool,
    pub keys: Keys,
    /// The retry schedule of deferred routes.
    pub parking: crate::handlers::http::deferral::Parking,
    /// The retry topics of `retry_backend = "kafka"` routes.
    pub republisher: crate::retry_topic::publish::Republisher,
}

impl Actor for Processor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(self.settings.mailbox_capacity);
    }
}

impl Handler<Prepared> for Processor {
    type Result = ();

    fn handle(&mut self, batch: Prepared, ctx: &mut Self::Context) {
        let cx = handlers::Context {
            pool: self.pool.clone(),
            http: Arc::clone(&self.http),
            client: self.client.clone(),
            redis: self.redis.clone(),
            keys: self.keys.clone(),
            retry: self.retry.clone(),
            wait: DependencyWait {
                min: self.settings.dependency_backoff_min,
                max: self.settings.dependency_backoff_max,
            },
            revoked: batch.route.revoked.clone(),
            parking: self.parking.clone(),
            deferrals: Default::default(),
        };
        let republisher = self.republisher.clone();
        ctx.wait(async move { process(&cx, &republisher, batch).await }.into_actor(self));
    }
}

/// Settles one batch and sends every message to its next stage.
async fn process(
    cx: &handlers::Context,
    republisher: &crate::retry_topic::publish::Republisher,
    batch: Prepared,
) {
    let Prepared { items, route } = batch;
    let Settlement {
        done,
        failed,
        scheduled,
        unaccounted,
    } = handlers::settle(cx, items).await;

    if !unaccounted.is_empty() {
        tracing::error!(
            count = unaccounted.len(),
            "processing results missing: rereading"
        );
        route.lost(unaccounted, "processing results missing");
    }
    if !done.is_empty() {
        route.record(done).await;
    }
    let (to_topic, scheduled): (Vec<_>, Vec<_>) = scheduled
        .into_iter()
        .partition(|(_, t)| cx.http.get(t.route).is_some_and(|r| r.retry_topic));
    if !scheduled.is_empty() {
        cx.parking.park(scheduled, &route, cx.wait).await;
    }
    if !to_topic.is_empty() {
        republisher
            .republish(to_topic, &cx.parking, &route, cx.wait)
            .await;
    }
    if !failed.is_empty() && cx.revoked.is_cancelled() {
        tracing::info!(
            count = failed.len(),
            "partition revoked: failed messages left to its next owner"
        );
    } else if !failed.is_empty() {
        park(route, failed);
    }
}

/// Hands failed messages to the dead-letter actor without holding this
/// processor until it has taken them. While Redis is down or refuses writes
/// that actor waits with its mailbox blocked; a processor waiting on it
/// would block its own mailbox in turn, and with it every partition it
/// serves and the enrichers feeding it, so healthy partitions would stop
/// behind another partition's poison. The message is queued here, in
/// order; only the answer is awaited apart. What waits there is bounded by
/// the partitions' in-flight limits: a failed message stays in flight until
/// its dead letter and audit rows are durable.
fn park(route: Route, failed: Vec<Settled>) {
    let offsets: Vec<i64> = failed.iter().map(|s| s.envelope.offset).collect();
    let back = route.clone();
    let parked = route.dead_letter.clone().send(Park {
        settled: failed,
        route,
    });
    actix::spawn(async move {
        if let Err(e) = parked.await {
            back.lost(offsets, format!("dead-letter actor unavailable: {e}"));
        }
    });
}
