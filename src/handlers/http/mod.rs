//! The `http` handler: each record forwarded, byte for byte, to a
//! downstream URL ([`delivery`] makes the request and reads the answer).
//!
//! Event types: any. Payload: taken as it is. Path: forwarded, one message
//! at a time in offset order; ids the ledger already has are not sent
//! again, and each delivery's ledger row (name `http`) and record are
//! written by the outcome writer with its audit entries, before its offset
//! moves, so a new owner of the partition does not send it again.
//! An http route has its own state: URL, timeout, rate limit, answer cache
//! ([`HttpRoute`]); this is where per-route delivery policy belongs.
//! Deferred routes park a failed delivery in the retry schedule
//! ([`deferral`]) and [`retry_worker`] attempts it again later.

pub mod deferral;
pub mod delivery;
pub mod record;
pub mod retention;
pub mod retry_worker;

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tracing::Instrument;

use super::{abandoned, message_span, Attempted, Context};
use crate::config::urls::label;
use crate::config::RouteSettings;
use crate::handler_kind::HandlerKind;
use crate::keyed;
use crate::outcome::effects::DeliveryRecord;
use crate::outcome::Effects;
use crate::pipeline::failure::{AttemptFailure, Failure, Stage};
use crate::pipeline::{Item, Task};
use crate::retry;
use crate::store::audit::{DLQ, RETRY_SCHEDULED};
use crate::store::projection::{self, Applied};
use crate::store::redelivery;
use crate::wait::{until_back, Down, Patience};
use record::Finish;

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
    /// Transient failures go to `<topic>.retry` (`retry_backend = "kafka"`,
    /// see [`crate::retry_topic`]).
    pub retry_topic: bool,
    /// Messages of one partition with different keys delivered at once
    /// (`concurrency`, default 1); one key's stay in order.
    pub concurrency: usize,
}

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
const DEFAULT_RATE: u32 = 100;
const DEFAULT_BURST: u32 = 10;

impl HttpRoute {
    /// From a validated http route (it has a URL: checked at start).
    pub fn new(r: &RouteSettings) -> Self {
        let url = r.url.clone().unwrap_or_default();
        let rate =
            NonZeroU32::new(r.rate_per_second.unwrap_or(DEFAULT_RATE)).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(r.burst.unwrap_or(DEFAULT_BURST)).unwrap_or(NonZeroU32::MIN);
        HttpRoute {
            label: label(&url),
            url,
            timeout: r.timeout.unwrap_or(DEFAULT_TIMEOUT),
            limiter: RateLimiter::direct(Quota::per_second(rate).allow_burst(burst)),
            cache_ttl: r.cache_ttl,
            deferred: r.deferred(),
            retry_topic: r.retry_topic(),
            concurrency: r.concurrency.unwrap_or(1),
        }
    }
}

/// Every http route, in `routes` order (the order `Handler::route`
/// indexes), shared by every processor.
#[derive(Debug, Default)]
pub struct HttpRoutes(Vec<Arc<HttpRoute>>);

impl HttpRoutes {
    pub fn new(settings: &[RouteSettings]) -> Self {
        HttpRoutes(
            settings
                .iter()
                .filter(|r| r.handler == HandlerKind::Http)
                .map(|r| Arc::new(HttpRoute::new(r)))
                .collect(),
        )
    }

    pub fn get(&self, index: usize) -> Option<&Arc<HttpRoute>> {
        self.0.get(index)
    }

    /// The route a stored reference names: `index` (its position among the
    /// http routes when it was stored) if that route still has `label`,
    /// else the one route that has `label` now (the routes were reordered
    /// since), else none: a message is never sent to another downstream
    /// than the one it was scheduled for.
    pub fn resolve(&self, index: usize, label: &str) -> Option<&Arc<HttpRoute>> {
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
    pub fn all(&self) -> &[Arc<HttpRoute>] {
        &self.0
    }
}

impl std::fmt::Debug for HttpRoute {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpRoute")
            .field("url", &self.label)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// Delivers a run of http tasks in offset order per key (several keys at
/// once when the route sets `concurrency`, see [`crate::keyed`]), one
/// result each. On a deferred route (`retry = "deferred"`) a transient
/// failure, and every later message of its key, goes to the retry schedule
/// ([`crate::schedule`]) instead of holding the partition.
pub(super) async fn forward(cx: &Context, items: &[&Item]) -> Vec<Attempted> {
    if items.is_empty() {
        return Vec::new();
    }
    let ids: Vec<uuid::Uuid> = items.iter().map(|i| i.message_id).collect();
    let applied = until_back(cx.wait, Patience::UntilRevoked(&cx.revoked), async || {
        let applied = projection::already_applied(&cx.pool, &ids).await;
        applied.map_err(|e| Down::new("postgres", e))
    })
    .await;
    let Ok(done) = applied else {
        return abandoned(items.len());
    };
    // Deferred routes: a record read again after its first delivery
    // parked it is not attempted again (see `store::redelivery`).
    let deferred = deferral::deferred_items(items, &cx.http);
    let parked = until_back(cx.wait, Patience::UntilRevoked(&cx.revoked), async || {
        let parked =
            redelivery::recorded(&cx.pool, deferred.iter().copied(), &[RETRY_SCHEDULED, DLQ]).await;
        parked.map_err(|e| Down::new("postgres", e))
    })
    .await;
    let Ok(parked) = parked else {
        return abandoned(items.len());
    };
    let keys = deferral::deferred_keys(items, &cx.http);
    let Some(waiting) = cx.parking.waiting(keys, cx.wait, &cx.revoked).await else {
        return abandoned(items.len());
    };
    cx.deferrals.borrow_mut().add_waiting(waiting);
    let done = &std::cell::RefCell::new(done);
    let limit = items
        .iter()
        .filter_map(|item| match &item.work {
            Ok(Task::Pass { handler, .. }) => cx.http.get(handler.route).map(|r| r.concurrency),
            _ => None,
        })
        .max()
        .unwrap_or(1);
    let lanes = keyed::lanes(items.iter().map(|item| item.envelope.key.as_deref()));
    let parked = &parked;
    keyed::run(lanes, limit, |i| forward_one(cx, items[i], done, parked)).await
}

/// One message of [`forward`]: `done` holds the ids the ledger has,
/// `parked` the positions an earlier delivery parked.
async fn forward_one(
    cx: &Context,
    item: &Item,
    done: &std::cell::RefCell<std::collections::HashMap<uuid::Uuid, Option<[u8; 32]>>>,
    parked: &std::collections::HashSet<redelivery::Position>,
) -> Attempted {
    let (handler, index, route) = match &item.work {
        Ok(Task::Pass { handler, .. }) => {
            (Some(*handler), handler.route, cx.http.get(handler.route))
        }
        _ => (None, 0, None),
    };
    let (Some(handler), Some(route)) = (handler, route) else {
        let failure = Failure::permanent(Stage::Process, "no_route", "the HTTP route is gone");
        let attempt = AttemptFailure {
            attempt: 1,
            at: Utc::now(),
            failure,
        };
        return (Err(()), vec![attempt]);
    };
    if parked.contains(&redelivery::position(item)) {
        return (Ok(Applied::Redelivered), Vec::new());
    }
    let applied = done.borrow().get(&item.message_id).copied();
    if let Some(applied) = applied {
        let repeat = projection::repeat(applied.as_ref(), &item.payload_sha256);
        return (Ok(repeat), Vec::new());
    }
    if cx
        .deferrals
        .borrow_mut()
        .waits(index, route, &item.envelope)
    {
        // Behind an earlier message of its key: parked untried.
        return (Err(()), Vec::new());
    }
    done.borrow_mut()
        .insert(item.message_id, Some(item.payload_sha256));
    let topic = &*item.envelope.topic;
    let policy = deferral::first_attempt(route, &cx.retry);
    let (result, mut failures) = retry::run(&policy, cx.wait, topic, &cx.revoked, || {
        delivery::forward(
            &cx.client,
            route,
            &item.envelope,
            item.message_id,
            item.event_type.as_deref(),
        )
    })
    .instrument(message_span(item))
    .await;
    if let Some(origin) = &item.retry {
        // A retry record's attempts continue its earlier ones.
        for failure in &mut failures {
            failure.attempt += origin.attempt;
        }
    }
    let tried = failures
        .last()
        .map_or(item.retry.as_ref().map_or(0, |o| o.attempt), |f| f.attempt);
    match &result {
        Ok(answer) => {
            // The ledger row and the record go to the outcome writer with
            // the message: a crash before they commit means the delivery
            // is made again, at least once.
            let delivered = Finish::Delivered(answer.status);
            let delivery = finished(item, route, (tried + 1, delivered));
            let ledger = Task::Pass {
                message_id: item.message_id,
                handler,
            };
            cx.effects.borrow_mut().insert(
                item.envelope.offset,
                Effects {
                    apply: Some(ledger),
                    delivery: Some(delivery),
                    ..Effects::default()
                },
            );
            if let Some(ttl) = route.cache_ttl {
                delivery::keep_answer(&cx.redis, &cx.keys, item.message_id, answer, ttl).await;
            }
        }
        // Not delivered: a later copy may try again (or the schedule will).
        Err(()) => {
            done.borrow_mut().remove(&item.message_id);
            let deferred =
                cx.deferrals
                    .borrow_mut()
                    .defer(index, route, &item.envelope, &failures, &cx.retry);
            // Given up (dead-lettered next), unless the partition moved on
            // meanwhile: then its next owner delivers it.
            if let Some(last) = failures.last().filter(|_| !deferred) {
                let failed = (last.attempt, Finish::Failed(&last.failure));
                let delivery = finished(item, route, failed);
                cx.effects.borrow_mut().insert(
                    item.envelope.offset,
                    Effects {
                        delivery: Some(delivery),
                        ..Effects::default()
                    },
                );
            }
        }
    }
    (result.map(|_| Applied::New), failures)
}

/// How `item`'s delivery over `route` finished (attempts made, and how).
fn finished(
    item: &Item,
    route: &HttpRoute,
    (attempts, finish): (u32, Finish<'_>),
) -> DeliveryRecord {
    let place = match &item.retry {
        Some(origin) => (origin.topic.clone(), origin.partition, origin.offset),
        None => (
            item.envelope.topic.to_string(),
            item.envelope.partition,
            item.envelope.offset,
        ),
    };
    record::Finished {
        message_id: item.message_id,
        route: &route.label,
        key: item.envelope.key.as_deref(),
        place: (&place.0, place.1, place.2),
        event_type: item.event_type.as_deref(),
        attempts,
        finish,
    }
    .owned()
}

#[cfg(test)]
mod tests {
    use super::HttpRoutes;
    use crate::config::RouteSettings;
    use crate::pipeline::route_table::Routes;

    #[test]
    fn a_stored_route_reference_never_resolves_to_another_downstream() {
        let settings: Vec<RouteSettings> = serde_json::from_value(serde_json::json!([
            { "event_types": ["X"], "handler": "http", "url": "http://x.example/hook" },
            { "event_types": ["A"], "handler": "http", "url": "http://a.example/one" },
            { "event_types": ["B"], "handler": "http", "url": "http://b.example/x" },
            { "event_types": ["C"], "handler": "http", "url": "http://b.example/y" },
        ]))
        .expect("route settings");
        let http = HttpRoutes::new(&settings);
        let label = |r: Option<&std::sync::Arc<super::HttpRoute>>| r.map(|r| r.label.clone());
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
        let (routes, http) = (Routes::new(&settings), HttpRoutes::new(&settings));
        for (event_type, label) in [("A", "http://a.example"), ("B", "http://b.example")] {
            let handler = routes.handler("t", event_type).expect("routed");
            let route = http.get(handler.route).expect("an http route");
            assert_eq!(route.label, label);
        }
    }
}
