//! Full-text search over the transaction projection: PostgreSQL's own text
//! search (the `search_vector` column and its GIN index, migration
//! 000009) in place of seed 003's Elasticsearch.
//!
//! The query text goes through `websearch_to_tsquery` as a bound parameter:
//! quotes make phrases, `or` alternatives, `-` exclusions, and no input is a
//! syntax error. Results are ranked (`ts_rank`, best first, ties by id) and
//! paged by keyset: the cursor is the last row's (rank, id), so a page
//! starts right after the previous one however many rows change, appear or
//! go meanwhile; a row keeps its place unless its own searchable text
//! changes (then its rank, and so its place, is the new one).

use bigdecimal::BigDecimal;
use chrono::{DateTime, Utc};
use diesel::sql_types::{BigInt, Bool, Float4, Integer, Jsonb, Nullable, Text, Timestamptz};
use diesel::QueryResult;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde::{Deserialize, Serialize};

/// The text search configuration: names, not English words to stem.
const CONFIG: &str = "simple";

/// Where the previous page ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cursor {
    /// The last row's rank…
    #[serde(rename = "r")]
    pub rank: f32,
    /// …and its id (ties are broken by id).
    #[serde(rename = "i")]
    pub id: String,
}

/// A search and its filters, already checked (see `http::search`).
#[derive(Debug, Clone, Default)]
pub struct Search {
    pub q: String,
    pub user_id: Option<String>,
    pub transaction_type: Option<String>,
    pub status: Option<String>,
    /// Transactions created at or after…
    pub from: Option<DateTime<Utc>>,
    /// …and before.
    pub to: Option<DateTime<Utc>>,
    pub limit: i64,
    pub after: Option<Cursor>,
}

/// One result: the transaction's searchable fields, seed 003's versioning
/// fields, its rank and a highlighted fragment.
#[derive(Debug, Clone, diesel::QueryableByName, Serialize, utoipa::ToSchema)]
pub struct Hit {
    #[diesel(sql_type = Text)]
    pub id: String,
    #[diesel(sql_type = Text)]
    pub user_id: String,
    #[diesel(sql_type = Text)]
    pub transaction_type: String,
    #[diesel(sql_type = Nullable<Text>)]
    pub product: Option<String>,
    #[diesel(sql_type = Text)]
    pub status: String,
    #[diesel(sql_type = Text)]
    pub currency: String,
    /// A decimal, as a string.
    #[diesel(sql_type = diesel::sql_types::Numeric)]
    #[schema(value_type = String)]
    pub amount: BigDecimal,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    pub created_at: Option<DateTime<Utc>>,
    /// The enrichment: merchant and category, counterparty, asset…
    #[diesel(sql_type = Jsonb)]
    pub enrichment: serde_json::Value,
    /// Seed 003's `_version`: events applied to this transaction.
    #[diesel(sql_type = BigInt)]
    pub version: i64,
    /// Seed 003's `_updated_at`.
    #[diesel(sql_type = Timestamptz)]
    pub updated_at: DateTime<Utc>,
    /// Seed 003's `_enriched`.
    #[diesel(sql_type = Bool)]
    pub enriched: bool,
    /// Seed 003's `_enriched_at`.
    #[diesel(sql_type = Nullable<Timestamptz>)]
    pub enriched_at: Option<DateTime<Utc>>,
    /// Relevance (`ts_rank`); higher is better.
    #[diesel(sql_type = Float4)]
    pub rank: f32,
    /// The matching text with each hit between `<mark>` and `</mark>`. Only
    /// those two tags are markup: the rest is plain text, not HTML-escaped.
    #[diesel(sql_type = Text)]
    pub highlight: String,
}

#[derive(diesel::QueryableByName)]
struct Nodes {
    #[diesel(sql_type = Integer)]
    nodes: i32,
    #[diesel(sql_type = Bool)]
    excludes: bool,
}

/// What a query text is made of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    /// It has something to search for (a query of punctuation or
    /// operators alone has no words).
    pub has_words: bool,
    /// It excludes a word (`-word`).
    pub excludes: bool,
}

/// The [`Shape`] of `q`.
pub async fn shape(conn: &mut AsyncPgConnection, q: &str) -> QueryResult<Shape> {
    // A lexeme is quoted in the text form: `!` outside quotes is a NOT.
    diesel::sql_query(
        "SELECT numnode(tq) AS nodes,                 regexp_replace(tq::text, '''([^'']|'''')*''', '', 'g') LIKE '%!%' AS excludes            FROM websearch_to_tsquery($1::regconfig, $2) AS tq",
    )
    .bind::<Text, _>(CONFIG)
    .bind::<Text, _>(q)
    .get_result::<Nodes>(conn)
    .await
    .map(|n| Shape {
        has_words: n.nodes > 0,
        excludes: n.excludes,
    })
}

#[derive(diesel::QueryableByName)]
struct Rechecked {
    #[diesel(sql_type = Bool)]
    matches: bool,
    #[diesel(sql_type = Text)]
    highlight: String,
}

/// For each of `texts` (hits' search texts as a viewer may see them,
/// `masking::search`), whether `q` matches it, and its highlighted
/// fragment (as [`search`] makes them), in order.
pub async fn recheck(
    conn: &mut AsyncPgConnection,
    q: &str,
    texts: &[String],
) -> QueryResult<Vec<(bool, String)>> {
    if texts.is_empty() {
        return Ok(Vec::new());
    }
    let rows: Vec<Rechecked> = diesel::sql_query(
        "SELECT to_tsvector($1::regconfig, d.text) @@ q.query AS matches,                 ts_headline($1::regconfig, d.text, q.query,                   'StartSel=<mark>, StopSel=</mark>, MaxWords=20, MinWords=5') AS highlight            FROM unnest($3::text[]) WITH ORDINALITY AS d(text, n),                 (SELECT websearch_to_tsquery($1::regconfig, $2) AS query) q           ORDER BY d.n",
    )
    .bind::<Text, _>(CONFIG)
    .bind::<Text, _>(q)
    .bind::<diesel::sql_types::Array<Text>, _>(texts)
    .load(conn)
    .await?;
    Ok(rows.into_iter().map(|r| (r.matches, r.highlight)).collect())
}

/// Up to `search.limit` hits after `search.after`, best first.
pub async fn search(conn: &mut AsyncPgConnection, search: &Search) -> QueryResult<Vec<Hit>> {
    let (after_rank, after_id) = match &search.after {
        Some(c) => (Some(c.rank), Some(c.id.as_str())),
        None => (None, None),
    };
    // Ranks are computed for the matching rows only, the page is cut, and
    // only then is the (costly) headline made, for the page's rows.
    diesel::sql_query(
        "WITH q AS (SELECT websearch_to_tsquery($1::regconfig, $2) AS query), \
         page AS ( \
           SELECT t.id, ts_rank(t.search_vector, q.query) AS rank \
             FROM transactions t, q \
            WHERE t.search_vector @@ q.query \
              AND t.deleted_at IS NULL \
              AND ($3::text IS NULL OR t.user_id = $3) \
              AND ($4::text IS NULL OR t.transaction_type = $4) \
              AND ($5::text IS NULL OR t.status = $5) \
              AND ($6::timestamptz IS NULL OR t.created_at >= $6) \
              AND ($7::timestamptz IS NULL OR t.created_at < $7) \
              AND ($8::real IS NULL \
                   OR ts_rank(t.search_vector, q.query) < $8 \
                   OR (ts_rank(t.search_vector, q.query) = $8 AND t.id > $9)) \
            ORDER BY rank DESC, t.id \
            LIMIT $10) \
         SELECT t.id, t.user_id, t.transaction_type, t.product, t.status, t.currency, t.amount, \
                t.created_at, t.enrichment, t.version, t.updated_at, t.enriched, t.enriched_at, \
                page.rank, \
                ts_headline($1::regconfig, \
                  t.searchable_content || ' ' || coalesce(t.enrichment->>'merchant_category', '') \
                    || ' ' || coalesce(t.enrichment->>'network', ''), \
                  q.query, 'StartSel=<mark>, StopSel=</mark>, MaxWords=20, MinWords=5') AS highlight \
           FROM page JOIN transactions t ON t.id = page.id, q \
          ORDER BY page.rank DESC, page.id",
    )
    .bind::<Text, _>(CONFIG)
    .bind::<Text, _>(&search.q)
    .bind::<Nullable<Text>, _>(search.user_id.as_deref())
    .bind::<Nullable<Text>, _>(search.transaction_type.as_deref())
    .bind::<Nullable<Text>, _>(search.status.as_deref())
    .bind::<Nullable<Timestamptz>, _>(search.from)
    .bind::<Nullable<Timestamptz>, _>(search.to)
    .bind::<Nullable<Float4>, _>(after_rank)
    .bind::<Nullable<Text>, _>(after_id)
    .bind::<BigInt, _>(search.limit)
    .load(conn)
    .await
}
