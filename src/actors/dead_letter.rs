//! The dead-letter actor: parks failed messages in Redis (`dlq::park`:
//! a redelivered record already parked is recognised, not parked twice),
//! then passes them to the auditor (MESSAGE_FAILED, MESSAGE_DLQ, or
//! MESSAGE_DUPLICATE for a redelivery). The audit rows, and so the offset
//! commit, come only after Redis acknowledged the push; while Redis (or
//! PostgreSQL, which says what is already parked) is unreachable this actor
//! waits with its mailbox blocked, which pauses the partitions that have
//! failures to park. A park whose partition was revoked meanwhile
//! (`Route::revoked`) is dropped: the next owner reads those records again.

use actix::prelude::*;
use chrono::Utc;

use crate::config::PipelineSettings;
use crate::dlq::park::Parker;
use crate::stages::Park;
use crate::wait::{until_back, DependencyWait, Patience};

pub struct DeadLetter {
    pub parker: Parker,
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
        let parker = self.parker.clone();
        let wait = DependencyWait {
            min: self.settings.dependency_backoff_min,
            max: self.settings.dependency_backoff_max,
        };
        ctx.wait(park_all(parker, wait, park).into_actor(self));
    }
}

async fn park_all(parker: Parker, wait: DependencyWait, park: Park) {
    let Park { mut settled, route } = park;
    let parked = if route.revoked.is_cancelled() {
        None
    } else {
        let patience = Patience::UntilRevoked(&route.revoked);
        until_back(wait, patience, async || parker.park(&mut settled).await)
            .await
            .ok()
    };
    if parked.is_none() {
        tracing::info!(
            count = settled.len(),
            "partition revoked: dead letters left to its next owner"
        );
        return;
    }
    let parked_at = Utc::now();
    for s in &mut settled {
        s.at = parked_at;
    }
    route.record(settled).await;
}
