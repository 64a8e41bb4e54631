//! The `transactions` handler: transaction events (`event_type` +
//! `transaction`, see [`crate::pipeline::transaction`]) applied to the
//! `transactions` projection.
//!
//! Event types: [`crate::handler_kind::TRANSACTION_EVENT_TYPES`]. Path: stored, inside the ledger's
//! PostgreSQL transaction ([`super::stored`]); ledger name `transactions`.
//! Many per batch, so the batch's new events are folded into one write per
//! transaction id, in offset order.

use diesel::QueryResult;
use diesel_async::AsyncPgConnection;

use crate::pipeline::transaction::{fold, TransactionChange};
use crate::store::projection;

/// Applies the batch's new transaction events (ledger rows already
/// inserted by the caller, in the same database transaction).
pub async fn apply(
    conn: &mut AsyncPgConnection,
    changes: &[&TransactionChange],
) -> QueryResult<()> {
    if changes.is_empty() {
        return Ok(());
    }
    projection::write(conn, fold(changes)).await
}
