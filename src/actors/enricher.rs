//! The enricher actor: decodes and enriches a partition's batch, then hands
//! it to the processor. Partitions map to enrichers by number, and each actor
//! handles its mailbox in order, so per-partition order holds.

use actix::prelude::*;
use chrono::Utc;

use crate::formats::Formats;
use crate::otel::record::RecordTrace;
use crate::pipeline;
use crate::pipeline::route_table::Routes;
use crate::pipeline::steering::HeaderKey;
use crate::stages::{Batch, Prepared};
use crate::wait::{until_back, DependencyWait, Down, Patience};

pub struct Enricher {
    pub mailbox_capacity: usize,
    pub routes: std::sync::Arc<Routes>,
    /// Payload formats and the schema registry.
    pub formats: std::sync::Arc<Formats>,
    /// How long to wait for a registry that is down.
    pub wait: DependencyWait,
    /// Checks the signature of steering headers.
    pub header_key: HeaderKey,
    /// The consumer group (a record's trace names it).
    pub group: std::sync::Arc<str>,
}

impl Actor for Enricher {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(self.mailbox_capacity);
    }
}

impl Handler<Batch> for Enricher {
    type Result = ();

    /// Accepts the batch at once (the sender moves on) and blocks this
    /// actor's mailbox until the processor has accepted the result. The
    /// schemas the batch names are gathered first: a registry that does not
    /// answer pauses the partition (nothing is dead-lettered for it) until
    /// it answers or the partition is revoked.
    fn handle(&mut self, batch: Batch, ctx: &mut Self::Context) {
        let offsets: Vec<i64> = batch.records.iter().map(|r| r.offset).collect();
        let (routes, formats, key, wait) = (
            std::sync::Arc::clone(&self.routes),
            std::sync::Arc::clone(&self.formats),
            self.header_key.clone(),
            self.wait,
        );
        let group = std::sync::Arc::clone(&self.group);
        ctx.wait(
            async move {
                let handoff = batch.handoff;
                let back = handoff.clone();
                let gathered =
                    until_back(wait, Patience::UntilRevoked(&handoff.revoked), async || {
                        formats
                            .schemas(batch.records.iter().map(|r| r.payload.as_deref()))
                            .await
                            .map_err(|e| Down::new(crate::formats::REGISTRY, e))
                    })
                    .await;
                let schemas = match gathered {
                    Ok(schemas) => schemas,
                    Err(down) => {
                        back.lost(offsets, format!("revoked while waiting: {}", down.error));
                        return;
                    }
                };
                let now = Utc::now();
                let reading = pipeline::Reading {
                    routes: &routes,
                    formats: &formats,
                    schemas: &schemas,
                };
                let items = batch
                    .records
                    .into_iter()
                    .map(|record| {
                        // With traces on: the record's span, and its decoding.
                        let trace = RecordTrace::start(&record, &group);
                        let decoding = trace.decode();
                        let mut item = pipeline::prepare(record, &reading, &key, now);
                        drop(decoding);
                        trace.decoded(item.message_id, item.event_type.as_deref());
                        item.message.trace = trace;
                        item
                    })
                    .collect();
                let processor = handoff.processor.clone();
                if let Err(e) = processor.send(Prepared { items, handoff }).await {
                    back.lost(offsets, format!("processor unavailable: {e}"));
                }
            }
            .into_actor(self),
        );
    }
}
