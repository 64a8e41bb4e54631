//! The transaction event, and how a batch of them folds into writes
//! to the `transactions` projection.
//!
//! Applying is idempotent at two levels: the processor only applies events
//! whose message id it newly inserted into `applied_messages` (same database
//! transaction), and within a batch the events for one transaction id are
//! folded in order into a single write whose `version` delta counts them.

use std::collections::HashMap;

use bigdecimal::BigDecimal;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use uuid::Uuid;

use crate::failure::Failure;
use crate::handlers::money;
use crate::handlers::transactions::EVENT_TYPES;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Created,
    Updated,
    Deleted,
}

impl Action {
    const ALL: [Action; 3] = [Action::Created, Action::Updated, Action::Deleted];

    pub fn from_event_type(event_type: &str) -> Option<Self> {
        let i = EVENT_TYPES.iter().position(|t| *t == event_type)?;
        Some(Self::ALL[i])
    }

    pub fn event_type(self) -> &'static str {
        EVENT_TYPES[self as usize]
    }
}

/// The `transaction` object as it arrives; validated by `TransactionEvent::new`.
#[derive(Debug, Clone, Deserialize)]
pub struct RawTransaction {
    pub id: String,
    pub user_id: Option<String>,
    pub transaction_type: Option<String>,
    pub product: Option<String>,
    pub status: Option<String>,
    pub currency: Option<String>,
    /// The amount's own JSON text, read exactly by [`money::parse`]: a
    /// `serde_json::Number` would already have rounded it through an f64.
    pub amount: Option<Box<RawValue>>,
    pub created_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub metadata: serde_json::Map<String, serde_json::Value>,
}

/// A transaction's full state as carried by a created/updated event (and,
/// with the projection's own columns, as the read API shows it).
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[schema(as = TransactionState)]
pub struct Transaction {
    pub id: String,
    pub user_id: String,
    pub transaction_type: String,
    pub product: Option<String>,
    pub status: String,
    pub currency: String,
    /// A decimal, as a string.
    #[schema(value_type = String)]
    pub amount: BigDecimal,
    pub created_at: Option<DateTime<Utc>>,
    pub metadata: serde_json::Value,
}

/// A validated transaction event. Deletes need only the id.
#[derive(Debug, Clone)]
pub struct TransactionEvent {
    pub action: Action,
    pub transaction_id: String,
    /// `None` only for a delete that carries no full state.
    pub transaction: Option<Transaction>,
    pub timestamp: DateTime<Utc>,
}

impl TransactionEvent {
    pub fn new(
        action: Action,
        raw: RawTransaction,
        timestamp: DateTime<Utc>,
    ) -> Result<Self, Failure> {
        if raw.id.trim().is_empty() {
            return Err(Failure::schema("field `transaction.id` is empty"));
        }
        let complete = raw.user_id.is_some()
            && raw.transaction_type.is_some()
            && raw.status.is_some()
            && raw.currency.is_some()
            && raw.amount.is_some();
        if action == Action::Deleted && !complete {
            return Ok(TransactionEvent {
                action,
                transaction_id: raw.id,
                transaction: None,
                timestamp,
            });
        }
        fn required<T>(value: Option<T>, field: &str) -> Result<T, Failure> {
            value.ok_or_else(|| Failure::schema(format!("missing field `transaction.{field}`")))
        }
        // Negative amounts are money going out (enrichment reads the sign).
        let amount = money::parse(required(raw.amount, "amount")?.get(), money::Signs::Any)
            .map_err(|e| Failure::schema(format!("field `transaction.amount`: {e}")))?;
        let transaction = Transaction {
            user_id: required(raw.user_id, "user_id")?,
            transaction_type: required(raw.transaction_type, "transaction_type")?,
            product: raw.product,
            status: required(raw.status, "status")?,
            currency: required(raw.currency, "currency")?,
            amount,
            created_at: raw.created_at,
            metadata: serde_json::Value::Object(raw.metadata),
            id: raw.id,
        };
        Ok(TransactionEvent {
            action,
            transaction_id: transaction.id.clone(),
            transaction: Some(transaction),
            timestamp,
        })
    }
}

/// What enrichment added to a transaction.
#[derive(Debug, Clone, PartialEq)]
pub struct Enrichment {
    pub enriched: bool,
    pub data: serde_json::Value,
    pub searchable_content: String,
    pub enriched_at: Option<DateTime<Utc>>,
}

/// A transaction event after enrichment: what the processor applies.
#[derive(Debug, Clone)]
pub struct TransactionChange {
    pub message_id: Uuid,
    pub event: TransactionEvent,
    /// Present whenever the event carries full state.
    pub enrichment: Option<Enrichment>,
}

/// One row of the projection, as written by an upsert. It borrows the
/// event's state: nothing is copied between folding and binding.
#[derive(Debug, Clone)]
pub struct TransactionRow<'a> {
    pub tx: &'a Transaction,
    /// `None` when the event carried no enrichment (written as un-enriched).
    pub enrichment: Option<&'a Enrichment>,
    /// On insert the version; on conflict *added* to the stored version.
    pub version: i64,
    pub last_event_type: &'static str,
    pub last_message_id: Uuid,
    pub updated_at: DateTime<Utc>,
    pub deleted_at: Option<DateTime<Utc>>,
}

/// A fold result: a full upsert, or a soft delete of a row known only by id.
#[derive(Debug, Clone)]
pub enum ProjectionWrite<'a> {
    Upsert(TransactionRow<'a>),
    SoftDelete {
        id: &'a str,
        deleted_at: DateTime<Utc>,
        version_delta: i64,
        last_message_id: Uuid,
    },
}

/// Folds changes (already filtered to the newly applied ones, in partition
/// order) into one write per transaction id, in first-seen order.
pub fn fold<'a>(changes: &[&'a TransactionChange]) -> Vec<ProjectionWrite<'a>> {
    struct State<'a> {
        latest: Option<&'a TransactionChange>,
        last: &'a TransactionChange,
        deleted_at: Option<DateTime<Utc>>,
        count: i64,
    }
    let mut order: Vec<&str> = Vec::new();
    let mut states: HashMap<&str, State<'a>> = HashMap::new();
    for change in changes.iter().copied() {
        let id = change.event.transaction_id.as_str();
        let state = states.entry(id).or_insert_with(|| {
            order.push(id);
            State {
                latest: None,
                last: change,
                deleted_at: None,
                count: 0,
            }
        });
        state.count += 1;
        state.last = change;
        if change.event.transaction.is_some() {
            state.latest = Some(change);
        }
        state.deleted_at = match change.event.action {
            Action::Deleted => Some(change.event.timestamp),
            Action::Created | Action::Updated => None,
        };
    }
    order
        .into_iter()
        .filter_map(|id| states.remove(id))
        .map(|state| {
            let full = state
                .latest
                .and_then(|c| c.event.transaction.as_ref().map(|t| (c, t)));
            match full {
                Some((change, tx)) => ProjectionWrite::Upsert(TransactionRow {
                    tx,
                    enrichment: change.enrichment.as_ref(),
                    version: state.count,
                    last_event_type: state.last.event.action.event_type(),
                    last_message_id: state.last.message_id,
                    updated_at: state.last.event.timestamp,
                    deleted_at: state.deleted_at,
                }),
                None => ProjectionWrite::SoftDelete {
                    id: &state.last.event.transaction_id,
                    deleted_at: state.deleted_at.unwrap_or(state.last.event.timestamp),
                    version_delta: state.count,
                    last_message_id: state.last.message_id,
                },
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn amount(text: &str) -> Box<RawValue> {
        RawValue::from_string(text.to_owned()).expect("JSON")
    }

    fn change(id: &str, action: Action, status: &str, full: bool, secs: i64) -> TransactionChange {
        let raw = RawTransaction {
            id: id.to_owned(),
            user_id: full.then(|| "u1".to_owned()),
            transaction_type: full.then(|| "card".to_owned()),
            product: None,
            status: full.then(|| status.to_owned()),
            currency: full.then(|| "USD".to_owned()),
            amount: full.then(|| amount("5")),
            created_at: None,
            metadata: Default::default(),
        };
        let ts = DateTime::from_timestamp(secs, 0).expect("valid");
        TransactionChange {
            message_id: Uuid::new_v4(),
            event: TransactionEvent::new(action, raw, ts).expect("valid"),
            enrichment: None,
        }
    }

    #[test]
    fn create_then_update_folds_into_one_upsert_with_two_versions() {
        let a = change("t1", Action::Created, "pending", true, 1);
        let b = change("t1", Action::Updated, "completed", true, 2);
        let c = change("t2", Action::Created, "pending", true, 3);
        let writes = fold(&[&a, &b, &c]);
        assert_eq!(writes.len(), 2);
        let ProjectionWrite::Upsert(row) = &writes[0] else {
            panic!("upsert expected")
        };
        assert_eq!(
            (row.tx.id.as_str(), row.tx.status.as_str(), row.version),
            ("t1", "completed", 2)
        );
        assert_eq!(row.last_message_id, b.message_id);
        assert_eq!(row.deleted_at, None);
    }

    #[test]
    fn delete_without_state_is_a_soft_delete() {
        let d = change("t9", Action::Deleted, "", false, 7);
        let writes = fold(&[&d]);
        assert!(
            matches!(&writes[0], ProjectionWrite::SoftDelete { id, version_delta: 1, .. } if *id == "t9")
        );
    }

    #[test]
    fn create_then_delete_keeps_state_and_marks_deleted() {
        let a = change("t1", Action::Created, "pending", true, 1);
        let d = change("t1", Action::Deleted, "", false, 5);
        let ProjectionWrite::Upsert(row) = &fold(&[&a, &d])[0] else {
            panic!("upsert expected")
        };
        assert_eq!(row.version, 2);
        assert_eq!(row.deleted_at, DateTime::from_timestamp(5, 0));
        assert_eq!(row.last_event_type, "transaction.deleted");
    }

    #[test]
    fn incomplete_create_is_a_schema_violation() {
        let raw = RawTransaction {
            id: "t1".into(),
            user_id: None,
            transaction_type: Some("card".into()),
            product: None,
            status: Some("ok".into()),
            currency: Some("USD".into()),
            amount: Some(amount("1")),
            created_at: None,
            metadata: Default::default(),
        };
        let err = TransactionEvent::new(Action::Created, raw, Utc::now()).expect_err("invalid");
        assert!(err.message.contains("user_id"));
    }
}
