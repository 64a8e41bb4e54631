//! The `relay` section: the transactional outbox relay (seed 002's producer,
//! whose INTERVAL and BATCH_COUNT are `interval` and `batch_size`).

use std::time::Duration;

use serde::Deserialize;

use super::{duration, invalid, ConfigError};

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
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
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
}
