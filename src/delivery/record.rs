//! The record of each http delivery (`GET /deliveries`): finished ones in
//! `http_deliveries` (delivered, or given up and dead-lettered: attempts and
//! last answer), open ones in the retry schedule (retrying, waiting behind
//! their key). The audit trail stays the proof; this is the operator's
//! summary of it, per delivery.

use chrono::{DateTime, Utc};
use diesel::sql_types::{BigInt, Integer, Nullable, Text, Timestamptz, Uuid as SqlUuid};
use diesel::QueryableByName;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde::Serialize;
use uuid::Uuid;

use crate::failure::Failure;
use crate::outcome::effects::DeliveryRecord;

/// How a delivery finished.
#[derive(Debug, Clone, Copy)]
pub enum Finish<'a> {
    /// The downstream answered this 2xx status.
    Delivered(u16),
    /// Given up: a permanent answer, or the last attempt failed; the
    /// message goes to the dead-letter queue.
    Failed(&'a Failure),
}

/// One finished delivery, as [`write`] records it.
#[derive(Debug, Clone, Copy)]
pub struct Finished<'a> {
    pub message_id: Uuid,
    pub route: &'a str,
    pub key: Option<&'a [u8]>,
    /// Where the message was first read: topic, partition, offset (for a
    /// retry topic's record, its original place).
    pub place: (&'a str, i32, i64),
    pub event_type: Option<&'a str>,
    /// Attempts made, the last included.
    pub attempts: u32,
    pub finish: Finish<'a>,
}

impl Finished<'_> {
    /// The record the outcome writer writes (`outcome::effects`) in the
    /// transaction of the message's ledger row and audit entries.
    pub fn owned(&self) -> DeliveryRecord {
        let (status, answer) = match self.finish {
            Finish::Delivered(code) => ("delivered", format!("HTTP {code}")),
            Finish::Failed(failure) => ("failed", failure.to_string()),
        };
        DeliveryRecord {
            message_id: self.message_id,
            route: self.route.to_owned(),
            key: self.key.map(<[u8]>::to_vec),
            place: (self.place.0.to_owned(), self.place.1, self.place.2),
            event_type: self.event_type.map(str::to_owned),
            attempts: self.attempts,
            status,
            answer,
        }
    }
}

/// One delivery, as `GET /deliveries` lists it.
#[derive(Debug, Clone, QueryableByName, Serialize, utoipa::ToSchema)]
pub struct Delivery {
    #[diesel(sql_type = SqlUuid)]
    pub message_id: Uuid,
    /// The route's downstream (`scheme://host[:port]`).
    #[diesel(sql_type = Text)]
    pub route: String,
    /// One of [`STATUSES`]: `retrying` (attempted, failed transiently, due
    /// again at `next_attempt_at`), `waiting` (behind an earlier message of
    /// its key, not tried yet), `delivered` (a 2xx), `failed` (given up:
    /// dead-lettered).
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
    /// The last answer: `HTTP 2xx` for a delivery, else the last failure
    /// (none for a message that waits untried).
    #[diesel(sql_type = Nullable<Text>)]
    pub last_answer: Option<String>,
    /// An open delivery's next attempt.
    #[diesel(sql_type = Nullable<Timestamptz>)]
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// When it entered the schedule (open) or finished.
    #[diesel(sql_type = Timestamptz)]
    pub at: DateTime<Utc>,
}

/// The statuses `GET /deliveries?status=` takes.
pub const STATUSES: [&str; 4] = ["retrying", "waiting", "delivered", "failed"];

/// Open deliveries (the retry schedule), then finished ones.
const DELIVERIES: &str = "SELECT message_id, route_label AS route, \
       CASE WHEN attempts = 0 THEN 'waiting' ELSE 'retrying' END AS status, \
       encode(message_key, 'escape') AS key, topic, kafka_partition AS partition, \
       kafka_offset AS offset, attempts, last_error AS last_answer, \
       next_attempt_at, scheduled_at AS at \
     FROM retry_schedule \
     UNION ALL \
     SELECT message_id, route_label, status, encode(message_key, 'escape'), topic, \
       kafka_partition, kafka_offset, attempts, last_answer, NULL, finished_at \
     FROM http_deliveries";

/// The most recent deliveries, newest first, filtered by route label and
/// status ([`STATUSES`]).
pub async fn list(
    conn: &mut AsyncPgConnection,
    route: Option<&str>,
    status: Option<&str>,
    limit: i64,
) -> diesel::QueryResult<Vec<Delivery>> {
    diesel::sql_query(format!(
        "SELECT * FROM ({DELIVERIES}) d \
         WHERE ($1::text IS NULL OR route = $1) AND ($2::text IS NULL OR status = $2) \
         ORDER BY at DESC, message_id LIMIT $3"
    ))
    .bind::<Nullable<Text>, _>(route)
    .bind::<Nullable<Text>, _>(status)
    .bind::<BigInt, _>(limit)
    .load(conn)
    .await
}

/// A message's delivery, open or finished, if it has one.
pub async fn one(
    conn: &mut AsyncPgConnection,
    message_id: Uuid,
) -> diesel::QueryResult<Option<Delivery>> {
    use diesel::OptionalExtension;
    diesel::sql_query(format!(
        "SELECT * FROM ({DELIVERIES}) d WHERE message_id = $1 ORDER BY at DESC LIMIT 1"
    ))
    .bind::<SqlUuid, _>(message_id)
    .get_result(conn)
    .await
    .optional()
}

impl Delivery {
    /// Still open: in the retry schedule.
    pub fn is_open(&self) -> bool {
        matches!(self.status.as_str(), "retrying" | "waiting")
    }
}
