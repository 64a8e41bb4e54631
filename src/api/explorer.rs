//! The message explorer: `GET /messages?…` searches the audit trail by id,
//! key, topic, partition and offset range, status, event type or time, with
//! an opaque keyset cursor; `GET /messages/{message_id}/record` is the
//! original record (payload as text or JSON when it is, else hex and base64)
//! for the console's message view. Both behind the token; the record's
//! `masking.fields` are masked, and the entries' errors do not quote them.

use actix_web::{get, web, HttpResponse};
use base64::Engine as _;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::api::auth::{Authorized, Read};
use crate::api::dlq::message_id;
use crate::api::error::{ApiError, ErrorBody};
use crate::api::masked;
use crate::api::params::{self, bad};
use crate::api::read::{conn, query_failed};
use crate::api::responses::{Guarded, PostgresBacked};
use crate::api::AppState;
use crate::masking::{MaskedPayload, Masking};
use crate::store::audit::{self, AuditRow};
use crate::store::explorer::{self, Cursor, Filter};
use crate::store::message_projection::{self, ProjectionRow};

const DEFAULT_LIMIT: i64 = 50;
const MAX_LIMIT: i64 = 500;
const MAX_TEXT: usize = 1000;
/// Kafka's longest topic name.
const MAX_TOPIC: usize = 249;

/// The statuses an `audit_log` entry can have, as its writers name them
/// (MESSAGE_RECEIVED is not an entry of its own: it rides on each
/// delivery's first entry). Tested against the table's CHECK constraint.
pub const STATUSES: &[&str] = &[
    audit::PROCESSED,
    audit::FAILED,
    audit::DLQ,
    audit::DUPLICATE,
    audit::REPLAYED,
    audit::DISCARDED,
    audit::RETRY_SCHEDULED,
    crate::relay::audit::PUBLISHED,
    crate::trail::operator::ERASED,
    crate::trail::operator::HOLD,
    crate::trail::operator::HOLD_RELEASED,
    crate::trail::operator::ARCHIVE_DELETED,
    crate::operators::ADDED,
    crate::operators::ROTATED,
    crate::operators::REVOKED,
    crate::approvals::CREATED,
    crate::approvals::APPROVED,
    crate::approvals::REJECTED,
    crate::approvals::EXPIRED,
    crate::trail::operator::UNMASKED,
    crate::flow::pauses::PAUSED,
    crate::flow::pauses::RESUMED,
    crate::flow::record::OPENED,
    crate::flow::record::HALF_OPEN,
    crate::flow::record::CLOSED,
];

/// The parameters, as text, so a bad one is answered 400 naming it.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ExplorerQuery {
    /// A message id.
    #[param(value_type = Option<uuid::Uuid>)]
    pub id: Option<String>,
    /// The record's key (exact).
    #[param(min_length = 1, max_length = 1000)]
    pub key: Option<String>,
    #[param(min_length = 1, max_length = 249)]
    pub topic: Option<String>,
    /// Needs `topic`.
    #[param(value_type = Option<i32>, minimum = 0)]
    pub partition: Option<String>,
    /// First offset (needs `topic` and `partition`).
    #[param(value_type = Option<i64>, minimum = 0)]
    pub offset_from: Option<String>,
    /// Offset to stop before (needs `topic` and `partition`).
    #[param(value_type = Option<i64>, minimum = 0)]
    pub offset_to: Option<String>,
    /// An audit status, e.g. `MESSAGE_DLQ`.
    pub status: Option<String>,
    #[param(min_length = 1, max_length = 1000)]
    pub event_type: Option<String>,
    /// A trace id (32 hex digits, as the message view shows it): that
    /// trace's entries.
    #[param(min_length = 32, max_length = 32, pattern = "^[0-9a-fA-F]{32}$")]
    pub trace_id: Option<String>,
    /// Occurred at or after (RFC 3339).
    #[param(value_type = Option<String>, format = DateTime)]
    pub from: Option<String>,
    /// Occurred before (RFC 3339).
    #[param(value_type = Option<String>, format = DateTime)]
    pub to: Option<String>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Page size (default 50).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 500)]
    pub limit: Option<String>,
}

/// A page of audit entries, newest first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ExplorerPage {
    pub count: usize,
    pub entries: Vec<AuditRow>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
    /// Entries recorded before this time are archived (dropped from
    /// PostgreSQL, so not listed here): `GET /messages/{id}` and `custodian
    /// audit show` read them from the archive. Absent: nothing archived.
    pub archived_before: Option<DateTime<Utc>>,
}

impl ExplorerQuery {
    /// The parameters of a query string (`key=a&status=…`), as the
    /// endpoint reads them (for the CLI, the benchmark and tests).
    pub fn from_query_string(text: &str) -> Result<Self, ApiError> {
        let pairs: serde_json::Map<String, serde_json::Value> =
            url::form_urlencoded::parse(text.as_bytes())
                .map(|(k, v)| (k.into_owned(), serde_json::Value::String(v.into_owned())))
                .collect();
        serde_json::from_value(serde_json::Value::Object(pairs))
            .map_err(|e| ApiError::BadRequest(format!("query: {e}")))
    }
}

fn number<T: std::str::FromStr + PartialOrd + Default>(
    field: &str,
    value: Option<String>,
) -> Result<Option<T>, ApiError> {
    value
        .map(|v| {
            v.parse::<T>()
                .ok()
                .filter(|n| *n >= T::default())
                .ok_or_else(|| bad(field, "a whole number, not negative"))
        })
        .transpose()
}

/// Text PostgreSQL can compare (no NUL) within the documented length.
fn text(field: &str, value: Option<String>, max: usize) -> Result<Option<String>, ApiError> {
    match value {
        Some(v) if v.is_empty() || v.chars().count() > max || v.contains('\0') => {
            Err(bad(field, &format!("1 to {max} characters, no NUL")))
        }
        other => Ok(other),
    }
}

pub fn encode_cursor(cursor: &Cursor) -> String {
    params::encode_cursor(cursor)
}

/// A cursor this endpoint made: one whose time PostgreSQL cannot hold was
/// forged, and is refused here rather than failing the query.
fn decode_cursor(text: &str) -> Result<Cursor, ApiError> {
    params::decode_cursor::<Cursor>(text)
        .filter(Cursor::in_range)
        .ok_or_else(|| bad("cursor", "not a next_cursor from this endpoint"))
}

/// A trace id as W3C writes it: 32 hex digits, not all zero (lowercased).
fn trace_id(text: String) -> Result<String, ApiError> {
    let ok = text.len() == 32
        && text.chars().all(|c| c.is_ascii_hexdigit())
        && text.chars().any(|c| c != '0');
    ok.then(|| text.to_ascii_lowercase())
        .ok_or_else(|| bad("trace_id", "32 hex digits, not all zero"))
}

/// Checks the parameters: the filter, the cursor and the page size.
pub fn parse(q: ExplorerQuery) -> Result<(Filter, Option<Cursor>, i64), ApiError> {
    let mut filter = Filter {
        message_id: q.id.as_deref().map(message_id).transpose()?,
        key: text("key", q.key, MAX_TEXT)?,
        topic: text("topic", q.topic, MAX_TOPIC)?,
        partition: number("partition", q.partition)?,
        offset_from: number("offset_from", q.offset_from)?,
        offset_to: number("offset_to", q.offset_to)?,
        status: q.status,
        event_type: text("event_type", q.event_type, MAX_TEXT)?,
        trace_id: q.trace_id.map(trace_id).transpose()?,
        from: None,
        to: None,
    };
    if let Some(status) = &filter.status {
        if !STATUSES.contains(&status.as_str()) {
            return Err(bad("status", &format!("one of {}", STATUSES.join(", "))));
        }
    }
    if filter.partition.is_some() && filter.topic.is_none() {
        return Err(bad("partition", "needs topic"));
    }
    if (filter.offset_from.is_some() || filter.offset_to.is_some())
        && (filter.topic.is_none() || filter.partition.is_none())
    {
        return Err(bad(
            "offset_from",
            "an offset range needs topic and partition",
        ));
    }
    if let (Some(from), Some(to)) = (filter.offset_from, filter.offset_to) {
        if from > to {
            return Err(bad("offset_from", "must not be after offset_to"));
        }
    }
    (filter.from, filter.to) = params::window(q.from, q.to)?;
    let limit = params::page_size(q.limit.as_deref(), DEFAULT_LIMIT, MAX_LIMIT)?;
    let after = q.cursor.as_deref().map(decode_cursor).transpose()?;
    if after.is_some_and(|c| c.offset.is_some() != filter.by_offset()) {
        return Err(bad("cursor", "from a query with other filters"));
    }
    Ok((filter, after, limit))
}

/// One page of audit entries and the cursor to the next.
pub async fn run(
    conn: &mut diesel_async::AsyncPgConnection,
    filter: &Filter,
    after: Option<Cursor>,
    limit: i64,
) -> Result<ExplorerPage, diesel::result::Error> {
    // One row more than asked says whether there is a next page.
    let mut entries = explorer::page(conn, filter, after, limit + 1).await?;
    let more = entries.len() as i64 > limit;
    entries.truncate(limit as usize);
    let next_cursor = more.then(|| entries.last()).flatten().map(|last| {
        encode_cursor(&Cursor {
            at: last.occurred_at,
            id: last.id,
            offset: filter.by_offset().then_some(last.kafka_offset),
        })
    });
    use diesel_async::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct Archived {
        #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Timestamptz>)]
        until: Option<DateTime<Utc>>,
    }
    let archived_before = diesel::sql_query(
        "SELECT max(to_time) AS until FROM audit_partitions WHERE dropped_at IS NOT NULL",
    )
    .get_result::<Archived>(conn)
    .await?
    .until;
    Ok(ExplorerPage {
        count: entries.len(),
        entries,
        next_cursor,
        archived_before,
    })
}

/// Searches the audit trail, newest first (within a partition: highest
/// offset first), with cursor paging.
#[utoipa::path(tag = "audit", security(("bearer" = ["viewer"])), params(ExplorerQuery), responses((status = 200, description = "A page of audit entries, newest first (within a partition, highest offset first)", body = ExplorerPage), (status = 400, description = "A parameter is not valid (named)", body = ErrorBody), Guarded, PostgresBacked))]
#[get("/messages")]
pub async fn search(
    _: Authorized<Read>,
    state: web::Data<AppState>,
    query: web::Query<ExplorerQuery>,
) -> Result<HttpResponse, ApiError> {
    let (filter, after, limit) = parse(query.into_inner())?;
    let mut conn = conn(&state).await?;
    let mut page = run(&mut conn, &filter, after, limit)
        .await
        .map_err(query_failed)?;
    masked::audit_rows(&mut conn, &state.masking, &mut page.entries).await?;
    Ok(HttpResponse::Ok().json(page))
}

/// A message's original record.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RecordView {
    pub message_id: Uuid,
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub kafka_timestamp: Option<DateTime<Utc>>,
    /// The key as text, when it is UTF-8.
    pub key: Option<String>,
    /// The payload as text, when it is UTF-8.
    pub payload_text: Option<String>,
    /// The payload parsed, when it is JSON.
    pub payload_json: Option<serde_json::Value>,
    pub payload_base64: Option<String>,
    pub payload_hex: Option<String>,
    /// The length of the payload shown (masked, when `masked` is not empty).
    pub payload_bytes: usize,
    /// The JSON pointers masked in this view (`masking.fields`): the
    /// payload and the projection row show their values as
    /// `"••••:<fingerprint>"`; `""` is the whole payload (one that is not
    /// JSON). Empty: nothing masked.
    pub masked: Vec<String>,
    /// The pointers shown in clear by an approver's unmask (`POST
    /// /messages/{message_id}/unmask`, audited); empty elsewhere.
    pub unmasked: Vec<String>,
    /// As recorded: text values as text, others base64 and flagged.
    pub headers: Option<serde_json::Value>,
    /// The projection row the message applied to, as it stands now (for
    /// transaction events and domain envelopes).
    pub projection: Option<ProjectionRow>,
    /// On a schema topic (`formats`): the schema the record was written
    /// with; `payload_json` is then the JSON it decodes to (masked as
    /// JSON), while `payload_text`, `payload_base64` and `payload_hex` (and
    /// the download) are the record's own bytes.
    pub schema: Option<crate::formats::forward::SchemaRef>,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The original record of a message (its first delivery), for the message view.
#[utoipa::path(tag = "audit", security(("bearer" = ["viewer"])), params(("message_id" = uuid::Uuid, Path, description = "The message id")), responses((status = 200, description = "The record as received, its `masking.fields` masked", body = RecordView), (status = 404, description = "No record kept for this id", body = ErrorBody), Guarded, PostgresBacked))]
#[get("/messages/{message_id}/record")]
pub async fn record(
    _: Authorized<Read>,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = message_id(&id)?;
    let mut conn = conn(&state).await?;
    let view = record_view(&mut conn, id, (&state.masking, &state.formats), false).await?;
    Ok(HttpResponse::Ok().json(view))
}

/// Message `id`'s record as `masking` shows it (or, `unmask`ed, in
/// clear, saying which pointers), with the projection row it applied to;
/// 404 when no record is kept.
pub(crate) async fn record_view(
    conn: &mut diesel_async::AsyncPgConnection,
    id: Uuid,
    (masking, formats): (&Masking, &crate::formats::Formats),
    unmask: bool,
) -> Result<RecordView, ApiError> {
    let Some(r) = explorer::record(conn, id).await.map_err(query_failed)? else {
        return Err(ApiError::NotFound(format!(
            "no record kept for message {id}"
        )));
    };
    let payload = r.payload.unwrap_or_default();
    // A schema topic's record: read as the JSON it decodes to.
    let decoded = formats.readable_json(&r.topic, &payload).await;
    let readable = decoded
        .as_ref()
        .map_or(payload.as_slice(), |(json, _)| json.as_slice());
    let original: Option<serde_json::Value> = serde_json::from_slice(readable).ok();
    let projection = match &original {
        Some(json) => message_projection::of(conn, id, json)
            .await
            .map_err(query_failed)?,
        None => None,
    };
    let mut shown = masking.payload(&r.topic, readable);
    // The record's own bytes, masked whole if any rule applies (they are
    // not JSON); the JSON view above is masked field by field.
    let mut raw = match &decoded {
        Some(_) => masking.payload(&r.topic, &payload),
        None => shown.clone(),
    };
    let (projection, unmasked) = if unmask {
        let pointers = std::mem::take(&mut shown.pointers);
        shown = MaskedPayload::unchanged(readable);
        raw = MaskedPayload::unchanged(&payload);
        (projection, pointers)
    } else {
        (
            projection.map(|p| masked::projection(masking, p)),
            Vec::new(),
        )
    };
    let bytes = &raw.bytes;
    Ok(RecordView {
        message_id: id,
        topic: r.topic,
        partition: r.kafka_partition,
        offset: r.kafka_offset,
        kafka_timestamp: r.kafka_timestamp,
        key: r.key.and_then(|k| String::from_utf8(k).ok()),
        payload_text: std::str::from_utf8(bytes).ok().map(str::to_owned),
        payload_base64: Some(base64::engine::general_purpose::STANDARD.encode(bytes)),
        payload_hex: Some(hex(bytes)),
        payload_bytes: bytes.len(),
        payload_json: shown.json,
        masked: shown.pointers,
        unmasked,
        headers: r.headers,
        projection,
        schema: decoded.map(|(_, schema)| schema),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(pairs: &str) -> Result<(Filter, Option<Cursor>, i64), ApiError> {
        parse(ExplorerQuery::from_query_string(pairs)?)
    }

    fn field(result: Result<(Filter, Option<Cursor>, i64), ApiError>) -> String {
        match result {
            Err(ApiError::BadRequest(m)) => m.split(':').next().unwrap_or_default().to_owned(),
            other => panic!("expected a 400, got {other:?}"),
        }
    }

    #[test]
    fn bad_input_names_the_parameter() {
        for (pairs, named) in [
            ("id=nope", "message_id"),
            ("partition=1", "partition"),
            ("topic=t&partition=-1", "partition"),
            ("topic=t&offset_from=3", "offset_from"),
            ("status=MESSAGE_RECEIVED", "status"),
            ("from=yesterday", "from"),
            ("limit=0", "limit"),
            ("limit=501", "limit"),
            ("cursor=not-ours", "cursor"),
            ("what=1", "query"),
        ] {
            assert_eq!(field(query(pairs)), named, "{pairs}");
        }
    }

    #[test]
    fn a_cursor_postgresql_cannot_hold_is_refused() {
        let forged = encode_cursor(&Cursor {
            at: DateTime::<Utc>::MIN_UTC,
            id: 1,
            offset: None,
        });
        // It decodes: only its time gives it away.
        assert!(params::decode_cursor::<Cursor>(&forged).is_some());
        assert_eq!(field(query(&format!("cursor={forged}"))), "cursor");
    }

    #[test]
    fn every_status_the_trail_writes_is_accepted() {
        for status in STATUSES {
            query(&format!("status={status}")).unwrap_or_else(|e| panic!("{status}: {e}"));
        }
        assert!(STATUSES.contains(&audit::RETRY_SCHEDULED));
    }

    #[test]
    fn cursors_round_trip() {
        let cursor = Cursor {
            at: DateTime::from_timestamp(1_700_000_000, 123_000).expect("time"),
            id: 42,
            offset: None,
        };
        let (_, after, limit) = query(&format!("cursor={}", encode_cursor(&cursor))).expect("ok");
        assert_eq!(after, Some(cursor));
        assert_eq!(limit, DEFAULT_LIMIT);
    }
}
