//! The shared dependencies, built once at start: pools, the producer, the
//! HTTP delivery client, the steering header key, the dead-letter keys,
//! the route tables, and the handles the API reads (health, partition
//! status, chart samples, the audit trail). Everything else is started
//! from these (`stages.rs`, `background.rs`).

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use rdkafka::producer::FutureProducer;

use crate::api::produce::ProduceTarget;
use crate::config::Settings;
use crate::delivery::Endpoints;
use crate::dlq::replay::DeadLetters;
use crate::dlq::Keys;
use crate::health::Health;
use crate::kafka::client::replay_producer_config;
use crate::pipeline::route_table::Routes;
use crate::pipeline::steering::HeaderKey;
use crate::status::{Registry, Samples};
use crate::store::pool::{self, RedisPool};
use crate::store::PgPool;
use crate::trail::Access;

/// The console's charts: a sample every 5 s, an hour of them.
const SAMPLE_INTERVAL: Duration = Duration::from_secs(5);
const SAMPLES_KEPT: usize = 720;

/// What the stages, the background tasks and the API share.
pub struct Deps {
    pub settings: Settings,
    pub postgres: PgPool,
    pub redis: RedisPool,
    /// Replays, `POST /produce` and retry-topic republishing.
    pub producer: FutureProducer,
    /// HTTP deliveries to downstreams.
    pub client: reqwest::Client,
    /// Signs and checks custodian's own steering and retry headers.
    pub header_key: HeaderKey,
    /// The dead-letter queue's Redis keys (`dlq.key_prefix`).
    pub keys: Keys,
    /// Event type → handler, per topic.
    pub routes: Arc<Routes>,
    /// Payload formats and the schema registry (`formats`).
    pub formats: Arc<crate::formats::Formats>,
    /// The http routes' endpoints (URL, timeout, rate limit), shared so a
    /// route's limit holds for the whole instance.
    pub endpoints: Arc<Endpoints>,
    /// The operator's handle on the dead-letter queue.
    pub dead_letters: Arc<DeadLetters>,
    pub audit: Access,
    pub health: Arc<Health>,
    pub status: Arc<Registry>,
    pub samples: Arc<Samples>,
    /// The operators' pauses in force (read by a background task).
    pub flow: crate::flow::Flow,
}

impl Deps {
    /// Builds every shared dependency; fails naming the setting at fault.
    pub async fn build(settings: Settings) -> anyhow::Result<Deps> {
        let postgres = pool::postgres(&settings.postgres);
        let redis = pool::redis(&settings.redis).context("redis.url")?;
        let producer: FutureProducer = replay_producer_config(&settings.kafka)
            .create()
            .context("cannot create the replay producer (check kafka.* settings)")?;
        let client =
            crate::delivery::send::client().context("cannot build the HTTP delivery client")?;
        let header_key = HeaderKey::configured(&settings.kafka);
        let dead_letters = Arc::new(DeadLetters::new(
            redis.clone(),
            postgres.clone(),
            producer.clone(),
            header_key.clone(),
            &settings.dlq,
        ));
        let audit = Access::from_settings(&settings)?;
        audit
            .record_chaining(settings.audit.chain)
            .await
            .context("cannot record audit.chain in audit_chain_marks")?;
        let created = audit
            .ensure_partitions()
            .await
            .context("cannot create the audit_log partitions ahead")?;
        if !created.is_empty() {
            tracing::info!(partitions = ?created, "audit_log partitions created ahead");
        }
        let formats = crate::formats::Formats::from_settings(&settings)
            .context("schema_registry / formats")?;
        Ok(Deps {
            formats: Arc::new(formats),
            keys: Keys::new(&settings.dlq.key_prefix),
            routes: Arc::new(Routes::new(&settings.routes)),
            endpoints: Arc::new(Endpoints::new(&settings.routes, &settings.breaker)),
            flow: crate::flow::Flow::new(),
            health: Arc::new(Health::default()),
            status: Arc::new(Registry::default()),
            samples: Arc::new(Samples::new(SAMPLE_INTERVAL, SAMPLES_KEPT)),
            settings,
            postgres,
            redis,
            producer,
            client,
            header_key,
            dead_letters,
            audit,
        })
    }

    /// How long the stages wait for a dependency that is down.
    pub fn dependency_wait(&self) -> crate::wait::DependencyWait {
        crate::wait::DependencyWait {
            min: self.settings.pipeline.dependency_backoff_min,
            max: self.settings.pipeline.dependency_backoff_max,
        }
    }

    /// Where `POST /produce` publishes: the first of `kafka.topics`.
    pub fn produce_target(&self) -> ProduceTarget {
        ProduceTarget {
            producer: self.producer.clone(),
            topic: self.settings.kafka.topics[0].clone(),
        }
    }
}
