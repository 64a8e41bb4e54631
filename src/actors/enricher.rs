//! The enricher actor: decodes and enriches a partition's batch, then hands
//! it to the processor. Partitions map to enrichers by number, and each actor
//! handles its mailbox in order, so per-partition order holds.

use actix::prelude::*;
use chrono::Utc;

use crate::pipeline;
use crate::pipeline::route_table::Routes;
use crate::pipeline::steering::HeaderKey;
use crate::stages::{Batch, Prepared};

pub struct Enricher {
    pub mailbox_capacity: usize,
    pub routes: std::sync::Arc<Routes>,
    /// Checks the signature of steering headers.
    pub header_key: HeaderKey,
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
    /// actor's mailbox until the processor has accepted the result.
    fn handle(&mut self, batch: Batch, ctx: &mut Self::Context) {
        let now = Utc::now();
        let offsets: Vec<i64> = batch.records.iter().map(|r| r.offset).collect();
        let items = batch
            .records
            .into_iter()
            .map(|record| pipeline::prepare(record, &self.routes, &self.header_key, now))
            .collect();
        let handoff = batch.handoff;
        let back = handoff.clone();
        let processor = handoff.processor.clone();
        let send = processor.send(Prepared { items, handoff });
        ctx.wait(
            async move {
                if let Err(e) = send.await {
                    back.lost(offsets, format!("processor unavailable: {e}"));
                }
            }
            .into_actor(self),
        );
    }
}
