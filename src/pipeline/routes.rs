//! The route table: which handler applies an event type, per topic. Built
//! once from `routes` in the configuration; the first matching entry wins.

use std::sync::Arc;

use crate::config::RouteSettings;
use crate::handlers::http::HttpRoute;
use crate::handlers::HandlerKind;

/// Where a route sends an event: the handler kind, and for kinds whose
/// routes carry state of their own (an http route's URL and rate limit),
/// which one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Handler {
    pub kind: HandlerKind,
    /// The index of the route in [`Routes::http`] (0 for other kinds).
    pub route: usize,
}

#[derive(Debug, Default)]
pub struct Routes {
    entries: Vec<(Option<String>, String, Handler)>,
    http: Vec<Arc<HttpRoute>>,
}

impl Routes {
    /// From validated settings (what a handler cannot take was refused at
    /// start).
    pub fn new(settings: &[RouteSettings]) -> Self {
        let mut routes = Routes::default();
        for r in settings {
            let route = match r.handler {
                HandlerKind::Http => {
                    routes.http.push(Arc::new(HttpRoute::new(r)));
                    routes.http.len() - 1
                }
                HandlerKind::Transactions | HandlerKind::Domain | HandlerKind::Audit => 0,
            };
            let handler = Handler {
                kind: r.handler,
                route,
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
