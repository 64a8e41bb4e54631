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
    chain_id, chain_seq, entry_hash, blinding) \
    FROM STDIN BINARY";

const TYPES: [Type; 23] = [
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
    Type::BYTEA,
];

/// The per-partition unique (chain_id, chain_seq) constraints are named
/// `<partition>_chain_seq`; a stale head runs into `audit_chain_heads`
/// first (see [`advance`]), into one of these only if the heads were
/// bypassed.
const CHAIN_SEQ_SUFFIX: &str = "_chain_seq";
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

/// One chain's head moving, from the head a flush was built on to its
/// last entry.
#[derive(Debug, Clone, Copy)]
pub struct Move {
    chain_id: i32,
    from_seq: i64,
    to: ChainHead,
}

/// Each entry's chain, sequence number and hash, and the moves of the
/// chains' heads. Heads not cached are read from the database.
pub async fn link(
    cached: &HashMap<String, ChainHead>,
    hasher: &mut Hasher,
    tx: &Transaction<'_>,
    entries: &[AuditEntry<'_>],
) -> Result<(Vec<Link>, HashMap<String, Move>), WriteError> {
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
    let mut moves: HashMap<String, Move> = HashMap::new();
    let mut links = Vec::with_capacity(entries.len());
    for (entry, name) in entries.iter().zip(names) {
        let head = match moves.get_mut(&name) {
            Some(m) => &mut m.to,
            None => {
                let known = cached.get(&name).or_else(|| loaded.get(&name)).copied();
                let known =
                    known.ok_or_else(|| WriteError::Chain(format!("{name} was not registered")))?;
                &mut moves
                    .entry(name.clone())
                    .or_insert(Move {
                        chain_id: known.chain_id,
                        from_seq: known.seq,
                        to: known,
                    })
                    .to
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
    Ok((links, moves))
}

/// Moves every chain's head in `audit_chain_heads` from the head the flush
/// was built on to its new one, in one statement: the fork barrier across
/// partitions. A head another writer moved meanwhile matches nothing (the
/// row lock makes a concurrent writer wait for the first to commit, then
/// see its head): false, and the flush is rebuilt.
pub async fn advance(
    tx: &Transaction<'_>,
    moves: &HashMap<String, Move>,
) -> Result<bool, WriteError> {
    if moves.is_empty() {
        return Ok(true);
    }
    let mut sorted: Vec<&Move> = moves.values().collect();
    sorted.sort_by_key(|m| m.chain_id);
    let ids: Vec<i32> = sorted.iter().map(|m| m.chain_id).collect();
    let from: Vec<i64> = sorted.iter().map(|m| m.from_seq).collect();
    let to: Vec<i64> = sorted.iter().map(|m| m.to.seq).collect();
    let hashes: Vec<&[u8]> = sorted.iter().map(|m| &m.to.hash[..]).collect();
    let moved = tx
        .execute(
            "UPDATE audit_chain_heads h SET chain_seq = m.to_seq, entry_hash = m.hash \
             FROM unnest($1::int[], $2::bigint[], $3::bigint[], $4::bytea[]) \
                  AS m(chain_id, from_seq, to_seq, hash) \
             WHERE h.chain_id = m.chain_id AND h.chain_seq = m.from_seq",
            &[&ids, &from, &to, &hashes],
        )
        .await?;
    Ok(moved == sorted.len() as u64)
}

impl Move {
    /// The chain's head once the flush commits.
    pub fn head(&self) -> ChainHead {
        self.to
    }
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
        let row: [&(dyn ToSql + Sync); 23] = [
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
            // Only a chained entry's hash needs it.
            &link.map(|_| &e.blinding[..]),
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
    // Registering a chain gives it a head row (migration 000016).
    let rows = tx
        .query(
            "SELECT c.chain_id, c.name, h.chain_seq, h.entry_hash FROM audit_chains c \
             JOIN audit_chain_heads h USING (chain_id) WHERE c.name = ANY($1)",
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

/// Another writer took a sequence number this flush was built on (or two
/// writers moving overlapping heads deadlocked: one of them rebuilds).
pub fn is_chain_collision(e: &tokio_postgres::Error) -> bool {
    use tokio_postgres::error::SqlState;
    e.as_db_error().is_some_and(|db| {
        (*db.code() == SqlState::UNIQUE_VIOLATION
            && db.table().is_some_and(|t| t.starts_with("audit_log"))
            && db
                .constraint()
                .is_some_and(|c| c.ends_with(CHAIN_SEQ_SUFFIX)))
            || *db.code() == SqlState::T_R_DEADLOCK_DETECTED
    })
}
