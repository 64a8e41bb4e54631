//! The route table: which handler applies an event type, per topic. Built
//! once from `routes` in the configuration; the first matching entry wins.

use crate::config::RouteSettings;
use crate::handlers::registry::{Handler, HandlerKind};

#[derive(Debug, Default)]
pub struct Routes {
    entries: Vec<(Option<String>, String, Handler)>,
}

impl Routes {
    /// From validated settings (what a handler cannot take was refused at
    /// start).
    pub fn new(settings: &[RouteSettings]) -> Self {
        let mut routes = Routes::default();
        let mut http = 0..;
        for r in settings {
            // Only http routes carry state of their own (`Endpoints`).
            let route = if r.handler == HandlerKind::Http {
                http.next().unwrap_or_default()
            } else {
                0
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
}
