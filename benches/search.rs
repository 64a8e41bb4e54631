//! Transaction search at scale, and what its index costs writes.
//!
//! 1. Bulk-loads BENCH_TRANSACTIONS (1,000,000) seed-003-shaped rows into
//!    the `transactions` projection with `generate_series` (the generated
//!    `search_vector` computed on insert), then builds the GIN index.
//! 2. Runs searches through `http::search::run` (what the API answers)
//!    BENCH_SEARCH_ROUNDS (200) times each: a common merchant, a peer, an
//!    asset, a selective two-word query, an `or`, a filtered one and a
//!    second page by cursor; prints p50/p99/max per query and overall.
//! 3. Upserts BENCH_WRITES (200,000) rows, in batches of 1,000 with the
//!    projection's `INSERT … ON CONFLICT DO UPDATE` shape (half new ids,
//!    half updates), into three copies of the table: without the search
//!    column, with the generated column but no index, and as shipped
//!    (column + GIN); prints rows per second for each.
//!
//! Run: `eval "$(dev/services.sh env)"; cargo bench --bench search`
//! (PostgreSQL from TEST_POSTGRES_ADMIN_URL; the database it creates is
//! dropped at the end).

use std::time::{Duration, Instant};

use anyhow::Context as _;
use custodian::api::search::{parse, run, SearchQuery};
use custodian::masking::Masking;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

#[path = "support/scratch.rs"]
mod scratch;
use scratch::exec;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// One row of the projection's shape for each `g` of `generate_series`
/// (columns in `transactions` order, `search_vector` left to PostgreSQL).
const ROWS: &str = "
  SELECT 'tx' || g, 'user_' || (g % 5000),
         (ARRAY['card','card','card','p2p','crypto'])[1 + g % 5], NULL::text,
         (ARRAY['completed','pending','failed'])[1 + (g / 7) % 3], 'USD',
         ((g % 100000) / 100.0)::numeric(24,8),
         timestamptz '2024-01-01' + (g % 31536000) * interval '1 second',
         '{}'::jsonb, e.enrichment, true, now(),
         lower((ARRAY['card','card','card','p2p','crypto'])[1 + g % 5] || ' '
               || (ARRAY['completed','pending','failed'])[1 + (g / 7) % 3] || ' usd user_' || (g % 5000)
               || ' ' || e.term || ' ' || ((g % 100000) / 100.0)),
         1::bigint, 'transaction.created', gen_random_uuid(), now(), NULL::timestamptz
    FROM generate_series($1::bigint, $2::bigint) g,
    LATERAL (SELECT CASE g % 5
      WHEN 3 THEN (ARRAY['Alice','Bruno','Chen','Dana','Emeka','Fatima','Goran','Hana','Ivan','Julia',
                         'Kofi','Lena','Mateo','Nadia','Omar','Priya','Quinn','Rosa','Sven','Tariq'])[1 + (g / 5) % 20]
                  || ' ' || (ARRAY['Johnson','Silva','Wang','Okafor','Novak','Haddad','Kim','Rossi','Berg','Lopez'])[1 + (g / 100) % 10]
      WHEN 4 THEN (ARRAY['BTC','ETH','SOL','ADA','DOT','XRP','LTC','USDC'])[1 + (g / 5) % 8]
      ELSE (ARRAY['Starbucks','Uber','Lyft','Amazon','Walmart','Netflix','Spotify','Target','Costco','Shell',
                  'Apple','Ikea','Zara','Nike','Adidas','Airbnb','Delta','Hilton','Chipotle','Subway'])[1 + (g / 5) % 20]
           || ' #' || (g % 997) END AS term) t,
    LATERAL (SELECT CASE g % 5
      WHEN 3 THEN jsonb_build_object('counterparty', t.term, 'direction', 'outgoing', 'payment_method', 'p2p')
      WHEN 4 THEN jsonb_build_object('asset', t.term, 'network', 'mainnet', 'payment_method', 'crypto')
      ELSE jsonb_build_object('merchant_name', t.term, 'merchant_category', 'other', 'payment_method', 'card')
      END AS enrichment, t.term) e";

async fn load(conn: &mut AsyncPgConnection, table: &str, from: i64, to: i64) -> anyhow::Result<()> {
    // The table name is one of this file's constants.
    diesel::sql_query(format!(
        "INSERT INTO {table} (id, user_id, transaction_type, product, status, currency, amount, \
           created_at, metadata, enrichment, enriched, enriched_at, searchable_content, version, \
           last_event_type, last_message_id, updated_at, deleted_at) {ROWS} \
         ON CONFLICT (id) DO UPDATE SET status = EXCLUDED.status, amount = EXCLUDED.amount, \
           enrichment = EXCLUDED.enrichment, searchable_content = EXCLUDED.searchable_content, \
           version = {table}.version + 1, last_message_id = EXCLUDED.last_message_id, \
           updated_at = EXCLUDED.updated_at"
    ))
    .bind::<diesel::sql_types::BigInt, _>(from)
    .bind::<diesel::sql_types::BigInt, _>(to)
    .execute(conn)
    .await
    .with_context(|| format!("load {table}"))?;
    Ok(())
}

fn quantile(sorted: &[Duration], q: f64) -> Duration {
    let i = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

async fn bench(conn: &mut AsyncPgConnection) -> anyhow::Result<()> {
    let n = env_or("BENCH_TRANSACTIONS", 1_000_000) as i64;
    let rounds = env_or("BENCH_SEARCH_ROUNDS", 200);
    let writes = env_or("BENCH_WRITES", 200_000) as i64;

    // 1. The corpus.
    exec(conn, "DROP INDEX transactions_search").await?;
    let started = Instant::now();
    let chunk = 100_000;
    for from in (1..=n).step_by(chunk as usize) {
        load(conn, "transactions", from, (from + chunk - 1).min(n)).await?;
    }
    let loaded = started.elapsed();
    let started = Instant::now();
    exec(
        conn,
        "CREATE INDEX transactions_search ON transactions USING GIN (search_vector)",
    )
    .await?;
    let indexed = started.elapsed();
    exec(conn, "ANALYZE transactions").await?;
    println!(
        "corpus: {n} transactions loaded in {:.1}s ({:.0} rows/s, tsvector generated on insert); GIN index built in {:.1}s",
        loaded.as_secs_f64(),
        n as f64 / loaded.as_secs_f64(),
        indexed.as_secs_f64()
    );

    // 2. Search latency.
    let page_one = run(
        conn,
        parse(SearchQuery {
            q: "starbucks".into(),
            ..Default::default()
        })?,
        &Masking::none(),
    )
    .await?;
    let cursor = page_one.next_cursor.clone();
    let queries: Vec<(&str, SearchQuery)> = vec![
        (
            "common merchant",
            SearchQuery {
                q: "starbucks".into(),
                ..Default::default()
            },
        ),
        (
            "peer (phrase)",
            SearchQuery {
                q: "\"alice johnson\"".into(),
                ..Default::default()
            },
        ),
        (
            "asset",
            SearchQuery {
                q: "btc".into(),
                ..Default::default()
            },
        ),
        (
            "two words",
            SearchQuery {
                q: "starbucks 417".into(),
                ..Default::default()
            },
        ),
        (
            "or",
            SearchQuery {
                q: "uber or lyft".into(),
                ..Default::default()
            },
        ),
        (
            "merchant + user + status",
            SearchQuery {
                q: "starbucks".into(),
                user_id: Some("user_0".into()),
                status: Some("completed".into()),
                ..Default::default()
            },
        ),
        (
            "second page",
            SearchQuery {
                q: "starbucks".into(),
                cursor,
                ..Default::default()
            },
        ),
    ];
    let mut all = Vec::new();
    println!("search over {n} transactions, {rounds} runs each (limit 20, with highlights):");
    for (name, query) in &queries {
        let mut times = Vec::with_capacity(rounds as usize);
        let mut found = 0;
        for _ in 0..rounds {
            let wanted = parse(SearchQuery {
                q: query.q.clone(),
                user_id: query.user_id.clone(),
                status: query.status.clone(),
                cursor: query.cursor.clone(),
                ..Default::default()
            })?;
            let started = Instant::now();
            let page = run(conn, wanted, &Masking::none()).await?;
            times.push(started.elapsed());
            found = page.count;
        }
        times.sort();
        println!(
            "  {name:<26} p50 {:>10}  p99 {:>10}  max {:>10}  ({found} on the page)",
            ms(quantile(&times, 0.5)),
            ms(quantile(&times, 0.99)),
            ms(*times.last().unwrap_or(&Duration::ZERO)),
        );
        all.extend(times);
    }
    all.sort();
    println!(
        "  {:<26} p50 {:>10}  p99 {:>10}",
        "all queries",
        ms(quantile(&all, 0.5)),
        ms(quantile(&all, 0.99))
    );

    // 3. What the index costs the projection's writes.
    let variants = [
        (
            "bench_plain",
            "without the search column",
            "ALTER TABLE bench_plain DROP COLUMN search_vector",
        ),
        ("bench_vector", "generated tsvector, no index", ""),
        (
            "bench_gin",
            "generated tsvector + GIN (shipped)",
            "CREATE INDEX ON bench_gin USING GIN (search_vector)",
        ),
    ];
    println!("projection upserts, {writes} rows in batches of 1000 (half new, half updates):");
    for (table, label, extra) in variants {
        exec(
            conn,
            &format!(
                "CREATE TABLE {table} (LIKE transactions INCLUDING DEFAULTS INCLUDING GENERATED, PRIMARY KEY (id))"
            ),
        )
        .await?;
        exec(
            conn,
            &format!("CREATE INDEX ON {table} (user_id, updated_at DESC)"),
        )
        .await?;
        if !extra.is_empty() {
            exec(conn, extra).await?;
        }
        let distinct = writes / 2;
        let started = Instant::now();
        let mut done = 0;
        while done < writes {
            let from = 1 + done % distinct;
            load(conn, table, from, from + 999).await?;
            done += 1000;
        }
        let took = started.elapsed();
        println!(
            "  {label:<36} {:>9.0} rows/s ({:.1}s)",
            writes as f64 / took.as_secs_f64(),
            took.as_secs_f64()
        );
        exec(conn, &format!("DROP TABLE {table}")).await?;
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    scratch::with_database("search", |mut conn| async move { bench(&mut conn).await })
}
