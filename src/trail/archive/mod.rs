//! Archiving sealed periods: each sealed partition is written as Parquet
//! files (one run of one chain per file, at most `audit.archive.file_rows`
//! entries each) with a signed manifest, to a local directory or an
//! S3-compatible store; read back and checked against its seal; recorded in
//! `audit_archives`; and only then detached and dropped from PostgreSQL
//! (the database refuses the drop without the record). A crash anywhere
//! leaves the partition in place, or dropped with its verified archive.
//!
//! - `parquet`: entries to and from Parquet;
//! - `find`: one message's entries, by bloom filter;
//! - `manifest`: the signed manifest;
//! - `rewrite`: a period's files written again with entries erased;
//! - `target`: the object store.

pub mod find;
pub mod manifest;
pub mod parquet;
pub mod rewrite;
pub mod target;

use std::collections::HashMap;
use std::time::Instant;

use bytes::Bytes;
use chrono::Utc;
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio_postgres::Client;

use crate::store::chain::Hasher;
use crate::text::hex;
use crate::trail::checkpoint::{Signer, Verifier};
use crate::trail::entry::{Entry, COLUMNS};
use crate::trail::partitions::{self, Partition};
use crate::trail::seal::{self, Seal};
use manifest::{FileRecord, Manifest};
use target::{Target, TargetError};

/// Rows read from PostgreSQL per round trip.
const FETCH: i32 = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("reading the audit trail failed: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    #[error("archiving needs a signing key (audit.signing_key or audit.signing_key_file)")]
    NoKey,
    #[error(transparent)]
    Target(#[from] TargetError),
    #[error(transparent)]
    Seal(#[from] seal::SealError),
    #[error("{partition} is sealed but its seal is missing")]
    NoSeal { partition: String },
    #[error("{0}")]
    Parquet(#[from] parquet::ParquetError),
    #[error("{0}")]
    Manifest(#[from] manifest::ManifestError),
    #[error("the archive of {partition} does not verify, so it was not dropped: {problems}")]
    Unverified { partition: String, problems: String },
}

/// One partition archived.
#[derive(Debug, Clone, Serialize)]
pub struct Archived {
    pub partition: String,
    pub manifest: String,
    pub files: usize,
    pub entries: i64,
    pub bytes: u64,
    pub seconds: f64,
    pub dropped: bool,
}

/// Archives every sealed partition not dropped yet, oldest first, and
/// drops each once its archive is recorded (unless `keep`).
pub async fn archive_sealed(
    client: &mut Client,
    target: &Target,
    signer: Option<&Signer>,
    file_rows: usize,
    keep: bool,
) -> Result<Vec<Archived>, ArchiveError> {
    // No erasure or retention run between a partition's export and its
    // drop (the export would keep what the erasure removed).
    crate::trail::exclusive::lock(client).await?;
    let done = archive_locked(client, target, signer, file_rows, keep).await;
    crate::trail::exclusive::unlock(client).await;
    done
}

async fn archive_locked(
    client: &mut Client,
    target: &Target,
    signer: Option<&Signer>,
    file_rows: usize,
    keep: bool,
) -> Result<Vec<Archived>, ArchiveError> {
    let signer = signer.ok_or(ArchiveError::NoKey)?;
    let verifier = signer.verifier();
    let mut done = Vec::new();
    for p in partitions::list(client).await? {
        if p.sealed_at.is_none() || p.dropped_at.is_some() {
            continue;
        }
        let started = Instant::now();
        let (seal, line) = seal::recorded(client, &p.name, &verifier)
            .await?
            .ok_or_else(|| ArchiveError::NoSeal {
                partition: p.name.clone(),
            })?;
        let (manifest_path, manifest, bytes) = match latest(client, &p.name).await? {
            // Recorded by a run that stopped before the drop: checked
            // again below, not written again.
            Some((path, text)) => {
                let m = Manifest::open(text.as_bytes(), &verifier)?;
                let bytes = m.files.iter().map(|f| f.bytes).sum();
                (path, m, bytes)
            }
            None => {
                let (path, m, text) =
                    write(client, target, signer, &p, &seal, &line, file_rows).await?;
                crate::outcome::crash_point::reached("archive_uploaded");
                let problems = read_back(target, &m, (&seal, &line), &verifier, &path).await;
                if !problems.is_empty() {
                    return Err(ArchiveError::Unverified {
                        partition: p.name.clone(),
                        problems: problems.join("; "),
                    });
                }
                client
                    .execute(
                        "INSERT INTO audit_archives (partition_name, store_url, manifest_path, \
                         manifest_sha256, manifest, entries, verified_at) \
                         VALUES ($1, $2, $3, $4, $5, $6, now())",
                        &[
                            &p.name,
                            &target.url(),
                            &path,
                            &Sha256::digest(text.as_bytes()).to_vec(),
                            &text,
                            &m.entries,
                        ],
                    )
                    .await?;
                crate::outcome::crash_point::reached("archive_recorded");
                let bytes = m.files.iter().map(|f| f.bytes).sum();
                (path, m, bytes)
            }
        };
        let mut dropped = false;
        if !keep {
            // Checked once more right before the drop: what is dropped is
            // what the store holds now.
            let problems =
                read_back(target, &manifest, (&seal, &line), &verifier, &manifest_path).await;
            if !problems.is_empty() {
                return Err(ArchiveError::Unverified {
                    partition: p.name.clone(),
                    problems: problems.join("; "),
                });
            }
            drop_partition(client, &p.name).await?;
            dropped = true;
        }
        tracing::info!(partition = %p.name, entries = manifest.entries, files = manifest.files.len(), dropped, "audit partition archived");
        done.push(Archived {
            partition: p.name.clone(),
            manifest: manifest_path,
            files: manifest.files.len(),
            entries: manifest.entries,
            bytes,
            seconds: started.elapsed().as_secs_f64(),
            dropped,
        });
    }
    Ok(done)
}

/// Tries to drop a partition this many times, a second apart: each try
/// waits at most 200 ms for the lock detaching it needs (see the
/// migration), so writers are never held longer than that.
const DROP_ATTEMPTS: u32 = 60;

async fn drop_partition(client: &Client, name: &str) -> Result<(), ArchiveError> {
    use tokio_postgres::error::SqlState;
    let mut attempt = 0;
    loop {
        attempt += 1;
        match client
            .execute("SELECT custodian_audit_partition_drop($1)", &[&name])
            .await
        {
            Ok(_) => return Ok(()),
            Err(e)
                if e.code() == Some(&SqlState::LOCK_NOT_AVAILABLE) && attempt < DROP_ATTEMPTS =>
            {
                tracing::info!(partition = %name, attempt, "audit_log is busy; dropping the archived partition again shortly");
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// The latest recorded manifest of a partition: (path, signed text).
pub async fn latest(
    client: &Client,
    partition: &str,
) -> Result<Option<(String, String)>, tokio_postgres::Error> {
    Ok(client
        .query_opt(
            "SELECT manifest_path, manifest FROM audit_archives WHERE partition_name = $1 \
             ORDER BY id DESC LIMIT 1",
            &[&partition],
        )
        .await?
        .map(|r| (r.get(0), r.get(1))))
}

/// A chain's name as a file name: readable, and unique by its digest.
fn file_stem(chain: Option<&str>) -> String {
    match chain {
        None => "unchained".to_owned(),
        Some(c) => {
            let readable: String = c
                .chars()
                .map(|ch| {
                    if ch.is_ascii_alphanumeric() || ch == '.' || ch == '-' {
                        ch
                    } else {
                        '_'
                    }
                })
                .collect();
            format!("{readable}-{}", &hex(&Sha256::digest(c.as_bytes()))[..8])
        }
    }
}

/// Writes the partition's files and its signed manifest; returns the
/// manifest's path, itself and its signed text.
async fn write(
    client: &mut Client,
    target: &Target,
    signer: &Signer,
    p: &Partition,
    seal: &Seal,
    seal_line: &str,
    file_rows: usize,
) -> Result<(String, Manifest, String), ArchiveError> {
    let chains: Vec<(i32, String)> = client
        .query("SELECT chain_id, name FROM audit_chains ORDER BY name", &[])
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .filter(|(_, name): &(i32, String)| seal.chain(name).is_some())
        .collect();
    let mut files = Vec::new();
    for (chain_id, name) in &chains {
        let sql = format!(
            "SELECT {COLUMNS} FROM audit_log WHERE chain_id = $1 \
             AND recorded_at >= $2 AND recorded_at < $3 ORDER BY chain_seq"
        );
        export(
            client,
            target,
            &p.name,
            Some(name),
            &sql,
            &[chain_id, &p.lower(), &p.to],
            file_rows,
            &mut files,
        )
        .await?;
    }
    if seal.unchained > 0 {
        let sql = format!(
            "SELECT {COLUMNS} FROM audit_log WHERE chain_id IS NULL \
             AND recorded_at >= $1 AND recorded_at < $2 ORDER BY id"
        );
        export(
            client,
            target,
            &p.name,
            None,
            &sql,
            &[&p.lower(), &p.to],
            file_rows,
            &mut files,
        )
        .await?;
    }
    let manifest = Manifest {
        format: manifest::FORMAT.to_owned(),
        origin: seal.origin.clone(),
        partition: p.name.clone(),
        from: p.from,
        to: p.to,
        seal_sha256: hex(&Sha256::digest(seal_line.as_bytes())),
        entries: files.iter().map(|f: &FileRecord| f.rows).sum(),
        files,
        supersedes: None,
        created_at: Utc::now(),
    };
    let path = format!(
        "{}/manifest-{}.json",
        p.name,
        manifest.created_at.format("%Y%m%dT%H%M%S%.6fZ")
    );
    let signed = manifest.sign(signer)?;
    let text = String::from_utf8_lossy(&signed).into_owned();
    target.put(&path, signed).await?;
    Ok((path, manifest, text))
}

/// Streams one query's entries into files of at most `file_rows`.
#[allow(clippy::too_many_arguments)]
async fn export(
    client: &mut Client,
    target: &Target,
    partition: &str,
    chain: Option<&str>,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    file_rows: usize,
    files: &mut Vec<FileRecord>,
) -> Result<(), ArchiveError> {
    let tx = client.transaction().await?;
    let statement = tx.prepare(sql).await?;
    let portal = tx.bind(&statement, params).await?;
    let mut pending: Vec<Entry> = Vec::new();
    loop {
        let rows = tx.query_portal(&portal, FETCH).await?;
        let last = rows.is_empty();
        for row in &rows {
            pending.push(Entry::from_row(row, chain)?);
        }
        while pending.len() >= file_rows || (last && !pending.is_empty()) {
            let take = pending.len().min(file_rows);
            let batch: Vec<Entry> = pending.drain(..take).collect();
            let path = format!(
                "{partition}/{}-{:06}.parquet",
                file_stem(chain),
                files.len() + 1
            );
            files.push(put_file(target, &path, chain, &batch).await?);
        }
        if last && pending.is_empty() {
            break;
        }
    }
    drop(portal);
    tx.rollback().await?;
    Ok(())
}

/// Writes one file; its manifest record.
pub(crate) async fn put_file(
    target: &Target,
    path: &str,
    chain: Option<&str>,
    batch: &[Entry],
) -> Result<FileRecord, ArchiveError> {
    let bytes = parquet::encode(batch)?;
    let b64 = |h: &Option<Vec<u8>>| h.as_deref().map(base64_of);
    let record = FileRecord {
        path: path.to_owned(),
        chain: chain.map(str::to_owned),
        rows: batch.len() as i64,
        bytes: bytes.len() as u64,
        sha256: hex(&Sha256::digest(&bytes)),
        first_seq: batch.first().and_then(|e| e.chain_seq),
        first_hash: batch.first().and_then(|e| b64(&e.entry_hash)),
        last_seq: batch.last().and_then(|e| e.chain_seq),
        last_hash: batch.last().and_then(|e| b64(&e.entry_hash)),
    };
    target.put(path, bytes).await?;
    Ok(record)
}

fn base64_of(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Fetches one archived file and checks it against its manifest record:
/// present, the same SHA-256, readable, the same rows, one contiguous run
/// of its chain whose entries link. Returns what it could decode (even
/// from a file that fails, so `audit verify` can say how the chain broke)
/// and the problems, each naming the file.
pub async fn read_file(target: &Target, record: &FileRecord) -> (Option<Vec<Entry>>, Vec<String>) {
    let name = &record.path;
    let bytes: Bytes = match target.get(name).await {
        Ok(b) => b,
        Err(TargetError::Missing { .. }) => {
            return (None, vec![format!("archive file {name} is missing")])
        }
        Err(e) => {
            return (
                None,
                vec![format!("archive file {name} cannot be read: {e}")],
            )
        }
    };
    let mut problems = Vec::new();
    if hex(&Sha256::digest(&bytes)) != record.sha256 {
        problems.push(format!(
            "archive file {name} is not the file the manifest names: its SHA-256 differs \
             ({} bytes, the manifest says {}): edited, truncated or replaced",
            bytes.len(),
            record.bytes
        ));
    }
    let mut entries = match parquet::decode(bytes) {
        Ok(e) => e,
        Err(e) => {
            problems.push(format!("archive file {name}: {e}"));
            return (None, problems);
        }
    };
    if entries.len() as i64 != record.rows {
        problems.push(format!(
            "archive file {name} holds {} entries, the manifest says {}",
            entries.len(),
            record.rows
        ));
    }
    if record.chain.is_some() && !entries.is_sorted_by_key(|e| e.chain_seq) {
        problems.push(format!(
            "archive file {name}: its entries are out of sequence order (reordered)"
        ));
        // Read in sequence order from here on, as the database is read, so
        // the chain check says what else is wrong.
        entries.sort_by_key(|e| e.chain_seq);
    }
    if record.chain.is_some() {
        let mut hasher = Hasher::default();
        let mut prev: Option<&Entry> = None;
        for e in &entries {
            if e.chain != record.chain {
                problems.push(format!(
                    "archive file {name} holds an entry of another chain"
                ));
                break;
            }
            if let Some(p) = prev {
                let chain = record.chain.as_deref().unwrap_or_default();
                let linked = e.seq() == p.seq() + 1
                    && hasher.hash(&e.fields(chain, e.seq()), &p.stored_hash()) == e.stored_hash();
                if !linked {
                    problems.push(format!(
                        "archive file {name}: the entry at seq {} does not follow seq {} \
                         (reordered, edited or removed)",
                        e.seq(),
                        p.seq()
                    ));
                    break;
                }
            }
            prev = Some(e);
        }
        let b64 = |e: Option<&Entry>| e.and_then(|e| e.entry_hash.as_deref().map(base64_of));
        if entries.first().and_then(|e| e.chain_seq) != record.first_seq
            || b64(entries.first()) != record.first_hash
            || entries.last().and_then(|e| e.chain_seq) != record.last_seq
            || b64(entries.last()) != record.last_hash
        {
            problems.push(format!(
                "archive file {name}: its first or last entry is not the manifest's"
            ));
        }
    }
    (Some(entries), problems)
}

/// Reads an archive back and checks it against its seal: the manifest as
/// signed, every file (see [`read_file`]), and each chain's run from the
/// seal's first entry to its last, entry counts included. The problems,
/// each naming what failed; none: it verifies.
pub async fn read_back(
    target: &Target,
    manifest: &Manifest,
    (seal, seal_line): (&Seal, &str),
    verifier: &Verifier,
    manifest_path: &str,
) -> Vec<String> {
    let mut problems = Vec::new();
    match target.get(manifest_path).await {
        Ok(bytes) => match Manifest::open(&bytes, verifier) {
            Ok(stored) if &stored == manifest => {}
            Ok(_) => problems.push(format!("manifest {manifest_path} is not the one recorded")),
            Err(e) => problems.push(format!("manifest {manifest_path}: {e}")),
        },
        Err(e) => problems.push(format!("manifest {manifest_path}: {e}")),
    }
    problems.extend(check_against_seal(manifest, seal, seal_line));
    for record in &manifest.files {
        let (_, found) = read_file(target, record).await;
        problems.extend(found);
    }
    problems
}

/// The manifest names this seal (by the SHA-256 of its signed line), and
/// its files cover exactly the seal's chain runs and counts.
pub fn check_against_seal(manifest: &Manifest, seal: &Seal, seal_line: &str) -> Vec<String> {
    let mut problems = Vec::new();
    if manifest.seal_sha256 != hex(&Sha256::digest(seal_line.as_bytes())) {
        problems.push(format!(
            "the manifest of {} names another seal than the recorded one",
            manifest.partition
        ));
    }
    if manifest.partition != seal.partition {
        problems.push(format!(
            "the manifest is of {}, the seal of {}",
            manifest.partition, seal.partition
        ));
    }
    if manifest.entries != seal.entries {
        problems.push(format!(
            "the manifest of {} lists {} entries, its seal {}",
            seal.partition, manifest.entries, seal.entries
        ));
    }
    let mut runs: HashMap<&str, Vec<&FileRecord>> = HashMap::new();
    for f in &manifest.files {
        if let Some(c) = &f.chain {
            runs.entry(c.as_str()).or_default().push(f);
        }
    }
    for range in &seal.chains {
        let files = runs.remove(range.chain.as_str()).unwrap_or_default();
        let mut expected = range.first_seq;
        for f in &files {
            if f.first_seq != Some(expected) {
                problems.push(format!(
                    "archive file {} starts at seq {:?}; seq {expected} of {} was expected",
                    f.path, f.first_seq, range.chain
                ));
            }
            expected = f.last_seq.unwrap_or(expected) + 1;
        }
        let first = files.first().and_then(|f| f.first_hash.clone());
        let last = files.last().and_then(|f| f.last_hash.clone());
        if expected != range.last_seq + 1
            || first != Some(base64_of(&range.first_hash))
            || last != Some(base64_of(&range.last_hash))
        {
            problems.push(format!(
                "the archive of {} does not hold chain {} from seq {} to {} as sealed",
                seal.partition, range.chain, range.first_seq, range.last_seq
            ));
        }
    }
    for chain in runs.keys() {
        problems.push(format!(
            "the archive of {} holds chain {chain}, which its seal does not name",
            seal.partition
        ));
    }
    problems
}
