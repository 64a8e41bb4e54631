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
use crate::identity::Actor;
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
    /// Rows of the legacy tables (before migration 000006) erased.
    pub legacy_rows: u64,
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
    #[error("{0}")]
    BadInput(String),
    #[error("erased in the database and recorded, but the archive of {partition} could not be rewritten: {reason}; run the erasure again to finish it")]
    ArchiveAfterRecord { partition: String, reason: String },
    #[error("no message matches")]
    NothingFound,
    #[error("erasing archived entries needs the signing key (audit.signing_key)")]
    NoKey,
    #[error("the archive of {partition}: {reason}")]
    Archive { partition: String, reason: String },
}

/// Entry statuses an erasure never touches: the operator's own records
/// (an erasure's, a hold's, an unmasking's) hold nothing of the message.
const OWN: [&str; 5] = [
    operator::ERASED,
    operator::HOLD,
    operator::HOLD_RELEASED,
    operator::ARCHIVE_DELETED,
    operator::UNMASKED,
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
///
/// Under the trail's lock (`exclusive`), in this order: every hold is
/// checked against every entry to erase, live and archived, so a hold
/// refuses the whole erasure before anything changes; the database's
/// erasure and the MESSAGE_ERASED entries commit together (naming the
/// archived periods to rewrite); then the archived periods are rewritten.
/// A failure or crash after the commit leaves archived files to erase,
/// which a second run finds (by key, or by id) and finishes, recording
/// that too.
/// Who asked for an erasure, and who approved it (every erasure goes
/// through four-eyes approval; the command line's own erasures name none).
#[derive(Debug, Clone, Copy)]
pub struct Asked<'a> {
    pub actor: &'a Actor,
    pub approver: Option<&'a Actor>,
}

#[allow(clippy::too_many_arguments)]
pub async fn erase(
    client: &Client,
    conn: &mut AsyncPgConnection,
    configured: &ArchiveSettings,
    signer: Option<&Signer>,
    selector: &Selector,
    by: &Asked<'_>,
    reason: &str,
    pending: impl AsyncFn(&[Uuid]) -> Result<Option<String>, String>,
) -> Result<Erased, EraseError> {
    let control = |c: char| c.is_control() && c != '\n' && c != '\t';
    if reason.trim().is_empty() || reason.chars().any(control) {
        return Err(EraseError::BadInput(
            "reason: not blank, no control characters".into(),
        ));
    }
    if let Selector::Key(key) = selector {
        if key.is_empty() || key.contains('\0') {
            return Err(EraseError::BadInput("key: not empty, no NUL".into()));
        }
    }
    crate::trail::exclusive::with(client, async || {
        erase_locked(
            client, conn, configured, signer, selector, by, reason, pending,
        )
        .await
    })
    .await
}

#[allow(clippy::too_many_arguments)]
async fn erase_locked(
    client: &Client,
    conn: &mut AsyncPgConnection,
    configured: &ArchiveSettings,
    signer: Option<&Signer>,
    selector: &Selector,
    by: &Asked<'_>,
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
    // What an earlier erasure's crash left (old files of a recorded
    // rewrite, new files of an unrecorded one) goes first.
    for p in &periods {
        rewrite::sweep(&p.target, &p.manifest).await;
    }
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
                     WHERE left(message_key, 200) = left($1, 200) AND message_key = $1 \
                       AND status <> ALL($2) \
                     UNION SELECT message_id FROM message_audit_v1 WHERE message_key = $1 \
                     UNION SELECT message_id FROM message_payloads_v1 \
                      WHERE message_key = convert_to($1, 'UTF8')",
                    &[key, &OWN.as_slice()],
                )
                .await?
            {
                ids.insert(r.get(0));
            }
            for p in &periods {
                for f in &p.manifest.files {
                    let bytes = get(p, &f.path).await?;
                    for e in decode(p, bytes)? {
                        if e.message_key.as_deref() == Some(key.as_str())
                            && !OWN.contains(&e.status.as_str())
                        {
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
    // Messages with legacy rows still to erase.
    let legacy: BTreeSet<Uuid> = client
        .query(
            "SELECT message_id FROM message_audit_v1 \
              WHERE message_id = ANY($1) AND message_key IS NOT NULL \
             UNION SELECT message_id FROM message_payloads_v1 WHERE message_id = ANY($1) \
                AND (message_key IS NOT NULL OR payload IS NOT NULL OR headers IS NOT NULL)",
            &[&ids],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    // The archived entries to erase, each period's, checked against the
    // holds before anything changes.
    let mut archived: BTreeMap<String, Vec<(i64, Uuid)>> = BTreeMap::new();
    for p in &periods {
        for f in &p.manifest.files {
            let bytes = get(p, &f.path).await?;
            if !ids.iter().any(|id| parquet::may_hold(&bytes, *id)) {
                continue;
            }
            for e in decode(p, bytes)?
                .iter()
                .filter(|e| ids.contains(&e.message_id) && erase_entry(&mut (*e).clone()))
            {
                if let Some(h) = covering(&active, e) {
                    return Err(held(h, &format!("archived message {}", e.message_id)));
                }
                archived
                    .entry(p.manifest.partition.clone())
                    .or_default()
                    .push((e.id, e.message_id));
            }
        }
    }
    if live.is_empty() && legacy.is_empty() && archived.is_empty() {
        return Err(EraseError::NothingFound);
    }
    for e in &live {
        if let Some(h) = covering(&active, e) {
            return Err(held(h, &format!("message {}", e.message_id)));
        }
    }
    if !archived.is_empty() && signer.is_none() {
        return Err(EraseError::NoKey);
    }
    let mut done = Erased {
        messages: ids.clone(),
        ..Erased::default()
    };
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
    // A record for every message something of is erased, a legacy-only
    // one too; none for one with nothing left to erase.
    let mut by_message: BTreeMap<Uuid, Erasing> =
        legacy.iter().map(|id| (*id, Erasing::default())).collect();
    for e in &live {
        let m = by_message.entry(e.message_id).or_default();
        m.first.get_or_insert(e);
        m.entries.push(e.id);
    }
    for (partition, entries) in &archived {
        for (entry, message) in entries {
            let m = by_message.entry(*message).or_default();
            m.entries.push(*entry);
            if m.periods.last() != Some(partition) {
                m.periods.push(partition.clone());
            }
        }
    }
    for m in by_message.values_mut() {
        // A partition archived with --keep is live and archived at once.
        m.entries.sort_unstable();
        m.entries.dedup();
    }
    done.messages = by_message.keys().copied().collect();
    (done.live_entries, done.legacy_rows) =
        record(conn, &rows, &by_message, &done, by, reason).await?;
    // The archive, once the erasure is on the record.
    if let Some(signer) = signer {
        for p in periods
            .iter()
            .filter(|p| archived.contains_key(&p.manifest.partition))
        {
            let rewritten = rewrite::rewrite(
                client,
                &p.target,
                signer,
                (&p.manifest, &p.text),
                |bytes: &Bytes| ids.iter().any(|id| parquet::may_hold(bytes, *id)),
                |e: &mut Entry| ids.contains(&e.message_id) && erase_entry(e),
            )
            .await
            .map_err(|e| EraseError::ArchiveAfterRecord {
                partition: p.manifest.partition.clone(),
                reason: e.to_string(),
            })?;
            if let Some(r) = rewritten {
                done.archived_entries += r.entries;
                done.archives.push(r);
            }
        }
    }
    Ok(done)
}

/// One message's part in an erasure, as its MESSAGE_ERASED entry says.
#[derive(Default)]
struct Erasing<'a> {
    /// Its first live entry (where the record goes), if any.
    first: Option<&'a Entry>,
    /// Every entry erased, live and archived.
    entries: Vec<i64>,
    /// The archived periods it is erased from.
    periods: Vec<String>,
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
    by_message: &BTreeMap<Uuid, Erasing<'_>>,
    done: &Erased,
    by: &Asked<'_>,
    reason: &str,
) -> Result<(u64, u64), EraseError> {
    use diesel::sql_types::{Array, BigInt, Bytea, Nullable, Timestamptz};
    #[derive(diesel::QueryableByName)]
    struct Changed {
        #[diesel(sql_type = BigInt)]
        changed: i64,
    }
    let outcome = conn
        .transaction(async |conn| {
            let changed = diesel::sql_query("SELECT custodian_audit_erase($1, $2, $3) AS changed")
                .bind::<Array<BigInt>, _>(ids)
                .bind::<Array<Timestamptz>, _>(at)
                .bind::<Array<Nullable<Bytea>>, _>(digests)
                .get_result::<Changed>(conn)
                .await?
                .changed;
            let legacy = diesel::sql_query("SELECT custodian_audit_erase_legacy($1) AS changed")
                .bind::<Array<diesel::sql_types::Uuid>, _>(&done.messages)
                .get_result::<Changed>(conn)
                .await?
                .changed;
            for (id, m) in by_message {
                let first = m.first;
                let detail = serde_json::json!({
                    "requested_by": by.actor.name,
                    "operator": by.actor.to_json(),
                    "approved_by": by.approver.map(Actor::to_json),
                    "reason": reason,
                    "entries": m.entries,
                    "payload_only": ids
                        .iter()
                        .zip(digests)
                        .filter(|(i, d)| d.is_none() && m.entries.contains(i))
                        .count(),
                    "archived_periods": m.periods,
                });
                operator::record(
                    conn,
                    operator::Action {
                        message_id: *id,
                        status: operator::ERASED,
                        topic: first.map_or("", |e| e.topic.as_str()),
                        kafka_partition: first.map_or(-1, |e| e.kafka_partition),
                        kafka_offset: first.map_or(-1, |e| e.kafka_offset),
                        consumer_group: first
                            .map_or(operator::GROUP, |e| e.consumer_group.as_str()),
                        message_key: None,
                        detail,
                    },
                )
                .await?;
            }
            Ok::<(i64, i64), diesel::result::Error>((changed, legacy))
        })
        .await;
    match outcome {
        Ok((n, legacy)) => Ok((n.max(0) as u64, legacy.max(0) as u64)),
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
