//! The route table: which handler applies an event type, per topic. Built
//! once from `routes` in the configuration; the first matching entry wins.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

use crate::config::RouteSettings;

/// What applies an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handler {
    /// Seed-003 transaction events → the `transactions` projection.
    Transactions,
    /// Seed-004 domain events → `users`, `orders`, `payments`, `inventory`.
    Domain,
    /// Forwarded over HTTP: the index of the route in [`Routes::http`].
    Http(usize),
    /// Nothing to apply: the audit trail is the whole record (seed 000's
    /// free-text messages).
    Audit,
}

impl Handler {
    /// The name written to the idempotency ledger.
    pub fn name(self) -> &'static str {
        match self {
            Handler::Transactions => "transactions",
            Handler::Domain => "domain",
            Handler::Http(_) => "http",
            Handler::Audit => "audit",
        }
    }
}

/// A downstream URL, with its timeout and rate limit (shared by every
/// processor, so the limit holds for the whole instance).
pub struct HttpRoute {
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
    /// Messages of one partition with different keys delivered at once
    /// (`concurrency`, default 1); one key's stay in order.
    pub concurrency: usize,
}

impl std::fmt::Debug for HttpRoute {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpRoute")
            .field("url", &self.label)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Default)]
pub struct Routes {
    entries: Vec<(Option<String>, String, Handler)>,
    http: Vec<Arc<HttpRoute>>,
}

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
const DEFAULT_RATE: u32 = 100;
const DEFAULT_BURST: u32 = 10;

/// `scheme://host[:port]` of `url`: what logs, errors and metric labels
/// show. The path, query and user info may all hold a secret (webhook
/// tokens often live in the path), so none of them is shown.
pub fn label(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(u) => match (u.host_str(), u.port()) {
            (Some(host), Some(port)) => format!("{}://{host}:{port}", u.scheme()),
            (Some(host), None) => format!("{}://{host}", u.scheme()),
            (None, _) => u.scheme().to_owned(),
        },
        Err(_) => "invalid-url".to_owned(),
    }
}

impl Routes {
    /// From validated settings (unknown handler names were refused at start).
    pub fn new(settings: &[RouteSettings]) -> Self {
        let mut routes = Routes::default();
        for r in settings {
            let handler = match (r.handler.as_str(), &r.url) {
                ("transactions", _) => Handler::Transactions,
                ("domain", _) => Handler::Domain,
                ("audit", _) => Handler::Audit,
                ("http", Some(url)) => {
                    let rate = NonZeroU32::new(r.rate_per_second.unwrap_or(DEFAULT_RATE))
                        .unwrap_or(NonZeroU32::MIN);
                    let burst = NonZeroU32::new(r.burst.unwrap_or(DEFAULT_BURST))
                        .unwrap_or(NonZeroU32::MIN);
                    routes.http.push(Arc::new(HttpRoute {
                        url: url.clone(),
                        label: label(url),
                        timeout: r.timeout.unwrap_or(DEFAULT_TIMEOUT),
                        limiter: RateLimiter::direct(Quota::per_second(rate).allow_burst(burst)),
                        cache_ttl: r.cache_ttl,
                        deferred: r.deferred(),
                        concurrency: r.concurrency.unwrap_or(1),
                    }));
                    Handler::Http(routes.http.len() - 1)
                }
                _ => continue,
            };
            for event_type in &r.event_types {
                routes
                    .entries
                    .push((r.topic.clone(), event_type.clone(), handler));
            }
        }
        routes
    }

    pub fn handler(&self, topic: &str, event_type: &str) -> Option<Handler> {
        self.entries
            .iter()
            .find(|(t, e, _)| e == event_type && t.as_deref().is_none_or(|t| t == topic))
            .map(|(_, _, h)| *h)
    }

    pub fn http(&self, index: usize) -> Option<&Arc<HttpRoute>> {
        self.http.get(index)
    }

    /// Every http route, by index.
    pub fn http_routes(&self) -> &[Arc<HttpRoute>] {
        &self.http
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn labels_drop_credentials_and_queries() {
        assert_eq!(
            super::label("https://user:pw@hooks.example.com/services/T/s3cret?token=s3cret"),
            "https://hooks.example.com"
        );
        assert_eq!(
            super::label("http://127.0.0.1:9000/x"),
            "http://127.0.0.1:9000"
        );
        assert_eq!(super::label("https://user:p?w@host/x"), "invalid-url");
    }
}
