//! The `flow` and `breaker` sections: how often an instance reads the
//! operators' pauses, when a partition counts as stalled, and when an http
//! route's circuit breaker opens and probes again.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{duration, invalid, optional_duration, ConfigError};

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

/// One http route's own breaker settings (`routes[i].breaker`): each one
/// set replaces the `breaker` section's for that route alone, so a flaky
/// downstream can get a patient breaker, or none, without the others.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RouteBreaker {
    #[serde(default)]
    pub enabled: Option<bool>,
    #[serde(default)]
    pub failures: Option<u32>,
    #[serde(default)]
    pub failure_ratio: Option<f64>,
    #[serde(default, deserialize_with = "optional_duration")]
    pub window: Option<Duration>,
    #[serde(default)]
    pub min_requests: Option<u32>,
    #[serde(default, deserialize_with = "optional_duration")]
    pub cool_down: Option<Duration>,
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
    /// These settings with a route's own (`routes[i].breaker`) in place
    /// of the ones it sets.
    pub fn for_route(&self, own: Option<&RouteBreaker>) -> BreakerSettings {
        let Some(own) = own else {
            return self.clone();
        };
        BreakerSettings {
            enabled: own.enabled.unwrap_or(self.enabled),
            failures: own.failures.unwrap_or(self.failures),
            failure_ratio: own.failure_ratio.unwrap_or(self.failure_ratio),
            window: own.window.unwrap_or(self.window),
            min_requests: own.min_requests.unwrap_or(self.min_requests),
            cool_down: own.cool_down.unwrap_or(self.cool_down),
        }
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        self.validate_at("breaker")
    }

    /// Refuses a value out of range, naming it under `section` (`breaker`,
    /// or a route's `routes[i].breaker`).
    pub(super) fn validate_at(&self, section: &str) -> Result<(), ConfigError> {
        let key = |field: &str| format!("{section}.{field}");
        if self.failures == 0 {
            return Err(invalid(key("failures"), "at least 1"));
        }
        if !(self.failure_ratio > 0.0 && self.failure_ratio <= 1.0) {
            return Err(invalid(key("failure_ratio"), "more than 0, at most 1"));
        }
        if self.min_requests == 0 {
            return Err(invalid(key("min_requests"), "at least 1"));
        }
        for (field, value) in [("window", self.window), ("cool_down", self.cool_down)] {
            if value < Duration::from_millis(10) || value > Duration::from_secs(86_400) {
                return Err(invalid(key(field), "between 10ms and 24h"));
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

    fn with_routes(routes: serde_json::Value) -> Result<Settings, crate::config::ConfigError> {
        Settings::from_overrides(&[("routes", routes), ("breaker.failures", 7.into())])
    }

    #[test]
    fn a_routes_own_breaker_settings_replace_the_sections_for_it_alone() {
        let s = with_routes(serde_json::json!([
            { "event_types": ["A"], "handler": "http", "url": "http://a.example/hook",
              "breaker": { "failures": 2, "cool_down": "3s" } },
            { "event_types": ["B"], "handler": "http", "url": "http://b.example/hook",
              "breaker": { "enabled": false } },
            { "event_types": ["C"], "handler": "http", "url": "http://c.example/hook" },
        ]))
        .expect("valid");
        let own: Vec<_> = s
            .routes
            .iter()
            .map(|r| s.breaker.for_route(r.breaker.as_ref()))
            .collect();
        assert_eq!(own[0].failures, 2);
        assert_eq!(own[0].cool_down, std::time::Duration::from_secs(3));
        assert!(own[0].enabled, "unset: the section's");
        assert_eq!(own[0].min_requests, s.breaker.min_requests);
        assert!(!own[1].enabled);
        assert_eq!(own[1].failures, 7, "the section's");
        assert_eq!(own[2].failures, 7);
    }

    #[test]
    fn a_routes_breaker_is_checked_under_its_own_key() {
        for (breaker, key) in [
            (
                serde_json::json!({ "failures": 0 }),
                "routes[1].breaker.failures",
            ),
            (
                serde_json::json!({ "failure_ratio": 0.0 }),
                "routes[1].breaker.failure_ratio",
            ),
            (
                serde_json::json!({ "window": "1ms" }),
                "routes[1].breaker.window",
            ),
        ] {
            let err = with_routes(serde_json::json!([
                { "event_types": ["A"], "handler": "http", "url": "http://a.example/hook" },
                { "event_types": ["B"], "handler": "http", "url": "http://b.example/hook",
                  "breaker": breaker },
            ]))
            .expect_err(key);
            assert!(err.to_string().contains(key), "{key}: {err}");
        }
        let err = with_routes(serde_json::json!([
            { "event_types": ["transaction.created"], "handler": "transactions",
              "breaker": { "failures": 2 } },
        ]))
        .expect_err("not an http route");
        assert!(err.to_string().contains("routes[0].breaker"), "{err}");
    }
}
