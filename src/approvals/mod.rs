//! Four-eyes approval (issue 27): a bulk replay over
//! `operators.four_eyes_threshold` entries, or any erasure, waits as a
//! pending request until a second person with the approver role approves
//! or rejects it, or it expires. Each step is a chained operator entry; the
//! `approval_requests` table is the working state. Running an approved
//! request is its caller's (the API's or the command line's), attributed to
//! both people.

use chrono::{DateTime, Utc};
use diesel::sql_types::{BigInt, Jsonb, Nullable, Text, Timestamptz};
use diesel::OptionalExtension;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::identity::{who, Actor};
use crate::trail::operator;

pub mod expiry;
pub mod ready;

/// A pending request made.
pub const CREATED: &str = "REQUEST_CREATED";
/// Approved by a second person (the action then runs).
pub const APPROVED: &str = "REQUEST_APPROVED";
pub const REJECTED: &str = "REQUEST_REJECTED";
/// Not decided in `operators.approval_ttl`.
pub const EXPIRED: &str = "REQUEST_EXPIRED";

/// What a request would do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Action {
    /// A bulk replay of the dead letters a filter matches.
    Replay {
        topic: Option<String>,
        error_kind: Option<String>,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
        all: bool,
        limit: usize,
    },
    /// An erasure of one message, or of every message of a key.
    Erase {
        key: Option<String>,
        message_id: Option<Uuid>,
    },
}

impl Action {
    fn kind(&self) -> &'static str {
        match self {
            Action::Replay { .. } => "replay",
            Action::Erase { .. } => "erase",
        }
    }

    /// What the chained entry says of it: the filter of a replay, the
    /// message of an erasure, never a key (personal data).
    fn described(&self) -> serde_json::Value {
        match self {
            Action::Replay { .. } => serde_json::to_value(self).unwrap_or_default(),
            Action::Erase { key, message_id } => serde_json::json!({
                "kind": "erase",
                "selector": if key.is_some() { "key" } else { "message_id" },
                "message_id": message_id,
            }),
        }
    }
}

/// A bulk replay of `filter` checked (refused before anything happens if
/// it cannot start), and, when it covers more than `threshold` entries,
/// the action and entry count a pending request must name; none when it
/// may run at once. The API and the command line gate on this alike.
pub async fn bulk_replay_gate(
    dlq: &crate::dlq::replay::DeadLetters,
    (filter, all, limit): (&crate::dlq::store::Filter, bool, usize),
    request: &crate::dlq::replay::Request,
    threshold: u64,
) -> Result<Option<(Action, u64)>, crate::dlq::replay::DlqError> {
    dlq.check_bulk(filter, all, limit, request)?;
    let entries = crate::dlq::jobs::count(dlq, filter)
        .await?
        .min(limit as u64);
    if entries <= threshold {
        return Ok(None);
    }
    let action = Action::Replay {
        topic: filter.topic.clone(),
        error_kind: filter.error_kind.clone(),
        from: filter.from,
        to: filter.to,
        all,
        limit,
    };
    Ok(Some((action, entries)))
}

/// A request, as stored and listed.
#[derive(Debug, Clone, Serialize, diesel::QueryableByName, utoipa::ToSchema)]
#[schema(as = ApprovalRequest)]
pub struct Approval {
    #[diesel(sql_type = BigInt)]
    pub id: i64,
    /// `replay` or `erase`.
    #[diesel(sql_type = Text)]
    pub kind: String,
    /// The action (an erasure's key only while it is pending, and only to
    /// approvers); null once an erasure is decided.
    #[diesel(sql_type = Nullable<Jsonb>)]
    #[schema(value_type = Option<Object>)]
    pub params: Option<serde_json::Value>,
    /// Entries it covered when it was made.
    #[diesel(sql_type = BigInt)]
    pub entries: i64,
    #[diesel(sql_type = Text)]
    pub reason: String,
    /// Who asked: name, credential, role, channel, address, request id.
    #[diesel(sql_type = Jsonb)]
    #[schema(value_type = Object)]
    pub requested_by: serde_json::Value,
    /// `pending`, `approved`, `rejected` or `expired`.
    #[diesel(sql_type = Text)]
    pub state: String,
    #[diesel(sql_type = Nullable<Jsonb>)]
    #[schema(value_type = Option<Object>)]
    pub decided_by: Option<serde_json::Value>,
    #[diesel(sql_type = Nullable<Text>)]
    pub decided_reason: Option<String>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    pub decided_at: Option<DateTime<Utc>>,
    /// What running it did (a job id, an erasure's counts, or its error).
    #[diesel(sql_type = Nullable<Jsonb>)]
    #[schema(value_type = Option<Object>)]
    pub outcome: Option<serde_json::Value>,
    #[diesel(sql_type = Timestamptz)]
    pub created_at: DateTime<Utc>,
    #[diesel(sql_type = Timestamptz)]
    pub expires_at: DateTime<Utc>,
}

impl Approval {
    /// The action it names (none once an erasure is decided).
    pub fn action(&self) -> Option<Action> {
        self.params
            .clone()
            .and_then(|p| serde_json::from_value(p).ok())
    }

    /// Who asked.
    pub fn requester(&self) -> Option<Actor> {
        serde_json::from_value(self.requested_by.clone()).ok()
    }

    /// Hides an erasure's key (for those below the approver role).
    pub fn without_key(mut self) -> Approval {
        if let Some(p) = self.params.as_mut().and_then(|p| p.as_object_mut()) {
            if p.get("key").is_some_and(|k| !k.is_null()) {
                p.insert("key".into(), "(shown to approvers)".into());
            }
        }
        self
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ApprovalError {
    #[error("{0}")]
    Database(#[from] diesel::result::Error),
    #[error("no approval request {0}")]
    NotFound(i64),
    #[error("approval request {id} is {state}, not pending")]
    Decided { id: i64, state: String },
    #[error("{0} asked for this request; a different person must approve or reject it")]
    OwnRequest(String),
    #[error(
        "reason: required, 1 to 1000 characters, no control characters but line breaks and tabs"
    )]
    BadReason,
}

const COLUMNS: &str = "id, kind, params, entries, reason, requested_by, state, decided_by, \
     decided_reason, decided_at, outcome, created_at, expires_at";

pub(crate) fn reason_ok(reason: &str) -> bool {
    let r = reason.trim();
    !r.is_empty()
        && r.chars().count() <= 1000
        && !r
            .chars()
            .any(|c| c.is_control() && !matches!(c, '\n' | '\t'))
}

/// The chained entry of a step of request `id`.
async fn record(
    conn: &mut AsyncPgConnection,
    status: &'static str,
    id: i64,
    by: &Actor,
    mut detail: serde_json::Value,
) -> diesel::QueryResult<()> {
    let mut entry = who(by, None);
    if let (Some(entry), Some(more)) = (entry.as_object_mut(), detail.as_object_mut()) {
        entry.append(more);
    }
    entry["approval_request"] = id.into();
    operator::record(
        conn,
        operator::Action::about(&format!("approval/{id}"), status, id, None, entry),
    )
    .await
}

/// Makes a pending request, chained REQUEST_CREATED.
pub async fn create(
    conn: &mut AsyncPgConnection,
    action: &Action,
    entries: u64,
    reason: &str,
    by: &Actor,
    ttl: std::time::Duration,
) -> Result<Approval, ApprovalError> {
    if !reason_ok(reason) {
        return Err(ApprovalError::BadReason);
    }
    let expires = Utc::now() + chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::days(1));
    let entries = i64::try_from(entries).unwrap_or(i64::MAX);
    Ok(conn
        .transaction(async |conn| {
            let made: Approval = diesel::sql_query(format!(
                "INSERT INTO approval_requests (kind, params, entries, reason, requested_by, \
                 requester, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {COLUMNS}"
            ))
            .bind::<Text, _>(action.kind())
            .bind::<Jsonb, _>(serde_json::to_value(action).unwrap_or_default())
            .bind::<BigInt, _>(entries)
            .bind::<Text, _>(reason.trim())
            .bind::<Jsonb, _>(by.to_json())
            .bind::<Text, _>(&by.name)
            .bind::<Timestamptz, _>(expires)
            .get_result(conn)
            .await?;
            record(
                conn,
                CREATED,
                made.id,
                by,
                serde_json::json!({
                    "reason": reason.trim(),
                    "action": action.described(),
                    "entries": entries,
                    "expires_at": expires,
                }),
            )
            .await?;
            Ok::<_, diesel::result::Error>(made)
        })
        .await?)
}

/// Expires every pending request past its time, each chained
/// REQUEST_EXPIRED; how many.
pub async fn expire_due(conn: &mut AsyncPgConnection) -> Result<usize, ApprovalError> {
    #[derive(diesel::QueryableByName)]
    struct Expired {
        #[diesel(sql_type = BigInt)]
        id: i64,
    }
    Ok(conn
        .transaction(async |conn| {
            let expired: Vec<Expired> = diesel::sql_query(
                "UPDATE approval_requests SET state = 'expired', decided_at = now(), \
                 params = CASE WHEN kind = 'erase' THEN NULL ELSE params END \
                 WHERE state = 'pending' AND expires_at <= now() RETURNING id",
            )
            .load(conn)
            .await?;
            let by = Actor::service("approvals");
            for e in &expired {
                record(conn, EXPIRED, e.id, &by, serde_json::json!({})).await?;
            }
            Ok::<_, diesel::result::Error>(expired.len())
        })
        .await?)
}

/// Requests, newest first: the pending ones, or all.
pub async fn list(
    conn: &mut AsyncPgConnection,
    pending_only: bool,
    limit: i64,
) -> Result<Vec<Approval>, ApprovalError> {
    expire_due(conn).await?;
    Ok(diesel::sql_query(format!(
        "SELECT {COLUMNS} FROM approval_requests WHERE (state = 'pending' OR NOT $1) \
         ORDER BY id DESC LIMIT $2"
    ))
    .bind::<diesel::sql_types::Bool, _>(pending_only)
    .bind::<BigInt, _>(limit)
    .load(conn)
    .await?)
}

/// A decision, and the request as it was when decided (an erasure's key
/// still in it, for running it).
pub struct Decided {
    pub request: Approval,
    pub approved: bool,
}

/// Approves or rejects request `id` as `by` (a person other than the
/// requester), chained REQUEST_APPROVED or REQUEST_REJECTED. An expired
/// request is expired first, and then refused as decided.
pub async fn decide(
    conn: &mut AsyncPgConnection,
    id: i64,
    by: &Actor,
    approve: bool,
    reason: &str,
) -> Result<Decided, ApprovalError> {
    if !reason_ok(reason) {
        return Err(ApprovalError::BadReason);
    }
    expire_due(conn).await?;
    conn.transaction(async |conn| {
        let found: Option<Approval> = diesel::sql_query(format!(
            "SELECT {COLUMNS} FROM approval_requests WHERE id = $1 FOR UPDATE"
        ))
        .bind::<BigInt, _>(id)
        .get_result(conn)
        .await
        .optional()?;
        let Some(request) = found else {
            return Err(ApprovalError::NotFound(id));
        };
        if request.state != "pending" {
            return Err(ApprovalError::Decided {
                id,
                state: request.state,
            });
        }
        let requester = request.requester();
        if requester.as_ref().is_none_or(|r| r.same_person(by)) {
            return Err(ApprovalError::OwnRequest(by.name.clone()));
        }
        let state = if approve { "approved" } else { "rejected" };
        diesel::sql_query(
            "UPDATE approval_requests SET state = $2, decided_by = $3, decided_reason = $4, \
             decided_at = now(), params = CASE WHEN kind = 'erase' THEN NULL ELSE params END \
             WHERE id = $1",
        )
        .bind::<BigInt, _>(id)
        .bind::<Text, _>(state)
        .bind::<Jsonb, _>(by.to_json())
        .bind::<Text, _>(reason.trim())
        .execute(conn)
        .await?;
        record(
            conn,
            if approve { APPROVED } else { REJECTED },
            id,
            by,
            serde_json::json!({
                "reason": reason.trim(),
                "requester": request.requested_by,
                "request_reason": request.reason,
            }),
        )
        .await?;
        Ok(Decided {
            request,
            approved: approve,
        })
    })
    .await
}

/// Records what running an approved request did.
pub async fn record_outcome(
    conn: &mut AsyncPgConnection,
    id: i64,
    outcome: &serde_json::Value,
) -> Result<(), ApprovalError> {
    diesel::sql_query("UPDATE approval_requests SET outcome = $2 WHERE id = $1")
        .bind::<BigInt, _>(id)
        .bind::<Jsonb, _>(outcome)
        .execute(conn)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_erasure_is_described_without_its_key() {
        let a = Action::Erase {
            key: Some("bob@example.com".into()),
            message_id: None,
        };
        let d = a.described().to_string();
        assert!(!d.contains("bob@example.com"), "{d}");
        assert!(d.contains("\"selector\":\"key\""), "{d}");
        assert!(reason_ok("ticket 7"));
        assert!(!reason_ok("  "));
        assert!(!reason_ok("a\u{0}b"));
    }
}
