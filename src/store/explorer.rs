//! The message explorer's queries over `audit_log`: any mix of filters,
//! newest first by `(occurred_at, id)` (within a partition: highest offset
//! first by `(kafka_offset, id)`, so it is read from the offset index),
//! paged by keyset (the cursor is the last row's sort key, so page N costs
//! what page 1 costs). Each filter has an index in that order (migrations
//! 000010 and 000013; a status other than MESSAGE_PROCESSED has its own,
//! processed entries are most of the time index). Also the original record of one message, for the message view.

use chrono::{DateTime, Utc};
use diesel::dsl::sql;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bool, Timestamptz};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::store::audit::AuditRow;
use crate::store::schema::audit_log;

/// A checked explorer query (see `http::explorer` for the parameters).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Filter {
    pub message_id: Option<Uuid>,
    pub key: Option<String>,
    pub topic: Option<String>,
    pub partition: Option<i32>,
    pub offset_from: Option<i64>,
    /// Exclusive.
    pub offset_to: Option<i64>,
    pub status: Option<String>,
    pub event_type: Option<String>,
    /// A trace id (32 lowercase hex digits): the entries of that trace.
    pub trace_id: Option<String>,
    pub from: Option<DateTime<Utc>>,
    /// Exclusive.
    pub to: Option<DateTime<Utc>>,
}

impl Filter {
    /// Pages go by offset (within a partition), not by time.
    pub fn by_offset(&self) -> bool {
        self.partition.is_some() || self.offset_from.is_some() || self.offset_to.is_some()
    }
}

/// Where the next page starts: just older than this row.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Cursor {
    pub at: DateTime<Utc>,
    pub id: i64,
    /// The last row's offset, when pages go by offset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<i64>,
}

/// PostgreSQL's earliest `timestamptz` (4714-11-24 00:00:00 BC), in Unix
/// seconds; chrono reaches much further back.
const EARLIEST: i64 = -210_866_803_200;
/// Just past PostgreSQL's latest `timestamptz` (294277-01-01), in Unix
/// seconds (beyond chrono's own range: kept so the bound is stated whole).
const END: i64 = 9_224_318_016_000;

impl Cursor {
    /// Whether PostgreSQL can take this cursor's time. A cursor this code
    /// made holds a stored `occurred_at` and always can; a forged one may
    /// not, and binding it would fail the query with a data exception
    /// (22008), which is the request's fault, not an outage.
    pub fn in_range(&self) -> bool {
        (EARLIEST..END).contains(&self.at.timestamp())
    }
}

/// Up to `limit` entries matching `filter` after `after`, newest first.
pub async fn page(
    conn: &mut AsyncPgConnection,
    filter: &Filter,
    after: Option<Cursor>,
    limit: i64,
) -> QueryResult<Vec<AuditRow>> {
    use audit_log::dsl as a;
    let mut query = audit_log::table.select(AuditRow::as_select()).into_boxed();
    if let Some(id) = filter.message_id {
        query = query.filter(a::message_id.eq(id));
    }
    if let Some(key) = &filter.key {
        query = query
            .filter(prefix("message_key", key))
            .filter(a::message_key.eq(key.clone()));
    }
    if let Some(topic) = &filter.topic {
        query = query.filter(a::topic.eq(topic.clone()));
    }
    if let Some(partition) = filter.partition {
        query = query.filter(a::kafka_partition.eq(partition));
    }
    if let Some(from) = filter.offset_from {
        query = query.filter(a::kafka_offset.ge(from));
    }
    if let Some(to) = filter.offset_to {
        query = query.filter(a::kafka_offset.lt(to));
    }
    if let Some(status) = &filter.status {
        query = query.filter(a::status.eq(status.clone()));
        if status != crate::store::audit::PROCESSED {
            // The status index holds every status but this one (migration
            // 000013); saying so lets the planner use it. A fixed text.
            query = query.filter(sql::<Bool>("status <> 'MESSAGE_PROCESSED'"));
        }
    }
    if let Some(event_type) = &filter.event_type {
        query = query
            .filter(prefix("event_type", event_type))
            .filter(a::event_type.eq(event_type.clone()));
    }
    if let Some(trace_id) = &filter.trace_id {
        // The expression of the index migration 000022 makes.
        // The partial index's own predicate too, so the planner uses it.
        query = query.filter(
            sql::<Bool>("detail ? 'trace_id' AND (detail->>'trace_id') = ")
                .bind::<diesel::sql_types::Text, _>(trace_id.clone()),
        );
    }
    if let Some(from) = filter.from {
        query = query.filter(a::occurred_at.ge(from));
    }
    if let Some(to) = filter.to {
        query = query.filter(a::occurred_at.lt(to));
    }
    if filter.by_offset() {
        if let Some(c) = after {
            query = query.filter(
                sql::<Bool>("(kafka_offset, id) < (")
                    .bind::<BigInt, _>(c.offset.unwrap_or(i64::MAX))
                    .sql(", ")
                    .bind::<BigInt, _>(c.id)
                    .sql(")"),
            );
        }
        return query
            .order((a::kafka_offset.desc(), a::id.desc()))
            .limit(limit)
            .load(conn)
            .await;
    }
    if let Some(c) = after {
        // A row comparison, so the index range starts right at the cursor.
        query = query.filter(
            sql::<Bool>("(occurred_at, id) < (")
                .bind::<Timestamptz, _>(c.at)
                .sql(", ")
                .bind::<BigInt, _>(c.id)
                .sql(")"),
        );
    }
    query
        .order((a::occurred_at.desc(), a::id.desc()))
        .limit(limit)
        .load(conn)
        .await
}

/// `left(column, 200) = left(value, 200)`: the form the key and event-type
/// indexes hold (migration 000010), so that a huge value can be indexed.
/// `column` is one of this module's constants, never input.
fn prefix(
    column: &'static str,
    value: &str,
) -> diesel::expression::SqlLiteral<Bool, impl diesel::query_builder::QueryFragment<diesel::pg::Pg>>
{
    sql::<Bool>(&format!("left({column}, 200) = left("))
        .bind::<diesel::sql_types::Text, _>(value.to_owned())
        .sql(", 200)")
}

/// The original record of a message (its first delivery's receipt).
#[derive(Debug, QueryableByName)]
pub struct Record {
    #[diesel(sql_type = diesel::sql_types::Text)]
    pub topic: String,
    #[diesel(sql_type = diesel::sql_types::Integer)]
    pub kafka_partition: i32,
    #[diesel(sql_type = BigInt)]
    pub kafka_offset: i64,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Bytea>)]
    pub key: Option<Vec<u8>>,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Bytea>)]
    pub payload: Option<Vec<u8>>,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Jsonb>)]
    pub headers: Option<serde_json::Value>,
    #[diesel(sql_type = diesel::sql_types::Nullable<Timestamptz>)]
    pub kafka_timestamp: Option<DateTime<Utc>>,
}

pub async fn record(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<Option<Record>> {
    diesel::sql_query(
        "SELECT topic, kafka_partition, kafka_offset, message_key AS key, payload, headers, \
                kafka_timestamp \
           FROM message_payloads WHERE message_id = $1 LIMIT 1",
    )
    .bind::<diesel::sql_types::Uuid, _>(id)
    .get_result(conn)
    .await
    .optional()
}

/// One message's original payload and topic (for masking what is said
/// about it).
#[derive(Debug, QueryableByName)]
pub struct Payload {
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    pub message_id: Uuid,
    #[diesel(sql_type = diesel::sql_types::Text)]
    pub topic: String,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Bytea>)]
    pub payload: Option<Vec<u8>>,
}

/// The original payloads of `ids` (those kept).
pub async fn payloads(conn: &mut AsyncPgConnection, ids: &[Uuid]) -> QueryResult<Vec<Payload>> {
    diesel::sql_query(
        "SELECT message_id, topic, payload FROM message_payloads WHERE message_id = ANY($1)",
    )
    .bind::<diesel::sql_types::Array<diesel::sql_types::Uuid>, _>(ids)
    .load(conn)
    .await
}
