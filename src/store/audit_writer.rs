//! The auditor's own PostgreSQL connection, and the binary `COPY` that
//! appends a batch's audit entries in one transaction.
//!
//! Why a second client beside diesel: the audit trail is append-only, which
//! is exactly what `COPY … FROM STDIN BINARY` is for, and diesel-async does
//! not expose it. tokio-postgres (the client diesel-async is built on) does,
//! so the auditor keeps one plain connection of its own for it; everything
//! else still goes through diesel with bound parameters. Values travel in
//! PostgreSQL's binary format: nothing is ever turned into SQL text.
//!
//! Chaining (`audit.chain`, see `store::chain`): each entry gets the next
//! sequence number of its partition's chain and its hash, computed here from
//! the chain's head, which this writer caches. Another writer (an instance
//! that owned the partition before a rebalance, or this process's other
//! auditor) may have moved the head meanwhile: then the COPY's sequence
//! numbers collide with the unique (chain_id, chain_seq), the transaction
//! rolls back, and the batch is rebuilt from heads read afresh. A crash
//! mid-batch rolls back whole, so a chain never has a gap or a fork.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use futures::pin_mut;
use secrecy::{ExposeSecret, SecretString};
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, NoTls};
use uuid::Uuid;

use crate::config::PostgresSettings;
use crate::pipeline::{Outcome, Settled};
use crate::store::audit::{self, AuditEntry, PROCESSED};
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
/// Rebuilds of one batch after head collisions before giving up (each
/// collision means another writer appended meanwhile; this many in a row
/// means something is wrong, and the auditor's retry takes over).
const MAX_REBUILDS: usize = 8;

/// Statements that must commit in the same transaction as a batch of audit
/// entries (the retry schedule's rows beside their entries). They may run
/// more than once: a chain collision rolls the transaction back and the
/// batch is written again.
pub trait Alongside: Sync {
    fn run<'a>(
        &'a self,
        tx: &'a tokio_postgres::Transaction<'a>,
    ) -> futures::future::BoxFuture<'a, Result<(), tokio_postgres::Error>>;
}

/// A chain's last entry, as this writer knows it.
#[derive(Debug, Clone, Copy)]
struct ChainHead {
    chain_id: i32,
    seq: i64,
    hash: [u8; 32],
}

/// Where one entry goes in its chain.
#[derive(Debug, Clone, Copy)]
struct Link {
    chain_id: i32,
    seq: i64,
    hash: [u8; 32],
}

/// A write that did not land. The auditor waits and tries again: audit
/// entries never give up.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("cannot connect to postgres: {0}")]
    Connect(String),
    #[error("audit write failed: {0}")]
    Write(#[from] tokio_postgres::Error),
    #[error("audit chain: {0}")]
    Chain(String),
}

/// One connection, opened when first needed and again after any error.
pub struct AuditWriter {
    url: SecretString,
    connect_timeout: Duration,
    statement_timeout_ms: String,
    client: Option<Client>,
    /// Chain the entries (`audit.chain`).
    chain: bool,
    /// Heads of the chains this writer appended to or read, by chain name;
    /// replaced after each commit, dropped on any doubt.
    heads: HashMap<String, ChainHead>,
    hasher: Hasher,
}

impl AuditWriter {
    pub fn new(settings: &PostgresSettings) -> Self {
        AuditWriter {
            url: settings.url.clone(),
            connect_timeout: settings.connect_timeout,
            statement_timeout_ms: settings.statement_timeout.as_millis().to_string(),
            client: None,
            chain: true,
            heads: HashMap::new(),
            hasher: Hasher::default(),
        }
    }

    /// Chains entries (the default) or writes them unchained.
    pub fn chained(mut self, on: bool) -> Self {
        self.chain = on;
        self
    }

    /// The writer's connection, opened if needed (the retry schedule runs
    /// its own statements on it).
    pub async fn client(&mut self) -> Result<&mut Client, WriteError> {
        if self.client.as_ref().is_some_and(Client::is_closed) {
            self.client = None;
        }
        if self.client.is_none() {
            let connect = tokio_postgres::connect(self.url.expose_secret(), NoTls);
            let (client, connection) = tokio::time::timeout(self.connect_timeout, connect)
                .await
                .map_err(|_| WriteError::Connect("timed out".into()))?
                // The error text of a connect never holds the password.
                .map_err(|e| WriteError::Connect(e.to_string()))?;
            actix_rt::spawn(async move {
                if let Err(e) = connection.await {
                    tracing::debug!(error = %e, "audit connection closed");
                }
            });
            client
                .execute(
                    "SELECT set_config('statement_timeout', $1, false)",
                    &[&self.statement_timeout_ms],
                )
                .await?;
            self.client = Some(client);
        }
        self.client
            .as_mut()
            .ok_or_else(|| WriteError::Connect("no connection".into()))
    }

    /// Of `ids`, those that already have a MESSAGE_PROCESSED entry.
    pub async fn processed(&mut self, ids: &[Uuid]) -> Result<HashSet<Uuid>, WriteError> {
        if ids.is_empty() {
            return Ok(HashSet::new());
        }
        let result = async {
            let client = self.client().await?;
            let rows = client
                .query(
                    "SELECT DISTINCT message_id FROM message_audit \
                     WHERE message_id = ANY($1) AND status = $2",
                    &[&ids, &PROCESSED],
                )
                .await?;
            Ok(rows.iter().map(|r| r.get::<_, Uuid>(0)).collect())
        }
        .await;
        self.forget_on_error(result)
    }

    /// Appends `entries` in one transaction, chained unless chaining is off.
    pub async fn append(&mut self, entries: &[AuditEntry<'_>]) -> Result<(), WriteError> {
        self.append_with(entries, None).await
    }

    /// `append`, with `alongside` committed in the same transaction.
    pub async fn append_with(
        &mut self,
        entries: &[AuditEntry<'_>],
        alongside: Option<&dyn Alongside>,
    ) -> Result<(), WriteError> {
        if !self.chain {
            let result = self.copy(entries, None, alongside).await;
            return self.forget_on_error(result);
        }
        let mut rebuilds = 0;
        loop {
            let result = async {
                let (links, heads) = self.link(entries).await?;
                self.copy(entries, Some(&links), alongside).await?;
                Ok(heads)
            }
            .await;
            match result {
                Ok(heads) => {
                    self.heads.extend(heads);
                    return Ok(());
                }
                Err(WriteError::Write(e)) if is_chain_collision(&e) && rebuilds < MAX_REBUILDS => {
                    rebuilds += 1;
                    tracing::info!(
                        rebuilds,
                        "an audit chain's head moved (another writer appended); rebuilding the batch"
                    );
                    self.heads.clear();
                }
                Err(e) => {
                    self.heads.clear();
                    return self.forget_on_error(Err(e));
                }
            }
        }
    }

    /// Each entry's chain, sequence number and hash, and the chains' new
    /// heads. Heads not cached are read from the database.
    async fn link(
        &mut self,
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
                .filter(|n| !self.heads.contains_key(*n) && seen.insert(*n))
                .collect()
        };
        if !missing.is_empty() {
            let loaded = load_heads(self.client().await?, &missing).await?;
            self.heads.extend(loaded);
        }
        let mut heads: HashMap<String, ChainHead> = HashMap::new();
        let mut links = Vec::with_capacity(entries.len());
        for (entry, name) in entries.iter().zip(names) {
            let head = match heads.get_mut(&name) {
                Some(h) => h,
                None => {
                    let cached =
                        self.heads.get(&name).copied().ok_or_else(|| {
                            WriteError::Chain(format!("{name} was not registered"))
                        })?;
                    heads.entry(name.clone()).or_insert(cached)
                }
            };
            let seq = head.seq + 1;
            let hash = self.hasher.hash(&entry.fields(&name, seq), &head.hash);
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

    async fn copy(
        &mut self,
        entries: &[AuditEntry<'_>],
        links: Option<&[Link]>,
        alongside: Option<&dyn Alongside>,
    ) -> Result<(), WriteError> {
        let client = self.client().await?;
        let tx = client.transaction().await?;
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
        if let Some(alongside) = alongside {
            alongside.run(&tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// After any error the connection is dropped: its state (an aborted
    /// transaction, a half-sent COPY) is not worth repairing.
    fn forget_on_error<T>(&mut self, result: Result<T, WriteError>) -> Result<T, WriteError> {
        if result.is_err() {
            self.client = None;
        }
        result
    }
}

/// Registers the chains `names` (once ever) and reads their heads.
async fn load_heads(
    client: &Client,
    names: &[&String],
) -> Result<HashMap<String, ChainHead>, WriteError> {
    // INSERT … ON CONFLICT DO NOTHING needs only the INSERT privilege.
    client
        .execute(
            "INSERT INTO audit_chains (name) SELECT unnest($1::text[]) ON CONFLICT (name) DO NOTHING",
            &[&names],
        )
        .await?;
    let rows = client
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

/// Another writer took a sequence number this batch was built on.
fn is_chain_collision(e: &tokio_postgres::Error) -> bool {
    e.as_db_error().is_some_and(|db| {
        *db.code() == tokio_postgres::error::SqlState::UNIQUE_VIOLATION
            && db.constraint() == Some(CHAIN_SEQ_CONSTRAINT)
    })
}

/// Writes a batch's entries in one transaction; returns the topic of each
/// message audited as a duplicate.
pub async fn write_batch(
    writer: &mut AuditWriter,
    batch: &[Settled],
    group: &str,
) -> Result<Vec<String>, WriteError> {
    let already: Vec<Uuid> = batch
        .iter()
        .filter(|s| matches!(s.outcome, Outcome::AlreadyApplied))
        .map(|s| s.message_id)
        .collect();
    let mut processed = writer.processed(&already).await?;
    let entries = audit::entries(batch, group, &mut processed);
    writer.append(&entries).await?;
    Ok(entries
        .iter()
        .filter(|e| e.status == audit::DUPLICATE)
        .map(|e| e.topic.to_owned())
        .collect())
}
