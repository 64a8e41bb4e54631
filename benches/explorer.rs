//! The message explorer (`GET /messages`) on a large audit trail.
//!
//! 1. Loads BENCH_AUDIT_ROWS (10,000,000) audit_log rows with
//!    `generate_series` (12 partitions, 50,000 keys, mostly processed with a
//!    few failed, dead-lettered and duplicate entries, 10 ms apart), with the
//!    explorer's indexes dropped, then builds them (as a restore would).
//! 2. Runs each filter through `http::explorer::run` (what the API answers)
//!    BENCH_EXPLORER_ROUNDS (200) times with varying values, first page of
//!    50, plus a deep page by cursor; prints p50/p99/max per filter.
//!
//! Run: `eval "$(dev/services.sh env)"; cargo bench --bench explorer`
//! (the database it creates is dropped at the end).

use std::time::{Duration, Instant};

use custodian::api::explorer::{parse, run, ExplorerQuery};
use custodian::store::explorer::{Cursor, Filter};
use diesel_async::AsyncPgConnection;

#[path = "support/scratch.rs"]
mod scratch;
use scratch::exec;

fn setting(name: &str, default: i64) -> i64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

const PARTITIONS: i64 = 12;
const KEYS: i64 = 50_000;

/// Rows `$1..=$2`: row g is offset g/12 of partition g%12, key user_(g%50000),
/// 10 ms after row g-1.
const ROWS: &str = "
  INSERT INTO audit_log (message_id, status, topic, kafka_partition, kafka_offset, message_key,
                         event_type, attempt, error, consumer_group, occurred_at)
  SELECT gen_random_uuid(),
         CASE WHEN g % 100 < 90 THEN 'MESSAGE_PROCESSED' WHEN g % 100 < 95 THEN 'MESSAGE_FAILED'
              WHEN g % 100 < 98 THEN 'MESSAGE_DLQ' WHEN g % 100 < 99 THEN 'MESSAGE_DUPLICATE'
              ELSE 'MESSAGE_REPLAYED' END,
         'transactions', (g % 12)::int, g / 12, 'user_' || (g % 50000),
         (ARRAY['transaction.created','transaction.created','transaction.updated','transaction.deleted'])[1 + g % 4],
         1, CASE WHEN g % 100 BETWEEN 90 AND 97 THEN 'constraint_violation' END,
         'bench', timestamptz '2024-01-01' + g * interval '10 milliseconds'
    FROM generate_series($1::bigint, $2::bigint) g";

/// The secondary indexes of `audit_log`, as the migrations made them
/// (name, definition), read from the database so this stays in step with
/// them: dropped for the load, rebuilt after.
async fn indexes(conn: &mut AsyncPgConnection) -> anyhow::Result<Vec<(String, String)>> {
    #[derive(diesel::QueryableByName)]
    struct Index {
        #[diesel(sql_type = diesel::sql_types::Text)]
        indexname: String,
        #[diesel(sql_type = diesel::sql_types::Text)]
        indexdef: String,
    }
    let found: Vec<Index> = diesel_async::RunQueryDsl::load(
        diesel::sql_query(
            "SELECT indexname::text, indexdef FROM pg_indexes i \
             WHERE tablename = 'audit_log' AND NOT EXISTS \
               (SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname) \
             ORDER BY indexname",
        ),
        conn,
    )
    .await?;
    Ok(found
        .into_iter()
        .map(|i| (i.indexname, i.indexdef))
        .collect())
}

fn at(g: i64) -> String {
    let t = chrono::DateTime::parse_from_rfc3339("2024-01-01T00:00:00Z").expect("fixed time")
        + chrono::Duration::milliseconds(g * 10);
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// The query string for round `r` of filter `name` over `n` rows.
fn filter(name: &str, r: i64, n: i64) -> String {
    let g = (r * 7_919_993) % n.max(1);
    match name {
        "key" => format!("key=user_{}", (r * 7919) % KEYS),
        "status=MESSAGE_DLQ" => "status=MESSAGE_DLQ".into(),
        "status+time range" => format!(
            "status=MESSAGE_FAILED&from={}&to={}",
            at(g),
            at(g + 360_000)
        ),
        "event_type" => "event_type=transaction.deleted".into(),
        "partition" => format!("topic=transactions&partition={}", r % PARTITIONS),
        "partition+offset range" => format!(
            "topic=transactions&partition={}&offset_from={}&offset_to={}",
            r % PARTITIONS,
            g / PARTITIONS,
            g / PARTITIONS + 1000
        ),
        "time range" => format!("from={}&to={}", at(g), at(g + 60_000)),
        "key+status" => format!("key=user_{}&status=MESSAGE_PROCESSED", (r * 7919) % KEYS),
        _ => String::new(),
    }
}

fn query(pairs: &str) -> anyhow::Result<(Filter, Option<Cursor>, i64)> {
    ExplorerQuery::from_query_string(pairs)
        .and_then(parse)
        .map_err(|e| anyhow::anyhow!("{pairs}: {e:?}"))
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.saturating_sub(1).min(sorted.len() - 1)].as_secs_f64() * 1000.0
}

async fn bench(mut conn: AsyncPgConnection) -> anyhow::Result<()> {
    let conn = &mut conn;
    let n = setting("BENCH_AUDIT_ROWS", 10_000_000);
    let rounds = setting("BENCH_EXPLORER_ROUNDS", 200);
    let indexes = indexes(conn).await?;
    for (name, _) in &indexes {
        exec(conn, &format!("DROP INDEX {name}")).await?;
    }
    let started = Instant::now();
    let chunk = 500_000;
    let mut from = 1;
    while from <= n {
        let to = (from + chunk - 1).min(n);
        diesel_async::RunQueryDsl::execute(
            diesel::sql_query(ROWS)
                .bind::<diesel::sql_types::BigInt, _>(from)
                .bind::<diesel::sql_types::BigInt, _>(to),
            conn,
        )
        .await?;
        from = to + 1;
    }
    let loaded = started.elapsed();
    let started = Instant::now();
    for (_, definition) in &indexes {
        exec(conn, definition).await?;
    }
    exec(conn, "VACUUM ANALYZE audit_log").await?;
    println!(
        "explorer corpus: {n} audit rows loaded in {:.1}s; {} indexes built in {:.1}s",
        loaded.as_secs_f64(),
        indexes.len(),
        started.elapsed().as_secs_f64()
    );

    let names = [
        "none (newest first)",
        "key",
        "key+status",
        "status=MESSAGE_DLQ",
        "status+time range",
        "event_type",
        "partition",
        "partition+offset range",
        "time range",
        "deep page (cursor after 100 pages of a partition)",
    ];
    println!(
        "{:<52} {:>10} {:>10} {:>10}   (page of 50, {rounds} rounds)",
        "filter", "p50", "p99", "max"
    );
    for name in names {
        // The deep page's cursor: 100 pages into a partition.
        let deep = if name.starts_with("deep") {
            let (f, mut after, _) = query("topic=transactions&partition=3")?;
            for _ in 0..100 {
                let page = run(conn, &f, after, 50).await?;
                after = page
                    .next_cursor
                    .and_then(|c| query(&format!("cursor={c}")).ok())
                    .and_then(|(_, a, _)| a);
            }
            after
        } else {
            None
        };
        let mut times = Vec::with_capacity(rounds as usize);
        let mut rows = 0;
        for r in 0..rounds {
            let pairs = if name.starts_with("deep") {
                "topic=transactions&partition=3".to_owned()
            } else {
                filter(name, r, n)
            };
            let (f, after, limit) = query(&pairs)?;
            let started = Instant::now();
            let page = run(conn, &f, after.or(deep), limit).await?;
            times.push(started.elapsed());
            rows += page.count;
        }
        times.sort();
        println!(
            "{name:<52} {:>7.2} ms {:>7.2} ms {:>7.2} ms   ({:.0} rows/page)",
            percentile(&times, 0.50),
            percentile(&times, 0.99),
            percentile(&times, 1.0),
            rows as f64 / rounds as f64
        );
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    scratch::with_database("explorer", bench)
}
