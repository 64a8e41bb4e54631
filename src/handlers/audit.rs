//! The `audit` handler: records whose audit trail is the whole record
//! (free-text messages, and any event type routed to it).
//!
//! Event types: any (by default [`crate::handler_kind::TEXT_MESSAGE_TYPE`]). Payload: taken as it is. Path: stored; its only write
//! is the ledger row (name `audit`), inside the same PostgreSQL transaction
//! as the batch's other stored kinds, so a redelivery is audited
//! MESSAGE_DUPLICATE like any other.

use diesel::QueryResult;
use diesel_async::AsyncPgConnection;

/// Nothing to apply beyond the ledger row the caller has inserted.
pub async fn apply(_conn: &mut AsyncPgConnection, _message_id: uuid::Uuid) -> QueryResult<()> {
    Ok(())
}
