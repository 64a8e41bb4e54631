//! `GET /transactions/search`: full-text search over transactions (see
//! `store::search`), behind the token. Every input is checked here and a
//! bad one is a 400 naming the field; the query text reaches PostgreSQL
//! only as a bound parameter of `websearch_to_tsquery`, which accepts any
//! text, so no query is a 500. Hits are shown masked (`masking.fields`),
//! and none is found by a masked value (see [`run`]).

use actix_web::{get, web, HttpResponse};
use serde::{Deserialize, Serialize};

use crate::api::auth::{Authorized, Read};
use crate::api::error::ApiError;
use crate::api::params::{self, bad};
use crate::api::read::{conn, key, query_failed};
use crate::api::responses::{Guarded, PostgresBacked};
use crate::api::AppState;
use crate::masking::{self, Masking, RowMask, Table};
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
    /// Hits, as shown: `masking.fields` masked.
    #[schema(value_type = Vec<Hit>)]
    pub results: Vec<serde_json::Value>,
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
#[utoipa::path(tag = "read", security(("bearer" = ["viewer"])), params(SearchQuery), responses((status = 200, description = "Matching transactions, best first, with highlights and versioning fields (_version, _updated_at, _enriched, _enriched_at); `masking.fields` masked, and no hit found only by a masked value", body = SearchPage), Guarded, PostgresBacked))]
#[get("/transactions/search")]
pub async fn search(
    _: Authorized<Read>,
    state: web::Data<AppState>,
    query: web::Query<SearchQuery>,
) -> Result<HttpResponse, ApiError> {
    let wanted = parse(query.into_inner())?;
    for (field, value) in [
        ("user_id", &wanted.user_id),
        ("transaction_type", &wanted.transaction_type),
        ("status", &wanted.status),
    ] {
        if value.is_some() {
            crate::api::read::not_masked(&state, field)?;
        }
    }
    let mut conn = conn(&state).await?;
    Ok(HttpResponse::Ok().json(run(&mut conn, wanted, &state.masking).await?))
}

/// Most rounds one page reads while masking drops hits (each round one
/// page's worth of rows): past them the page is answered short, with the
/// cursor where reading stopped.
const MAX_ROUNDS: usize = 10;

/// Runs a checked search: one page, and the cursor to the next. (The
/// handler and `custodian search` share it.)
///
/// With `masking.fields` on transactions, each hit is shown masked and kept
/// only if the query still matches its search text as a viewer may see it
/// (`masking::search`); a page then reads on until it is full, and the
/// cursor is the last row read, so a page may hold fewer hits than `limit`
/// (even none) and still have a next one. `-word` is refused then: which
/// hits it leaves out would say which hold the word in a masked field.
pub async fn run(
    conn: &mut diesel_async::AsyncPgConnection,
    wanted: Search,
    masking: &Masking,
) -> Result<SearchPage, ApiError> {
    let shape = store::shape(conn, &wanted.q).await.map_err(query_failed)?;
    if !shape.has_words {
        return Err(bad("q", "has no words to search for"));
    }
    let mask = masking.table(Table::Transactions);
    if shape.excludes && !mask.is_empty() {
        return Err(bad(
            "q",
            "excluding a word (-word) is not available while masking.fields masks transactions",
        ));
    }
    let page_size = wanted.limit as usize;
    let mut results: Vec<serde_json::Value> = Vec::with_capacity(page_size);
    let mut last: Option<Cursor> = None;
    let mut after = wanted.after.clone();
    for _ in 0..MAX_ROUNDS {
        // One more than the page: whether there is a next page.
        let round = Search {
            after: after.clone(),
            limit: wanted.limit + 1,
            ..wanted.clone()
        };
        let rows = store::search(conn, &round).await.map_err(query_failed)?;
        let read_all = rows.len() <= page_size;
        for (hit, shown) in visible(conn, &wanted.q, rows, &mask).await? {
            if results.len() == page_size {
                // A row past a full page: there is (perhaps) more.
                return Ok(page(wanted.q, results, last));
            }
            let cursor = Cursor {
                rank: hit.rank,
                id: hit.id,
            };
            if let Some(shown) = shown {
                results.push(shown);
                last = Some(cursor.clone());
            }
            after = Some(cursor);
        }
        if read_all {
            return Ok(page(wanted.q, results, None));
        }
    }
    // Read MAX_ROUNDS pages' worth, mostly hidden: answer what was found,
    // and go on from the last row read.
    Ok(page(wanted.q, results, after))
}

fn page(query: String, results: Vec<serde_json::Value>, next: Option<Cursor>) -> SearchPage {
    SearchPage {
        query,
        count: results.len(),
        results,
        next_cursor: next.as_ref().map(encode_cursor),
    }
}

/// Each hit with its shown form, or `None` where the query matches only
/// what masking hides.
async fn visible(
    conn: &mut diesel_async::AsyncPgConnection,
    q: &str,
    hits: Vec<Hit>,
    mask: &RowMask<'_>,
) -> Result<Vec<(Hit, Option<serde_json::Value>)>, ApiError> {
    if mask.is_empty() {
        return Ok(hits
            .into_iter()
            .map(|h| {
                let shown = serde_json::to_value(&h).ok();
                (h, shown)
            })
            .collect());
    }
    let shown: Vec<serde_json::Value> = hits.iter().map(|h| mask.row(h)).collect();
    let texts: Vec<String> = hits
        .iter()
        .zip(&shown)
        .map(|(h, s)| masking::search::document(h, s, mask))
        .collect();
    let checked = store::recheck(conn, q, &texts)
        .await
        .map_err(query_failed)?;
    Ok(hits
        .into_iter()
        .zip(shown)
        .zip(checked)
        .map(|((hit, mut shown), (matches, highlight))| {
            // The highlight of the text as shown, not the stored one.
            shown["highlight"] = serde_json::Value::String(highlight);
            (hit, matches.then_some(shown))
        })
        .collect())
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
