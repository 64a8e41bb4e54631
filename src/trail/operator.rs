//! The trail's own operator entries (erasure, legal holds, retention,
//! unmasking): each the next entry of the `operator` chain, who and why in
//! `detail`.

use std::borrow::Cow;

use diesel_async::AsyncPgConnection;
use uuid::Uuid;

use crate::store::audit::AuditEntry;
use crate::store::chain::{blinding, OPERATOR_CHAIN};

/// A message's personal fields and payload erased.
pub const ERASED: &str = "MESSAGE_ERASED";
/// A legal hold placed.
pub const HOLD: &str = "AUDIT_HOLD";
/// A legal hold released.
pub const HOLD_RELEASED: &str = "AUDIT_HOLD_RELEASED";
/// An archived period deleted by the retention policy.
pub const ARCHIVE_DELETED: &str = "ARCHIVE_DELETED";
/// A message's masked fields shown to an approver (`POST
/// /messages/{id}/unmask`): who, why, which pointers.
pub const UNMASKED: &str = "MESSAGE_UNMASKED";
/// The consumer group of entries that are no message's.
pub const GROUP: &str = "custodian-operator";

/// One action to record.
pub struct Action<'a> {
    pub message_id: Uuid,
    pub status: &'static str,
    pub topic: &'a str,
    pub kafka_partition: i32,
    pub kafka_offset: i64,
    pub consumer_group: &'a str,
    pub message_key: Option<&'a str>,
    pub detail: serde_json::Value,
}

impl<'a> Action<'a> {
    /// An action on no message but on `subject` (`hold/7`,
    /// `archive/audit_log_20260101`, `operator/3`): recorded under
    /// [`subject_id`], with `number` (the hold's or operator's id, or -1)
    /// as its offset.
    pub fn about(
        subject: &str,
        status: &'static str,
        number: i64,
        message_key: Option<&'a str>,
        detail: serde_json::Value,
    ) -> Action<'a> {
        Action {
            message_id: subject_id(subject),
            status,
            topic: "",
            kafka_partition: -1,
            kafka_offset: number,
            consumer_group: GROUP,
            message_key,
            detail,
        }
    }
}

/// The id under which an action on no message is recorded: the same for
/// the same subject (`hold/7`, `archive/audit_log_20260101`).
pub fn subject_id(subject: &str) -> Uuid {
    Uuid::new_v5(
        &Uuid::NAMESPACE_URL,
        format!("custodian:{subject}").as_bytes(),
    )
}

/// Appends the action to the operator chain, in the caller's transaction.
pub async fn record(conn: &mut AsyncPgConnection, a: Action<'_>) -> diesel::QueryResult<()> {
    let entry = AuditEntry {
        message_id: a.message_id,
        status: a.status,
        topic: a.topic,
        kafka_partition: a.kafka_partition,
        kafka_offset: a.kafka_offset,
        message_key: a.message_key.map(Cow::Borrowed),
        event_type: None,
        attempt: 1,
        error: None,
        consumer_group: a.consumer_group,
        occurred_at: chrono::Utc::now(),
        detail: Some(a.detail),
        receipt: None,
        blinding: blinding(),
    };
    crate::outcome::chained::append_chained(conn, OPERATOR_CHAIN, &entry).await
}
