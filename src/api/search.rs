//! `GET /transactions/search`: full-text search over transactions (see
//! `store::search`), behind the token. Every input is checked here and a
//! bad one is a 400 naming the field; the query text reaches PostgreSQL
//! only as a bound parameter of `websearch_to_tsquery`, which accepts any
//! text, so no query is a 500.

use actix_web::{get, web, HttpResponse};
use serde::{Deserialize, Serialize};

use crate::api::auth::{Authorized, Read};
use crate::api::error::ApiError;
use crate::api::params::{self, bad};
use crate::api::read::{conn, key, query_failed};
use crate::api::responses::{Guarded, PostgresBacked};
use crate::api::AppState;
use crate::store::search::{self as store, Cursor, Hit, Search};

const DEFAULT_LIMIT: i64 = 20;
const MAX_LIMIT: i64 = 100;
const MAX_QUERY_CHARS: usize = 200;

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SearchQuery {
    /// What to look for: words (all must match), "a phrase", `or`, `-word`.
    #[param(min_length = 1, max_length = 200)]
    pub q: String,
    /// Only this user's.
    #[param(min_length = 1, max_length = 200)]
    pub user_id: Option<String>,
    /// Only this transaction type (`card`, `p2p`, `crypto`, …).
    #[serde(rename = "type")]
    #[param(rename = "type", min_length = 1, max_length = 200)]
    pub transaction_type: Option<String>,
    /// Only this status.
    #[param(min_length = 1, max_length = 200)]
    pub status: Option<String>,
    /// Created at or after this time (RFC 3339).
    #[param(value_type = Option<String>, format = DateTime)]
    pub from: Option<String>,
    /// Created before this time (RFC 3339).
    #[param(value_type = Option<String>, format = DateTime)]
    pub to: Option<String>,
    /// Page size (default 20).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 100)]
    pub limit: Option<String>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// A page of results.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SearchPage {
    pub query: String,
    pub count: usize,
    pub results: Vec<Hit>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

pub fn encode_cursor(cursor: &Cursor) -> String {
    params::encode_cursor(cursor)
}

pub fn decode_cursor(text: &str) -> Result<Cursor, ApiError> {
    params::decode_cursor::<Cursor>(text)
        .filter(|c| c.rank.is_finite() && !c.id.is_empty() && !c.id.contains('\0'))
        .ok_or_else(|| bad("cursor", "not a next_cursor from this endpoint"))
}

/// Checks the query string; the search to run.
pub fn parse(q: SearchQuery) -> Result<Search, ApiError> {
    let text = q.q.trim();
    if text.is_empty() {
        return Err(bad("q", "must not be empty"));
    }
    if text.chars().count() > MAX_QUERY_CHARS || text.chars().any(char::is_control) {
        return Err(bad("q", "1 to 200 characters, no control characters"));
    }
    for (field, value) in [
        ("user_id", &q.user_id),
        ("type", &q.transaction_type),
        ("status", &q.status),
    ] {
        if let Some(value) = value {
            key(field, value)?;
        }
    }
    let limit = params::page_size(q.limit.as_deref(), DEFAULT_LIMIT, MAX_LIMIT)?;
    let (from, to) = params::window(q.from, q.to)?;
    Ok(Search {
        q: text.to_owned(),
        user_id: q.user_id,
        transaction_type: q.transaction_type,
        status: q.status,
        from,
        to,
        limit,
        after: q.cursor.as_deref().map(decode_cursor).transpose()?,
    })
}

/// `GET /transactions/search?q=…`: ranked transactions with highlights.
#[utoipa::path(tag = "read", security(("bearer" = ["viewer"])), params(SearchQuery), responses((status = 200, description = "Matching transactions, best first, with highlights and versioning fields (_version, _updated_at, _enriched, _enriched_at)", body = SearchPage), Guarded, PostgresBacked))]
#[get("/transactions/search")]
pub async fn search(
    _: Authorized<Read>,
    state: web::Data<AppState>,
    query: web::Query<SearchQuery>,
) -> Result<HttpResponse, ApiError> {
    let wanted = parse(query.into_inner())?;
    let mut conn = conn(&state).await?;
    Ok(HttpResponse::Ok().json(run(&mut conn, wanted).await?))
}

/// Runs a checked search: one page, and the cursor to the next. (The
/// handler and `custodian search` share it.)
pub async fn run(
    conn: &mut diesel_async::AsyncPgConnection,
    mut wanted: Search,
) -> Result<SearchPage, ApiError> {
    if !store::has_words(conn, &wanted.q)
        .await
        .map_err(query_failed)?
    {
        return Err(bad("q", "has no words to search for"));
    }
    let page_size = wanted.limit;
    // One more than the page: whether there is a next page.
    wanted.limit += 1;
    let mut results = store::search(conn, &wanted).await.map_err(query_failed)?;
    let more = results.len() as i64 > page_size;
    results.truncate(page_size as usize);
    let next_cursor = more.then(|| results.last()).flatten().map(|last| {
        encode_cursor(&Cursor {
            rank: last.rank,
            id: last.id.clone(),
        })
    });
    Ok(SearchPage {
        query: wanted.q,
        count: results.len(),
        results,
        next_cursor,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(pairs: &str) -> Result<Search, ApiError> {
        let q = web::Query::<SearchQuery>::from_query(pairs).expect("shape");
        parse(q.into_inner())
    }

    #[test]
    fn bad_input_names_the_field() {
        for (pairs, field) in [
            ("q=", "q"),
            ("q=%20%20", "q"),
            ("q=a%00b", "q"),
            ("q=coffee&limit=0", "limit"),
            ("q=coffee&limit=lots", "limit"),
            ("q=coffee&from=yesterday", "from"),
            (
                "q=coffee&from=2024-02-01T00:00:00Z&to=2024-01-01T00:00:00Z",
                "from",
            ),
            ("q=coffee&cursor=not-ours", "cursor"),
            ("q=coffee&status=", "status"),
        ] {
            match query(pairs) {
                Err(ApiError::BadRequest(m)) => assert!(m.starts_with(field), "{pairs}: {m}"),
                other => panic!("{pairs}: {other:?}"),
            }
        }
    }

    #[test]
    fn cursors_round_trip_exactly() {
        let cursor = Cursor {
            rank: 0.060_792_7,
            id: "tx-ü/1".into(),
        };
        assert_eq!(decode_cursor(&encode_cursor(&cursor)).ok(), Some(cursor));
    }
}
