//! Archiving a sealed period, and verifying it from the archive.
//!
//! 1. Writes BENCH_ENTRIES (1,000,000) chained audit entries, each with a
//!    seed-003-shaped payload of about 330 bytes and its receipt, over four
//!    chains, into a partition whose period has ended (binary COPY, the
//!    hashes computed with `store::chain` as the writer does).
//! 2. Seals it, then archives it (Parquet, signed manifest, read back and
//!    checked, recorded, dropped) to a local directory, or to
//!    BENCH_ARCHIVE_URL (with the `audit.archive.*` settings from the
//!    environment); prints entries/s and the size per million entries next
//!    to the partition's size in PostgreSQL (table, TOAST and indexes).
//! 3. Runs `audit verify`, which reads the period back from the archive,
//!    and prints its speed.
//!
//! Run: `eval "$(dev/services.sh env)"; cargo bench --bench archive`
//! (PostgreSQL from TEST_POSTGRES_ADMIN_URL; the database it creates is
//! dropped at the end).

use std::time::Instant;

use anyhow::Context as _;
use chrono::{Duration, Utc};
use custodian::store::chain::{Fields, Hasher, GENESIS};
use futures::pin_mut;
use sha2::{Digest, Sha256};
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{ToSql, Type};

#[path = "support/scratch.rs"]
mod scratch;

const SEED: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const CHAINS: i64 = 4;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn payload(i: i64) -> Vec<u8> {
    format!(
        r#"{{"event_type":"transaction.created","timestamp":"2026-11-02T10:00:00Z","data":{{"id":"tx-{i}","user_id":"user_{}","transaction_type":"card","status":"completed","amount":{}.{:02},"currency":"USD","metadata":{{"merchant_name":"Starbucks #{}","merchant_category":"coffee","card_last_four":"{:04}"}}}}}}"#,
        i % 5000,
        i % 1000,
        i % 100,
        i % 997,
        i % 10_000
    )
    .into_bytes()
}

async fn bench(url: String) -> anyhow::Result<()> {
    let entries = env_or("BENCH_ENTRIES", 1_000_000) as i64;
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    // A period that ended yesterday, in place of the first partition.
    let end = Utc::now() - Duration::days(1);
    let recorded = end - Duration::hours(1);
    client
        .batch_execute(&format!(
            "ALTER TABLE audit_log DETACH PARTITION audit_log_initial;
             DROP TABLE audit_log_initial;
             DELETE FROM audit_partitions;
             CREATE TABLE audit_log_b0 (LIKE audit_log INCLUDING DEFAULTS INCLUDING CONSTRAINTS);
             ALTER TABLE audit_log_b0 ADD CONSTRAINT audit_log_b0_chain_seq UNIQUE (chain_id, chain_seq);
             ALTER TABLE audit_log ATTACH PARTITION audit_log_b0 FOR VALUES FROM (MINVALUE) TO ('{end}');
             INSERT INTO audit_partitions (name, from_time, to_time) VALUES ('audit_log_b0', NULL, '{end}');
             SELECT custodian_audit_partitions_ensure('month', now() + interval '1 month');"
        ))
        .await?;
    let mut chain_ids = Vec::new();
    for c in 0..CHAINS {
        let name = format!("partition/bench/{c}");
        let row = client
            .query_one(
                "INSERT INTO audit_chains (name) VALUES ($1) RETURNING chain_id",
                &[&name],
            )
            .await?;
        chain_ids.push((name, row.get::<_, i32>(0)));
    }

    let started = Instant::now();
    let sink = client
        .copy_in(
            "COPY audit_log (message_id, status, topic, kafka_partition, kafka_offset, message_key, \
             attempt, consumer_group, occurred_at, recorded_at, received_at, key_bytes, payload, \
             payload_sha256, chain_id, chain_seq, entry_hash, blinding) FROM STDIN BINARY",
        )
        .await?;
    let types = [
        Type::UUID,
        Type::TEXT,
        Type::TEXT,
        Type::INT4,
        Type::INT8,
        Type::TEXT,
        Type::INT4,
        Type::TEXT,
        Type::TIMESTAMPTZ,
        Type::TIMESTAMPTZ,
        Type::TIMESTAMPTZ,
        Type::BYTEA,
        Type::BYTEA,
        Type::BYTEA,
        Type::INT4,
        Type::INT8,
        Type::BYTEA,
        Type::BYTEA,
    ];
    let writer = BinaryCopyInWriter::new(sink, &types);
    pin_mut!(writer);
    let mut hasher = Hasher::default();
    let mut heads = vec![GENESIS; CHAINS as usize];
    for i in 0..entries {
        let c = (i % CHAINS) as usize;
        let seq = i / CHAINS + 1;
        let (name, chain_id) = &chain_ids[c];
        let body = payload(i);
        let digest: [u8; 32] = Sha256::digest(&body).into();
        let key = format!("user_{}", i % 5000);
        let id = uuid::Uuid::new_v4();
        // Encoding version 2, as custodian writes entries now.
        let blinding = custodian::store::chain::blinding();
        let fields = Fields {
            chain: name,
            seq,
            message_id: id,
            status: "MESSAGE_PROCESSED",
            topic: "bench",
            kafka_partition: c as i32,
            kafka_offset: seq,
            message_key: Some(&key),
            event_type: None,
            attempt: 1,
            error: None,
            consumer_group: "bench",
            occurred_at: recorded,
            detail: None,
            received_at: Some(recorded),
            received_detail: None,
            key_bytes: Some(key.as_bytes()),
            headers: None,
            kafka_timestamp: None,
            payload_sha256: Some(&digest),
            blinding: Some(&blinding),
            erased_digest: None,
        };
        let hash = hasher.hash(&fields, &heads[c]);
        heads[c] = hash;
        let row: [&(dyn ToSql + Sync); 18] = [
            &id,
            &"MESSAGE_PROCESSED",
            &"bench",
            &(c as i32),
            &seq,
            &key,
            &1i32,
            &"bench",
            &recorded,
            &recorded,
            &recorded,
            &key.as_bytes(),
            &body.as_slice(),
            &&digest[..],
            chain_id,
            &seq,
            &&hash[..],
            &&blinding[..],
        ];
        writer.as_mut().write(&row).await?;
    }
    writer.finish().await?;
    for (c, (_, chain_id)) in chain_ids.iter().enumerate() {
        client
            .execute(
                "UPDATE audit_chain_heads SET chain_seq = $2, entry_hash = $3 WHERE chain_id = $1",
                &[chain_id, &(entries / CHAINS), &&heads[c][..]],
            )
            .await?;
    }
    client.batch_execute("VACUUM ANALYZE audit_log_b0").await?;
    println!(
        "wrote {entries} chained entries in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    let pg_bytes: i64 = client
        .query_one("SELECT pg_total_relation_size('audit_log_b0')", &[])
        .await?
        .get(0);

    let dir = std::env::temp_dir().join(format!("custodian-archive-bench-{}", std::process::id()));
    let archive_url =
        std::env::var("BENCH_ARCHIVE_URL").unwrap_or_else(|_| dir.display().to_string());
    let settings = custodian::config::Settings::from_overrides(&[
        ("postgres.url", url.clone().into()),
        ("audit.signing_key", SEED.into()),
        ("audit.archive.url", archive_url.clone().into()),
        ("audit.verify_connections", 1.into()),
    ])
    .context("settings")?;
    let access = custodian::trail::Access::from_settings(&settings)?;
    let started = Instant::now();
    let seals = access.seal(Utc::now()).await?;
    println!(
        "sealed {} partition(s) in {:.1}s",
        seals.len(),
        started.elapsed().as_secs_f64()
    );
    let archived = access.archive(false).await?;
    let a = archived.first().context("nothing archived")?;
    let per_million = |bytes: f64| bytes / entries as f64 * 1e6 / (1024.0 * 1024.0);
    println!(
        "archived {} entries to {archive_url} in {:.1}s: {:.0} entries/s (written, read back and checked, recorded, dropped)",
        a.entries,
        a.seconds,
        a.entries as f64 / a.seconds
    );
    println!(
        "size per million entries: archive {:.1} MiB ({} Parquet files), PostgreSQL {:.1} MiB (table, TOAST, indexes)",
        per_million(a.bytes as f64),
        a.files,
        per_million(pg_bytes as f64)
    );
    let report = access.verify(None, false, None).await?;
    anyhow::ensure!(report.holds, "verify: {:?}", report.problems());
    println!(
        "verify over the archive: {} entries ({} archived) in {:.1}s: {:.0} entries/s",
        report.entries_checked, report.archived_entries, report.seconds, report.entries_per_second
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

fn main() -> anyhow::Result<()> {
    scratch::with_database_at("archive", bench)
}
