//! The chained append: each entry's place in its partition's chain (the
//! next sequence number and hash, from heads the writer caches or reads),
//! and the binary `COPY` that appends a flush's entries. Used inside the
//! outcome writer's transaction (`writer.rs`); values travel in
//! PostgreSQL's binary format, never as SQL text.

use std::collections::{HashMap, HashSet};

use futures::pin_mut;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::Transaction;

use super::WriteError;
use crate::store::audit::AuditEntry;
use crate::store::chain::{self, Hasher};

/// The columns of `audit_log` an entry fills, in COPY order.
const COPY: &str = "COPY audit_log (message_id, status, topic, kafka_partition, kafka_offset, \
    message_key, event_type, attempt, error, consumer_group, occurred_at, detail, \
    received_at, received_detail, key_bytes, payload, headers, kafka_timestamp, payload_sha256, \
    chain_id, chain_seq, entry_hash) \
    FROM STDIN BINARY";

const TYPES: [Type; 22] = [
    Type::UUID,
    Type::TEXT,
    Type::TEXT,
    Type::INT4,
    Type::INT8,
    Type::TEXT,
    Type::TEXT,
    Type::INT4,
    Type::TEXT,
    Type::TEXT,
    Type::TIMESTAMPTZ,
    Type::JSONB,
    Type::TIMESTAMPTZ,
    Type::JSONB,
    Type::BYTEA,
    Type::BYTEA,
    Type::JSONB,
    Type::TIMESTAMPTZ,
    Type::BYTEA,
    Type::INT4,
    Type::INT8,
    Type::BYTEA,
];

/// The constraint a stale cached head runs into.
const CHAIN_SEQ_CONSTRAINT: &str = "audit_log_chain_seq";
/// A chain's last entry, as this writer knows it.
#[derive(Debug, Clone, Copy)]
pub struct ChainHead {
    pub chain_id: i32,
    pub seq: i64,
    pub hash: [u8; 32],
}

/// Where one entry goes in its chain.
#[derive(Debug, Clone, Copy)]
pub struct Link {
    chain_id: i32,
    seq: i64,
    hash: [u8; 32],
}

/// Each entry's chain, sequence number and hash, and the chains' new
/// heads. Heads not cached are read from the database.
pub async fn link(
    cached: &HashMap<String, ChainHead>,
    hasher: &mut Hasher,
    tx: &Transaction<'_>,
    entries: &[AuditEntry<'_>],
) -> Result<(Vec<Link>, HashMap<String, ChainHead>), WriteError> {
    let names: Vec<String> = entries
        .iter()
        .map(|e| chain::partition_chain(e.topic, e.kafka_partition))
        .collect();
    let missing: Vec<&String> = {
        let mut seen = HashSet::new();
        names
            .iter()
            .filter(|n| !cached.contains_key(*n) && seen.insert(*n))
            .collect()
    };
    // Read in this transaction: cached only once it commits.
    let loaded = if missing.is_empty() {
        HashMap::new()
    } else {
        load_heads(tx, &missing).await?
    };
    let mut heads: HashMap<String, ChainHead> = HashMap::new();
    let mut links = Vec::with_capacity(entries.len());
    for (entry, name) in entries.iter().zip(names) {
        let head = match heads.get_mut(&name) {
            Some(h) => h,
            None => {
                let known = cached.get(&name).or_else(|| loaded.get(&name)).copied();
                let known =
                    known.ok_or_else(|| WriteError::Chain(format!("{name} was not registered")))?;
                heads.entry(name.clone()).or_insert(known)
            }
        };
        let (seq, hash) =
            super::chained::link_next(hasher, &entry.fields(&name, head.seq + 1), &head.hash);
        *head = ChainHead {
            chain_id: head.chain_id,
            seq,
            hash,
        };
        links.push(Link {
            chain_id: head.chain_id,
            seq,
            hash,
        });
    }
    Ok((links, heads))
}

/// Appends the entries with one binary COPY.
pub async fn copy(
    tx: &Transaction<'_>,
    entries: &[AuditEntry<'_>],
    links: Option<&[Link]>,
) -> Result<(), tokio_postgres::Error> {
    if entries.is_empty() {
        return Ok(());
    }
    let sink = tx.copy_in(COPY).await?;
    let writer = BinaryCopyInWriter::new(sink, &TYPES);
    pin_mut!(writer);
    for (i, e) in entries.iter().enumerate() {
        let receipt = e.receipt.as_ref();
        let link = links.and_then(|l| l.get(i));
        let row: [&(dyn ToSql + Sync); 22] = [
            &e.message_id,
            &e.status,
            &e.topic,
            &e.kafka_partition,
            &e.kafka_offset,
            &e.message_key,
            &e.event_type,
            &e.attempt,
            &e.error,
            &e.consumer_group,
            &e.occurred_at,
            &e.detail,
            &receipt.map(|r| r.received_at),
            &receipt.and_then(|r| r.detail.as_ref()),
            &receipt.and_then(|r| r.key),
            &receipt.and_then(|r| r.payload),
            &receipt.and_then(|r| r.headers.as_ref()),
            &receipt.and_then(|r| r.kafka_timestamp),
            &receipt.map(|r| r.payload_sha256.as_slice()),
            &link.map(|l| l.chain_id),
            &link.map(|l| l.seq),
            &link.map(|l| &l.hash[..]),
        ];
        writer.as_mut().write(&row).await?;
    }
    writer.finish().await?;
    Ok(())
}

/// Registers the chains `names` (once ever) and reads their heads.
async fn load_heads(
    tx: &Transaction<'_>,
    names: &[&String],
) -> Result<HashMap<String, ChainHead>, WriteError> {
    // INSERT … ON CONFLICT DO NOTHING needs only the INSERT privilege.
    tx.execute(
        "INSERT INTO audit_chains (name) SELECT unnest($1::text[]) ON CONFLICT (name) DO NOTHING",
        &[&names],
    )
    .await?;
    let rows = tx
        .query(
            "SELECT c.chain_id, c.name, h.chain_seq, h.entry_hash FROM audit_chains c \
             LEFT JOIN LATERAL (SELECT chain_seq, entry_hash FROM audit_log l \
                 WHERE l.chain_id = c.chain_id ORDER BY chain_seq DESC LIMIT 1) h ON true \
             WHERE c.name = ANY($1)",
            &[&names],
        )
        .await?;
    let mut heads = HashMap::with_capacity(rows.len());
    for r in rows {
        let hash = match r.get::<_, Option<&[u8]>>(3) {
            None => chain::GENESIS,
            Some(h) => h
                .try_into()
                .map_err(|_| WriteError::Chain("a head has a malformed entry_hash".into()))?,
        };
        heads.insert(
            r.get::<_, String>(1),
            ChainHead {
                chain_id: r.get(0),
                seq: r.get::<_, Option<i64>>(2).unwrap_or(0),
                hash,
            },
        );
    }
    Ok(heads)
}

/// Another writer took a sequence number this flush was built on.
pub fn is_chain_collision(e: &tokio_postgres::Error) -> bool {
    e.as_db_error().is_some_and(|db| {
        *db.code() == tokio_postgres::error::SqlState::UNIQUE_VIOLATION
            && db.constraint() == Some(CHAIN_SEQ_CONSTRAINT)
    })
}
