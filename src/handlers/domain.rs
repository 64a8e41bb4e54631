//! The `domain` handler: domain envelopes (`eventId` + `type` +
//! `timestamp` + `data`, see [`crate::pipeline::domain_event`]) applied to the
//! `users`, `orders`, `payments` and `inventory` projections.
//!
//! Event types: [`crate::handler_kind::DOMAIN_EVENT_TYPES`]. Path: stored, inside the ledger's
//! PostgreSQL transaction ([`super::stored`]); ledger name `domain`.

use diesel::QueryResult;
use diesel_async::AsyncPgConnection;

use crate::pipeline::domain_event::DomainChange;

/// Applies one new domain event. Few and interdependent (an order needs
/// its user): in offset order, one statement each.
pub async fn apply(conn: &mut AsyncPgConnection, change: &DomainChange) -> QueryResult<()> {
    crate::store::domain_projection::apply(conn, change).await
}
