//! The tasks beside the data path, under one stop: the retry worker of
//! deferred routes, the pruning of http delivery records, replay jobs, the
//! chart sampler, the outbox relay (`relay.enabled`, started last, once
//! the API is bound) and the audit checkpointer. Shutdown cancels `stop`
//! before the drain, `stop_after_drain` once the drain's outcomes are
//! committed (the checkpointer signs what the drain wrote), then awaits
//! each task, bounded (`stop.rs`). Also the one-shot start-up chores: the
//! DLQ time indexes, the Redis persistence check.

use std::sync::Arc;

use actix::Recipient;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::deps::Deps;
use crate::retry::deferred::worker::{self, Wiring};
use crate::stages::Record;
use crate::store::pool::RedisPool;
use crate::trail::checkpointer::Checkpointer;

/// The background tasks: told to stop together, then awaited.
pub struct Background {
    /// Cancelled first at shutdown.
    pub stop: CancellationToken,
    /// Cancelled once the drain's outcomes are committed.
    pub stop_after_drain: CancellationToken,
    /// Each with what it is, for the warning when it does not stop in time.
    pub tasks: Vec<(&'static str, JoinHandle<()>)>,
}

impl Background {
    /// Starts every background task that the configuration asks for.
    /// `auditors` are the Supervisor's, by partition: the retry worker hands
    /// its outcomes to the auditor of each message's partition.
    /// `checkpointer` is built (and its settings checked) before anything
    /// starts.
    pub fn start(
        deps: &Deps,
        auditors: Vec<Recipient<Record>>,
        checkpointer: Option<Checkpointer>,
    ) -> Background {
        let mut background = Background {
            stop: CancellationToken::new(),
            stop_after_drain: CancellationToken::new(),
            tasks: Vec::new(),
        };
        let settings = &deps.settings;
        let wiring = Wiring {
            pool: deps.postgres.clone(),
            routes: Arc::clone(&deps.endpoints),
            client: deps.client.clone(),
            redis: deps.redis.clone(),
            header_key: deps.header_key.clone(),
            auditors,
            formats: Arc::clone(&deps.formats),
        };
        let worker = worker::spawn(settings, wiring, background.stop.clone());
        background.add("the retry worker (its leases expire on their own)", worker);
        let pruning = crate::delivery::retention::spawn(
            settings,
            deps.postgres.clone(),
            &deps.endpoints,
            background.stop.clone(),
        );
        background.add("pruning http delivery records", pruning);
        let dlq = Arc::clone(&deps.dead_letters);
        let jobs = crate::dlq::jobs::stop_with(dlq, background.stop.clone());
        background.add(
            "replay jobs (one cut off is found orphaned later)",
            Some(jobs),
        );
        let checkpointer = checkpointer.map(|c| {
            let run = c.reporting_to(deps.audit.status());
            actix_rt::spawn(run.run(background.stop_after_drain.clone()))
        });
        background.add("the audit checkpointer", checkpointer);
        let maintainer = crate::trail::maintainer::run(
            deps.audit.clone(),
            settings.audit.partition_check_interval,
            settings.audit.seal_after,
            background.stop.clone(),
        );
        background.add(
            "the audit partition timer",
            Some(actix_rt::spawn(maintainer)),
        );
        let expiry = crate::approvals::expiry::spawn(
            deps.postgres.clone(),
            settings.operators.approval_ttl,
            background.stop.clone(),
        );
        background.add("expiring four-eyes requests", Some(expiry));
        let pauses = deps.flow.clone().run(
            deps.postgres.clone(),
            settings.flow.poll_interval,
            deps.endpoints
                .all()
                .iter()
                .map(|r| Arc::clone(&r.gate))
                .collect(),
            background.stop.clone(),
        );
        background.add(
            "reading the operators' pauses",
            Some(actix_rt::spawn(pauses)),
        );
        let (changes, recorder) =
            crate::flow::record::spawn(deps.postgres.clone(), background.stop.clone());
        for route in deps.endpoints.all() {
            route.gate.report_to(changes.clone());
        }
        background.add("recording circuit breaker changes", Some(recorder));
        let status = Arc::clone(&deps.status);
        let sampler = Arc::clone(&deps.samples).run(status, background.stop.clone());
        background.add("the chart sampler", Some(actix_rt::spawn(sampler)));
        chores(deps);
        background
    }

    /// With `relay.enabled`, the outbox relay runs beside the consumer (one
    /// publisher across instances: see `relay::session`); it finishes the
    /// round under way when `stop` fires.
    pub fn start_relay(&mut self, deps: &Deps) -> anyhow::Result<()> {
        if !deps.settings.relay.enabled {
            return Ok(());
        }
        let publisher = crate::relay::Publisher::new(deps.settings.clone())?;
        let (stopping, stopped) = tokio::sync::watch::channel(false);
        let stop = self.stop.clone();
        actix_rt::spawn(async move {
            stop.cancelled().await;
            let _ = stopping.send(true);
        });
        tracing::info!("outbox relay running (relay.enabled)");
        let relay = actix_rt::spawn(publisher.run(stopped));
        self.add("the outbox relay (its batch is republished)", Some(relay));
        Ok(())
    }

    fn add(&mut self, name: &'static str, task: Option<JoinHandle<()>>) {
        if let Some(task) = task {
            self.tasks.push((name, task));
        }
    }
}

/// One-shot tasks of the start, left to run on their own.
fn chores(deps: &Deps) {
    actix_rt::spawn(warn_unless_redis_persists(deps.redis.clone()));
    let dead_letters = Arc::clone(&deps.dead_letters);
    actix_rt::spawn(async move {
        if let Err(e) = dead_letters.ensure_indexed().await {
            tracing::warn!(error = %e.public_message(), "cannot build the DLQ time indexes now; listings may miss older entries until the next start");
        }
    });
}

/// Dead letters are only as durable as Redis: say so at start if it runs
/// without an append-only file. (Managed Redis may refuse CONFIG; then the
/// operator has to check.)
async fn warn_unless_redis_persists(redis: RedisPool) {
    let Ok(mut conn) = redis.get().await else {
        return;
    };
    let reply: Result<Vec<String>, _> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("appendonly")
        .query_async(&mut *conn)
        .await;
    match reply.as_deref() {
        Ok([_, value]) if value == "yes" => {}
        Ok([_, value]) => tracing::warn!(
            appendonly = %value,
            "redis runs without appendonly: a Redis crash can lose dead letters whose offsets are committed; set appendonly yes and appendfsync always"
        ),
        _ => tracing::info!("cannot read redis persistence settings; make sure appendonly is on"),
    }
}
