//! The `transactions` kind (seed 003): transaction events
//! (`event_type` + `transaction` + `timestamp`) enriched per transaction
//! type and folded per transaction id into the `transactions` projection.
//!
//! - [`event`]: the event, its exact amount, and the fold into writes.
//! - [`enrich`]: one enrichment strategy per transaction type.
//! - [`sql`]: the projection's upserts and soft deletes, on the outcome
//!   writer's transaction.

pub mod enrich;
pub mod event;
pub mod sql;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::failure::Failure;
use crate::handlers::spec::{Body, Path, Payload, Spec};
pub use event::TransactionChange;
use event::{Action, RawTransaction, TransactionEvent};

/// The transaction event types, in [`Action`] order: the one list of them.
pub const EVENT_TYPES: [&str; 3] = [
    "transaction.created",
    "transaction.updated",
    "transaction.deleted",
];

pub const SPEC: Spec = Spec {
    name: "transactions",
    event_types: &EVENT_TYPES,
    payload: Payload::TransactionEvent,
    path: Path::Stored,
    takes_url: false,
};

/// Decodes a transaction event and enriches its state (read at `now`).
pub fn decode(
    body: &Body<'_>,
    message_id: Uuid,
    now: DateTime<Utc>,
) -> Result<TransactionChange, Failure> {
    let event_type = body.event_type;
    let action = Action::from_event_type(event_type).ok_or_else(|| {
        Failure::unknown_event_type(format!(
            "unknown event type `{event_type}` (expected one of {})",
            EVENT_TYPES.join(", ")
        ))
    })?;
    let raw = body
        .transaction
        .ok_or_else(|| Failure::schema("missing field `transaction`"))?;
    let transaction: RawTransaction = serde_json::from_str(raw.get())
        .map_err(|e| Failure::schema(format!("field `transaction`: {e}")))?;
    let event = TransactionEvent::new(action, transaction, body.timestamp()?)?;
    let enrichment = event.transaction.as_ref().map(|tx| enrich::enrich(tx, now));
    Ok(TransactionChange {
        message_id,
        event,
        enrichment,
    })
}
