//! The settings tree: one TOML file plus `CUSTODIAN_` environment overrides,
//! loaded once at start and validated before anything connects.
//!
//! Precedence, lowest first: built-in defaults, the TOML file, environment
//! variables (`CUSTODIAN_KAFKA__BROKERS=…`, with `__` separating levels).
//! Every error names the key that is wrong. Secrets (database and Redis URLs,
//! the API token) are `SecretString`s: their `Debug` output is redacted, so a
//! settings dump can never leak them into logs.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

mod audit;
mod defaults;
mod duration;
mod flow;
mod formats;
mod masking;
mod operators;
pub mod pointer;
mod relay;
mod route_settings;
mod telemetry;
pub(crate) mod urls;
mod validate;

pub use audit::{ArchiveSettings, AuditSettings, Period, Retention, SigningSeed};
use defaults::defaults;
pub use duration::parse_duration;
use duration::{duration, optional_duration};
pub use flow::{BreakerSettings, FlowSettings, RouteBreaker};
pub use formats::{PayloadFormat, SchemaRegistrySettings, TopicFormat};
pub use masking::{MaskRule, MaskingSettings};
pub use operators::OperatorsSettings;
pub use relay::{RelayEncoding, RelaySettings};
pub use route_settings::RouteSettings;
pub use telemetry::TelemetrySettings;

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

/// What went wrong while loading the settings. Always names the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration file {path} does not exist")]
    MissingFile { path: String },
    #[error("invalid configuration: {0}")]
    Parse(String),
    #[error("invalid configuration: key `{key}`: {reason}")]
    Invalid {
        /// A fixed key, or one with its list index (`routes[2].topic`).
        key: std::borrow::Cow<'static, str>,
        reason: String,
    },
}

/// The error for a value the types accept but the checks do not.
fn invalid(
    key: impl Into<std::borrow::Cow<'static, str>>,
    reason: impl Into<String>,
) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        reason: reason.into(),
    }
}

/// The whole configuration tree.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub kafka: KafkaSettings,
    pub postgres: PostgresSettings,
    pub redis: RedisSettings,
    pub pipeline: PipelineSettings,
    pub retry: RetrySettings,
    /// The records of finished http deliveries.
    pub deliveries: DeliveriesSettings,
    pub dlq: DlqSettings,
    /// Which handler applies which event types (first match wins).
    pub routes: Vec<RouteSettings>,
    pub http: HttpSettings,
    pub runtime: RuntimeSettings,
    pub log: LogSettings,
    /// Hash chains and signed checkpoints of the audit trail.
    pub audit: AuditSettings,
    /// The transactional outbox relay (`custodian relay`).
    pub relay: RelaySettings,
    /// Four-eyes approval.
    pub operators: OperatorsSettings,
    /// The schema registry Avro, Protobuf and JSON Schema topics name.
    pub schema_registry: SchemaRegistrySettings,
    /// Topics whose payloads are not plain JSON.
    pub formats: Vec<TopicFormat>,
    /// Personal payload fields, masked in the API's answers (none by default).
    pub masking: MaskingSettings,
    /// Operators' pauses and stalled partitions.
    pub flow: FlowSettings,
    /// Every http route's circuit breaker.
    pub breaker: BreakerSettings,
    /// OpenTelemetry traces (off unless `telemetry.otlp_endpoint`).
    pub telemetry: TelemetrySettings,
}

/// Where to consume from and as which group.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSettings {
    /// `bootstrap.servers`.
    pub brokers: String,
    /// Consumer group; scale out by starting more instances with the same id.
    pub group_id: String,
    /// Topics to subscribe to.
    pub topics: Vec<String>,
    /// Where a group with no committed offset starts: `earliest` or `latest`.
    pub auto_offset_reset: String,
    /// How often stored (durable) offsets are committed to Kafka.
    #[serde(deserialize_with = "duration")]
    pub commit_interval: Duration,
    #[serde(deserialize_with = "duration")]
    pub session_timeout: Duration,
    /// Most kilobytes librdkafka prefetches per assigned partition
    /// (`queued.max.messages.kbytes`, which applies per partition queue).
    pub prefetch_kbytes_per_partition: usize,
    /// Extra librdkafka properties (TLS, SASL, fetch tuning). Values are
    /// never logged.
    pub extra: BTreeMap<String, SecretString>,
    /// The HMAC key custodian signs the headers that steer it with (a
    /// replayed copy's message id and origin). Headers not signed with it
    /// are ignored. Every instance of a group needs the same key; unset, each
    /// process uses a random one, so only the instance that replayed a
    /// message recognises its copy.
    #[serde(default)]
    pub header_key: Option<SecretString>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresSettings {
    pub url: SecretString,
    /// Connections shared by the processors, auditors and HTTP handlers.
    pub pool_size: u32,
    #[serde(deserialize_with = "duration")]
    pub connect_timeout: Duration,
    /// Longest one statement may run. A statement that hits it (a lock held
    /// elsewhere, an overloaded server) is a transient failure: retried, then
    /// dead-lettered. Set on every connection custodian opens.
    #[serde(deserialize_with = "duration")]
    pub statement_timeout: Duration,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisSettings {
    pub url: SecretString,
    pub pool_size: u32,
    #[serde(deserialize_with = "duration")]
    pub connect_timeout: Duration,
    /// Longest wait for one reply. The client's own default (500 ms) is
    /// shorter than a batch of dead letters written with `appendfsync
    /// always` can take on a busy machine, and a late reply reads as an
    /// outage.
    #[serde(deserialize_with = "duration")]
    pub response_timeout: Duration,
}

/// The knobs that scale one instance: actor counts, mailboxes, batches.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineSettings {
    /// Enricher actors; partitions are spread over them by number.
    pub enrichers: usize,
    /// Processor actors (each applies batches in one PostgreSQL transaction).
    pub processors: usize,
    /// Auditor actors (each batches audit rows into PostgreSQL).
    pub auditors: usize,
    /// Capacity of every data-path mailbox, in batches.
    pub mailbox_capacity: usize,
    /// Most messages a partition actor reads into one batch.
    pub partition_batch_size: usize,
    /// Most messages of one partition between read and durable outcome.
    pub max_in_flight_per_partition: usize,
    /// Most bytes (keys, payloads, headers) of one partition's records
    /// between read and durable outcome: bounds memory when records are
    /// large. A partition stops reading at this mark (one batch may cross it).
    pub max_in_flight_bytes_per_partition: usize,
    /// Most messages in one auditor flush (one transaction; whole
    /// submissions, at least one).
    pub audit_batch_size: usize,
    /// No effect since flushes became group commits (issue 24): one starts
    /// as soon as the previous ends. Still read and checked, so existing
    /// configuration files load.
    #[serde(deserialize_with = "duration")]
    pub audit_flush_interval: Duration,
    /// First and largest wait between attempts when PostgreSQL or Redis is
    /// unreachable (the affected partitions pause meanwhile).
    #[serde(deserialize_with = "duration")]
    pub dependency_backoff_min: Duration,
    #[serde(deserialize_with = "duration")]
    pub dependency_backoff_max: Duration,
}

/// Retrying a message whose failure is transient (a statement timeout, a
/// deadlock, a downstream 5xx): in place, so its partition keeps its order.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetrySettings {
    /// Attempts per message before it is dead-lettered (1 = no retry).
    pub max_attempts: u32,
    /// Wait before the second attempt; doubles per attempt (with full
    /// jitter) up to `backoff_max`.
    #[serde(deserialize_with = "duration")]
    pub backoff_min: Duration,
    #[serde(deserialize_with = "duration")]
    pub backoff_max: Duration,
}

/// The records of finished http deliveries (`GET /deliveries`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveriesSettings {
    /// How long a finished delivery's record is kept; the audit trail
    /// keeps every attempt regardless.
    #[serde(deserialize_with = "duration")]
    pub retention: Duration,
}

/// The Redis dead-letter queue and its replay.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DlqSettings {
    /// Key prefix: entries are in the list `<prefix>:<topic>`.
    pub key_prefix: String,
    /// Bulk replays publish at most this many records per second.
    pub replay_rate_per_second: u32,
    /// Most entries one bulk replay may take.
    pub replay_max_batch: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSettings {
    /// Address of the health/metrics/API server (`127.0.0.1:0` picks a port).
    pub bind: String,
    pub workers: usize,
    /// Bearer token for the API (replay, discard, DLQ and audit reads).
    /// Unset: those endpoints answer 403. Health, readiness and metrics are
    /// always open.
    pub api_token: Option<SecretString>,
    /// Longest a client may take to send a request body once its headers
    /// are in; a slower body is answered 408 and its connection closed, so
    /// a stalled client cannot hold a worker's connection open.
    #[serde(deserialize_with = "duration")]
    pub body_timeout: Duration,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeSettings {
    /// Arbiter (single-threaded runtime) threads the actors are spread over.
    pub arbiter_threads: usize,
    /// Longest a revocation or shutdown waits for in-flight work to drain.
    #[serde(deserialize_with = "duration")]
    pub drain_timeout: Duration,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    /// A tracing filter (`info`, `custodian=debug`); `RUST_LOG` wins if set.
    pub level: String,
    /// `auto` (JSON unless stdout is a terminal), `json` or `plain`.
    pub format: String,
}

impl Settings {
    /// Loads defaults, then `path` (required if given explicitly, optional
    /// `custodian.toml` otherwise), then the environment; validates the result.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(defaults()));
        match path {
            Some(p) if !p.exists() => {
                return Err(ConfigError::MissingFile {
                    path: p.display().to_string(),
                })
            }
            Some(p) => figment = figment.merge(Toml::file(p)),
            None => figment = figment.merge(Toml::file("custodian.toml")),
        }
        Self::from_figment(
            figment.merge(
                Env::prefixed("CUSTODIAN_")
                    .ignore(&["CONFIG", "TOKEN"])
                    .split("__"),
            ),
        )
    }

    /// Defaults plus a list of overrides, for tests and the benchmark.
    pub fn from_overrides(overrides: &[(&str, serde_json::Value)]) -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(defaults()));
        for (key, value) in overrides {
            figment = figment.merge(Serialized::global(key, value));
        }
        Self::from_figment(figment)
    }

    fn from_figment(figment: Figment) -> Result<Self, ConfigError> {
        let settings: Settings = figment
            .extract()
            .map_err(|e| ConfigError::Parse(e.to_string()))?;
        settings.validate()?;
        Ok(settings)
    }
}

/// A redacted view for the start-up log line: shapes, never secrets.
#[derive(Debug, Serialize)]
pub struct Summary<'a> {
    pub brokers: &'a str,
    pub group_id: &'a str,
    pub topics: &'a [String],
    pub enrichers: usize,
    pub processors: usize,
    pub auditors: usize,
    pub http_bind: &'a str,
    /// `topic: event types → handler` per route (URLs without credentials).
    pub routes: Vec<String>,
}

impl Settings {
    pub fn summary(&self) -> Summary<'_> {
        Summary {
            brokers: &self.kafka.brokers,
            group_id: &self.kafka.group_id,
            topics: &self.kafka.topics,
            enrichers: self.pipeline.enrichers,
            processors: self.pipeline.processors,
            auditors: self.pipeline.auditors,
            http_bind: &self.http.bind,
            routes: self.routes.iter().map(RouteSettings::describe).collect(),
        }
    }

    /// The labels of the http routes (their URLs without credentials or
    /// query), as their gates, `GET /flow` and a pause name them.
    pub fn http_route_labels(&self) -> Vec<String> {
        self.routes
            .iter()
            .filter(|r| r.handler == crate::handlers::registry::HandlerKind::Http)
            .map(|r| urls::label(r.url.as_deref().unwrap_or_default()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        let s = Settings::from_overrides(&[]).expect("defaults load");
        assert_eq!(s.kafka.topics, vec!["transactions".to_string()]);
        assert_eq!(s.pipeline.audit_flush_interval, Duration::from_millis(20));
    }

    #[test]
    fn wrong_type_names_the_key() {
        let err = Settings::from_overrides(&[("pipeline.audit_batch_size", "lots".into())])
            .expect_err("must fail");
        assert!(err.to_string().contains("audit_batch_size"), "{err}");
    }

    #[test]
    fn invalid_value_names_the_key() {
        let err =
            Settings::from_overrides(&[("pipeline.processors", 0.into())]).expect_err("must fail");
        assert!(err.to_string().contains("pipeline.processors"), "{err}");
        let err = Settings::from_overrides(&[("kafka.commit_interval", "0s".into())])
            .expect_err("must fail");
        assert!(err.to_string().contains("kafka.commit_interval"), "{err}");
        let err = Settings::from_overrides(&[("kafka.auto_offset_reset", "middle".into())])
            .expect_err("must fail");
        assert!(err.to_string().contains("kafka.auto_offset_reset"), "{err}");
    }

    #[test]
    fn unknown_handler_is_refused_naming_the_key() {
        let routes = serde_json::json!([{ "event_types": ["x"], "handler": "database" }]);
        let err = Settings::from_overrides(&[("routes", routes)]).expect_err("must fail");
        let text = err.to_string();
        assert!(
            text.contains("handler") && text.contains("database"),
            "{text}"
        );
    }

    #[test]
    fn unknown_key_is_refused() {
        let err =
            Settings::from_overrides(&[("pipeline.enrichrs", 3.into())]).expect_err("must fail");
        assert!(err.to_string().contains("enrichrs"), "{err}");
    }

    #[test]
    fn bad_url_error_does_not_echo_the_secret() {
        let err = Settings::from_overrides(&[("postgres.url", "mysql://user:hunter2@db/x".into())])
            .expect_err("must fail");
        let text = err.to_string();
        assert!(text.contains("postgres.url"), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
    }

    #[test]
    fn secrets_are_redacted_in_debug_output() {
        let s = Settings::from_overrides(&[("postgres.url", "postgres://app:hunter2@db/x".into())])
            .expect("loads");
        assert!(!format!("{s:?}").contains("hunter2"));
    }

    #[test]
    fn a_short_api_token_is_refused_without_echoing_it() {
        let err = Settings::from_overrides(&[("http.api_token", "hunter2".into())])
            .expect_err("must fail");
        let text = err.to_string();
        assert!(text.contains("http.api_token"), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
        let s = Settings::from_overrides(&[("http.api_token", "a-long-enough-token-123".into())])
            .expect("loads");
        assert!(!format!("{s:?}").contains("a-long-enough-token-123"));
    }

    #[test]
    fn retry_and_dlq_settings_are_checked() {
        for (key, value) in [
            ("retry.max_attempts", serde_json::json!(0)),
            ("retry.backoff_min", serde_json::json!("10s")),
            ("dlq.key_prefix", serde_json::json!("has space")),
            ("dlq.replay_rate_per_second", serde_json::json!(0)),
            ("postgres.statement_timeout", serde_json::json!("0s")),
            ("http.body_timeout", serde_json::json!("0s")),
            ("deliveries.retention", serde_json::json!("0s")),
            ("deliveries.retention", serde_json::json!("7 weeks")),
            ("deliveries.retention", serde_json::json!("3651d")),
        ] {
            let err = Settings::from_overrides(&[(key, value)]).expect_err(key);
            assert!(err.to_string().contains(key), "{key}: {err}");
        }
    }

    /// `check-config` used to accept these, and `run` then retried the
    /// connection forever.
    #[test]
    fn unparseable_addresses_fail_at_start_without_the_password() {
        for (key, value) in [
            ("postgres.url", "postgres://u:secret@h:notaport/db"),
            ("redis.url", "redis://:secret@h:notaport"),
            ("kafka.brokers", "b1:9092,b2:port"),
        ] {
            let err = Settings::from_overrides(&[(key, value.into())]).expect_err(key);
            let text = err.to_string();
            assert!(text.contains(key), "{key}: {text}");
            assert!(!text.contains("secret"), "{key}: {text}");
        }
    }

    #[test]
    fn missing_explicit_file_is_an_error() {
        let err =
            Settings::load(Some(Path::new("/nonexistent/custodian.toml"))).expect_err("must fail");
        assert!(matches!(err, ConfigError::MissingFile { .. }));
    }
}
