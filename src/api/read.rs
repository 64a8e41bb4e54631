//! The read API over the projections (seeds 001 and 004): users with recent
//! orders, orders with payment status, transactions. Behind the token, like
//! every endpoint that returns business data; the columns holding
//! `masking.fields` are masked, and are no filter.

use actix_web::{get, web, HttpResponse};
use diesel::QueryResult;
use diesel_async::AsyncPgConnection;
use serde::Deserialize;

use crate::api::answers::{OrderWithPayment, TransactionPage, UserWithOrders};
use crate::api::auth::{Authorized, Read};
use crate::api::error::{ApiError, ErrorBody};
use crate::api::responses::{Guarded, PostgresBacked};
use crate::api::AppState;
use crate::masking::Table;
use crate::store::read::{self, Transaction, TransactionFilter};

const MAX_PAGE: i64 = 500;

pub(crate) fn key(field: &str, value: &str) -> Result<(), ApiError> {
    // Characters, not bytes: the documented maxLength counts characters.
    if value.is_empty() || value.chars().count() > 200 || value.chars().any(char::is_control) {
        return Err(ApiError::BadRequest(format!(
            "{field}: 1 to 200 characters, no control characters"
        )));
    }
    Ok(())
}

/// Refuses a filter on a transaction column `masking.fields` masks: its
/// answer would say which rows hold the value.
pub(crate) fn not_masked(state: &AppState, column: &str) -> Result<(), ApiError> {
    let mask = state.masking.table(Table::Transactions);
    let pointer = crate::masking::Pointer::from_tokens([column]);
    if mask.covers(&pointer) {
        return Err(ApiError::BadRequest(format!(
            "{column}: masked (masking.fields), so not a filter"
        )));
    }
    Ok(())
}

pub(crate) async fn conn(
    state: &AppState,
) -> Result<
    diesel_async::pooled_connection::bb8::PooledConnection<'_, diesel_async::AsyncPgConnection>,
    ApiError,
> {
    state.postgres.get().await.map_err(|e| {
        tracing::warn!(error = %e, "no PostgreSQL connection for the read API");
        ApiError::Unavailable("postgres")
    })
}

pub(crate) fn query_failed(e: diesel::result::Error) -> ApiError {
    tracing::warn!(error = %e, "read query failed");
    ApiError::Unavailable("postgres")
}

/// `GET /users/{id}`: the user and their ten most recent orders.
#[utoipa::path(tag = "read", security(("bearer" = ["viewer"])), params(("id" = String, Path, description = "The id", min_length = 1, max_length = 200, pattern = r"^[^\u0000-\u001F\u007F-\u009F]+$")), responses((status = 200, description = "The user and recent orders", body = UserWithOrders), (status = 404, description = "Absent", body = ErrorBody), Guarded, PostgresBacked))]
#[get("/users/{id}")]
pub async fn user(
    _: Authorized<Read>,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let (user, recent_orders) = by_id(&state, &id, "user", read::user).await?;
    let m = &state.masking;
    if m.is_off() {
        return Ok(HttpResponse::Ok().json(UserWithOrders {
            user,
            recent_orders,
        }));
    }
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "user": m.table(Table::Users).row(&user),
        "recent_orders": m.table(Table::Orders).row(&recent_orders),
    })))
}

/// `GET /orders/{id}`: the order and its payment status.
#[utoipa::path(tag = "read", security(("bearer" = ["viewer"])), params(("id" = String, Path, description = "The id", min_length = 1, max_length = 200, pattern = r"^[^\u0000-\u001F\u007F-\u009F]+$")), responses((status = 200, description = "The order and its payment status", body = OrderWithPayment), (status = 404, description = "Absent", body = ErrorBody), Guarded, PostgresBacked))]
#[get("/orders/{id}")]
pub async fn order(
    _: Authorized<Read>,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let (order, payment) = by_id(&state, &id, "order", read::order).await?;
    let answer = OrderWithPayment {
        order,
        payment_status: payment
            .as_ref()
            .map_or("PENDING", |p| p.status.as_str())
            .to_owned(),
        payment,
    };
    let m = &state.masking;
    if m.is_off() {
        return Ok(HttpResponse::Ok().json(answer));
    }
    let payments = m.table(Table::Payments);
    let payment = payments.row(&answer.payment);
    // The status shown is the payment's: masked with it.
    let payment_status = match payment.get("status") {
        Some(status) if answer.payment.is_some() => status.clone(),
        _ => serde_json::json!(answer.payment_status),
    };
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "order": m.table(Table::Orders).row(&answer.order),
        "payment_status": payment_status,
        "payment": payment,
    })))
}

/// One projection row by its `id` path parameter: the id checked, `find`
/// run on a read connection, a 404 naming `what` when there is none.
async fn by_id<T>(
    state: &AppState,
    id: &str,
    what: &str,
    find: impl AsyncFnOnce(&mut AsyncPgConnection, &str) -> QueryResult<Option<T>>,
) -> Result<T, ApiError> {
    key("id", id)?;
    let mut conn = conn(state).await?;
    find(&mut conn, id)
        .await
        .map_err(query_failed)?
        .ok_or_else(|| ApiError::NotFound(format!("no {what} `{id}`")))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct TransactionQuery {
    /// Only this user's.
    #[param(
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F]+$"
    )]
    user_id: Option<String>,
    /// Only this status.
    #[param(
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F]+$"
    )]
    status: Option<String>,
    /// Rows to skip.
    #[serde(default)]
    #[param(minimum = 0)]
    offset: i64,
    /// Page size (default 50).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<i64>,
}

/// `GET /transactions?user_id=&status=&offset=&limit=`: most recent first.
#[utoipa::path(tag = "read", security(("bearer" = ["viewer"])), params(TransactionQuery), responses((status = 200, description = "Transactions, most recently changed first", body = TransactionPage), Guarded, PostgresBacked))]
#[get("/transactions")]
pub async fn transactions(
    _: Authorized<Read>,
    state: web::Data<AppState>,
    query: web::Query<TransactionQuery>,
) -> Result<HttpResponse, ApiError> {
    let q = query.into_inner();
    let limit = q.limit.unwrap_or(50);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::BadRequest(format!("limit: 1 to {MAX_PAGE}")));
    }
    if q.offset < 0 {
        return Err(ApiError::BadRequest("offset: not negative".into()));
    }
    for (field, value) in [("user_id", &q.user_id), ("status", &q.status)] {
        if let Some(value) = value {
            key(field, value)?;
            not_masked(&state, field)?;
        }
    }
    let filter = TransactionFilter {
        user_id: q.user_id,
        status: q.status,
        offset: q.offset,
        limit,
    };
    let mut conn = conn(&state).await?;
    let rows = read::transactions(&mut conn, &filter)
        .await
        .map_err(query_failed)?;
    let page = TransactionPage {
        offset: filter.offset,
        limit,
        count: rows.len(),
        transactions: rows,
    };
    let mask = state.masking.table(Table::Transactions);
    if mask.is_empty() {
        return Ok(HttpResponse::Ok().json(page));
    }
    let mut json = serde_json::to_value(&page).unwrap_or_default();
    if let Some(rows) = json.get_mut("transactions") {
        mask.apply_each(rows);
    }
    Ok(HttpResponse::Ok().json(json))
}

/// `GET /transactions/{id}`.
#[utoipa::path(tag = "read", security(("bearer" = ["viewer"])), params(("id" = String, Path, description = "The id", min_length = 1, max_length = 200, pattern = r"^[^\u0000-\u001F\u007F-\u009F]+$")), responses((status = 200, description = "The transaction", body = Transaction), (status = 404, description = "Absent", body = ErrorBody), Guarded, PostgresBacked))]
#[get("/transactions/{id}")]
pub async fn transaction(
    _: Authorized<Read>,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    key("id", &id)?;
    let mut conn = conn(&state).await?;
    match read::transaction(&mut conn, &id)
        .await
        .map_err(query_failed)?
    {
        Some(tx) => Ok(HttpResponse::Ok().json(state.masking.table(Table::Transactions).row(&tx))),
        None => Err(ApiError::NotFound(format!("no transaction `{id}`"))),
    }
}
