//! The `http` handler kind: each record forwarded, byte for byte, to a
//! downstream URL ([`crate::delivery`] makes the request and reads the
//! answer; the route's endpoint holds its policy).
//!
//! Event types: any. Payload: taken as it is. Path: forwarded, one message
//! at a time in offset order; ids the ledger already has are not sent
//! again, and each delivery's ledger row (name `http`) and record are
//! written by the outcome writer with its audit entries, before its offset
//! moves, so a new owner of the partition does not send it again.
//! Deferred routes park a failed delivery in the retry schedule
//! ([`crate::retry::deferred`]), whose worker attempts it again later.

use chrono::Utc;
use tracing::Instrument;

use super::{abandoned, message_span, Attempted, Context};
use crate::delivery::record::{self, Finish};
use crate::delivery::{send, Endpoint};
use crate::failure::{AttemptFailure, Failure, Stage};
use crate::handlers::registry::Task;
use crate::keyed;
use crate::outcome::effects::DeliveryRecord;
use crate::outcome::Effects;
use crate::pipeline::Item;
use crate::retry::deferred::gate;
use crate::retry::in_place;
use crate::store::audit::{DLQ, RETRY_SCHEDULED};
use crate::store::projection::{self, Applied};
use crate::store::redelivery;
use crate::wait::{until_back, Down, Patience};

/// Delivers a run of http tasks in offset order per key (several keys at
/// once when the route sets `concurrency`, see [`crate::keyed`]), one
/// result each. On a deferred route (`retry = "deferred"`) a transient
/// failure, and every later message of its key, goes to the retry schedule
/// ([`crate::retry::deferred`]) instead of holding the partition.
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
    let deferred = gate::deferred_items(items, &cx.http);
    let parked = until_back(cx.wait, Patience::UntilRevoked(&cx.revoked), async || {
        let parked =
            redelivery::recorded(&cx.pool, deferred.iter().copied(), &[RETRY_SCHEDULED, DLQ]).await;
        parked.map_err(|e| Down::new("postgres", e))
    })
    .await;
    let Ok(parked) = parked else {
        return abandoned(items.len());
    };
    let keys = gate::deferred_keys(items, &cx.http);
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
    if let Some(wait) = route.gate.shut_for() {
        // A deferred route paused or open: scheduled untried, only its key
        // waits (an in-place route waits in the attempt below).
        if cx
            .deferrals
            .borrow_mut()
            .hold(index, route, &item.envelope, wait)
        {
            return (Err(()), Vec::new());
        }
    }
    done.borrow_mut()
        .insert(item.message_id, Some(item.payload_sha256));
    let topic = &*item.envelope.topic;
    let policy = gate::first_attempt(route, &cx.retry);
    let (result, mut failures) = in_place::run(&policy, cx.wait, topic, &cx.revoked, || {
        send::forward(
            &cx.client,
            route,
            (&cx.formats, item.position().0),
            (&item.envelope, &item.trace),
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
                send::keep_answer(&cx.redis, &cx.keys, item.message_id, answer, ttl).await;
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
    route: &Endpoint,
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
