//! The shutdown sequence: the background tasks are told to stop, the
//! Supervisor drains every partition and the durable watermarks are
//! committed, then the final steps, each bounded (see `crate::shutdown`),
//! so it ends within `runtime.drain_timeout` + `shutdown::MARGIN` whatever
//! Kafka, PostgreSQL or Redis do; whatever did not drain or commit is
//! redelivered later.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use rdkafka::consumer::Consumer;

use super::background::Background;
use super::stages::Consuming;
use crate::actors::messages::Shutdown;
use crate::actors::supervisor::Supervisor;
use crate::kafka::close::close_when_last;
use crate::kafka::commit::commit_watermarks;
use crate::kafka::KafkaConsumer;
use crate::shutdown::{self, CLOSE_BOUND, COMMIT_BOUND, EVENTS_BOUND, HTTP_BOUND};

/// What the shutdown sequence stops, in order.
pub struct Stopping {
    pub drain_timeout: Duration,
    pub consuming: Consuming,
    pub server: actix_web::dev::ServerHandle,
    pub arbiters: Vec<Arbiter>,
    pub background: Background,
}

/// Runs the whole sequence.
pub async fn stop(s: Stopping) {
    tracing::info!("shutting down: draining partitions");
    // The relay finishes its round meanwhile (one cut short is republished
    // under the same ids); the retry worker drops the attempts in flight (a
    // scheduled entry is attempted again, as after a crash) and hands back
    // their leases; replay jobs finish their entry in flight.
    s.background.stop.cancel();
    let Consuming {
        supervisor,
        consumer,
        events,
    } = s.consuming;
    drain(s.drain_timeout, &supervisor, &consumer).await;
    // The checkpointer has signed what the drain wrote, if it was due.
    s.background.stop_after_drain.cancel();
    consumer.context().close();
    if shutdown::bounded("events", EVENTS_BOUND, move || events.stop())
        .await
        .is_none()
    {
        tracing::warn!("kafka event thread did not stop in time");
    }
    let background = futures::future::join_all(s.background.tasks.into_iter().map(
        |(name, task)| async move {
            if tokio::time::timeout(HTTP_BOUND, task).await.is_err() {
                tracing::warn!(task = name, "did not stop in time");
            }
        },
    ));
    let (http, _) = futures::join!(
        tokio::time::timeout(HTTP_BOUND, s.server.stop(true)),
        background
    );
    if http.is_err() {
        tracing::warn!("HTTP requests still in flight at shutdown were cut off");
    }
    for arbiter in s.arbiters {
        arbiter.stop();
    }
    let closed = shutdown::bounded("close", CLOSE_BOUND, move || {
        close_when_last(consumer, CLOSE_BOUND / 2)
    })
    .await;
    if closed != Some(true) {
        tracing::warn!("kafka consumer not closed in time; the group notices at session timeout");
    }
    tracing::info!("custodian stopped");
}

/// The Supervisor drains every partition (bounded below `drain_timeout`)
/// and answers the durable watermarks, which are committed synchronously.
async fn drain(
    drain_timeout: Duration,
    supervisor: &Addr<Supervisor>,
    consumer: &Arc<KafkaConsumer>,
) {
    match tokio::time::timeout(drain_timeout, supervisor.send(Shutdown)).await {
        Ok(Ok(watermarks)) => {
            let committer = Arc::clone(consumer);
            let commit = shutdown::bounded("commit", COMMIT_BOUND, move || {
                commit_watermarks(&*committer, &watermarks, "shutdown")
            });
            if commit.await.is_none() {
                tracing::warn!("offset commit at shutdown timed out; the rest is redelivered");
            }
        }
        _ => tracing::warn!("drain did not finish in time; undrained messages will be redelivered"),
    }
}
