//! The operator's "run it now" (`POST /replay/{id}`) on the retry
//! schedule, on the diesel pool the HTTP handlers share. (Listing it is
//! [`crate::delivery::record`]'s.) Bound parameters only.

use diesel::sql_types::{BigInt, Integer, Nullable, Text, Uuid as SqlUuid};
use diesel::QueryableByName;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

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
