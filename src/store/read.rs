//! The read side of the projections: what the read API returns.

use bigdecimal::BigDecimal;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde::Serialize;
use uuid::Uuid;

use diesel::dsl::SqlTypeOf;
use diesel::pg::Pg;

use crate::store::schema::{orders, payments, transactions, users};

/// Orders shown with a user.
const RECENT_ORDERS: i64 = 10;

#[derive(Debug, Queryable, Selectable, Serialize, utoipa::ToSchema)]
#[diesel(table_name = users)]
pub struct User {
    pub id: String,
    pub name: String,
    pub email: String,
    pub created_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Queryable, Selectable, Serialize, utoipa::ToSchema)]
#[diesel(table_name = orders)]
pub struct Order {
    pub id: String,
    pub user_id: String,
    /// A decimal, as a string.
    #[schema(value_type = String)]
    pub amount: BigDecimal,
    pub currency: String,
    pub items: serde_json::Value,
    pub placed_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Queryable, Selectable, Serialize, utoipa::ToSchema)]
#[diesel(table_name = payments)]
pub struct Payment {
    pub payment_id: Option<String>,
    /// A decimal, as a string.
    #[schema(value_type = String)]
    pub amount: BigDecimal,
    pub status: String,
    pub settled_at: DateTime<Utc>,
}

/// A row of the `transactions` projection: the state its events carried,
/// and what the projection adds (enrichment, versioning, soft delete).
#[derive(Debug, Queryable, Selectable, Serialize, utoipa::ToSchema)]
#[diesel(table_name = transactions)]
pub struct Transaction {
    #[diesel(embed)]
    #[serde(flatten)]
    pub state: crate::handlers::transactions::event::Transaction,
    pub enrichment: serde_json::Value,
    pub enriched: bool,
    pub enriched_at: Option<DateTime<Utc>>,
    pub searchable_content: String,
    pub version: i64,
    pub last_event_type: String,
    pub last_message_id: Uuid,
    pub updated_at: DateTime<Utc>,
    pub deleted_at: Option<DateTime<Utc>>,
}

/// The event-carried columns of `transactions`, read into the pipeline's
/// own type so the two cannot drift apart.
type StateColumns = (
    transactions::id,
    transactions::user_id,
    transactions::transaction_type,
    transactions::product,
    transactions::status,
    transactions::currency,
    transactions::amount,
    transactions::created_at,
    transactions::metadata,
);

impl Selectable<Pg> for crate::handlers::transactions::event::Transaction {
    type SelectExpression = StateColumns;

    fn construct_selection() -> StateColumns {
        // Each column is a unit value.
        StateColumns::default()
    }
}

type StateRow = (
    String,
    String,
    String,
    Option<String>,
    String,
    String,
    BigDecimal,
    Option<DateTime<Utc>>,
    serde_json::Value,
);

impl Queryable<SqlTypeOf<StateColumns>, Pg> for crate::handlers::transactions::event::Transaction {
    type Row = StateRow;

    fn build(row: StateRow) -> diesel::deserialize::Result<Self> {
        Ok(Self {
            id: row.0,
            user_id: row.1,
            transaction_type: row.2,
            product: row.3,
            status: row.4,
            currency: row.5,
            amount: row.6,
            created_at: row.7,
            metadata: row.8,
        })
    }
}

/// A user and their most recent orders.
pub async fn user(
    conn: &mut AsyncPgConnection,
    id: &str,
) -> QueryResult<Option<(User, Vec<Order>)>> {
    let Some(user) = users::table
        .find(id)
        .select(User::as_select())
        .first(conn)
        .await
        .optional()?
    else {
        return Ok(None);
    };
    let orders = orders::table
        .filter(orders::user_id.eq(id))
        .order(orders::placed_at.desc())
        .limit(RECENT_ORDERS)
        .select(Order::as_select())
        .load(conn)
        .await?;
    Ok(Some((user, orders)))
}

/// An order and its payment, if settled.
pub async fn order(
    conn: &mut AsyncPgConnection,
    id: &str,
) -> QueryResult<Option<(Order, Option<Payment>)>> {
    orders::table
        .left_join(payments::table)
        .filter(orders::id.eq(id))
        .select((Order::as_select(), Option::<Payment>::as_select()))
        .first(conn)
        .await
        .optional()
}

/// Which transactions to list.
#[derive(Debug, Default)]
pub struct TransactionFilter {
    pub user_id: Option<String>,
    pub status: Option<String>,
    pub offset: i64,
    pub limit: i64,
}

/// Transactions, most recently changed first.
pub async fn transactions(
    conn: &mut AsyncPgConnection,
    filter: &TransactionFilter,
) -> QueryResult<Vec<Transaction>> {
    let mut query = transactions::table
        .select(Transaction::as_select())
        .order((transactions::updated_at.desc(), transactions::id.asc()))
        .offset(filter.offset)
        .limit(filter.limit)
        .into_boxed();
    if let Some(user_id) = &filter.user_id {
        query = query.filter(transactions::user_id.eq(user_id.clone()));
    }
    if let Some(status) = &filter.status {
        query = query.filter(transactions::status.eq(status.clone()));
    }
    query.load(conn).await
}

pub async fn transaction(
    conn: &mut AsyncPgConnection,
    id: &str,
) -> QueryResult<Option<Transaction>> {
    transactions::table
        .find(id)
        .select(Transaction::as_select())
        .first(conn)
        .await
        .optional()
}
