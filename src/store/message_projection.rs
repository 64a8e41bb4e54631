//! The projection row a message applied to, for the message view: found by
//! the entity the payload names (a transaction's id, a domain event's user,
//! order or SKU), read as it stands now.

use diesel::sql_types::{Jsonb, Text, Uuid as SqlUuid};
use diesel::{OptionalExtension, QueryResult, QueryableByName};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde::Serialize;
use uuid::Uuid;

use crate::handlers::domain::event::{self, DomainEvent};

/// A projection row and whether this message was the last to write it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ProjectionRow {
    /// `transactions`, `users`, `orders`, `payments` or `inventory`.
    pub table: &'static str,
    /// The row as it stands now.
    pub row: serde_json::Value,
    /// False when a later message has written the row since.
    pub last_written_by_this_message: bool,
}

#[derive(QueryableByName)]
struct Found {
    #[diesel(sql_type = Jsonb)]
    current: serde_json::Value,
    #[diesel(sql_type = diesel::sql_types::Bool)]
    latest: bool,
}

/// Which table, and which key in it, a payload names; `None` for payloads
/// that are neither a transaction event nor a domain envelope.
fn entity(payload: &serde_json::Value) -> Option<(&'static str, String)> {
    if let Some(id) = payload.pointer("/transaction/id").and_then(|v| v.as_str()) {
        return Some(("transactions", id.to_owned()));
    }
    let event_type = payload.get("type")?.as_str()?;
    let data = serde_json::to_string(payload.get("data")?).ok()?;
    let event = event::decode(event_type, Some(&data)).ok()?;
    let table = match &event {
        DomainEvent::UserCreated { .. } => "users",
        DomainEvent::OrderPlaced { .. } => "orders",
        DomainEvent::PaymentSettled { .. } => "payments",
        DomainEvent::InventoryAdjusted { .. } => "inventory",
    };
    Some((table, event.key().to_owned()))
}

/// The row `payload` (message `id`'s) applied to, if there is one.
pub async fn of(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    payload: &serde_json::Value,
) -> QueryResult<Option<ProjectionRow>> {
    let Some((table, key)) = entity(payload) else {
        return Ok(None);
    };
    // Table and column names come from the match above, never from input.
    let (sql, column) = match table {
        // The search columns are the row's words again (and would show
        // masked ones): not part of the row shown.
        "transactions" => ("to_jsonb(t) - 'searchable_content' - 'search_vector'", "id"),
        "payments" => ("to_jsonb(t)", "order_id"),
        "inventory" => ("to_jsonb(t)", "sku"),
        _ => ("to_jsonb(t)", "id"),
    };
    let query = format!(
        "SELECT {sql} AS current, t.last_message_id = $2 AS latest FROM {table} t WHERE t.{column} = $1"
    );
    let found: Option<Found> = diesel::sql_query(query)
        .bind::<Text, _>(&key)
        .bind::<SqlUuid, _>(id)
        .get_result(conn)
        .await
        .optional()?;
    Ok(found.map(|f| ProjectionRow {
        table,
        row: f.current,
        last_written_by_this_message: f.latest,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_payload_names_its_entity() {
        let tx = json!({"event_type": "transaction.created", "transaction": {"id": "tx-1"}});
        assert_eq!(entity(&tx), Some(("transactions", "tx-1".to_owned())));
        let stock = json!({"eventId": "e", "type": "InventoryAdjusted", "timestamp": "2024-01-01T00:00:00Z",
            "data": {"sku": "SKU-9", "delta": -2}});
        assert_eq!(entity(&stock), Some(("inventory", "SKU-9".to_owned())));
        assert_eq!(entity(&json!({"hello": "world"})), None);
        assert_eq!(entity(&json!({"type": "Nope", "data": {}})), None);
    }
}
