//! The retry worker of deferred http routes, which every instance runs
//! over the retry schedule (`crate::retry::deferred`): claims due entries that
//! head their key (`store::claim`), attempts them concurrently (different
//! keys), and records each attempt:
//! - 2xx: the ledger row, the delivery record, MESSAGE_PROCESSED and the
//!   entry's removal in one transaction, which makes the key's next waiter
//!   the head;
//! - a transient failure with attempts left: MESSAGE_FAILED and the next
//!   due time (the retry backoff) in one transaction;
//! - a permanent failure or the last attempt: the DLQ push first (the
//!   schedule row is the message's only other copy), then the delivery
//!   record, MESSAGE_FAILED, MESSAGE_DLQ and the removal in one transaction;
//! - the downstream unreachable: not an attempt; given back for later.
//!
//! Each transaction is the outcome writer's (`crate::outcome`): the worker
//! hands its outcome to the auditor of the message's partition and waits
//! for the verdict, so each partition's chain has one writer in a process.
//! A crash between a 2xx and its commit leaves the entry leased; when the
//! lease expires it is attempted again (at least once).

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use futures::stream::{FuturesUnordered, StreamExt};
use tokio_util::sync::CancellationToken;

use crate::config::RetrySettings;
use crate::delivery::record::{self, Finish};
use crate::delivery::send::{self, Answer};
use crate::delivery::Endpoint;
use crate::delivery::Endpoints;
use crate::dlq::park::Parker;
use crate::dlq::Keys;
use crate::failure::{AttemptFailure, TryError};
use crate::failure::{Failure, Stage};
use crate::handlers::registry::Handler;
use crate::handlers::registry::HandlerKind;
use crate::handlers::registry::Task;
use crate::kafka::envelope::Envelope;
use crate::outcome::connection::Connection;
use crate::outcome::{Alongside, Effects, Pending};
use crate::pipeline::steering::{payload_digest, HeaderKey};
use crate::pipeline::{Message, Outcome, Settled};
use crate::retry::deferred::store::{self, Claimed, Complete, Receipt, Reschedule};
use crate::retry::deferred::ScheduleError;
use crate::stages::Record;
use crate::store::pool::RedisPool;
use crate::store::projection;
use crate::store::PgPool;
use crate::telemetry::retry::RetryScheduleRead;
use crate::telemetry::Emit;
use crate::wait::backoff::Backoff;

/// Entries claimed per round (each a different key, attempted at once).
const BATCH: i64 = 32;
/// How long an unreachable downstream's entry waits before the next try.
const UNREACHABLE_DELAY: Duration = Duration::from_secs(1);
/// How often the schedule's gauges are refreshed.
const GAUGE_INTERVAL: Duration = Duration::from_secs(2);
/// How long a stopping worker tries to give back its leases (inside the
/// shutdown's `HTTP_BOUND`, which it runs beside).
const GIVE_BACK_BOUND: Duration = Duration::from_secs(1);

/// What the worker needs besides its audit connection.
pub struct Deps {
    pub pool: PgPool,
    pub routes: Arc<Endpoints>,
    pub client: reqwest::Client,
    pub redis: RedisPool,
    pub keys: Keys,
    pub retry: RetrySettings,
    pub header_key: HeaderKey,
    /// How often to look for due entries when the last round found none.
    pub poll: Duration,
    pub dependency_backoff: (Duration, Duration),
    /// Payload formats: what a schema topic's record is sent as.
    pub formats: Arc<crate::formats::Formats>,
}

pub struct Worker {
    deps: Deps,
    /// Its connection for the schedule's own statements (claims, leases).
    writer: Connection,
    /// The auditors, indexed as the Supervisor picks them (by partition).
    auditors: Vec<actix::Recipient<Record>>,
    /// How long a claim holds an entry: twice the longest route timeout and
    /// some, so a live attempt never loses its entry.
    lease: Duration,
    /// The current round's claims (id, lease), given back if it is cut off.
    held: Vec<(i64, chrono::DateTime<Utc>)>,
}

/// How one attempt went.
enum Verdict {
    Delivered(Answer),
    /// The ledger has it: an earlier attempt got a 2xx and crashed before
    /// its audit entry.
    AlreadyDelivered,
    Unreachable,
    Failed(Failure),
}

impl Worker {
    pub fn new(deps: Deps, writer: Connection, auditors: Vec<actix::Recipient<Record>>) -> Self {
        let longest = deps
            .routes
            .all()
            .iter()
            .map(|r| r.timeout)
            .max()
            .unwrap_or(Duration::from_secs(5));
        Worker {
            deps,
            writer,
            auditors,
            lease: longest * 2 + Duration::from_secs(5),
            held: Vec::new(),
        }
    }

    /// Runs until `stop`. Nothing is lost when it stops mid-round: the
    /// attempts that already have an answer are recorded, the ones still in
    /// flight are dropped (as a crash would drop them) and their leases
    /// given back, so those entries are due at once for the next worker; if
    /// that fails, they are claimed again once the leases expire.
    pub async fn run(mut self, stop: CancellationToken) {
        self.work(&stop).await;
        self.give_back().await;
    }

    async fn work(&mut self, stop: &CancellationToken) {
        let (min, max) = self.deps.dependency_backoff;
        let mut down = Backoff::new(min, max);
        let mut gauges_at = std::time::Instant::now() - GAUGE_INTERVAL;
        while !stop.is_cancelled() {
            // Not cut off mid-statement: a claim the database committed is
            // always known (and handed back), and answers in hand are
            // recorded; only the attempts in flight stop at `stop`.
            let round = self.round(stop).await;
            let pause = match round {
                Ok(n) => {
                    down = Backoff::new(min, max);
                    if n > 0 {
                        Duration::ZERO
                    } else {
                        self.deps.poll
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "retry schedule round failed: waiting");
                    down.next_delay()
                }
            };
            if gauges_at.elapsed() >= GAUGE_INTERVAL {
                gauges_at = std::time::Instant::now();
                self.refresh_gauges().await;
            }
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(pause) => {}
            }
        }
    }

    async fn refresh_gauges(&mut self) {
        let Ok(client) = self.writer.client().await else {
            return;
        };
        if let Ok(depths) = store::depths(client).await {
            RetryScheduleRead { depths: &depths }.emit();
        }
    }

    /// Gives back the leases of a round that was cut off, within
    /// [`GIVE_BACK_BOUND`].
    async fn give_back(&mut self) {
        if self.held.is_empty() {
            return;
        }
        let held = std::mem::take(&mut self.held);
        let given = tokio::time::timeout(GIVE_BACK_BOUND, async {
            let client = self.writer.client().await.ok()?;
            store::give_back(client, &held).await.ok()
        })
        .await;
        match given {
            Ok(Some(n)) => tracing::info!(
                entries = n,
                "retry worker stopping: scheduled entries handed back"
            ),
            _ => tracing::warn!(
                entries = held.len(),
                "retry worker stopping: leases not handed back; they expire on their own"
            ),
        }
    }

    /// One round: claim, attempt, record. Answers how many were claimed.
    /// At `stop`, the attempts still in flight are dropped; the others are
    /// recorded.
    async fn round(&mut self, stop: &CancellationToken) -> Result<usize, ScheduleError> {
        self.held.clear();
        let client = self.writer.client().await?;
        let claimed = store::claim(client, BATCH, self.lease).await?;
        if claimed.is_empty() {
            return Ok(0);
        }
        self.held = claimed.iter().map(|c| (c.id, c.leased_until)).collect();
        let receipts = store::receipts(client, &claimed).await?;
        let ids: Vec<uuid::Uuid> = claimed.iter().map(|c| c.message_id).collect();
        let delivered = projection::already_applied(&self.deps.pool, &ids)
            .await
            .map_err(|e| ScheduleError::Ledger(e.to_string()))?;
        let deps = &self.deps;
        let attempts = claimed.iter().map(|c| {
            let receipt = receipts.get(&c.id);
            let done = delivered.contains_key(&c.message_id);
            async move {
                let envelope = receipt.map(|r| envelope(c, r));
                let verdict = match (
                    &envelope,
                    deps.routes.resolve(c.route as usize, &c.route_label),
                ) {
                    _ if done => Verdict::AlreadyDelivered,
                    (None, _) => Verdict::Failed(Failure::permanent(
                        Stage::Process,
                        "receipt_missing",
                        "the scheduled message's audit receipt was not found",
                    )),
                    (_, None) => Verdict::Failed(Failure::permanent(
                        Stage::Process,
                        "no_route",
                        "the HTTP route is gone (no route to its downstream now, or several)",
                    )),
                    (Some(envelope), Some(route)) => attempt(deps, route, c, envelope).await,
                };
                (c, receipt, envelope, verdict)
            }
        });
        let mut in_flight: FuturesUnordered<_> = attempts.collect();
        let mut results = Vec::with_capacity(claimed.len());
        loop {
            tokio::select! {
                next = in_flight.next() => match next {
                    Some(result) => results.push(result),
                    None => break,
                },
                () = stop.cancelled() => break,
            }
        }
        drop(in_flight);
        let count = results.len();
        for (claimed, receipt, envelope, verdict) in results {
            self.record(claimed, receipt, envelope, verdict).await?;
        }
        // What is left is what was cut off: `give_back` returns it. (A
        // recorded entry's lease is no longer the claimed one.)
        if !stop.is_cancelled() {
            self.held.clear();
        }
        Ok(count)
    }

    /// Records one attempt's outcome (see the module comment).
    async fn record(
        &mut self,
        c: &Claimed,
        receipt: Option<&Receipt>,
        envelope: Option<Envelope>,
        verdict: Verdict,
    ) -> Result<(), ScheduleError> {
        let attempt = c.attempts as u32 + 1;
        let now = Utc::now();
        let envelope = envelope.unwrap_or_else(|| bare_envelope(c));
        let sha = receipt
            .and_then(|r| r.payload_sha256.as_deref())
            .and_then(|d| <[u8; 32]>::try_from(d).ok())
            .unwrap_or_else(|| payload_digest(envelope.payload.as_deref()));
        let steering = self.deps.header_key.read(&envelope, &sha);
        let mut settled = Settled {
            message: Message {
                envelope,
                message_id: c.message_id,
                event_type: c.event_type.clone(),
                payload_sha256: sha,
                steering,
                retry: None,
                trace: Default::default(),
            },
            outcome: Outcome::Processed,
            at: now,
            failures: Vec::new(),
        };
        let mut effects = Effects {
            continues: Some(attempt as i32),
            ..Effects::default()
        };
        let schedule: Box<dyn Alongside> = match verdict {
            Verdict::Unreachable => {
                let next = now + chrono::Duration::from_std(UNREACHABLE_DELAY).unwrap_or_default();
                store::release(self.writer.client().await?, c.id, next).await?;
                return Ok(());
            }
            Verdict::Delivered(answer) => {
                let delivered = Finish::Delivered(answer.status);
                effects.delivery = Some(finished(c, attempt, delivered));
                effects.apply = Some(Task::Pass {
                    message_id: c.message_id,
                    handler: Handler {
                        kind: HandlerKind::Http,
                        route: c.route as usize,
                    },
                });
                self.keep_answer(c, &answer).await;
                Box::new(Complete(c.id))
            }
            Verdict::AlreadyDelivered => Box::new(Complete(c.id)),
            Verdict::Failed(failure) => {
                let give_up = failure.is_permanent() || attempt >= self.deps.retry.max_attempts;
                let error = failure.to_string();
                settled.failures.push(AttemptFailure {
                    attempt,
                    at: now,
                    failure,
                });
                if give_up {
                    if let Some(last) = settled.last_failure() {
                        effects.delivery =
                            Some(finished(c, attempt, Finish::Failed(&last.failure)));
                    }
                    settled.outcome = Outcome::DeadLettered;
                    self.dead_letter(&mut settled, &c.group).await?;
                    effects.pushed = true;
                    Box::new(Complete(c.id))
                } else {
                    settled.outcome = Outcome::RetryScheduled;
                    let retry = &self.deps.retry;
                    let delay = Backoff::new(retry.backoff_min, retry.backoff_max)
                        .after(attempt.saturating_sub(1))
                        .next_delay();
                    Box::new(Reschedule {
                        id: c.id,
                        attempts: attempt as i32,
                        next: now + chrono::Duration::from_std(delay).unwrap_or_default(),
                        error: Some(error),
                    })
                }
            }
        };
        effects.schedule = Some(schedule);
        self.write(c, Pending { settled, effects }).await
    }

    /// Hands one outcome to the auditor of its partition and waits until
    /// it is durable.
    async fn write(&self, c: &Claimed, pending: Pending) -> Result<(), ScheduleError> {
        let n = self.auditors.len().max(1);
        let auditor = self
            .auditors
            .get(c.partition.unsigned_abs() as usize % n)
            .ok_or_else(|| ScheduleError::Outcome("no auditor".into()))?;
        let (verdict, answer) = tokio::sync::oneshot::channel();
        auditor
            .send(Record {
                pending: vec![pending],
                ack: None,
                revoked: None,
                verdict: Some(verdict),
            })
            .await
            .map_err(|e| ScheduleError::Outcome(e.to_string()))?;
        let verdict = answer
            .await
            .map_err(|e| ScheduleError::Outcome(e.to_string()))?;
        match verdict.refused {
            None => Ok(()),
            Some(refused) => Err(ScheduleError::Outcome(refused.failure.to_string())),
        }
    }

    /// Parks the message in the DLQ (before the schedule entry is removed),
    /// by the dead-letter path (`dlq::park`): a record already parked at
    /// its position is recognised there the same way.
    async fn dead_letter(&self, settled: &mut Settled, group: &str) -> Result<(), ScheduleError> {
        let parker = Parker {
            pool: self.deps.pool.clone(),
            redis: self.deps.redis.clone(),
            keys: self.deps.keys.clone(),
            group: group.to_owned(),
        };
        parker
            .park(std::slice::from_mut(settled))
            .await
            .map_err(|down| match down.dependency {
                "postgres" => ScheduleError::Ledger(down.error),
                _ => ScheduleError::Redis(down.error),
            })
    }

    /// Keeps a 2xx answer when the route asks (`cache_ttl`).
    async fn keep_answer(&self, c: &Claimed, answer: &Answer) {
        let Some(ttl) = self
            .deps
            .routes
            .resolve(c.route as usize, &c.route_label)
            .and_then(|r| r.cache_ttl)
        else {
            return;
        };
        send::keep_answer(&self.deps.redis, &self.deps.keys, c.message_id, answer, ttl).await;
    }
}

/// The record of how a claimed entry's delivery finished.
fn finished(
    c: &Claimed,
    attempts: u32,
    finish: Finish<'_>,
) -> crate::outcome::effects::DeliveryRecord {
    record::Finished {
        message_id: c.message_id,
        route: &c.route_label,
        key: c.key.as_deref(),
        place: (&c.topic, c.partition, c.offset),
        event_type: c.event_type.as_deref(),
        attempts,
        finish,
    }
    .owned()
}

/// One delivery attempt.
async fn attempt(deps: &Deps, route: &Endpoint, c: &Claimed, envelope: &Envelope) -> Verdict {
    // A later attempt continues the trace the record carries.
    let trace = crate::otel::record::RecordTrace::start(envelope, &c.group);
    let sent = send::forward(
        &deps.client,
        route,
        (&deps.formats, &c.topic),
        (envelope, &trace),
        c.message_id,
        c.event_type.as_deref(),
    )
    .await;
    match sent {
        Ok(answer) => Verdict::Delivered(answer),
        Err(TryError::Unavailable { .. }) => Verdict::Unreachable,
        Err(TryError::Failed(failure)) => Verdict::Failed(failure),
    }
}

/// The record as first read, from its receipt.
fn envelope(c: &Claimed, r: &Receipt) -> Envelope {
    let headers = r
        .headers
        .as_ref()
        .and_then(|h| crate::dlq::headers_from_json(h).ok())
        .unwrap_or_default();
    Envelope {
        topic: c.topic.as_str().into(),
        partition: c.partition,
        offset: c.offset,
        key: r.key.clone(),
        payload: r.payload.clone(),
        headers,
        unreadable_headers: false,
        timestamp_ms: r.kafka_timestamp.map(|t| t.timestamp_millis()),
        received_at: r.received_at,
    }
}

/// What is known of a record whose receipt is missing (to dead-letter it).
fn bare_envelope(c: &Claimed) -> Envelope {
    Envelope {
        key: c.key.clone(),
        ..Envelope::at(&c.topic, c.partition, c.offset, None)
    }
}

/// What the worker is wired to.
pub struct Wiring {
    pub pool: PgPool,
    pub routes: Arc<Endpoints>,
    pub client: reqwest::Client,
    pub redis: RedisPool,
    pub header_key: HeaderKey,
    /// The auditors, indexed as the Supervisor picks them (by partition).
    pub auditors: Vec<actix::Recipient<Record>>,
    pub formats: Arc<crate::formats::Formats>,
}

/// How often an idle worker looks for due entries.
const POLL: Duration = Duration::from_millis(100);

/// Starts the retry worker when some route defers its retries (on the
/// current runtime). It stops when `stop` fires, after handing back the
/// leases of the round it was in; shutdown awaits the returned task.
pub fn spawn(
    settings: &crate::config::Settings,
    wiring: Wiring,
    stop: CancellationToken,
) -> Option<tokio::task::JoinHandle<()>> {
    let Wiring {
        pool,
        routes,
        client,
        redis,
        header_key,
        auditors,
        formats,
    } = wiring;
    if !routes.all().iter().any(|r| r.deferred) {
        return None;
    }
    let deps = Deps {
        pool,
        routes,
        client,
        redis,
        keys: Keys::new(&settings.dlq.key_prefix),
        retry: settings.retry.clone(),
        header_key,
        poll: POLL,
        formats,
        dependency_backoff: (
            settings.pipeline.dependency_backoff_min,
            settings.pipeline.dependency_backoff_max,
        ),
    };
    let writer = Connection::new(&settings.postgres);
    Some(actix_rt::spawn(
        Worker::new(deps, writer, auditors).run(stop),
    ))
}
