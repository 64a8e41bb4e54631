//! The route table: which handler applies an event type, per topic. Built
//! once from `routes` in the configuration; the first matching entry wins.

use crate::config::RouteSettings;

/// What applies an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handler {
    /// Seed-003 transaction events → the `transactions` projection.
    Transactions,
    /// Seed-004 domain events → `users`, `orders`, `payments`, `inventory`.
    Domain,
}

impl Handler {
    pub fn parse(name: &str) -> Option<Handler> {
        match name {
            "transactions" => Some(Handler::Transactions),
            "domain" => Some(Handler::Domain),
            _ => None,
        }
    }

    /// The name written to the idempotency ledger.
    pub fn name(self) -> &'static str {
        match self {
            Handler::Transactions => "transactions",
            Handler::Domain => "domain",
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct Routes {
    entries: Vec<(Option<String>, String, Handler)>,
}

impl Routes {
    /// From validated settings (unknown handler names were refused at start).
    pub fn new(settings: &[RouteSettings]) -> Self {
        let entries = settings
            .iter()
            .filter_map(|r| Handler::parse(&r.handler).map(|h| (r, h)))
            .flat_map(|(r, h)| {
                r.event_types
                    .iter()
                    .map(move |t| (r.topic.clone(), t.clone(), h))
            })
            .collect();
        Routes { entries }
    }

    pub fn handler(&self, topic: &str, event_type: &str) -> Option<Handler> {
        self.entries
            .iter()
            .find(|(t, e, _)| e == event_type && t.as_deref().is_none_or(|t| t == topic))
            .map(|(_, _, h)| *h)
    }
}
