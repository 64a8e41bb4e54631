//! The processor's side of the schedule: which messages of a batch must wait
//! behind their key, which failures are deferred instead of retried in
//! place, and what parking them writes (a schedule row beside their audit
//! entries, in the outcome writer's transaction) before their offsets are
//! acknowledged.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use crate::config::{PostgresSettings, RetrySettings};
use crate::delivery::{Endpoint, Endpoints};
use crate::failure::AttemptFailure;
use crate::failure::Retry;
use crate::handlers::registry::HandlerKind;
use crate::handlers::registry::Task;
use crate::outcome::connection::Connection;
use crate::outcome::Pending;
use crate::pipeline::Item;
use crate::retry::deferred::store::{self, Entry, Insert};
use crate::retry::deferred::ScheduleError;
use crate::wait::backoff::Backoff;
use crate::wait::{until_back, DependencyWait, Down, Patience};

/// The processor's handle on the schedule (one connection per processor
/// for its reads, opened when a deferred route first needs it).
#[derive(Clone)]
pub struct Parking {
    conn: Arc<Mutex<Connection>>,
    group: String,
}

/// Why and how a message of a deferred route is parked.
#[derive(Debug, Clone)]
pub struct Ticket {
    pub route: usize,
    pub label: String,
    /// Attempts made (0: it waits behind its key, untried).
    pub attempts: u32,
    pub next_attempt_at: DateTime<Utc>,
}

impl Ticket {
    /// A ticket for http route `index` (`route`), after `attempts`, due
    /// `after` from now.
    fn new(index: usize, route: &Endpoint, attempts: u32, after: std::time::Duration) -> Ticket {
        Ticket {
            route: index,
            label: route.label.clone(),
            attempts,
            next_attempt_at: Utc::now()
                + chrono::Duration::from_std(after).unwrap_or(chrono::Duration::zero()),
        }
    }
}

/// One batch's decisions, by offset.
#[derive(Debug, Default)]
pub struct Deferrals {
    /// (route, key) pairs with open entries, including those this batch
    /// parks.
    waiting: HashSet<(String, Vec<u8>)>,
    pub tickets: HashMap<i64, Ticket>,
}

/// The messages of `items` on routes that park failures (deferred or
/// retry-topic routes), read from their own topic (a retry record's
/// position is its original's, where the parking was recorded): those a
/// redelivery may find parked already.
pub fn deferred_items<'i>(
    items: &[&'i Item],
    routes: &Endpoints,
) -> Vec<&'i crate::pipeline::Message> {
    items
        .iter()
        .filter(|item| item.retry.is_none())
        .filter(|item| match &item.work {
            Ok(Task::Pass { handler, .. }) if handler.kind == HandlerKind::Http => routes
                .get(handler.route)
                .is_some_and(|r| r.deferred || r.retry_topic),
            _ => false,
        })
        .map(|item| &item.message)
        .collect()
}

/// The (route, key) pairs of `items` on deferred http routes: what the
/// batch asks the schedule about, in one query.
pub fn deferred_keys(items: &[&Item], routes: &Endpoints) -> Vec<(String, Vec<u8>)> {
    let mut keys: Vec<(String, Vec<u8>)> = items
        .iter()
        .filter_map(|item| match (&item.work, &item.envelope.key) {
            (Ok(Task::Pass { handler, .. }), Some(key)) if handler.kind == HandlerKind::Http => {
                let route = routes.get(handler.route).filter(|r| r.deferred)?;
                Some((route.label.clone(), key.clone()))
            }
            _ => None,
        })
        .collect();
    keys.sort();
    keys.dedup();
    keys
}

impl Deferrals {
    /// Adds keys found waiting in the schedule.
    pub fn add_waiting(&mut self, waiting: HashSet<(String, Vec<u8>)>) {
        self.waiting.extend(waiting);
    }

    /// True (and a ticket) when `envelope`'s key already waits on `route`.
    pub fn waits(
        &mut self,
        index: usize,
        route: &Endpoint,
        envelope: &crate::kafka::envelope::Envelope,
    ) -> bool {
        let Some(key) = envelope.key.clone().filter(|_| route.deferred) else {
            return false;
        };
        if !self.waiting.contains(&(route.label.clone(), key)) {
            return false;
        }
        self.tickets.insert(
            envelope.offset,
            Ticket::new(index, route, 0, std::time::Duration::ZERO),
        );
        true
    }

    /// A message of a deferred `route` whose gate is shut (paused, or its
    /// breaker open): not attempted, but scheduled for `wait` from now, its
    /// key's later messages behind it, so only its key waits, not the
    /// partition. False (it waits in place) on other routes.
    pub fn hold(
        &mut self,
        index: usize,
        route: &Endpoint,
        envelope: &crate::kafka::envelope::Envelope,
        wait: std::time::Duration,
    ) -> bool {
        if !route.deferred {
            return false;
        }
        if let Some(key) = envelope.key.clone() {
            self.waiting.insert((route.label.clone(), key));
        }
        self.tickets
            .insert(envelope.offset, Ticket::new(index, route, 0, wait));
        true
    }

    /// After a failed delivery on `route`: true (and a ticket) when the
    /// route defers and the last failure is transient. The key's later
    /// messages then wait behind it.
    pub fn defer(
        &mut self,
        index: usize,
        route: &Endpoint,
        envelope: &crate::kafka::envelope::Envelope,
        failures: &[AttemptFailure],
        policy: &RetrySettings,
    ) -> bool {
        let Some(last) = failures.last() else {
            return false;
        };
        if !(route.deferred || route.retry_topic) || last.failure.retry != Retry::Transient {
            return false;
        }
        if last.attempt >= policy.max_attempts {
            return false;
        }
        // Only the schedule holds a key's later messages behind it.
        if let Some(key) = envelope.key.as_ref().filter(|_| route.deferred) {
            self.waiting.insert((route.label.clone(), key.clone()));
        }
        let delay = Backoff::new(policy.backoff_min, policy.backoff_max)
            .after(last.attempt.saturating_sub(1))
            .next_delay();
        self.tickets.insert(
            envelope.offset,
            Ticket::new(index, route, last.attempt, delay),
        );
        true
    }
}

/// The policy a deferred route's delivery uses: one attempt, then the
/// schedule (or the retry topic) takes over.
pub fn first_attempt(route: &Endpoint, policy: &RetrySettings) -> RetrySettings {
    if route.deferred || route.retry_topic {
        RetrySettings {
            max_attempts: 1,
            ..policy.clone()
        }
    } else {
        policy.clone()
    }
}

impl Parking {
    pub fn new(postgres: &PostgresSettings, group: String) -> Self {
        Parking {
            conn: Arc::new(Mutex::new(Connection::new(postgres))),
            group,
        }
    }

    /// Of `keys` (route, key of deferred routes), those with open entries.
    /// Waits out PostgreSQL outages; `None` when `revoked` ended the wait.
    pub async fn waiting(
        &self,
        keys: Vec<(String, Vec<u8>)>,
        wait: DependencyWait,
        revoked: &CancellationToken,
    ) -> Option<HashSet<(String, Vec<u8>)>> {
        if keys.is_empty() {
            return Some(HashSet::new());
        }
        let found = until_back(wait, Patience::UntilRevoked(revoked), async || {
            let mut conn = self.conn.lock().await;
            let found = async {
                let client = conn.client().await?;
                Ok::<_, ScheduleError>(store::waiting_keys(client, &keys).await?)
            };
            let found = found.await;
            if found.is_err() {
                conn.forget();
            }
            found.map_err(|e| Down::new("postgres", e))
        })
        .await;
        found.ok()
    }

    /// What parking `pending` with its ticket writes: its schedule row,
    /// and its MESSAGE_RETRY_SCHEDULED entry's detail.
    pub fn park(&self, mut pending: Pending, t: &Ticket) -> Pending {
        let s = &pending.settled;
        let entry = Entry {
            message_id: s.message_id,
            route: t.route as i32,
            route_label: t.label.clone(),
            key: s.envelope.key.clone(),
            topic: s.envelope.topic.to_string(),
            partition: s.envelope.partition,
            offset: s.envelope.offset,
            event_type: s.event_type.clone(),
            group: self.group.clone(),
            attempts: t.attempts as i32,
            next_attempt_at: t.next_attempt_at,
            last_error: s.last_failure().map(|f| f.failure.to_string()),
        };
        pending.effects.schedule = Some(Box::new(Insert(entry)));
        pending.effects.detail = Some(serde_json::json!({
            "route": t.label,
            "next_attempt_at": t.next_attempt_at,
            "waiting_behind_key": t.attempts == 0,
        }));
        pending
    }
}
