//! An archived period with some of its entries erased: each file that
//! holds one is written again under a new name, a new signed manifest
//! names the manifest it supersedes, the whole is read back and checked
//! against the period's seal, recorded, and only then are the old files
//! deleted (the old manifest stays: it holds no personal data).

use bytes::Bytes;
use chrono::Utc;
use sha2::{Digest, Sha256};
use tokio_postgres::Client;

use super::manifest::Manifest;
use super::target::Target;
use super::{parquet, put_file, read_back, ArchiveError};
use crate::text::hex;
use crate::trail::checkpoint::Signer;
use crate::trail::entry::Entry;
use crate::trail::seal;

/// One period rewritten.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Rewritten {
    pub partition: String,
    pub manifest: String,
    /// Entries erased in its files.
    pub entries: u64,
    /// The files written in place of the old ones.
    pub files: Vec<String>,
    /// Old files the store refused to delete (Object Lock): their bytes
    /// remain until their retention ends.
    pub not_deleted: Vec<String>,
}

/// Rewrites the period whose latest manifest is `old` (signed text
/// `old_text`), erasing with `erase` (true: it changed the entry) every
/// entry of the files `wanted` lets through. `None`: nothing to erase.
pub async fn rewrite(
    client: &Client,
    target: &Target,
    signer: &Signer,
    (old, old_text): (&Manifest, &str),
    wanted: impl Fn(&Bytes) -> bool,
    erase: impl Fn(&mut Entry) -> bool,
) -> Result<Option<Rewritten>, ArchiveError> {
    sweep(target, old).await;
    let stamp = Utc::now().format("%Y%m%dT%H%M%S%.6fZ").to_string();
    let mut manifest = old.clone();
    let mut done = Rewritten {
        partition: old.partition.clone(),
        ..Rewritten::default()
    };
    let mut replaced = Vec::new();
    for record in manifest.files.iter_mut() {
        let bytes = target.get(&record.path).await?;
        if !wanted(&bytes) {
            continue;
        }
        let mut entries = parquet::decode(bytes)?;
        let mut changed = 0;
        for e in entries.iter_mut() {
            if erase(e) {
                changed += 1;
            }
        }
        if changed == 0 {
            continue;
        }
        let stem = record.path.strip_suffix(".parquet").unwrap_or(&record.path);
        let stem = stem.split(".erased-").next().unwrap_or(stem);
        let path = format!("{stem}.erased-{stamp}.parquet");
        let new = put_file(target, &path, record.chain.as_deref(), &entries).await?;
        replaced.push(std::mem::replace(record, new).path);
        done.entries += changed;
        done.files.push(path);
    }
    if replaced.is_empty() {
        return Ok(None);
    }
    let old_sha = Sha256::digest(old_text.as_bytes()).to_vec();
    manifest.supersedes = Some(hex(&old_sha));
    manifest.created_at = Utc::now();
    let path = format!("{}/manifest-{stamp}.json", manifest.partition);
    let signed = manifest.sign(signer)?;
    let text = String::from_utf8_lossy(&signed).into_owned();
    let sha = Sha256::digest(text.as_bytes()).to_vec();
    let recorded = publish(
        client,
        target,
        signer,
        (&manifest, &text, &sha),
        &path,
        &old_sha,
    )
    .await;
    if let Err(e) = recorded {
        // The record may have committed with its answer lost: only a new
        // manifest the database does not hold is taken back.
        if latest_sha(client, &manifest.partition).await.as_deref() != Some(&sha[..]) {
            // Not recorded: what was written goes (it holds others' data too).
            for f in done.files.iter().chain([&path]) {
                if let Err(d) = target.delete(f).await {
                    tracing::warn!(file = %f, error = %d, "an unrecorded archive file could not be deleted");
                }
            }
            return Err(e);
        }
    }
    for old_file in replaced {
        if let Err(e) = target.delete(&old_file).await {
            tracing::warn!(file = %old_file, error = %e, "an erased archive file could not be deleted");
            done.not_deleted.push(old_file);
        }
    }
    done.manifest = path;
    Ok(Some(done))
}

/// Writes the new manifest, reads the period back against its seal and
/// records it as superseding the manifest whose SHA-256 is `old_sha` (the
/// database refuses if another was recorded meanwhile).
async fn publish(
    client: &Client,
    target: &Target,
    signer: &Signer,
    (manifest, text, sha): (&Manifest, &str, &[u8]),
    path: &str,
    old_sha: &[u8],
) -> Result<(), ArchiveError> {
    target.put(path, text.as_bytes().to_vec()).await?;
    let verifier = signer.verifier();
    let (seal, line) = seal::recorded(client, &manifest.partition, &verifier)
        .await?
        .ok_or_else(|| ArchiveError::NoSeal {
            partition: manifest.partition.clone(),
        })?;
    let problems = read_back(target, manifest, (&seal, &line), &verifier, path).await;
    if !problems.is_empty() {
        return Err(ArchiveError::Unverified {
            partition: manifest.partition.clone(),
            problems: problems.join("; "),
        });
    }
    client
        .execute(
            "SELECT custodian_audit_archive_supersede($1, $2, $3, $4, $5, $6, $7)",
            &[
                &manifest.partition,
                &target.url(),
                &path,
                &sha,
                &text,
                &manifest.entries,
                &old_sha,
            ],
        )
        .await?;
    Ok(())
}

/// The SHA-256 of the latest manifest recorded for `partition`, if any can
/// be read.
async fn latest_sha(client: &Client, partition: &str) -> Option<Vec<u8>> {
    client
        .query_opt(
            "SELECT manifest_sha256 FROM audit_archives WHERE partition_name = $1 \
             ORDER BY id DESC LIMIT 1",
            &[&partition],
        )
        .await
        .ok()
        .flatten()
        .map(|r| r.get(0))
}

/// Deletes the period's Parquet files no recorded manifest names any more
/// but a crash left behind: the old files of a rewrite recorded just
/// before the crash, the new files of one that was not. Best effort.
pub(crate) async fn sweep(target: &Target, latest: &Manifest) {
    let dir = format!("{}/", latest.partition);
    let Ok(found) = target.list(&dir).await else {
        return;
    };
    for path in found.iter().filter(|p| p.ends_with(".parquet")) {
        if !latest.files.iter().any(|f| &f.path == path) {
            tracing::info!(file = %path, "deleting an archive file no manifest names (left by a crash)");
            if let Err(e) = target.delete(path).await {
                tracing::warn!(file = %path, error = %e, "an orphaned archive file could not be deleted");
            }
        }
    }
}
