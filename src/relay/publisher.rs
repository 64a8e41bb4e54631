//! The relay loop. Each round, on the leader's own session: read up to
//! `relay.batch_size` pending rows, publish them (one aggregate's events one
//! after another, in id order, aggregates side by side), then in one
//! transaction mark what Kafka acknowledged and audit it, and hold back
//! what Kafka refused. A refused event stops only its own aggregate, which
//! waits `relay.retry_backoff_*` and tries it again; an outage stops the
//! round and the relay waits it out, counting nothing against the events.

use std::collections::HashMap;
use std::time::Duration;

use diesel_async::{AsyncConnection, AsyncPgConnection};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use secrecy::ExposeSecret;
use tokio::sync::watch;

use crate::config::Settings;
use crate::pipeline::steering;
use crate::pipeline::steering::HeaderKey;
use crate::relay::audit::{self, Published};
use crate::relay::encode::Encodings;
use crate::relay::outbox::{self, Pending, Placed, Refused};
use crate::relay::record::{self, SendFailure};
use crate::relay::session;
use crate::relay::RelayError;
use crate::telemetry::outbox::{OutboxBacklog, OutboxPublished, OutboxRefused};
use crate::telemetry::pipeline::DependencyWaiting;
use crate::telemetry::Emit;
use crate::wait::backoff::Backoff;
use crate::wait::Down;

/// What the relay needs: where to read, where to publish, how to sign.
pub struct Publisher {
    settings: Settings,
    producer: FutureProducer,
    key: HeaderKey,
    encodings: Encodings,
}

/// How a round ended.
#[derive(Debug, Default)]
struct Round {
    /// The batch was full: more may be waiting, so no pause.
    full: bool,
    /// Kafka was unreachable (the first error seen).
    outage: Option<String>,
}

impl Publisher {
    pub fn new(settings: Settings) -> Result<Self, RelayError> {
        let producer = producer(&settings)?;
        let key = crate::pipeline::steering::HeaderKey::configured(&settings.kafka);
        let encodings = Encodings::from_settings(&settings).map_err(RelayError::Registry)?;
        Ok(Publisher {
            settings,
            producer,
            key,
            encodings,
        })
    }

    /// Runs until `shutdown` turns true (or its sender is dropped). A round
    /// under way finishes first; it is bounded by `relay.publish_timeout`
    /// and `postgres.statement_timeout`.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let relay = self.settings.relay.clone();
        let (min, max) = (
            self.settings.pipeline.dependency_backoff_min,
            self.settings.pipeline.dependency_backoff_max,
        );
        let mut backoff = Backoff::new(min, max);
        let mut session: Option<AsyncPgConnection> = None;
        let mut leader = false;
        let stopping = |s: &watch::Receiver<bool>| *s.borrow() || s.has_changed().is_err();
        while !stopping(&shutdown) {
            let conn = match session.as_mut() {
                Some(conn) => conn,
                None => {
                    let url = self.settings.postgres.url.expose_secret();
                    match session::connect(url, self.settings.postgres.statement_timeout).await {
                        Ok(conn) => session.insert(conn),
                        Err(e) => {
                            let down = Down::new("postgres", e);
                            wait_out(
                                &mut shutdown,
                                &mut backoff,
                                &down,
                                "relay: PostgreSQL unreachable; waiting",
                            )
                            .await;
                            continue;
                        }
                    }
                }
            };
            if !leader {
                match session::try_lead(conn).await {
                    Ok(true) => {
                        leader = true;
                        tracing::info!("relay: this instance holds the publisher lock");
                    }
                    Ok(false) => {
                        pause(&mut shutdown, relay.interval).await;
                        continue;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "relay: cannot take the publisher lock; reconnecting");
                        session = None;
                        pause(&mut shutdown, backoff.next_delay()).await;
                        continue;
                    }
                }
            }
            match self.round(conn).await {
                Ok(Round {
                    outage: Some(error),
                    ..
                }) => {
                    if let Some((code, reason)) = self.producer.client().fatal_error() {
                        // An idempotent producer that hit a fatal error
                        // takes nothing more: start a new one.
                        tracing::warn!(?code, %reason, "relay: producer failed fatally; replacing it");
                        match producer(&self.settings) {
                            Ok(p) => self.producer = p,
                            Err(e) => {
                                tracing::error!(error = %e, "relay: cannot replace the producer")
                            }
                        }
                    }
                    let down = Down::new("kafka", error);
                    wait_out(
                        &mut shutdown,
                        &mut backoff,
                        &down,
                        "relay: Kafka does not take records; waiting",
                    )
                    .await;
                }
                Ok(round) => {
                    backoff = Backoff::new(min, max);
                    if !round.full {
                        pause(&mut shutdown, relay.interval).await;
                    }
                }
                Err(e) => {
                    // The session may be gone, and the lock with it: start
                    // over, as a standby.
                    session = None;
                    leader = false;
                    let down = Down::new("postgres", e);
                    wait_out(
                        &mut shutdown,
                        &mut backoff,
                        &down,
                        "relay: PostgreSQL failed mid-round; reconnecting (the batch may be republished)",
                    )
                    .await;
                }
            }
        }
        // Dropping the session frees the lock for a standby at once.
        drop(session);
        tracing::info!("relay stopped");
    }

    /// One batch: read, publish, mark and audit.
    async fn round(&self, conn: &mut AsyncPgConnection) -> diesel::QueryResult<Round> {
        let relay = &self.settings.relay;
        let batch = outbox::next_batch(conn, relay.batch_size as i64).await?;
        if batch.is_empty() {
            update_backlog(conn).await?;
            return Ok(Round::default());
        }
        let sent = self.publish(&batch).await;
        let placed: Vec<Placed> = sent.placed.iter().map(|(p, _, _)| *p).collect();
        let (sent_placed, refused) = (&sent.placed, &sent.refused);
        let published = conn
            .transaction(async |tx| {
                let marked = outbox::mark_published(tx, &placed).await?;
                let entries: Vec<Published<'_>> = sent_placed
                    .iter()
                    .filter(|(p, _, _)| marked.contains(&p.id))
                    .map(|(p, row, digest)| Published {
                        row,
                        payload_sha256: *digest,
                        partition: p.partition,
                        offset: p.offset,
                        at: chrono::Utc::now(),
                    })
                    .collect();
                audit::write_published(tx, &entries).await?;
                outbox::mark_refused(tx, refused).await?;
                Ok::<_, diesel::result::Error>(
                    entries
                        .iter()
                        .map(|e| e.row.topic.clone())
                        .collect::<Vec<_>>(),
                )
            })
            .await?;
        for topic in &published {
            OutboxPublished { topic }.emit();
        }
        for row in &sent.refused_rows {
            OutboxRefused {
                outbox_id: row.id,
                aggregate_id: &row.aggregate_id,
                topic: &row.topic,
            }
            .emit();
        }
        update_backlog(conn).await?;
        Ok(Round {
            full: batch.len() >= relay.batch_size && sent.outage.is_none(),
            outage: sent.outage,
        })
    }

    /// Publishes a batch: each aggregate's events in order, each waiting for
    /// the previous one's acknowledgement (so a refusal cannot let a later
    /// event overtake it), aggregates concurrently.
    async fn publish<'a>(&self, batch: &'a [Pending]) -> Sent<'a> {
        let mut aggregates: Vec<Vec<&Pending>> = Vec::new();
        let mut index: HashMap<(&str, &str), usize> = HashMap::new();
        for row in batch {
            let slot = *index
                .entry((&row.aggregate_type, &row.aggregate_id))
                .or_insert_with(|| {
                    aggregates.push(Vec::new());
                    aggregates.len() - 1
                });
            aggregates[slot].push(row);
        }
        let runs = aggregates
            .into_iter()
            .map(|rows| self.publish_in_order(rows));
        let mut sent = Sent::default();
        for run in futures::future::join_all(runs).await {
            sent.placed.extend(run.placed);
            if let Some((row, failure)) = run.stopped {
                match failure {
                    SendFailure::Refused(error) => {
                        let wait = Backoff::new(
                            self.settings.relay.retry_backoff_min,
                            self.settings.relay.retry_backoff_max,
                        )
                        .after(row.attempts.max(0) as u32)
                        .ceiling();
                        sent.refused.push(Refused {
                            id: row.id,
                            error,
                            retry_in_ms: wait.as_millis().min(i64::MAX as u128) as i64,
                        });
                        sent.refused_rows.push(row);
                    }
                    SendFailure::Outage(error) => {
                        sent.outage.get_or_insert(error);
                    }
                }
            }
        }
        sent
    }

    async fn publish_in_order<'a>(&self, rows: Vec<&'a Pending>) -> Run<'a> {
        let mut run = Run::default();
        for row in rows {
            let payload = match self.encodings.payload(row).await {
                Ok(payload) => payload,
                Err(failure) => {
                    run.stopped = Some((row, failure));
                    break;
                }
            };
            let digest = steering::payload_digest(payload.as_deref());
            // The row's trace (its `traceparent` column, or header)
            // continues through the relay's span when traces are on.
            let written = row.traceparent.clone().or_else(|| {
                row.headers
                    .get("traceparent")
                    .and_then(|v| v.as_str())
                    .map(str::to_owned)
            });
            let span = crate::otel::record::send("outbox", written.as_deref(), &row.topic);
            let traceparent = span
                .as_ref()
                .and_then(crate::otel::context::traceparent_of)
                .or(row.traceparent.clone());
            let headers = record::headers(row, &digest, &self.key, traceparent.as_deref());
            let mut record: FutureRecord<'_, str, [u8]> = FutureRecord::to(&row.topic)
                .key(row.aggregate_id.as_str())
                .headers(headers);
            if let Some(payload) = payload.as_deref() {
                record = record.payload(payload);
            }
            match self
                .producer
                .send(record, self.settings.relay.publish_timeout)
                .await
            {
                Ok(delivery) => run.placed.push((
                    Placed {
                        id: row.id,
                        partition: delivery.partition,
                        offset: delivery.offset,
                    },
                    row,
                    digest,
                )),
                Err((error, _)) => {
                    run.stopped = Some((row, record::classify(&error)));
                    break;
                }
            }
        }
        run
    }
}

/// One aggregate's share of a batch.
#[derive(Default)]
struct Run<'a> {
    /// Each with the SHA-256 of the payload it was published with.
    placed: Vec<(Placed, &'a Pending, [u8; 32])>,
    /// The event that stopped the aggregate, and why.
    stopped: Option<(&'a Pending, SendFailure)>,
}

/// A batch's results.
#[derive(Default)]
struct Sent<'a> {
    placed: Vec<(Placed, &'a Pending, [u8; 32])>,
    refused: Vec<Refused>,
    refused_rows: Vec<&'a Pending>,
    outage: Option<String>,
}

async fn update_backlog(conn: &mut AsyncPgConnection) -> diesel::QueryResult<()> {
    let backlog = outbox::backlog(conn).await?;
    OutboxBacklog {
        pending: backlog.pending,
        oldest_seconds: backlog.oldest_seconds,
    }
    .emit();
    Ok(())
}

/// Logs and counts a dependency that is down (`what` is the log line), then
/// waits the backoff's next delay or until shutdown.
async fn wait_out(
    shutdown: &mut watch::Receiver<bool>,
    backoff: &mut Backoff,
    down: &Down,
    what: &str,
) {
    let delay = backoff.next_delay();
    DependencyWaiting {
        dependency: down.dependency,
        error: &down.error,
        delay,
        what,
    }
    .emit();
    pause(shutdown, delay).await;
}

/// Waits `delay`, or less if shutdown is asked for meanwhile.
async fn pause(shutdown: &mut watch::Receiver<bool>, delay: Duration) {
    tokio::select! {
        _ = tokio::time::sleep(delay) => {}
        _ = shutdown.changed() => {}
    }
}

/// The relay's producer: idempotent, `acks=all`, with `kafka.extra`, and a
/// delivery timeout of `relay.publish_timeout`.
fn producer(settings: &Settings) -> Result<FutureProducer, RelayError> {
    let mut config = crate::kafka::client::replay_producer_config(&settings.kafka);
    config.set(
        "message.timeout.ms",
        settings.relay.publish_timeout.as_millis().to_string(),
    );
    config.create().map_err(RelayError::Producer)
}

/// `custodian relay`: the relay on its own until `shutdown` resolves.
pub async fn run(
    settings: Settings,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), RelayError> {
    let publisher = Publisher::new(settings)?;
    let (stop, stopped) = watch::channel(false);
    let task = tokio::spawn(publisher.run(stopped));
    shutdown.await;
    let _ = stop.send(true);
    let _ = task.await;
    Ok(())
}
