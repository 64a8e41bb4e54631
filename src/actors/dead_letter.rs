//! The dead-letter actor: pushes dead letters to Redis once their audit
//! entries are durable (the auditor sends them after its commit), then
//! acknowledges their offsets. The push is idempotent (`dlq::park`): an id
//! already parked from the same record changes nothing, so a redelivery
//! after a crash between the commit and the push pushes it safely again.
//! While Redis is unreachable this actor waits with its mailbox blocked;
//! only the partitions with something to park stop moving their offsets.
//! A push whose partition was revoked meanwhile is dropped: the next owner
//! reads those records again, recognises them as parked and pushes them.

use actix::prelude::*;

use crate::config::PipelineSettings;
use crate::dlq::park::Parker;
use crate::stages::{Ack, Park};
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
        ctx.wait(push_all(parker, wait, park).into_actor(self));
    }
}

async fn push_all(parker: Parker, wait: DependencyWait, park: Park) {
    let Park {
        settled,
        ack,
        revoked,
    } = park;
    let revoked = revoked.unwrap_or_default();
    let pushed = if revoked.is_cancelled() {
        None
    } else {
        let patience = Patience::UntilRevoked(&revoked);
        until_back(wait, patience, async || parker.push(&settled).await)
            .await
            .ok()
    };
    if pushed.is_none() {
        tracing::info!(
            count = settled.len(),
            "partition revoked: dead letters left to its next owner"
        );
        return;
    }
    crate::outcome::crash_point::reached("after_push");
    if let Some(ack) = ack {
        Ack::Durable(settled.iter().map(|s| s.envelope.offset).collect()).tell(&ack);
    }
}
