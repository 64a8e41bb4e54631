//! The `relay` section: the transactional outbox relay (seed 002's producer,
//! whose INTERVAL and BATCH_COUNT are `interval` and `batch_size`).

use std::time::Duration;

use serde::Deserialize;

use super::{duration, invalid, ConfigError, PayloadFormat};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelaySettings {
    /// Also run the relay inside `custodian run` (`custodian relay` runs it
    /// on its own either way).
    pub enabled: bool,
    /// How often the relay looks for pending outbox rows (a full batch is
    /// followed by the next one at once). A standby instance tries to take
    /// the lock this often too.
    #[serde(deserialize_with = "duration")]
    pub interval: Duration,
    /// Most rows published per round.
    pub batch_size: usize,
    /// Longest Kafka may take to acknowledge one record (the producer's
    /// `message.timeout.ms`); past it the record counts as not sent.
    #[serde(deserialize_with = "duration")]
    pub publish_timeout: Duration,
    /// First wait before an event Kafka refused (too large, unknown topic)
    /// is tried again; it doubles per attempt up to `retry_backoff_max`.
    /// Meanwhile only that event's aggregate waits.
    #[serde(deserialize_with = "duration")]
    pub retry_backoff_min: Duration,
    #[serde(deserialize_with = "duration")]
    pub retry_backoff_max: Duration,
    /// Topics whose rows' JSON payloads are encoded in the wire format
    /// with a subject's schema before they are published.
    #[serde(default)]
    pub encodings: Vec<RelayEncoding>,
}

/// `[[relay.encodings]]`: one topic's rows encoded with a subject's latest
/// schema (looked up once per relay process, as Confluent's serializers
/// do with `use.latest.version`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelayEncoding {
    pub topic: String,
    /// `avro`, `protobuf` or `json-schema`.
    pub format: PayloadFormat,
    /// Default `{topic}-value` (the registry's topic name strategy).
    #[serde(default)]
    pub subject: Option<String>,
}

impl RelayEncoding {
    pub fn subject(&self) -> String {
        self.subject
            .clone()
            .unwrap_or_else(|| format!("{}-value", self.topic))
    }
}

pub(super) fn defaults() -> serde_json::Value {
    serde_json::json!({
        "enabled": false,
        "interval": "1s",
        "batch_size": 100,
        "publish_timeout": "30s",
        "retry_backoff_min": "1s",
        "retry_backoff_max": "5m",
    })
}

impl RelaySettings {
    /// `registry`: whether `schema_registry.url` is set.
    pub(super) fn validate(&self, registry: bool) -> Result<(), ConfigError> {
        for (i, e) in self.encodings.iter().enumerate() {
            if e.topic.trim().is_empty() {
                return Err(invalid(format!("relay.encodings[{i}].topic"), "empty"));
            }
            if self.encodings[..i].iter().any(|f| f.topic == e.topic) {
                return Err(invalid(
                    format!("relay.encodings[{i}].topic"),
                    "named twice",
                ));
            }
            if e.format == PayloadFormat::Json {
                return Err(invalid(
                    format!("relay.encodings[{i}].format"),
                    "avro, protobuf or json-schema (json rows are published as they are)",
                ));
            }
            if e.subject.as_deref().is_some_and(|s| s.trim().is_empty()) {
                return Err(invalid(format!("relay.encodings[{i}].subject"), "empty"));
            }
            if !registry {
                return Err(invalid(
                    "schema_registry.url",
                    "required: relay.encodings encodes with a registry's schemas",
                ));
            }
        }
        if !(1..=10_000).contains(&self.batch_size) {
            return Err(invalid("relay.batch_size", "must be between 1 and 10000"));
        }
        let day = Duration::from_secs(86_400);
        for (key, value) in [
            ("relay.interval", self.interval),
            ("relay.publish_timeout", self.publish_timeout),
            ("relay.retry_backoff_min", self.retry_backoff_min),
            ("relay.retry_backoff_max", self.retry_backoff_max),
        ] {
            if value.is_zero() || value > day {
                return Err(invalid(key, "must be more than zero and at most 24h"));
            }
        }
        if self.retry_backoff_min > self.retry_backoff_max {
            return Err(invalid(
                "relay.retry_backoff_min",
                "must not exceed relay.retry_backoff_max",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Settings;

    #[test]
    fn relay_settings_are_checked_by_key() {
        let s = Settings::from_overrides(&[]).expect("defaults load");
        assert!(!s.relay.enabled);
        assert_eq!(s.relay.batch_size, 100);
        for (key, value) in [
            ("relay.batch_size", serde_json::json!(0)),
            ("relay.interval", serde_json::json!("0s")),
            ("relay.retry_backoff_min", serde_json::json!("10m")),
            ("relay.publish_timeout", serde_json::json!("soon")),
        ] {
            let err = Settings::from_overrides(&[(key, value)]).expect_err(key);
            let field = key.rsplit('.').next().unwrap_or(key);
            assert!(err.to_string().contains(field), "{key}: {err}");
        }
    }

    #[test]
    fn relay_encodings_are_checked_by_key() {
        let encodings = |e: serde_json::Value| ("relay.encodings", serde_json::json!([e]));
        let registry = (
            "schema_registry.url",
            serde_json::json!("http://127.0.0.1:8081"),
        );
        let ok = Settings::from_overrides(&[
            encodings(serde_json::json!({"topic": "t", "format": "avro"})),
            registry.clone(),
        ])
        .expect("an encoding with a registry");
        assert_eq!(ok.relay.encodings[0].subject(), "t-value");
        for (overrides, named) in [
            (
                vec![encodings(
                    serde_json::json!({"topic": "t", "format": "avro"}),
                )],
                "schema_registry.url",
            ),
            (
                vec![
                    encodings(serde_json::json!({"topic": "t", "format": "json"})),
                    registry.clone(),
                ],
                "relay.encodings[0].format",
            ),
            (
                vec![
                    encodings(serde_json::json!({"topic": "t", "format": "avro", "subject": " "})),
                    registry.clone(),
                ],
                "relay.encodings[0].subject",
            ),
        ] {
            let err = Settings::from_overrides(&overrides).expect_err(named);
            assert!(err.to_string().contains(named), "{named}: {err}");
        }
    }
}
