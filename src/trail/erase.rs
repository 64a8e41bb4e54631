//! Erasure that keeps the chain (issue 26): a message's personal fields
//! (key, key bytes, headers, unsigned steering headers, payload digest)
//! and payload removed from the live partitions and from the archived
//! files, each entry's blinded digest kept in their place (chain encoding
//! version 2, `store::chain`), so `audit verify` still holds and reports
//! the entries as erased. Refused while a legal hold covers any of them.
//! Each message erased gets a chained MESSAGE_ERASED operator entry: who,
//! why and which entries.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use serde::Serialize;
use tokio_postgres::Client;
use uuid::Uuid;

use crate::config::ArchiveSettings;
use crate::store::chain::Hasher;
use crate::trail::archive::manifest::Manifest;
use crate::trail::archive::rewrite::{self, Rewritten};
use crate::trail::archive::target::Target;
use crate::trail::archive::{parquet, ArchiveError};
use crate::trail::checkpoint::Signer;
use crate::trail::entry::{Entry, COLUMNS, COLUMN_COUNT};
use crate::trail::holds::{self, Hold};
use crate::trail::operator;

/// Which messages to erase.
#[derive(Debug, Clone)]
pub enum Selector {
    /// Every message whose key (as text) is this.
    Key(String),
    /// One message.
    Message(Uuid),
}

/// What an erasure did.
#[derive(Debug, Default, Serialize, utoipa::ToSchema)]
pub struct Erased {
    pub messages: Vec<Uuid>,
    /// Entries erased in the live partitions.
    pub live_entries: u64,
    /// Of those, entries written before chain encoding version 2: their
    /// payload is erased, their key kept (their hash covers it as it is).
    pub payload_only: u64,
    /// Entries erased in archived files.
    pub archived_entries: u64,
    /// The archived periods rewritten, each with its new manifest.
    #[schema(value_type = Vec<Object>)]
    pub archives: Vec<Rewritten>,
}

#[derive(Debug, thiserror::Error)]
pub enum EraseError {
    #[error("reading the audit trail failed: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    #[error("recording the erasure failed: {0}")]
    Record(String),
    #[error("legal hold {hold} ({reason}) covers {what}; nothing was erased")]
    Held {
        hold: i64,
        reason: String,
        what: String,
    },
    #[error("{0}")]
    HeldMeanwhile(String),
    #[error("{0}: its bytes are there too; discard it first (nothing was erased)")]
    Pending(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("no message matches")]
    NothingFound,
    #[error("erasing archived entries needs the signing key (audit.signing_key)")]
    NoKey,
    #[error("the archive of {partition}: {reason}")]
    Archive { partition: String, reason: String },
}

/// Entry statuses an erasure never touches: the operator's own records
/// (an erasure's, a hold's) hold nothing of the message.
const OWN: [&str; 4] = [
    operator::ERASED,
    operator::HOLD,
    operator::HOLD_RELEASED,
    operator::ARCHIVE_DELETED,
];

/// An archived period: its latest manifest (signed text) and store.
struct Period {
    manifest: Manifest,
    text: String,
    target: Target,
}

/// Erases what `selector` names; `by` and `reason` go on the record.
/// `pending` names a message still waiting somewhere outside the trail
/// (the dead-letter queue, the retry schedule), whose bytes an erasure of
/// the trail would not reach: then nothing is erased.
#[allow(clippy::too_many_arguments)]
pub async fn erase(
    client: &Client,
    conn: &mut AsyncPgConnection,
    configured: &ArchiveSettings,
    signer: Option<&Signer>,
    selector: &Selector,
    by: &str,
    reason: &str,
    pending: impl AsyncFn(&[Uuid]) -> Result<Option<String>, String>,
) -> Result<Erased, EraseError> {
    let active = holds::active(client).await?;
    if let Selector::Key(key) = selector {
        if let Some(h) = active.iter().find(|h| h.key.as_deref() == Some(key)) {
            return Err(held(h, "this key"));
        }
    }
    let periods = archived_periods(client, configured, signer).await?;
    // The messages: by id, or every one with the key, live or archived.
    let mut ids: BTreeSet<Uuid> = BTreeSet::new();
    match selector {
        Selector::Message(id) => {
            ids.insert(*id);
        }
        Selector::Key(key) => {
            for r in client
                .query(
                    "SELECT DISTINCT message_id FROM audit_log \
                     WHERE left(message_key, 200) = left($1, 200) AND message_key = $1",
                    &[key],
                )
                .await?
            {
                ids.insert(r.get(0));
            }
            for p in &periods {
                for f in &p.manifest.files {
                    let bytes = get(p, &f.path).await?;
                    for e in decode(p, bytes)? {
                        if e.message_key.as_deref() == Some(key.as_str()) {
                            ids.insert(e.message_id);
                        }
                    }
                }
            }
        }
    }
    let ids: Vec<Uuid> = ids.into_iter().collect();
    if let Some(waiting) = pending(&ids).await.map_err(EraseError::Unavailable)? {
        return Err(EraseError::Pending(waiting));
    }
    let live = live_entries(client, &ids).await?;
    if live.is_empty() && !archived_any(&periods, &ids).await? {
        return Err(EraseError::NothingFound);
    }
    for e in &live {
        if let Some(h) = covering(&active, e) {
            return Err(held(h, &format!("message {}", e.message_id)));
        }
    }
    let mut done = Erased {
        messages: ids.clone(),
        ..Erased::default()
    };
    let mut where_: BTreeMap<Uuid, Vec<String>> = BTreeMap::new();
    // The archive first: a crash before the database's erasure leaves it
    // to a second run, which finds the archive done.
    if !periods.is_empty() {
        let signer = signer.ok_or(EraseError::NoKey)?;
        for p in &periods {
            // A hold on a period, or on a key an entry of it holds.
            for f in &p.manifest.files {
                let bytes = get(p, &f.path).await?;
                if !ids.iter().any(|id| parquet::may_hold(&bytes, *id)) {
                    continue;
                }
                for e in decode(p, bytes)?
                    .iter()
                    .filter(|e| ids.contains(&e.message_id))
                {
                    if let Some(h) = covering(&active, e) {
                        return Err(held(h, &format!("archived message {}", e.message_id)));
                    }
                }
            }
            let rewritten = rewrite::rewrite(
                client,
                &p.target,
                signer,
                (&p.manifest, &p.text),
                |bytes: &Bytes| ids.iter().any(|id| parquet::may_hold(bytes, *id)),
                |e: &mut Entry| ids.contains(&e.message_id) && erase_entry(e),
            )
            .await
            .map_err(|e| archive_failed(&p.manifest.partition, e))?;
            if let Some(r) = rewritten {
                done.archived_entries += r.entries;
                for id in &ids {
                    where_.entry(*id).or_default().push(r.manifest.clone());
                }
                done.archives.push(r);
            }
        }
    }
    let mut hasher = Hasher::default();
    let mut rows = Rows::default();
    for e in &live {
        let digest = digest(&mut hasher, e);
        if digest.is_none() {
            done.payload_only += 1;
        }
        rows.ids.push(e.id);
        rows.at.push(e.recorded_at);
        rows.digests.push(digest);
    }
    let by_message: BTreeMap<Uuid, Vec<&Entry>> = live.iter().fold(BTreeMap::new(), |mut m, e| {
        m.entry(e.message_id).or_default().push(e);
        m
    });
    done.live_entries = record(conn, &rows, &by_message, &where_, &done, by, reason).await?;
    Ok(done)
}

/// The live entries to erase, as `custodian_audit_erase` takes them: ids,
/// their `recorded_at` (to find the partition), the digest each keeps
/// (`None`: a version 1 entry, payload only).
#[derive(Default)]
struct Rows {
    ids: Vec<i64>,
    at: Vec<DateTime<Utc>>,
    digests: Vec<Option<Vec<u8>>>,
}

/// The database's erasure and its operator entries, in one transaction.
async fn record(
    conn: &mut AsyncPgConnection,
    Rows { ids, at, digests }: &Rows,
    by_message: &BTreeMap<Uuid, Vec<&Entry>>,
    archived: &BTreeMap<Uuid, Vec<String>>,
    done: &Erased,
    by: &str,
    reason: &str,
) -> Result<u64, EraseError> {
    use diesel::sql_types::{Array, BigInt, Bytea, Nullable, Timestamptz};
    #[derive(diesel::QueryableByName)]
    struct Changed {
        #[diesel(sql_type = BigInt)]
        changed: i64,
    }
    let outcome = conn
        .transaction(async |conn| {
            let changed = diesel::sql_query(
                "SELECT custodian_audit_erase($1, $2, $3) AS changed",
            )
            .bind::<Array<BigInt>, _>(ids)
            .bind::<Array<Timestamptz>, _>(at)
            .bind::<Array<Nullable<Bytea>>, _>(digests)
            .get_result::<Changed>(conn)
            .await?
            .changed;
            for id in &done.messages {
                let entries = by_message.get(id).map(Vec::as_slice).unwrap_or_default();
                let first = entries.first().copied();
                let detail = serde_json::json!({
                    "requested_by": by,
                    "reason": reason,
                    "entries": entries.iter().map(|e| e.id).collect::<Vec<_>>(),
                    "payload_only": entries.iter().filter(|e| e.blinding.is_none() && e.chain.is_some()).count(),
                    "archives": archived.get(id).cloned().unwrap_or_default(),
                });
                operator::record(
                    conn,
                    operator::Action {
                        message_id: *id,
                        status: operator::ERASED,
                        topic: first.map_or("", |e| e.topic.as_str()),
                        kafka_partition: first.map_or(-1, |e| e.kafka_partition),
                        kafka_offset: first.map_or(-1, |e| e.kafka_offset),
                        consumer_group: first.map_or(operator::GROUP, |e| e.consumer_group.as_str()),
                        message_key: None,
                        detail,
                    },
                )
                .await?;
            }
            Ok::<i64, diesel::result::Error>(changed)
        })
        .await;
    match outcome {
        Ok(n) => Ok(n.max(0) as u64),
        // A hold placed after the check above.
        Err(diesel::result::Error::DatabaseError(_, info))
            if info.message().contains("legal hold") =>
        {
            Err(EraseError::HeldMeanwhile(info.message().to_owned()))
        }
        Err(e) => Err(EraseError::Record(e.to_string())),
    }
}

/// The blinded digest an erased entry keeps (`None`: a version 1 chained
/// entry, whose payload alone can go).
pub fn digest(hasher: &mut Hasher, e: &Entry) -> Option<Vec<u8>> {
    match (&e.chain, &e.blinding) {
        (Some(chain), Some(_)) => Some(hasher.personal(&e.fields(chain, e.seq())).to_vec()),
        (Some(_), None) => None,
        // Unchained: no hash covers it; the digest only marks it erased.
        (None, _) => Some(vec![0; 32]),
    }
}

/// Erases an entry as the database does (true: it changed).
pub fn erase_entry(e: &mut Entry) -> bool {
    if e.erased_digest.is_some() || OWN.contains(&e.status.as_str()) {
        return false;
    }
    match digest(&mut Hasher::default(), e) {
        None => e.payload.take().is_some(),
        Some(kept) => {
            e.message_key = None;
            e.key_bytes = None;
            e.headers = None;
            e.received_detail = None;
            e.payload = None;
            e.payload_sha256 = None;
            e.blinding = None;
            e.erased_digest = Some(kept);
            true
        }
    }
}

/// The live entries of `ids` an erasure would change.
async fn live_entries(client: &Client, ids: &[Uuid]) -> Result<Vec<Entry>, EraseError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let rows = client
        .query(
            &format!(
                "SELECT {COLUMNS}, c.name FROM audit_log l LEFT JOIN audit_chains c USING (chain_id) \
                 WHERE l.message_id = ANY($1) AND l.erased_digest IS NULL \
                   AND l.status <> ALL($2) \
                   AND (l.blinding IS NOT NULL OR l.chain_id IS NULL OR l.payload IS NOT NULL) \
                 ORDER BY l.id"
            ),
            &[&ids, &OWN.as_slice()],
        )
        .await?;
    let mut entries = Vec::with_capacity(rows.len());
    for r in &rows {
        let chain: Option<String> = r.get(COLUMN_COUNT);
        entries.push(Entry::from_row(r, chain.as_deref())?);
    }
    Ok(entries)
}

/// Whether any archived file may hold one of `ids` (bloom filters).
async fn archived_any(periods: &[Period], ids: &[Uuid]) -> Result<bool, EraseError> {
    for p in periods {
        for f in &p.manifest.files {
            let bytes = get(p, &f.path).await?;
            if ids.iter().any(|id| parquet::may_hold(&bytes, *id))
                && decode(p, bytes)?
                    .iter()
                    .any(|e| ids.contains(&e.message_id) && e.erased_digest.is_none())
            {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

/// Every period with an archive still in the store (dropped from
/// PostgreSQL or kept), its latest manifest opened.
async fn archived_periods(
    client: &Client,
    configured: &ArchiveSettings,
    signer: Option<&Signer>,
) -> Result<Vec<Period>, EraseError> {
    let rows = client
        .query(
            "SELECT p.name, a.manifest, a.store_url FROM audit_partitions p \
             JOIN LATERAL (SELECT manifest, store_url FROM audit_archives \
                 WHERE partition_name = p.name ORDER BY id DESC LIMIT 1) a ON true \
             WHERE p.archive_deleted_at IS NULL ORDER BY p.to_time",
            &[],
        )
        .await?;
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let verifier = signer.ok_or(EraseError::NoKey)?.verifier();
    let mut periods = Vec::with_capacity(rows.len());
    for r in &rows {
        let (name, text, url): (String, String, String) = (r.get(0), r.get(1), r.get(2));
        let manifest = Manifest::open(text.as_bytes(), &verifier)
            .map_err(|e| archive_failed(&name, ArchiveError::from(e)))?;
        let target = Target::open_existing(&ArchiveSettings {
            url,
            ..configured.clone()
        })
        .map_err(|e| archive_failed(&name, ArchiveError::from(e)))?;
        periods.push(Period {
            manifest,
            text,
            target,
        });
    }
    Ok(periods)
}

async fn get(p: &Period, path: &str) -> Result<Bytes, EraseError> {
    p.target
        .get(path)
        .await
        .map_err(|e| archive_failed(&p.manifest.partition, ArchiveError::from(e)))
}

fn decode(p: &Period, bytes: Bytes) -> Result<Vec<Entry>, EraseError> {
    parquet::decode(bytes).map_err(|e| archive_failed(&p.manifest.partition, e.into()))
}

fn archive_failed(partition: &str, e: ArchiveError) -> EraseError {
    EraseError::Archive {
        partition: partition.to_owned(),
        reason: e.to_string(),
    }
}

/// The first active hold covering entry `e`: on its key, or its period.
fn covering<'h>(active: &'h [Hold], e: &Entry) -> Option<&'h Hold> {
    active
        .iter()
        .find(|h| h.covers(e.message_key.as_deref(), e.recorded_at))
}

fn held(h: &Hold, what: &str) -> EraseError {
    EraseError::Held {
        hold: h.id,
        reason: h.reason.clone(),
        what: what.to_owned(),
    }
}
