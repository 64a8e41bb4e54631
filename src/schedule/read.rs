//! Reading the retry schedule for the API (`GET /deliveries`, a message's
//! lifecycle) and the operator's "run it now" (`POST /replay/{id}`), on
//! the diesel pool the HTTP handlers share. Bound parameters only.

use chrono::{DateTime, Utc};
use diesel::sql_types::{BigInt, Integer, Nullable, Text, Timestamptz, Uuid as SqlUuid};
use diesel::QueryableByName;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde::Serialize;
use uuid::Uuid;

/// One open delivery of a deferred route, as `GET /deliveries` lists it.
#[derive(Debug, Clone, QueryableByName, Serialize, utoipa::ToSchema)]
pub struct Delivery {
    #[diesel(sql_type = SqlUuid)]
    pub message_id: Uuid,
    /// The route's downstream (`scheme://host[:port]`).
    #[diesel(sql_type = Text)]
    pub route: String,
    /// `retrying` (attempted, failed transiently, due again at
    /// `next_attempt_at`) or `waiting` (behind an earlier message of its
    /// key, not tried yet).
    #[diesel(sql_type = Text)]
    pub status: String,
    /// The record's key (bytes outside printable ASCII escaped as `\ooo`).
    #[diesel(sql_type = Nullable<Text>)]
    pub key: Option<String>,
    #[diesel(sql_type = Text)]
    pub topic: String,
    #[diesel(sql_type = Integer)]
    pub partition: i32,
    #[diesel(sql_type = BigInt)]
    pub offset: i64,
    /// Attempts made so far.
    #[diesel(sql_type = Integer)]
    pub attempts: i32,
    #[diesel(sql_type = Timestamptz)]
    pub next_attempt_at: DateTime<Utc>,
    /// The last answer: the failure of the last attempt.
    #[diesel(sql_type = Nullable<Text>)]
    pub last_error: Option<String>,
    #[diesel(sql_type = Timestamptz)]
    pub scheduled_at: DateTime<Utc>,
}

/// The statuses `GET /deliveries?status=` takes.
pub const STATUSES: [&str; 2] = ["retrying", "waiting"];

const SELECT: &str = "SELECT message_id, route_label AS route, \
     CASE WHEN attempts = 0 THEN 'waiting' ELSE 'retrying' END AS status, \
     encode(message_key, 'escape') AS key, topic, kafka_partition AS partition, \
     kafka_offset AS offset, attempts, next_attempt_at, last_error, scheduled_at \
     FROM retry_schedule";

/// The most recent open deliveries, newest first, filtered by route label
/// and status (`STATUSES`).
pub async fn list(
    conn: &mut AsyncPgConnection,
    route: Option<&str>,
    status: Option<&str>,
    limit: i64,
) -> diesel::QueryResult<Vec<Delivery>> {
    diesel::sql_query(format!(
        "{SELECT} WHERE ($1::text IS NULL OR route_label = $1) \
           AND ($2::text IS NULL OR (CASE WHEN attempts = 0 THEN 'waiting' ELSE 'retrying' END) = $2) \
         ORDER BY id DESC LIMIT $3"
    ))
    .bind::<Nullable<Text>, _>(route)
    .bind::<Nullable<Text>, _>(status)
    .bind::<BigInt, _>(limit)
    .load(conn)
    .await
}

/// A message's open schedule entry, if it has one.
pub async fn entry(
    conn: &mut AsyncPgConnection,
    message_id: Uuid,
) -> diesel::QueryResult<Option<Delivery>> {
    use diesel::OptionalExtension;
    diesel::sql_query(format!("{SELECT} WHERE message_id = $1"))
        .bind::<SqlUuid, _>(message_id)
        .get_result(conn)
        .await
        .optional()
}

/// The entry `due_now` touched: what its operator audit entry needs.
#[derive(Debug, Clone, QueryableByName)]
pub struct Touched {
    #[diesel(sql_type = Text)]
    pub topic: String,
    #[diesel(sql_type = Integer)]
    pub kafka_partition: i32,
    #[diesel(sql_type = BigInt)]
    pub kafka_offset: i64,
    #[diesel(sql_type = Nullable<Text>)]
    pub message_key: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    pub event_type: Option<String>,
    #[diesel(sql_type = Text)]
    pub consumer_group: String,
    #[diesel(sql_type = Integer)]
    pub attempts: i32,
}

/// Makes a scheduled message due now (the worker attempts it at its next
/// round, once, then the usual backoff applies); `None` when it is not in
/// the schedule. A message waiting behind its key stays behind it: the
/// order per key is not an operator's to break.
pub async fn due_now(
    conn: &mut AsyncPgConnection,
    message_id: Uuid,
) -> diesel::QueryResult<Option<Touched>> {
    use diesel::OptionalExtension;
    diesel::sql_query(
        "UPDATE retry_schedule SET next_attempt_at = now() WHERE message_id = $1 \
         RETURNING topic, kafka_partition, kafka_offset, \
           encode(message_key, 'escape') AS message_key, event_type, consumer_group, attempts",
    )
    .bind::<SqlUuid, _>(message_id)
    .get_result(conn)
    .await
    .optional()
}
