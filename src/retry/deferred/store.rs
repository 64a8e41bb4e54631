//! The retry schedule's SQL, on the audit writer's tokio-postgres connection
//! (so parking commits with the audit entries). Every value is a bound
//! parameter.
//!
//! Order per key: entries of one (route, key) are served in `id` order; only
//! the lowest (the head) is ever claimable, and it stays in the table until
//! it is finished, so a waiter cannot overtake it, whichever instance asks.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use tokio_postgres::{Client, GenericClient, Transaction};
use uuid::Uuid;

use crate::outcome::Alongside;

/// A schedule entry: a message entering it, or as a worker claimed it.
#[derive(Debug, Clone)]
pub struct Entry {
    pub message_id: Uuid,
    pub route: i32,
    pub route_label: String,
    pub key: Option<Vec<u8>>,
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub event_type: Option<String>,
    pub group: String,
    /// Attempts made so far (0: waiting behind its key, never tried).
    pub attempts: i32,
    pub next_attempt_at: DateTime<Utc>,
    pub last_error: Option<String>,
}

/// A row to insert beside its audit entries (see [`Alongside`]). A message
/// already in the schedule (its partition read again after a rebalance) is
/// not added twice.
pub struct Insert(pub Entry);

impl Alongside for Insert {
    fn run<'a>(
        &'a self,
        tx: &'a Transaction<'a>,
    ) -> BoxFuture<'a, Result<(), tokio_postgres::Error>> {
        Box::pin(async move {
            let e = &self.0;
            tx.execute(
                "INSERT INTO retry_schedule (message_id, route, route_label, message_key, \
                 topic, kafka_partition, kafka_offset, event_type, consumer_group, attempts, \
                 next_attempt_at, last_error) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
                 ON CONFLICT (message_id) DO NOTHING",
                &[
                    &e.message_id,
                    &e.route,
                    &e.route_label,
                    &e.key,
                    &e.topic,
                    &e.partition,
                    &e.offset,
                    &e.event_type,
                    &e.group,
                    &e.attempts,
                    &e.next_attempt_at,
                    &e.last_error,
                ],
            )
            .await?;
            Ok(())
        })
    }
}

/// Of `keys` (route label, key), those with open entries: one indexed
/// query per batch. A key is a route's by its downstream's label, not its
/// position in `routes`, so reordering the routes keeps each key's order.
pub async fn waiting_keys(
    client: &Client,
    keys: &[(String, Vec<u8>)],
) -> Result<HashSet<(String, Vec<u8>)>, tokio_postgres::Error> {
    if keys.is_empty() {
        return Ok(HashSet::new());
    }
    let routes: Vec<&str> = keys.iter().map(|(r, _)| r.as_str()).collect();
    let bytes: Vec<&[u8]> = keys.iter().map(|(_, k)| k.as_slice()).collect();
    let rows = client
        .query(
            "SELECT DISTINCT s.route_label, s.message_key \
               FROM unnest($1::text[], $2::bytea[]) AS k(route_label, message_key) \
               JOIN retry_schedule s \
                 ON s.route_label = k.route_label AND s.message_key = k.message_key",
            &[&routes, &bytes],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| (r.get::<_, String>(0), r.get::<_, Vec<u8>>(1)))
        .collect())
}

/// An entry a worker holds (its lease) while it attempts it.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub id: i64,
    /// The lease this claim set: giving it back matches on it, so a lease
    /// that expired and was taken by another worker is left alone.
    pub leased_until: DateTime<Utc>,
    pub entry: Entry,
}

impl std::ops::Deref for Claimed {
    type Target = Entry;

    fn deref(&self) -> &Entry {
        &self.entry
    }
}

/// Claims up to `limit` due entries that head their key, leased for
/// `lease`. `FOR UPDATE SKIP LOCKED` keeps two instances from claiming the
/// same entry at once; the lease keeps it theirs until they finish it or
/// crash.
pub async fn claim(
    client: &Client,
    limit: i64,
    lease: Duration,
) -> Result<Vec<Claimed>, tokio_postgres::Error> {
    let rows = client
        .query(
            "WITH due AS ( \
               SELECT s.id FROM retry_schedule s \
                WHERE s.next_attempt_at <= now() \
                  AND (s.leased_until IS NULL OR s.leased_until < now()) \
                  AND NOT EXISTS (SELECT 1 FROM retry_schedule e \
                       WHERE e.route_label = s.route_label AND e.message_key = s.message_key AND e.id < s.id) \
                ORDER BY s.next_attempt_at, s.id \
                LIMIT $1 \
                FOR UPDATE SKIP LOCKED) \
             UPDATE retry_schedule r SET leased_until = now() + make_interval(secs => $2) \
               FROM due WHERE r.id = due.id \
             RETURNING r.id, r.message_id, r.route, r.route_label, r.message_key, r.topic, \
               r.kafka_partition, r.kafka_offset, r.event_type, r.consumer_group, r.attempts, \
               r.last_error, r.next_attempt_at, r.leased_until",
            &[&limit, &lease.as_secs_f64()],
        )
        .await?;
    let mut claimed: Vec<Claimed> = rows
        .iter()
        .map(|r| Claimed {
            id: r.get(0),
            leased_until: r.get(13),
            entry: Entry {
                message_id: r.get(1),
                route: r.get(2),
                route_label: r.get(3),
                key: r.get(4),
                topic: r.get(5),
                partition: r.get(6),
                offset: r.get(7),
                event_type: r.get(8),
                group: r.get(9),
                attempts: r.get(10),
                last_error: r.get(11),
                next_attempt_at: r.get(12),
            },
        })
        .collect();
    claimed.sort_by_key(|c| c.id);
    Ok(claimed)
}

/// The record as it was read, from its audit receipt.
#[derive(Debug, Clone)]
pub struct Receipt {
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
    pub headers: Option<serde_json::Value>,
    pub kafka_timestamp: Option<DateTime<Utc>>,
    pub received_at: DateTime<Utc>,
    pub payload_sha256: Option<Vec<u8>>,
}

/// The receipts of `entries` (the payload reference of a schedule entry is
/// its message's receipt: same id, topic, partition and offset).
pub async fn receipts(
    client: &Client,
    entries: &[Claimed],
) -> Result<HashMap<i64, Receipt>, tokio_postgres::Error> {
    if entries.is_empty() {
        return Ok(HashMap::new());
    }
    let ids: Vec<Uuid> = entries.iter().map(|e| e.message_id).collect();
    let rows = client
        .query(
            "SELECT message_id, topic, kafka_partition, kafka_offset, key_bytes, payload, \
                    headers, kafka_timestamp, received_at, payload_sha256 \
               FROM audit_log WHERE message_id = ANY($1) AND received_at IS NOT NULL \
              ORDER BY id",
            &[&ids],
        )
        .await?;
    let mut found = HashMap::new();
    for r in rows {
        let (id, topic, partition, offset): (Uuid, String, i32, i64) =
            (r.get(0), r.get(1), r.get(2), r.get(3));
        let Some(entry) = entries.iter().find(|e| {
            e.message_id == id && e.topic == topic && e.partition == partition && e.offset == offset
        }) else {
            continue;
        };
        found.entry(entry.id).or_insert_with(|| Receipt {
            key: r.get(4),
            payload: r.get(5),
            headers: r.get(6),
            kafka_timestamp: r.get(7),
            received_at: r.get(8),
            payload_sha256: r.get(9),
        });
    }
    Ok(found)
}

/// After a failed attempt with attempts left: due again at `next`.
pub struct Reschedule {
    pub id: i64,
    pub attempts: i32,
    pub next: DateTime<Utc>,
    pub error: Option<String>,
}

impl Alongside for Reschedule {
    fn run<'a>(
        &'a self,
        tx: &'a Transaction<'a>,
    ) -> BoxFuture<'a, Result<(), tokio_postgres::Error>> {
        Box::pin(async move {
            tx.execute(
                "UPDATE retry_schedule SET attempts = $2, next_attempt_at = $3, last_error = $4, \
                 leased_until = NULL WHERE id = $1",
                &[&self.id, &self.attempts, &self.next, &self.error],
            )
            .await
            .map(drop)
        })
    }
}

/// The entry is finished (processed or dead-lettered): its key's next
/// waiter becomes the head.
pub struct Complete(pub i64);

impl Alongside for Complete {
    fn run<'a>(
        &'a self,
        tx: &'a Transaction<'a>,
    ) -> BoxFuture<'a, Result<(), tokio_postgres::Error>> {
        Box::pin(async move {
            tx.execute("DELETE FROM retry_schedule WHERE id = $1", &[&self.0])
                .await
                .map(drop)
        })
    }
}

/// Gives a claimed entry back without an attempt (the downstream was
/// unreachable): due again at `next`. (A stopping worker uses
/// [`give_back`].)
pub async fn release(
    client: &impl GenericClient,
    id: i64,
    next: DateTime<Utc>,
) -> Result<(), tokio_postgres::Error> {
    client
        .execute(
            "UPDATE retry_schedule SET leased_until = NULL, next_attempt_at = $2 WHERE id = $1",
            &[&id, &next],
        )
        .await
        .map(drop)
}

/// Gives back the leases of claims this worker will not finish (it is
/// stopping): each entry is due again at once, for whichever worker comes
/// next, instead of when its lease would expire. Entries finished,
/// rescheduled or released since are left as they are (their lease is no
/// longer the one claimed). Returns how many were given back.
pub async fn give_back(
    client: &Client,
    held: &[(i64, DateTime<Utc>)],
) -> Result<u64, tokio_postgres::Error> {
    if held.is_empty() {
        return Ok(0);
    }
    let ids: Vec<i64> = held.iter().map(|(id, _)| *id).collect();
    let leases: Vec<DateTime<Utc>> = held.iter().map(|(_, until)| *until).collect();
    client
        .execute(
            "UPDATE retry_schedule r SET leased_until = NULL \
               FROM unnest($1::int8[], $2::timestamptz[]) AS h(id, leased_until) \
              WHERE r.id = h.id AND r.leased_until = h.leased_until",
            &[&ids, &leases],
        )
        .await
}

/// Per route label: open entries, and how overdue the oldest due one is
/// (seconds; 0 when none is due).
pub async fn depths(client: &Client) -> Result<Vec<(String, i64, f64)>, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT route_label, count(*), \
                    COALESCE(EXTRACT(EPOCH FROM now() - min(next_attempt_at) \
                        FILTER (WHERE next_attempt_at <= now()))::float8, 0) \
               FROM retry_schedule GROUP BY route_label",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect())
}
