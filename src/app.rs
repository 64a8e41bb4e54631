//! Start-up and shutdown order.
//!
//! Start: migrations (before the actor system, see `store/migrate.rs`), pools,
//! arbiters, the stage actors, the retry worker (with deferred routes), the
//! consumer and its Supervisor, the Kafka event thread, the HTTP server, the
//! outbox relay (with `relay.enabled`).
//! Stop (SIGTERM/Ctrl-C, or the test's stop handle): the relay is told to
//! stop (it finishes its round while the rest stops), the retry worker too
//! (it drops its attempts in flight and hands back their leases), replay
//! jobs too (each finishes its entry in flight and is left interrupted), the
//! Supervisor drains
//! every partition (no new reads; in-flight outcomes become durable and their
//! watermark is stored) and stops, the durable watermarks are committed
//! synchronously, the event thread stops, the HTTP server stops, the arbiters
//! stop, the consumer leaves the group. The drain is bounded by
//! `runtime.drain_timeout`, each later step by its own bound (`shutdown.rs`),
//! so `custodian run` exits within `drain_timeout` + `shutdown::MARGIN`
//! whatever Kafka, PostgreSQL or Redis do; whatever did not drain or commit is
//! redelivered later.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use anyhow::Context as _;
use rdkafka::consumer::Consumer;
use rdkafka::producer::FutureProducer;
use tokio::sync::oneshot;

use crate::actors::auditor::Auditor;
use crate::actors::dead_letter::DeadLetter;
use crate::actors::enricher::Enricher;
use crate::actors::messages::Shutdown;
use crate::actors::processor::Processor;
use crate::actors::supervisor::{Stages, Supervisor};
use crate::api::produce::ProduceTarget;
use crate::api::{self, AppState};
use crate::config::Settings;
use crate::delivery::Endpoints;
use crate::dlq::replay::DeadLetters;
use crate::dlq::Keys;
use crate::health::Health;
use crate::kafka::client::{consumer_config, replay_producer_config};
use crate::kafka::close::close_when_last;
use crate::kafka::context::{commit_watermarks, KafkaContext};
use crate::kafka::events::EventLoop;
use crate::kafka::KafkaConsumer;
use crate::pipeline::route_table::Routes;
use crate::shutdown::{self, CLOSE_BOUND, COMMIT_BOUND, EVENTS_BOUND, HTTP_BOUND};
use crate::store::{migrate, pool};

/// How long start-up waits for PostgreSQL to accept connections.
const STARTUP_PATIENCE: Duration = Duration::from_secs(60);
/// The console's charts: a sample every 5 s, an hour of them.
const SAMPLE_INTERVAL: Duration = Duration::from_secs(5);
const SAMPLES_KEPT: usize = 720;

/// Runs custodian until `shutdown` resolves. Blocks the calling thread.
/// `on_ready` receives the HTTP address once everything is started.
pub fn run(
    settings: Settings,
    shutdown: impl Future<Output = ()> + 'static,
    on_ready: Option<oneshot::Sender<SocketAddr>>,
) -> anyhow::Result<()> {
    start(&settings)?.block_on(serve(settings, shutdown, on_ready))
}

/// `custodian run`: runs until SIGTERM or Ctrl-C and returns within
/// `runtime.drain_timeout` + [`shutdown::MARGIN`] of the signal; the caller
/// should end the process right away. A watchdog armed at the signal ends
/// it if the orderly path overruns.
pub fn run_until_signal(settings: Settings) -> anyhow::Result<()> {
    let drain_timeout = settings.runtime.drain_timeout;
    let signal = async move {
        shutdown_signal().await;
        shutdown::arm_watchdog(drain_timeout);
    };
    let system = start(&settings)?;
    let result = system.block_on(serve(settings, signal, None));
    // Dropping the runtime would join its blocking pool and drop what it
    // still owns, which can block on an unreachable dependency; the bounded
    // steps are done, so the process ends without it.
    std::mem::forget(system);
    result
}

/// Migrations, then the actor system to serve on.
fn start(settings: &Settings) -> anyhow::Result<actix::SystemRunner> {
    let applied = migrate::run(&settings.postgres.url, STARTUP_PATIENCE)?;
    tracing::info!(applied, "migrations up to date");
    Ok(actix::System::new())
}

async fn serve(
    settings: Settings,
    shutdown: impl Future<Output = ()>,
    on_ready: Option<oneshot::Sender<SocketAddr>>,
) -> anyhow::Result<()> {
    tracing::info!(config = ?settings.summary(), "starting custodian");
    let postgres = pool::postgres(&settings.postgres);
    let redis = pool::redis(&settings.redis).context("redis.url")?;
    let pipeline = settings.pipeline.clone();
    let group = settings.kafka.group_id.clone();
    let settings_dlq_prefix = settings.dlq.key_prefix.clone();
    let replay_producer: FutureProducer = replay_producer_config(&settings.kafka)
        .create()
        .context("cannot create the replay producer (check kafka.* settings)")?;
    let produce_target = ProduceTarget {
        producer: replay_producer.clone(),
        topic: settings.kafka.topics[0].clone(),
    };
    let header_key = crate::pipeline::steering::HeaderKey::configured(&settings.kafka);
    let dead_letters = Arc::new(DeadLetters::new(
        redis.clone(),
        postgres.clone(),
        replay_producer.clone(),
        header_key.clone(),
        &settings.dlq,
    ));
    actix_rt::spawn(warn_unless_redis_persists(redis.clone()));
    let audit = crate::trail::Access::from_settings(&settings)?;
    audit
        .record_chaining(settings.audit.chain)
        .await
        .context("cannot record audit.chain in audit_chain_marks")?;
    if let Some(checkpointer) = crate::trail::checkpointer::Checkpointer::from_settings(&settings)?
    {
        actix_rt::spawn(checkpointer.reporting_to(audit.status()).run());
    }
    {
        let dead_letters = Arc::clone(&dead_letters);
        actix_rt::spawn(async move {
            if let Err(e) = dead_letters.ensure_indexed().await {
                tracing::warn!(error = %e.public_message(), "cannot build the DLQ time indexes now; listings may miss older entries until the next start");
            }
        });
    }

    let arbiters: Vec<Arbiter> = (0..settings.runtime.arbiter_threads)
        .map(|_| Arbiter::new())
        .collect();
    let handles: Vec<ArbiterHandle> = arbiters.iter().map(Arbiter::handle).collect();
    let on = |i: usize| &handles[i % handles.len()];

    let dead_letter = {
        let parker = crate::dlq::park::Parker {
            pool: postgres.clone(),
            redis: redis.clone(),
            keys: Keys::new(&settings_dlq_prefix),
            group: group.clone(),
        };
        let settings = pipeline.clone();
        DeadLetter::start_in_arbiter(on(0), move |_| DeadLetter { parker, settings }).recipient()
    };
    let auditors: Vec<_> = (0..pipeline.auditors)
        .map(|i| {
            let (db, group, pipeline) =
                (settings.postgres.clone(), group.clone(), pipeline.clone());
            let (chain, dead_letter) = (settings.audit.chain, dead_letter.clone());
            Auditor::start_in_arbiter(on(i), move |_| {
                Auditor::new(&db, group, pipeline, dead_letter).chained(chain)
            })
            .recipient()
        })
        .collect();
    let routes = Arc::new(Routes::new(&settings.routes));
    let http_routes = Arc::new(Endpoints::new(&settings.routes));
    let client =
        crate::delivery::send::client().context("cannot build the HTTP delivery client")?;
    let settings_postgres = &settings.postgres;
    let processors = (0..pipeline.processors)
        .map(|i| {
            let (pool, settings, retry) =
                (postgres.clone(), pipeline.clone(), settings.retry.clone());
            let (http, client) = (Arc::clone(&http_routes), client.clone());
            let (redis, keys) = (redis.clone(), Keys::new(&settings_dlq_prefix));
            let parking =
                crate::retry::deferred::gate::Parking::new(settings_postgres, group.clone());
            let republisher = crate::retry::topic::publish::Republisher::new(
                replay_producer.clone(),
                header_key.clone(),
            );
            Processor::start_in_arbiter(on(i + 1), move |_| Processor {
                pool,
                settings,
                retry,
                http,
                client,
                redis,
                keys,
                parking,
                republisher,
                queues: Default::default(),
                waiting: 0,
                held: Default::default(),
            })
            .recipient()
        })
        .collect();
    let mut background = Background {
        stop: tokio_util::sync::CancellationToken::new(),
        tasks: Vec::new(),
    };
    let wiring = crate::retry::deferred::worker::Wiring {
        pool: postgres.clone(),
        routes: Arc::clone(&http_routes),
        client: client.clone(),
        redis: redis.clone(),
        header_key: header_key.clone(),
        auditors: auditors.clone(),
    };
    let stopping = background.stop.clone();
    if let Some(task) = crate::retry::deferred::worker::spawn(&settings, wiring, stopping) {
        let name = "the retry worker (its leases expire on their own)";
        background.tasks.push((name, task));
    }
    if let Some(task) = crate::delivery::retention::spawn(
        &settings,
        postgres.clone(),
        &http_routes,
        background.stop.clone(),
    ) {
        background
            .tasks
            .push(("pruning http delivery records", task));
    }
    // Replay jobs finish their entry in flight and are recorded interrupted.
    let jobs = crate::dlq::jobs::stop_with(Arc::clone(&dead_letters), background.stop.clone());
    background
        .tasks
        .push(("replay jobs (one cut off is found orphaned later)", jobs));
    let enrichers = (0..pipeline.enrichers)
        .map(|i| {
            let mailbox_capacity = pipeline.mailbox_capacity;
            let routes = Arc::clone(&routes);
            let header_key = header_key.clone();
            Enricher::start_in_arbiter(on(i), move |_| Enricher {
                mailbox_capacity,
                routes,
                header_key,
            })
            .recipient()
        })
        .collect();
    let stages = Stages {
        enrichers,
        processors,
        auditors,
    };

    let health = Arc::new(Health::default());
    let context = KafkaContext::new(settings.runtime.drain_timeout, Arc::clone(&health));
    let consumer: Arc<KafkaConsumer> = Arc::new(
        consumer_config(&settings.kafka)
            .create_with_context(context)
            .context("cannot create the Kafka consumer (check kafka.* settings)")?,
    );
    let status = Arc::new(crate::status::Registry::default());
    status.set_consumer(&consumer);
    let samples = Arc::new(crate::status::Samples::new(SAMPLE_INTERVAL, SAMPLES_KEPT));
    actix_rt::spawn(Arc::clone(&samples).run(Arc::clone(&status)));
    let supervisor = Supervisor::new(
        Arc::clone(&consumer),
        stages,
        handles.clone(),
        &pipeline,
        settings.runtime.drain_timeout,
        settings.kafka.commit_interval,
    )
    .reporting_to(Arc::clone(&status))
    .start();
    consumer.context().connect(
        Arc::downgrade(&consumer),
        supervisor.clone().recipient(),
        supervisor.clone().recipient(),
    );
    let topics = crate::retry::topic::subscription(&settings);
    let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
    consumer
        .subscribe(&topics)
        .context("cannot subscribe to kafka.topics")?;
    let events =
        EventLoop::spawn(Arc::clone(&consumer)).context("cannot start the Kafka event thread")?;

    let (server, addr) = api::server(
        &settings.http,
        AppState {
            postgres: postgres.clone(),
            redis: redis.clone(),
            health,
            audit,
            status,
            samples,
        },
        dead_letters,
        produce_target,
    )
    .with_context(|| format!("cannot bind http.bind {}", settings.http.bind))?;
    let server_handle = server.handle();
    actix_rt::spawn(server);
    let relay = start_relay(&settings)?;
    tracing::info!(%addr, "custodian running: GET /health /ready /metrics; API /messages /dlq /replay");
    if let Some(on_ready) = on_ready {
        let _ = on_ready.send(addr);
    }

    shutdown.await;
    stop(Stopping {
        drain_timeout: settings.runtime.drain_timeout,
        supervisor,
        consumer,
        events,
        server: server_handle,
        arbiters,
        relay,
        background,
    })
    .await;
    Ok(())
}

/// With `relay.enabled`, the outbox relay runs beside the consumer (one
/// publisher across instances: see `relay::session`).
fn start_relay(settings: &Settings) -> anyhow::Result<Option<Relay>> {
    if !settings.relay.enabled {
        return Ok(None);
    }
    let publisher = crate::relay::Publisher::new(settings.clone())?;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let task = actix_rt::spawn(publisher.run(stopped));
    tracing::info!("outbox relay running (relay.enabled)");
    Ok(Some(Relay { stop, task }))
}

/// The outbox relay running inside `run`.
struct Relay {
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

/// The tasks beside the pipeline (the retry worker of deferred routes, the
/// pruning of http delivery records): told to stop, then awaited.
struct Background {
    stop: tokio_util::sync::CancellationToken,
    /// Each with what it is, for the warning when it does not stop in time.
    tasks: Vec<(&'static str, tokio::task::JoinHandle<()>)>,
}

/// What the shutdown sequence stops, in order.
struct Stopping {
    drain_timeout: Duration,
    supervisor: Addr<Supervisor>,
    consumer: Arc<KafkaConsumer>,
    events: EventLoop,
    server: actix_web::dev::ServerHandle,
    arbiters: Vec<Arbiter>,
    relay: Option<Relay>,
    background: Background,
}

/// The shutdown sequence: the drain, then the final steps, each bounded (see
/// `shutdown.rs`), so it ends within `drain_timeout` + `shutdown::MARGIN`.
async fn stop(s: Stopping) {
    tracing::info!("shutting down: draining partitions");
    // The relay finishes its round meanwhile; one cut short is republished
    // under the same ids.
    if let Some(relay) = &s.relay {
        let _ = relay.stop.send(true);
    }
    // The retry worker drops the attempts in flight (a scheduled entry is
    // attempted again, as after a crash) and hands back their leases.
    s.background.stop.cancel();
    // The Supervisor bounds each partition's drain below the drain timeout.
    match tokio::time::timeout(s.drain_timeout, s.supervisor.send(Shutdown)).await {
        Ok(Ok(watermarks)) => {
            let committer = Arc::clone(&s.consumer);
            let commit = shutdown::bounded("commit", COMMIT_BOUND, move || {
                commit_watermarks(&*committer, &watermarks, "shutdown")
            });
            if commit.await.is_none() {
                tracing::warn!("offset commit at shutdown timed out; the rest is redelivered");
            }
        }
        _ => tracing::warn!("drain did not finish in time; undrained messages will be redelivered"),
    }
    s.consumer.context().close();
    let events = s.events;
    if shutdown::bounded("events", EVENTS_BOUND, move || events.stop())
        .await
        .is_none()
    {
        tracing::warn!("kafka event thread did not stop in time");
    }
    let relay = async {
        if let Some(relay) = s.relay {
            if tokio::time::timeout(HTTP_BOUND, relay.task).await.is_err() {
                tracing::warn!("the outbox relay's round was cut off; its batch is republished");
            }
        }
    };
    let background = futures::future::join_all(s.background.tasks.into_iter().map(
        |(name, task)| async move {
            if tokio::time::timeout(HTTP_BOUND, task).await.is_err() {
                tracing::warn!(task = name, "did not stop in time");
            }
        },
    ));
    let (http, (), _) = futures::join!(
        tokio::time::timeout(HTTP_BOUND, s.server.stop(true)),
        relay,
        background
    );
    if http.is_err() {
        tracing::warn!("HTTP requests still in flight at shutdown were cut off");
    }
    for arbiter in s.arbiters {
        arbiter.stop();
    }
    let consumer = s.consumer;
    let closed = shutdown::bounded("close", CLOSE_BOUND, move || {
        close_when_last(consumer, CLOSE_BOUND / 2)
    })
    .await;
    if closed != Some(true) {
        tracing::warn!("kafka consumer not closed in time; the group notices at session timeout");
    }
    tracing::info!("custodian stopped");
}

/// Dead letters are only as durable as Redis: say so at start if it runs
/// without an append-only file. (Managed Redis may refuse CONFIG; then the
/// operator has to check.)
async fn warn_unless_redis_persists(redis: pool::RedisPool) {
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

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot listen for SIGTERM; Ctrl-C only");
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

/// custodian running on its own thread (tests, the benchmark).
pub struct Running {
    pub http_addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<anyhow::Result<()>>>,
}

impl Running {
    /// Starts custodian and waits until it serves HTTP.
    pub fn start(settings: Settings) -> anyhow::Result<Running> {
        let (stop, stopped) = oneshot::channel::<()>();
        let (ready, is_ready) = oneshot::channel();
        let thread = std::thread::Builder::new()
            .name("custodian".into())
            .spawn(move || {
                run(
                    settings,
                    async move {
                        let _ = stopped.await;
                    },
                    Some(ready),
                )
            })?;
        match is_ready.blocking_recv() {
            Ok(http_addr) => Ok(Running {
                http_addr,
                stop: Some(stop),
                thread: Some(thread),
            }),
            Err(_) => match thread.join() {
                Ok(Err(e)) => Err(e),
                _ => Err(anyhow::anyhow!("custodian exited before it was ready")),
            },
        }
    }

    /// Graceful stop: drain, commit, exit.
    pub fn stop(mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.thread.take().map(std::thread::JoinHandle::join) {
            Some(Ok(result)) => result,
            Some(Err(_)) => Err(anyhow::anyhow!("custodian thread panicked")),
            None => Ok(()),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
