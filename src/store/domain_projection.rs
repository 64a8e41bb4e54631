//! Applying domain events to `users`, `orders`, `payments` and
//! `inventory`, inside the caller's transaction (the one that also writes the
//! idempotency ledger). Upserts: an event with new facts about a known key
//! updates its row; the keys' foreign keys refuse an order for an unknown
//! user or a payment for an unknown order.

use diesel::prelude::*;
use diesel::upsert::excluded;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::pipeline::domain_event::{DomainChange, DomainEvent};
use crate::store::schema::{inventory, orders, payments, users};

/// Applies one event.
pub async fn apply(conn: &mut AsyncPgConnection, change: &DomainChange) -> QueryResult<()> {
    let at = change.occurred_at;
    let id = change.message_id;
    match &change.event {
        DomainEvent::UserCreated {
            user_id,
            name,
            email,
            created_at,
        } => {
            diesel::insert_into(users::table)
                .values((
                    users::id.eq(user_id),
                    users::name.eq(name),
                    users::email.eq(email),
                    users::created_at.eq(created_at),
                    users::updated_at.eq(at),
                    users::last_message_id.eq(id),
                ))
                .on_conflict(users::id)
                .do_update()
                .set((
                    users::name.eq(excluded(users::name)),
                    users::email.eq(excluded(users::email)),
                    users::created_at.eq(excluded(users::created_at)),
                    users::updated_at.eq(excluded(users::updated_at)),
                    users::last_message_id.eq(excluded(users::last_message_id)),
                ))
                .execute(conn)
                .await?;
        }
        DomainEvent::OrderPlaced {
            order_id,
            user_id,
            amount,
            currency,
            items,
        } => {
            diesel::insert_into(orders::table)
                .values((
                    orders::id.eq(order_id),
                    orders::user_id.eq(user_id),
                    orders::amount.eq(amount),
                    orders::currency.eq(currency),
                    orders::items.eq(items),
                    orders::placed_at.eq(at),
                    orders::updated_at.eq(at),
                    orders::last_message_id.eq(id),
                ))
                .on_conflict(orders::id)
                .do_update()
                .set((
                    orders::user_id.eq(excluded(orders::user_id)),
                    orders::amount.eq(excluded(orders::amount)),
                    orders::currency.eq(excluded(orders::currency)),
                    orders::items.eq(excluded(orders::items)),
                    orders::updated_at.eq(excluded(orders::updated_at)),
                    orders::last_message_id.eq(excluded(orders::last_message_id)),
                ))
                .execute(conn)
                .await?;
        }
        DomainEvent::PaymentSettled {
            order_id,
            payment_id,
            amount,
            status,
        } => {
            diesel::insert_into(payments::table)
                .values((
                    payments::order_id.eq(order_id),
                    payments::payment_id.eq(payment_id),
                    payments::amount.eq(amount),
                    payments::status.eq(status),
                    payments::settled_at.eq(at),
                    payments::updated_at.eq(at),
                    payments::last_message_id.eq(id),
                ))
                .on_conflict(payments::order_id)
                .do_update()
                .set((
                    payments::payment_id.eq(excluded(payments::payment_id)),
                    payments::amount.eq(excluded(payments::amount)),
                    payments::status.eq(excluded(payments::status)),
                    payments::settled_at.eq(excluded(payments::settled_at)),
                    payments::updated_at.eq(excluded(payments::updated_at)),
                    payments::last_message_id.eq(excluded(payments::last_message_id)),
                ))
                .execute(conn)
                .await?;
        }
        DomainEvent::InventoryAdjusted { sku, delta, .. } => {
            diesel::insert_into(inventory::table)
                .values((
                    inventory::sku.eq(sku),
                    inventory::quantity.eq(delta),
                    inventory::updated_at.eq(at),
                    inventory::last_message_id.eq(id),
                ))
                .on_conflict(inventory::sku)
                .do_update()
                .set((
                    inventory::quantity.eq(inventory::quantity + excluded(inventory::quantity)),
                    inventory::updated_at.eq(excluded(inventory::updated_at)),
                    inventory::last_message_id.eq(excluded(inventory::last_message_id)),
                ))
                .execute(conn)
                .await?;
        }
    }
    Ok(())
}
