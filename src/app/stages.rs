//! Starting the data path from the shared dependencies: the arbiters, the
//! dead-letter actor, the auditors, the processors and the enrichers
//! ([`start`]), then the Kafka consumer with its Supervisor and event
//! thread ([`consume`]). The actors' roles are in `actors/`; this file only
//! wires them.

use std::sync::Arc;

use actix::prelude::*;
use anyhow::Context as _;
use rdkafka::consumer::Consumer;

use super::deps::Deps;
use crate::actors::auditor::Auditor;
use crate::actors::dead_letter::DeadLetter;
use crate::actors::enricher::Enricher;
use crate::actors::processor::Processor;
use crate::actors::supervisor::{Stages, Supervisor};
use crate::dlq::park::Parker;
use crate::kafka::client::consumer_config;
use crate::kafka::context::KafkaContext;
use crate::kafka::events::EventLoop;
use crate::kafka::KafkaConsumer;
use crate::process::Shared;
use crate::retry::deferred::gate::Parking;
use crate::retry::topic::publish::Republisher;
use crate::stages::Record;

/// The actors of the data path, on their arbiters.
pub struct Started {
    pub arbiters: Vec<Arbiter>,
    pub stages: Stages,
}

/// The consumer and what drives it.
pub struct Consuming {
    pub supervisor: Addr<Supervisor>,
    pub consumer: Arc<KafkaConsumer>,
    pub events: EventLoop,
}

/// Starts the stage actors, spread over `runtime.arbiter_threads` arbiters.
pub fn start(deps: &Deps) -> Started {
    let arbiters: Vec<Arbiter> = (0..deps.settings.runtime.arbiter_threads)
        .map(|_| Arbiter::new())
        .collect();
    let handles: Vec<ArbiterHandle> = arbiters.iter().map(Arbiter::handle).collect();
    let on = |i: usize| &handles[i % handles.len()];
    let pipeline = &deps.settings.pipeline;

    let parker = Parker {
        pool: deps.postgres.clone(),
        redis: deps.redis.clone(),
        keys: deps.keys.clone(),
        group: deps.settings.kafka.group_id.clone(),
    };
    let settings = pipeline.clone();
    let dead_letter =
        DeadLetter::start_in_arbiter(on(0), move |_| DeadLetter { parker, settings }).recipient();
    let auditors: Vec<Recipient<Record>> = (0..pipeline.auditors)
        .map(|i| {
            let (db, group) = (
                deps.settings.postgres.clone(),
                deps.settings.kafka.group_id.clone(),
            );
            let (pipeline, chain) = (pipeline.clone(), deps.settings.audit.chain);
            let dead_letter = dead_letter.clone();
            Auditor::start_in_arbiter(on(i), move |_| {
                Auditor::new(&db, group, pipeline, dead_letter).chained(chain)
            })
            .recipient()
        })
        .collect();
    let shared = Arc::new(shared(deps));
    let processors = (0..pipeline.processors)
        .map(|i| {
            let (shared, mailbox_capacity) = (Arc::clone(&shared), pipeline.mailbox_capacity);
            let group = deps.settings.kafka.group_id.clone();
            // Its own schedule connection (see `process::Context::parking`).
            let parking = Parking::new(&deps.settings.postgres, group);
            Processor::start_in_arbiter(on(i + 1), move |_| Processor {
                shared,
                parking,
                mailbox_capacity,
                queues: Default::default(),
                waiting: 0,
                held: Default::default(),
            })
            .recipient()
        })
        .collect();
    let enrichers = (0..pipeline.enrichers)
        .map(|i| {
            let mailbox_capacity = pipeline.mailbox_capacity;
            let (routes, header_key) = (Arc::clone(&deps.routes), deps.header_key.clone());
            let (formats, wait) = (Arc::clone(&deps.formats), deps.dependency_wait());
            let group: Arc<str> = Arc::from(deps.settings.kafka.group_id.as_str());
            Enricher::start_in_arbiter(on(i), move |_| Enricher {
                mailbox_capacity,
                routes,
                formats,
                wait,
                header_key,
                group,
            })
            .recipient()
        })
        .collect();
    Started {
        arbiters,
        stages: Stages {
            enrichers,
            processors,
            auditors,
        },
    }
}

/// What every processor shares.
fn shared(deps: &Deps) -> Shared {
    Shared {
        pool: deps.postgres.clone(),
        http: Arc::clone(&deps.endpoints),
        client: deps.client.clone(),
        redis: deps.redis.clone(),
        keys: deps.keys.clone(),
        retry: deps.settings.retry.clone(),
        wait: deps.dependency_wait(),
        republisher: Republisher::new(deps.producer.clone(), deps.header_key.clone()),
        formats: Arc::clone(&deps.formats),
    }
}

/// Creates the consumer, hands the stages to its Supervisor, subscribes
/// (with the retry topics of `retry_backend = "kafka"` routes) and starts
/// the thread that serves librdkafka's events.
pub fn consume(deps: &Deps, started: &Started) -> anyhow::Result<Consuming> {
    let settings = &deps.settings;
    let context = KafkaContext::new(settings.runtime.drain_timeout, Arc::clone(&deps.health));
    let consumer: Arc<KafkaConsumer> = Arc::new(
        consumer_config(&settings.kafka)
            .create_with_context(context)
            .context("cannot create the Kafka consumer (check kafka.* settings)")?,
    );
    deps.status.set_consumer(&consumer);
    let handles = started.arbiters.iter().map(Arbiter::handle).collect();
    let supervisor = Supervisor::new(
        Arc::clone(&consumer),
        started.stages.clone(),
        handles,
        &settings.pipeline,
        settings.runtime.drain_timeout,
        settings.kafka.commit_interval,
    )
    .reporting_to(Arc::clone(&deps.status))
    .flow(deps.flow.clone(), settings.flow.stall_after)
    .start();
    consumer.context().connect(
        Arc::downgrade(&consumer),
        supervisor.clone().recipient(),
        supervisor.clone().recipient(),
    );
    let topics = crate::retry::topic::subscription(settings);
    let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
    consumer
        .subscribe(&topics)
        .context("cannot subscribe to kafka.topics")?;
    let events =
        EventLoop::spawn(Arc::clone(&consumer)).context("cannot start the Kafka event thread")?;
    Ok(Consuming {
        supervisor,
        consumer,
        events,
    })
}
