//! The `flow` and `breaker` sections: how often an instance reads the
//! operators' pauses, when a partition counts as stalled, and when an http
//! route's circuit breaker opens and probes again.

use std::time::Duration;

use serde::Deserialize;

use super::{duration, invalid, ConfigError};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowSettings {
    /// How often every instance reads the active pauses from PostgreSQL
    /// (the instance that takes a pause applies it at once).
    #[serde(deserialize_with = "duration")]
    pub poll_interval: Duration,
    /// A partition whose oldest in-flight message has waited longer than
    /// this is flagged as stalled (head-of-line blocking).
    #[serde(deserialize_with = "duration")]
    pub stall_after: Duration,
}

/// Every http route's circuit breaker (one per route and instance).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BreakerSettings {
    /// Off: routes never open.
    pub enabled: bool,
    /// Consecutive transient failures (5xx, 429, timeouts) that open it.
    pub failures: u32,
    /// …or this share of failures among the attempts of the last `window`,
    /// once there were at least `min_requests` of them.
    pub failure_ratio: f64,
    #[serde(deserialize_with = "duration")]
    pub window: Duration,
    pub min_requests: u32,
    /// How long it stays open before one probe is let through.
    #[serde(deserialize_with = "duration")]
    pub cool_down: Duration,
}

pub(super) fn defaults() -> serde_json::Value {
    serde_json::json!({ "poll_interval": "1s", "stall_after": "60s" })
}

pub(super) fn breaker_defaults() -> serde_json::Value {
    serde_json::json!({
        "enabled": true,
        "failures": 5,
        "failure_ratio": 0.5,
        "window": "60s",
        "min_requests": 20,
        "cool_down": "30s",
    })
}

impl FlowSettings {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.poll_interval < Duration::from_millis(10)
            || self.poll_interval > Duration::from_secs(60)
        {
            return Err(invalid("flow.poll_interval", "between 10ms and 60s"));
        }
        if self.stall_after < Duration::from_secs(1)
            || self.stall_after > Duration::from_secs(86_400)
        {
            return Err(invalid("flow.stall_after", "between 1s and 24h"));
        }
        Ok(())
    }
}

impl BreakerSettings {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.failures == 0 {
            return Err(invalid("breaker.failures", "at least 1"));
        }
        if !(self.failure_ratio > 0.0 && self.failure_ratio <= 1.0) {
            return Err(invalid("breaker.failure_ratio", "more than 0, at most 1"));
        }
        if self.min_requests == 0 {
            return Err(invalid("breaker.min_requests", "at least 1"));
        }
        for (key, value) in [
            ("breaker.window", self.window),
            ("breaker.cool_down", self.cool_down),
        ] {
            if value < Duration::from_millis(10) || value > Duration::from_secs(86_400) {
                return Err(invalid(key, "between 10ms and 24h"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Settings;

    #[test]
    fn flow_and_breaker_settings_are_checked_by_key() {
        let s = Settings::from_overrides(&[]).expect("defaults load");
        assert!(s.breaker.enabled);
        assert_eq!(s.breaker.failures, 5);
        for (key, value) in [
            ("flow.poll_interval", serde_json::json!("0s")),
            ("flow.stall_after", serde_json::json!("soon")),
            ("breaker.failures", serde_json::json!(0)),
            ("breaker.failure_ratio", serde_json::json!(1.5)),
            ("breaker.cool_down", serde_json::json!("0s")),
        ] {
            let err = Settings::from_overrides(&[(key, value)]).expect_err(key);
            assert!(err.to_string().contains(key), "{key}: {err}");
        }
    }
}
