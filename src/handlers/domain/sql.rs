//! The domain kind's SQL, on the outcome writer's transaction: the
//! `users`, `orders`, `payments` and `inventory` projections. Every value
//! is a bound parameter.

use tokio_postgres::Transaction;

use super::event::{DomainChange, DomainEvent};

type Result<T> = std::result::Result<T, tokio_postgres::Error>;

/// Applies one domain event. Few and interdependent (an order needs its
/// user): in offset order, one statement each. Upserts: an event with new
/// facts about a known key updates its row; the foreign keys refuse an
/// order for an unknown user or a payment for an unknown order.
pub async fn apply(tx: &Transaction<'_>, change: &DomainChange) -> Result<()> {
    let at = change.occurred_at;
    let id = change.message_id;
    match &change.event {
        DomainEvent::UserCreated {
            user_id,
            name,
            email,
            created_at,
        } => {
            tx.execute(
                "INSERT INTO users (id, name, email, created_at, updated_at, last_message_id) \
                 VALUES ($1, $2, $3, $4, $5, $6) \
                 ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, email = EXCLUDED.email, \
                   created_at = EXCLUDED.created_at, updated_at = EXCLUDED.updated_at, \
                   last_message_id = EXCLUDED.last_message_id",
                &[user_id, name, email, created_at, &at, &id],
            )
            .await?;
        }
        DomainEvent::OrderPlaced {
            order_id,
            user_id,
            amount,
            currency,
            items,
        } => {
            tx.execute(
                "INSERT INTO orders (id, user_id, amount, currency, items, placed_at, updated_at, \
                   last_message_id) VALUES ($1, $2, $3::text::numeric, $4, $5, $6, $6, $7) \
                 ON CONFLICT (id) DO UPDATE SET user_id = EXCLUDED.user_id, \
                   amount = EXCLUDED.amount, currency = EXCLUDED.currency, items = EXCLUDED.items, \
                   updated_at = EXCLUDED.updated_at, last_message_id = EXCLUDED.last_message_id",
                &[
                    order_id,
                    user_id,
                    &amount.to_string(),
                    currency,
                    items,
                    &at,
                    &id,
                ],
            )
            .await?;
        }
        DomainEvent::PaymentSettled {
            order_id,
            payment_id,
            amount,
            status,
        } => {
            tx.execute(
                "INSERT INTO payments (order_id, payment_id, amount, status, settled_at, updated_at, \
                   last_message_id) VALUES ($1, $2, $3::text::numeric, $4, $5, $5, $6) \
                 ON CONFLICT (order_id) DO UPDATE SET payment_id = EXCLUDED.payment_id, \
                   amount = EXCLUDED.amount, status = EXCLUDED.status, \
                   settled_at = EXCLUDED.settled_at, updated_at = EXCLUDED.updated_at, \
                   last_message_id = EXCLUDED.last_message_id",
                &[order_id, payment_id, &amount.to_string(), status, &at, &id],
            )
            .await?;
        }
        DomainEvent::InventoryAdjusted { sku, delta, .. } => {
            tx.execute(
                "INSERT INTO inventory (sku, quantity, updated_at, last_message_id) \
                 VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (sku) DO UPDATE SET quantity = inventory.quantity + EXCLUDED.quantity, \
                   updated_at = EXCLUDED.updated_at, last_message_id = EXCLUDED.last_message_id",
                &[sku, delta, &at, &id],
            )
            .await?;
        }
    }
    Ok(())
}
