//! The `outbox` table's queries: the next batch (in id order, skipping
//! aggregates whose head event waits after a refusal), marking rows
//! published or refused, the backlog, and the demo insert. Bound parameters
//! only.

use diesel::sql_types::{Array, BigInt, Bytea, Double, Integer, Jsonb, Nullable, Text};
use diesel::QueryResult;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

/// A pending outbox row, as the relay publishes it.
#[derive(Debug, Clone, diesel::QueryableByName)]
pub struct Pending {
    /// Orders the aggregate's events.
    #[diesel(sql_type = BigInt)]
    pub id: i64,
    /// The message id (the `custodian-message-id` header).
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    pub event_id: Uuid,
    #[diesel(sql_type = Text)]
    pub aggregate_type: String,
    /// The Kafka key.
    #[diesel(sql_type = Text)]
    pub aggregate_id: String,
    #[diesel(sql_type = Text)]
    pub event_type: String,
    #[diesel(sql_type = Text)]
    pub topic: String,
    #[diesel(sql_type = Nullable<Bytea>)]
    pub payload: Option<Vec<u8>>,
    /// `{"name": "value", …}`: extra record headers.
    #[diesel(sql_type = Jsonb)]
    pub headers: serde_json::Value,
    /// Attempts before this one.
    #[diesel(sql_type = Integer)]
    pub attempts: i32,
    /// The W3C `traceparent` of the transaction that wrote it, if it says.
    #[diesel(sql_type = Nullable<Text>)]
    pub traceparent: Option<String>,
}

/// Where Kafka put a published row.
#[derive(Debug, Clone, Copy)]
pub struct Placed {
    pub id: i64,
    pub partition: i32,
    pub offset: i64,
}

/// A row Kafka refused, and when it may be tried again.
#[derive(Debug, Clone)]
pub struct Refused {
    pub id: i64,
    pub error: String,
    pub retry_in_ms: i64,
}

/// Up to `limit` pending rows in id order. An aggregate whose head event
/// is waiting after a refusal is left out whole, so it neither blocks the
/// others nor has a later event overtake its head. Because the result is a
/// prefix in id order of what is eligible, an aggregate's rows in it are
/// always its earliest pending ones.
pub async fn next_batch(conn: &mut AsyncPgConnection, limit: i64) -> QueryResult<Vec<Pending>> {
    diesel::sql_query(
        "SELECT o.id, o.event_id, o.aggregate_type, o.aggregate_id, o.event_type, o.topic, \
                o.payload, o.headers, o.attempts, o.traceparent \
           FROM outbox o \
          WHERE o.published_at IS NULL \
            AND NOT EXISTS (SELECT 1 FROM outbox w \
                             WHERE w.published_at IS NULL AND w.next_attempt_at > now() \
                               AND w.aggregate_type = o.aggregate_type \
                               AND w.aggregate_id = o.aggregate_id) \
          ORDER BY o.id LIMIT $1",
    )
    .bind::<BigInt, _>(limit)
    .load(conn)
    .await
}

#[derive(diesel::QueryableByName)]
struct Id {
    #[diesel(sql_type = BigInt)]
    id: i64,
}

/// Marks rows published where they landed; answers the ids this call
/// marked (a row already marked is left alone).
pub async fn mark_published(
    conn: &mut AsyncPgConnection,
    placed: &[Placed],
) -> QueryResult<Vec<i64>> {
    let rows: Vec<Id> = diesel::sql_query(
        "UPDATE outbox o SET published_at = now(), kafka_partition = u.p, kafka_offset = u.o, \
                attempts = o.attempts + 1, last_error = NULL, next_attempt_at = NULL \
           FROM unnest($1::int8[], $2::int4[], $3::int8[]) AS u(id, p, o) \
          WHERE o.id = u.id AND o.published_at IS NULL \
         RETURNING o.id",
    )
    .bind::<Array<BigInt>, _>(placed.iter().map(|p| p.id).collect::<Vec<_>>())
    .bind::<Array<Integer>, _>(placed.iter().map(|p| p.partition).collect::<Vec<_>>())
    .bind::<Array<BigInt>, _>(placed.iter().map(|p| p.offset).collect::<Vec<_>>())
    .load(conn)
    .await?;
    Ok(rows.into_iter().map(|r| r.id).collect())
}

/// Counts a refusal against each row and holds its aggregate back until
/// the row's retry time.
pub async fn mark_refused(conn: &mut AsyncPgConnection, refused: &[Refused]) -> QueryResult<()> {
    if refused.is_empty() {
        return Ok(());
    }
    diesel::sql_query(
        "UPDATE outbox o SET attempts = o.attempts + 1, last_error = u.e, \
                next_attempt_at = now() + u.wait * interval '1 millisecond' \
           FROM unnest($1::int8[], $2::text[], $3::int8[]) AS u(id, e, wait) \
          WHERE o.id = u.id AND o.published_at IS NULL",
    )
    .bind::<Array<BigInt>, _>(refused.iter().map(|r| r.id).collect::<Vec<_>>())
    .bind::<Array<Text>, _>(
        refused
            .iter()
            .map(|r| r.error.replace('\0', "\u{FFFD}"))
            .collect::<Vec<_>>(),
    )
    .bind::<Array<BigInt>, _>(refused.iter().map(|r| r.retry_in_ms).collect::<Vec<_>>())
    .execute(conn)
    .await
    .map(|_| ())
}

/// What is waiting: rows not yet published, and the age of the oldest.
#[derive(Debug, Clone, Copy, diesel::QueryableByName)]
pub struct Backlog {
    #[diesel(sql_type = BigInt)]
    pub pending: i64,
    #[diesel(sql_type = Double)]
    pub oldest_seconds: f64,
}

pub async fn backlog(conn: &mut AsyncPgConnection) -> QueryResult<Backlog> {
    diesel::sql_query(
        "SELECT count(*) AS pending, \
                coalesce(extract(epoch FROM now() - min(created_at)), 0)::float8 AS oldest_seconds \
           FROM outbox WHERE published_at IS NULL",
    )
    .get_result(conn)
    .await
}

/// A new outbox row, as an application would insert it.
#[derive(Debug, Clone)]
pub struct NewEvent<'a> {
    pub aggregate_type: &'a str,
    pub aggregate_id: &'a str,
    pub event_type: &'a str,
    pub topic: &'a str,
    pub payload: Option<&'a [u8]>,
    pub headers: serde_json::Value,
}

#[derive(Debug, diesel::QueryableByName)]
pub struct Added {
    #[diesel(sql_type = BigInt)]
    pub id: i64,
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    pub event_id: Uuid,
}

/// Inserts one event (what `custodian outbox add` does).
pub async fn add(conn: &mut AsyncPgConnection, event: &NewEvent<'_>) -> QueryResult<Added> {
    diesel::sql_query(
        "INSERT INTO outbox (aggregate_type, aggregate_id, event_type, topic, payload, headers) \
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING id, event_id",
    )
    .bind::<Text, _>(event.aggregate_type)
    .bind::<Text, _>(event.aggregate_id)
    .bind::<Text, _>(event.event_type)
    .bind::<Text, _>(event.topic)
    .bind::<Nullable<Bytea>, _>(event.payload)
    .bind::<Jsonb, _>(&event.headers)
    .get_result(conn)
    .await
}
