//! One entry of the route table, and what makes it valid.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{invalid, optional_duration, ConfigError, RouteBreaker};
use crate::handlers::registry::HandlerKind;

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
    /// For `http` on a schema topic (`formats`): `decoded` (the default,
    /// the record's JSON) or `original` (its own bytes, in the wire format).
    #[serde(default)]
    pub forward: Option<String>,
    /// For `http`: this route's own circuit breaker settings, each one
    /// replacing the `breaker` section's (`breaker = { enabled = false }`
    /// turns it off for this route alone).
    #[serde(default)]
    pub breaker: Option<RouteBreaker>,
}

/// Where a refusal points: `routes[<index>].<field>`, so an operator with
/// several routes knows which one.
#[derive(Clone, Copy)]
struct At(usize);

impl At {
    fn key(self, field: &str) -> String {
        format!("routes[{}].{field}", self.0)
    }

    fn invalid(self, field: &str, reason: impl Into<String>) -> ConfigError {
        invalid(self.key(field), reason)
    }
}

/// Longest a kept answer may stay (a longer one is a typo, and Redis would
/// refuse or wrap the expiry in milliseconds).
const MAX_CACHE_TTL: Duration = Duration::from_secs(3650 * 86_400);

impl RouteSettings {
    /// Refuses what the handler cannot do, and a setting that would be
    /// accepted without effect, naming the key (`routes[index].…`).
    /// `topics` is `kafka.topics`: a route's topic must be one of them, or
    /// the route never matches.
    pub(super) fn validate(&self, index: usize, topics: &[String]) -> Result<(), ConfigError> {
        let at = At(index);
        self.validate_topic(at, topics)?;
        self.validate_delivery(at)?;
        self.validate_retry(at)?;
        let allowed = self.handler.spec().event_types;
        if self.event_types.is_empty() {
            return Err(at.invalid("event_types", "must not be empty"));
        }
        if let Some(bad) = self.event_types.iter().find(|t| {
            t.is_empty() || t.len() > 200 || !(allowed.is_empty() || allowed.contains(&t.as_str()))
        }) {
            return Err(at.invalid(
                "event_types",
                format!(
                    "the {} handler does not apply `{bad}` (it applies {})",
                    self.handler,
                    allowed.join(", ")
                ),
            ));
        }
        Ok(())
    }

    /// A topic that is empty or not consumed would never match a record.
    /// (A `^pattern` in `kafka.topics` subscribes by regular expression:
    /// then the topics are not known here, and only emptiness is checked.)
    fn validate_topic(&self, at: At, topics: &[String]) -> Result<(), ConfigError> {
        let Some(topic) = &self.topic else {
            return Ok(());
        };
        if topic.trim().is_empty() {
            return Err(at.invalid(
                "topic",
                "must not be empty (leave it out to match every topic)",
            ));
        }
        let by_pattern = topics.iter().any(|t| t.starts_with('^'));
        if !by_pattern && !topics.contains(topic) {
            return Err(at.invalid(
                "topic",
                format!(
                    "`{}` is not in kafka.topics ({}), so the route would never match",
                    crate::text::clip(topic),
                    topics.join(", ")
                ),
            ));
        }
        Ok(())
    }

    /// The http delivery settings: URL, rate, timeout and answer cache.
    fn validate_delivery(&self, at: At) -> Result<(), ConfigError> {
        let is_http = self.handler.spec().takes_url;
        match (&self.url, is_http) {
            (Some(url), true)
                if url::Url::parse(url).is_ok_and(|u| {
                    matches!(u.scheme(), "http" | "https") && u.host_str().is_some()
                }) => {}
            (_, true) => {
                // The URL may hold a secret: say what is wrong, not what it is.
                return Err(at.invalid(
                    "url",
                    "an http route needs a valid http:// or https:// URL with a host",
                ));
            }
            (Some(_), false) => return Err(at.invalid("url", "only an http route takes a url")),
            (None, false) => {}
        }
        match self.forward.as_deref() {
            None | Some("decoded") => {}
            Some("original") if is_http => {}
            Some("original") => return Err(at.invalid("forward", "only an http route forwards")),
            Some(_) => return Err(at.invalid("forward", "`decoded` or `original`")),
        }
        if self.breaker.is_some() && !is_http {
            return Err(at.invalid("breaker", "only an http route has a circuit breaker"));
        }
        if self.rate_per_second == Some(0) || self.burst == Some(0) {
            return Err(at.invalid(
                "rate_per_second",
                "rate_per_second and burst must be greater than zero",
            ));
        }
        if self
            .timeout
            .is_some_and(|t| t.is_zero() || t > Duration::from_secs(300))
        {
            return Err(at.invalid("timeout", "more than zero and at most 5m"));
        }
        match self.cache_ttl {
            Some(_) if !is_http => {
                Err(at.invalid("cache_ttl", "only an http route has answers to keep"))
            }
            // Zero would be kept for a millisecond at most: never shown.
            Some(ttl) if ttl.is_zero() || ttl > MAX_CACHE_TTL => Err(at.invalid(
                "cache_ttl",
                "more than zero and at most 3650d (leave it out to keep no answers)",
            )),
            _ => Ok(()),
        }
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

    fn validate_concurrency(&self, at: At, is_http: bool) -> Result<(), ConfigError> {
        match self.concurrency {
            None => Ok(()),
            Some(_) if !is_http => {
                Err(at.invalid("concurrency", "only an http route delivers concurrently"))
            }
            Some(n) if n == 0 || n > 1024 => Err(at.invalid("concurrency", "from 1 to 1024")),
            Some(_) => Ok(()),
        }
    }

    fn validate_retry(&self, at: At) -> Result<(), ConfigError> {
        let is_http = self.handler.spec().takes_url;
        match (self.retry.as_deref(), self.retry_backend.as_deref()) {
            (_, None) | (Some("deferred"), Some("postgres" | "kafka")) => {}
            (Some("deferred"), Some(other)) => {
                return Err(at.invalid(
                    "retry_backend",
                    format!(
                        "`{}` is not a retry backend (postgres, kafka)",
                        crate::text::clip(other)
                    ),
                ))
            }
            (_, Some(_)) => {
                return Err(at.invalid(
                    "retry_backend",
                    "only a route with retry = \"deferred\" takes a retry backend",
                ))
            }
        }
        match self.retry.as_deref() {
            None | Some("in_place") => self.validate_concurrency(at, is_http),
            Some("deferred") if is_http => self.validate_concurrency(at, is_http),
            Some("deferred") => {
                Err(at.invalid("retry", "only an http route can defer its retries"))
            }
            Some(other) => Err(at.invalid(
                "retry",
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

    /// An http route to a valid URL, with `extra` keys.
    fn http(extra: serde_json::Value) -> serde_json::Value {
        let mut route = json!({"event_types": ["Notify"], "handler": "http",
                               "url": "http://hooks.example.com/n"});
        if let (Some(r), Some(e)) = (route.as_object_mut(), extra.as_object()) {
            r.extend(e.clone());
        }
        route
    }

    #[test]
    fn retry_mode_and_concurrency_are_checked_naming_the_key() {
        let ok = routes(http(json!({"retry": "deferred", "concurrency": 32}))).expect("valid");
        assert!(ok.routes[0].deferred());
        assert!(!routes(http(json!({}))).expect("valid").routes[0].deferred());
        let kafka =
            routes(http(json!({"retry": "deferred", "retry_backend": "kafka"}))).expect("valid");
        assert!(kafka.routes[0].retry_topic() && !kafka.routes[0].deferred());
        for (route, key) in [
            (http(json!({"retry": "later"})), "routes[0].retry"),
            (
                json!({"event_types": ["Message"], "handler": "audit", "retry": "deferred"}),
                "routes[0].retry",
            ),
            (http(json!({"concurrency": 0})), "routes[0].concurrency"),
            (
                http(json!({"retry": "deferred", "retry_backend": "redis"})),
                "routes[0].retry_backend",
            ),
            (
                http(json!({"retry_backend": "kafka"})),
                "routes[0].retry_backend",
            ),
            (
                json!({"event_types": ["Message"], "handler": "audit", "concurrency": 4}),
                "routes[0].concurrency",
            ),
        ] {
            let err = routes(route).expect_err(key);
            assert!(err.contains(key), "{key}: {err}");
        }
    }

    /// Settings with `kafka.topics` and a route table of the built-in
    /// audit route twice, then `route`.
    fn third_route(topics: &[&str], route: serde_json::Value) -> Result<Settings, String> {
        let audit = json!({"event_types": ["Message"], "handler": "audit"});
        Settings::from_overrides(&[
            ("kafka.topics", json!(topics)),
            ("routes", json!([audit, audit, route])),
        ])
        .map_err(|e| e.to_string())
    }

    #[test]
    fn settings_that_would_have_no_effect_are_refused_naming_the_route() {
        let topics = ["orders", "payments"];
        // What still works: a consumed topic, no topic, a kept answer.
        for route in [
            http(json!({"topic": "payments"})),
            http(json!({})),
            http(json!({"cache_ttl": "1h"})),
        ] {
            third_route(&topics, route.clone()).unwrap_or_else(|e| panic!("{route}: {e}"));
        }
        // A pattern subscription: the topics are not known at start.
        third_route(&["^orders\\..*"], http(json!({"topic": "orders.eu"}))).expect("pattern");
        for (route, key, says) in [
            (
                http(json!({"topic": ""})),
                "routes[2].topic",
                "must not be empty",
            ),
            (
                http(json!({"topic": "  "})),
                "routes[2].topic",
                "must not be empty",
            ),
            (
                http(json!({"topic": "refunds"})),
                "routes[2].topic",
                "not in kafka.topics",
            ),
            (
                http(json!({"cache_ttl": "0s"})),
                "routes[2].cache_ttl",
                "more than zero",
            ),
            (
                http(json!({"cache_ttl": 0})),
                "routes[2].cache_ttl",
                "more than zero",
            ),
            (
                http(json!({"cache_ttl": "3651d"})),
                "routes[2].cache_ttl",
                "at most 3650d",
            ),
            (
                json!({"event_types": ["Message"], "handler": "audit", "cache_ttl": "1h"}),
                "routes[2].cache_ttl",
                "only an http route",
            ),
            (
                http(json!({"timeout": "0s"})),
                "routes[2].timeout",
                "more than zero",
            ),
        ] {
            let err = third_route(&topics, route.clone()).expect_err(key);
            assert!(err.contains(&format!("`{key}`")), "{route}: {err}");
            assert!(err.contains(says), "{route}: {err}");
        }
    }
}
