//! HTTP delivery to downstream services: the endpoint of each http route
//! (URL, timeout, rate limit, answer cache, retry policy: [`Endpoint`]),
//! sending one message and classifying the answer ([`send`]), the record of
//! each delivery for `GET /deliveries` ([`record`]) and its pruning
//! ([`retention`]).
//!
//! Who calls it: the `http` handler kind (`handlers/http`) on first
//! delivery, and the deferred retry worker (`retry/deferred/worker.rs`)
//! for later attempts. Where a failed delivery goes next is `retry/`'s
//! concern: in place, the deferred schedule, or a retry topic.

pub mod record;
pub mod retention;
pub mod send;

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

use crate::config::urls::label;
use crate::config::{BreakerSettings, RouteSettings};
use crate::handlers::registry::HandlerKind;

/// A downstream URL, with its timeout and rate limit (shared by every
/// processor, so the limit holds for the whole instance).
pub struct Endpoint {
    pub url: String,
    /// The URL without credentials or query, for logs, errors and metric
    /// labels (the full URL may hold a secret).
    pub label: String,
    pub timeout: Duration,
    pub limiter: DefaultDirectRateLimiter,
    /// Keep 2xx answers in Redis this long (`cache_ttl`).
    pub cache_ttl: Option<Duration>,
    /// Transient failures go to the retry schedule (`retry = "deferred"`).
    pub deferred: bool,
    /// Transient failures go to `<topic>.retry` (`retry_backend = "kafka"`,
    /// see [`crate::retry::topic`]).
    pub retry_topic: bool,
    /// Messages of one partition with different keys delivered at once
    /// (`concurrency`, default 1); one key's stay in order.
    pub concurrency: usize,
    /// `forward = "original"`: a schema topic's record goes in its own
    /// bytes, not as its JSON.
    pub forward_original: bool,
    /// The operators' pause of this route and its circuit breaker.
    pub gate: Arc<crate::flow::gate::Gate>,
}

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
const DEFAULT_RATE: u32 = 100;
const DEFAULT_BURST: u32 = 10;

impl Endpoint {
    /// From a validated http route (it has a URL: checked at start).
    pub fn new(r: &RouteSettings, breaker: &BreakerSettings) -> Self {
        let url = r.url.clone().unwrap_or_default();
        let rate =
            NonZeroU32::new(r.rate_per_second.unwrap_or(DEFAULT_RATE)).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(r.burst.unwrap_or(DEFAULT_BURST)).unwrap_or(NonZeroU32::MIN);
        Endpoint {
            gate: Arc::new(crate::flow::gate::Gate::new(
                &label(&url),
                &breaker.for_route(r.breaker.as_ref()),
            )),
            label: label(&url),
            url,
            timeout: r.timeout.unwrap_or(DEFAULT_TIMEOUT),
            limiter: RateLimiter::direct(Quota::per_second(rate).allow_burst(burst)),
            cache_ttl: r.cache_ttl,
            deferred: r.deferred(),
            retry_topic: r.retry_topic(),
            concurrency: r.concurrency.unwrap_or(1),
            forward_original: r.forward.as_deref() == Some("original"),
        }
    }
}

/// Every http route, in `routes` order (the order `Handler::route`
/// indexes), shared by every processor.
#[derive(Debug, Default)]
pub struct Endpoints(Vec<Arc<Endpoint>>);

impl Endpoints {
    pub fn new(settings: &[RouteSettings], breaker: &BreakerSettings) -> Self {
        Endpoints(
            settings
                .iter()
                .filter(|r| r.handler == HandlerKind::Http)
                .map(|r| Arc::new(Endpoint::new(r, breaker)))
                .collect(),
        )
    }

    pub fn get(&self, index: usize) -> Option<&Arc<Endpoint>> {
        self.0.get(index)
    }

    /// The route a stored reference names: `index` (its position among the
    /// http routes when it was stored) if that route still has `label`,
    /// else the one route that has `label` now (the routes were reordered
    /// since), else none: a message is never sent to another downstream
    /// than the one it was scheduled for.
    pub fn resolve(&self, index: usize, label: &str) -> Option<&Arc<Endpoint>> {
        match self.get(index) {
            Some(route) if route.label == label => Some(route),
            _ => {
                let mut same = self.0.iter().filter(|r| r.label == label);
                match (same.next(), same.next()) {
                    (Some(route), None) => Some(route),
                    _ => None,
                }
            }
        }
    }

    /// Every http route, by index.
    pub fn all(&self) -> &[Arc<Endpoint>] {
        &self.0
    }
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("url", &self.label)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::Endpoints;
    use crate::config::{RouteSettings, Settings};
    use crate::pipeline::route_table::Routes;

    fn endpoints(settings: &[RouteSettings]) -> Endpoints {
        let defaults = Settings::from_overrides(&[]).expect("defaults");
        Endpoints::new(settings, &defaults.breaker)
    }

    #[test]
    fn a_stored_route_reference_never_resolves_to_another_downstream() {
        let settings: Vec<RouteSettings> = serde_json::from_value(serde_json::json!([
            { "event_types": ["X"], "handler": "http", "url": "http://x.example/hook" },
            { "event_types": ["A"], "handler": "http", "url": "http://a.example/one" },
            { "event_types": ["B"], "handler": "http", "url": "http://b.example/x" },
            { "event_types": ["C"], "handler": "http", "url": "http://b.example/y" },
        ]))
        .expect("route settings");
        let http = endpoints(&settings);
        let label = |r: Option<&std::sync::Arc<super::Endpoint>>| r.map(|r| r.label.clone());
        // Stored at index 0 when a.example's route came first: found by label.
        assert_eq!(
            label(http.resolve(0, "http://a.example")),
            Some("http://a.example".into())
        );
        // The index still matches: taken as it is.
        assert_eq!(
            label(http.resolve(2, "http://b.example")),
            Some("http://b.example".into())
        );
        // Moved, and two routes now share the label: neither is guessed.
        assert!(http.resolve(0, "http://b.example").is_none());
        // Its downstream is gone.
        assert!(http.resolve(1, "http://gone.example").is_none());
    }

    #[test]
    fn the_route_table_indexes_the_http_routes_in_order() {
        let settings: Vec<RouteSettings> = serde_json::from_value(serde_json::json!([
            { "event_types": ["A"], "handler": "http", "url": "http://a.example/x" },
            { "event_types": ["transaction.created"], "handler": "transactions" },
            { "event_types": ["B"], "handler": "http", "url": "http://b.example/y" },
            { "event_types": ["C"], "handler": "audit" },
        ]))
        .expect("route settings");
        let (routes, http) = (Routes::new(&settings), endpoints(&settings));
        for (event_type, label) in [("A", "http://a.example"), ("B", "http://b.example")] {
            let handler = routes.handler("t", event_type).expect("routed");
            let route = http.get(handler.route).expect("an http route");
            assert_eq!(route.label, label);
        }
    }
}
