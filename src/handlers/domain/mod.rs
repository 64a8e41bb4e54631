//! The `domain` kind (seed 004): domain envelopes
//! (`eventId` + `type` + `timestamp` + `data`) of four event types, applied
//! in offset order to `users`, `orders`, `payments` and `inventory`.
//!
//! - [`event`]: the four events, validated field by field.
//! - [`sql`]: one upsert per event, on the outcome writer's transaction.

pub mod event;
pub mod sql;

use uuid::Uuid;

use crate::failure::Failure;
use crate::handlers::spec::{Body, Path, Payload, Spec};
pub use event::DomainChange;

/// The event types the domain kind applies.
pub const EVENT_TYPES: [&str; 4] = [
    "UserCreated",
    "OrderPlaced",
    "PaymentSettled",
    "InventoryAdjusted",
];

pub const SPEC: Spec = Spec {
    name: "domain",
    event_types: &EVENT_TYPES,
    payload: Payload::DomainEnvelope,
    path: Path::Stored,
    takes_url: false,
};

/// Decodes a domain envelope's `data` for its type, at its `timestamp`.
pub fn decode(body: &Body<'_>, message_id: Uuid) -> Result<DomainChange, Failure> {
    let occurred_at = body.timestamp()?;
    let event = event::decode(body.event_type, body.data.map(|d| d.get()))?;
    Ok(DomainChange {
        message_id,
        occurred_at,
        event,
    })
}
