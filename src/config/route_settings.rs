//! One entry of the route table, and what makes it valid.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{invalid, optional_duration, ConfigError};
use crate::handler_kind::HandlerKind;

/// One entry of the route table.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RouteSettings {
    /// Only this topic (unset: every topic).
    #[serde(default)]
    pub topic: Option<String>,
    pub event_types: Vec<String>,
    /// `transactions` (transaction events), `domain` (domain envelopes),
    /// `http` (forward to `url`) or `audit` (record only).
    pub handler: HandlerKind,
    /// For `http`: where to POST each message.
    #[serde(default)]
    pub url: Option<String>,
    /// For `http`: longest wait for an answer (default 5s).
    #[serde(default, deserialize_with = "optional_duration")]
    pub timeout: Option<Duration>,
    /// For `http`: most messages per second to this URL (default 100)…
    #[serde(default)]
    pub rate_per_second: Option<u32>,
    /// …and how many may go at once above that rate (default 10).
    #[serde(default)]
    pub burst: Option<u32>,
    /// For `http`: keep each 2xx answer (status and up to 4 KiB of body) in
    /// Redis this long, shown by `GET /messages/{id}`. Unset: not kept.
    #[serde(default, deserialize_with = "optional_duration")]
    pub cache_ttl: Option<Duration>,
    /// For `http`: what a transient failure does. `in_place` (the default)
    /// retries while the partition waits; `deferred` parks the message in
    /// the PostgreSQL retry schedule and moves on, its key's later messages
    /// waiting behind it (see `schedule`).
    #[serde(default)]
    pub retry: Option<String>,
    /// For a deferred route: where deferred messages wait. `postgres` (the
    /// default) is the retry schedule above; `kafka` republishes them to
    /// `<topic>.retry`, which custodian also consumes (see `retry_topic`).
    #[serde(default)]
    pub retry_backend: Option<String>,
    /// For `http`: how many messages of one partition with different keys
    /// may be delivered at once (default 1); one key's stay in order.
    #[serde(default)]
    pub concurrency: Option<usize>,
}

impl RouteSettings {
    /// Refuses what the handler cannot do, naming the key.
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let spec = self.handler.spec();
        let allowed = spec.event_types;
        let is_http = spec.takes_url;
        match (&self.url, is_http) {
            (Some(url), true)
                if url::Url::parse(url).is_ok_and(|u| {
                    matches!(u.scheme(), "http" | "https") && u.host_str().is_some()
                }) => {}
            (_, true) => {
                // The URL may hold a secret: say what is wrong, not what it is.
                return Err(invalid(
                    "routes.url",
                    "an http route needs a valid http:// or https:// URL with a host",
                ));
            }
            (Some(_), false) => {
                return Err(invalid("routes.url", "only an http route takes a url"))
            }
            (None, false) => {}
        }
        if self.rate_per_second == Some(0) || self.burst == Some(0) {
            return Err(invalid(
                "routes.rate_per_second",
                "rate_per_second and burst must be greater than zero",
            ));
        }
        if self
            .timeout
            .is_some_and(|t| t.is_zero() || t > Duration::from_secs(300))
        {
            return Err(invalid("routes.timeout", "more than zero and at most 5m"));
        }
        self.validate_retry(is_http)?;
        if self.event_types.is_empty() {
            return Err(invalid("routes.event_types", "must not be empty"));
        }
        if let Some(bad) = self.event_types.iter().find(|t| {
            t.is_empty() || t.len() > 200 || !(allowed.is_empty() || allowed.contains(&t.as_str()))
        }) {
            return Err(invalid(
                "routes.event_types",
                format!(
                    "the {} handler does not apply `{bad}` (it applies {})",
                    self.handler,
                    allowed.join(", ")
                ),
            ));
        }
        Ok(())
    }

    /// Whether transient failures go to the PostgreSQL retry schedule
    /// (`retry = "deferred"`, `retry_backend` unset or `postgres`).
    pub fn deferred(&self) -> bool {
        self.retry.as_deref() == Some("deferred") && !self.retry_topic()
    }

    /// Whether transient failures go to `<topic>.retry` (`retry =
    /// "deferred"`, `retry_backend = "kafka"`).
    pub fn retry_topic(&self) -> bool {
        self.retry.as_deref() == Some("deferred") && self.retry_backend.as_deref() == Some("kafka")
    }

    fn validate_concurrency(&self, is_http: bool) -> Result<(), ConfigError> {
        match self.concurrency {
            None => Ok(()),
            Some(_) if !is_http => Err(invalid(
                "routes.concurrency",
                "only an http route delivers concurrently",
            )),
            Some(n) if n == 0 || n > 1024 => Err(invalid("routes.concurrency", "from 1 to 1024")),
            Some(_) => Ok(()),
        }
    }

    fn validate_retry(&self, is_http: bool) -> Result<(), ConfigError> {
        match (self.retry.as_deref(), self.retry_backend.as_deref()) {
            (_, None) | (Some("deferred"), Some("postgres" | "kafka")) => {}
            (Some("deferred"), Some(other)) => {
                return Err(invalid(
                    "routes.retry_backend",
                    format!(
                        "`{}` is not a retry backend (postgres, kafka)",
                        crate::text::clip(other)
                    ),
                ))
            }
            (_, Some(_)) => {
                return Err(invalid(
                    "routes.retry_backend",
                    "only a route with retry = \"deferred\" takes a retry backend",
                ))
            }
        }
        match self.retry.as_deref() {
            None | Some("in_place") => self.validate_concurrency(is_http),
            Some("deferred") if is_http => self.validate_concurrency(is_http),
            Some("deferred") => Err(invalid(
                "routes.retry",
                "only an http route can defer its retries",
            )),
            Some(other) => Err(invalid(
                "routes.retry",
                format!(
                    "`{}` is not a retry mode (in_place, deferred)",
                    crate::text::clip(other)
                ),
            )),
        }
    }

    /// `topic: event types → handler [host]`, for `check-config` (a URL is
    /// shown without path, query or credentials).
    pub(super) fn describe(&self) -> String {
        let target = match &self.url {
            Some(url) => format!("{} {}", self.handler, super::urls::label(url)),
            None => self.handler.to_string(),
        };
        format!(
            "{}: {} → {target}",
            self.topic.as_deref().unwrap_or("*"),
            self.event_types.join(", ")
        )
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Settings;
    use serde_json::json;

    fn routes(route: serde_json::Value) -> Result<Settings, String> {
        Settings::from_overrides(&[("routes", json!([route]))]).map_err(|e| e.to_string())
    }

    #[test]
    fn retry_mode_and_concurrency_are_checked_naming_the_key() {
        let http = |extra: serde_json::Value| {
            let mut route = json!({"event_types": ["Notify"], "handler": "http",
                                   "url": "http://hooks.example.com/n"});
            if let (Some(r), Some(e)) = (route.as_object_mut(), extra.as_object()) {
                r.extend(e.clone());
            }
            route
        };
        let ok = routes(http(json!({"retry": "deferred", "concurrency": 32}))).expect("valid");
        assert!(ok.routes[0].deferred());
        assert!(!routes(http(json!({}))).expect("valid").routes[0].deferred());
        let kafka =
            routes(http(json!({"retry": "deferred", "retry_backend": "kafka"}))).expect("valid");
        assert!(kafka.routes[0].retry_topic() && !kafka.routes[0].deferred());
        for (route, key) in [
            (http(json!({"retry": "later"})), "routes.retry"),
            (
                json!({"event_types": ["Message"], "handler": "audit", "retry": "deferred"}),
                "routes.retry",
            ),
            (http(json!({"concurrency": 0})), "routes.concurrency"),
            (
                http(json!({"retry": "deferred", "retry_backend": "redis"})),
                "routes.retry_backend",
            ),
            (
                http(json!({"retry_backend": "kafka"})),
                "routes.retry_backend",
            ),
            (
                json!({"event_types": ["Message"], "handler": "audit", "concurrency": 4}),
                "routes.concurrency",
            ),
        ] {
            let err = routes(route).expect_err(key);
            assert!(err.contains(key), "{key}: {err}");
        }
    }
}
