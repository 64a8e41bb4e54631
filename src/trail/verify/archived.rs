//! The archived periods `audit verify` reads before the live partitions:
//! each dropped partition's latest manifest, from the store its archive
//! record names, checked against that record (a swapped or edited
//! manifest), its signature and its seal; its unchained files checked
//! whole here, its chains' files read chain by chain by the verify itself
//! (see `archive::read_file`).

use std::collections::HashMap;

use sha2::{Digest, Sha256};
use tokio_postgres::Client;

use crate::config::ArchiveSettings;
use crate::trail::archive::check_against_seal;
use crate::trail::archive::manifest::{FileRecord, Manifest};
use crate::trail::archive::target::Target;
use crate::trail::checkpoint::Verifier;
use crate::trail::seal::Seal;

/// One archived period: the store it is in and its files; or, deleted
/// by the retention policy, its seal.
#[derive(Debug)]
pub struct Period {
    pub partition: String,
    pub target: Option<Target>,
    pub files: Vec<FileRecord>,
    pub deleted: Option<Seal>,
}

/// A chain's part in one archived period.
#[derive(Debug, Clone)]
pub enum Segment {
    File(Target, FileRecord),
    /// Deleted by retention: the run the seal states.
    Deleted {
        partition: String,
        first_seq: i64,
        last_seq: i64,
        last_hash: [u8; 32],
    },
}

/// The archive as `audit verify` reads it.
#[derive(Debug, Default)]
pub struct Archive {
    /// Dropped partitions, oldest first.
    pub periods: Vec<Period>,
    /// What is wrong with the manifests, seals and unchained files.
    pub problems: Vec<String>,
    /// Entries read here (unchained files).
    pub entries: u64,
}

impl Archive {
    /// The segments of the chain named `chain`, oldest first.
    pub fn segments_of(&self, chain: &str) -> Vec<Segment> {
        let mut out = Vec::new();
        for p in &self.periods {
            if let Some(range) = p.deleted.as_ref().and_then(|s| s.chain(chain)) {
                out.push(Segment::Deleted {
                    partition: p.partition.clone(),
                    first_seq: range.first_seq,
                    last_seq: range.last_seq,
                    last_hash: range.last_hash,
                });
            }
            if let Some(target) = &p.target {
                out.extend(
                    p.files
                        .iter()
                        .filter(|f| f.chain.as_deref() == Some(chain))
                        .map(|f| Segment::File(target.clone(), f.clone())),
                );
            }
        }
        out
    }

    /// The end of the latest period deleted by the retention policy.
    pub fn deleted_until(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        self.periods
            .iter()
            .filter_map(|p| p.deleted.as_ref().map(|s| s.to))
            .max()
    }

    /// Periods deleted from the archive by the retention policy.
    pub fn deleted(&self) -> Vec<String> {
        self.periods
            .iter()
            .filter(|p| p.deleted.is_some())
            .map(|p| p.partition.clone())
            .collect()
    }

    /// The chains the archive holds files of.
    pub fn chains(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .periods
            .iter()
            .flat_map(|p| p.files.iter().filter_map(|f| f.chain.clone()))
            .collect();
        names.sort();
        names.dedup();
        names
    }
}

/// Reads the manifests of every dropped partition, each from the store
/// its archive was recorded in (with the configured S3 credentials).
pub async fn load(
    client: &Client,
    configured: &ArchiveSettings,
    verifier: Option<&Verifier>,
) -> Result<Archive, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT p.name, a.manifest_path, a.manifest_sha256, s.line, a.store_url, \
                    p.archive_deleted_at IS NOT NULL \
               FROM audit_partitions p \
             LEFT JOIN LATERAL (SELECT manifest_path, manifest_sha256, store_url FROM audit_archives \
                 WHERE partition_name = p.name ORDER BY id DESC LIMIT 1) a ON true \
             LEFT JOIN audit_seals s ON s.partition_name = p.name \
             WHERE p.dropped_at IS NOT NULL ORDER BY p.to_time",
            &[],
        )
        .await?;
    let mut archive = Archive::default();
    let mut stores: HashMap<String, Result<Target, String>> = HashMap::new();
    for r in &rows {
        let name: String = r.get(0);
        if r.get::<_, bool>(5) {
            // Deleted by retention: its seal carries the chains across.
            let line = r.get::<_, Option<String>>(3);
            match (line, verifier) {
                (Some(line), Some(v)) => match Seal::open(&line, v) {
                    Ok(seal) => archive.periods.push(Period {
                        partition: name,
                        target: None,
                        files: Vec::new(),
                        deleted: Some(seal),
                    }),
                    Err(e) => archive.problems.push(format!("the seal of {name}: {e}")),
                },
                (None, _) => archive
                    .problems
                    .push(format!("{name} was deleted by retention without a seal")),
                (_, None) => archive.problems.push(format!(
                    "the seal of {name} cannot be checked without a verifier key"
                )),
            }
            continue;
        }
        let (Some(path), Some(recorded), Some(url)) = (
            r.get::<_, Option<String>>(1),
            r.get::<_, Option<Vec<u8>>>(2),
            r.get::<_, Option<String>>(4),
        ) else {
            archive.problems.push(format!(
                "{name} was dropped, but no archive of it is recorded"
            ));
            continue;
        };
        let Some(verifier) = verifier else {
            archive.problems.push(format!(
                "the archive of {name} cannot be checked without a verifier key"
            ));
            continue;
        };
        let target = stores
            .entry(url.clone())
            .or_insert_with(|| {
                Target::open_existing(&ArchiveSettings {
                    url: url.clone(),
                    ..configured.clone()
                })
                .map_err(|e| e.to_string())
            })
            .clone();
        let target = match target {
            Ok(t) => t,
            Err(e) => {
                archive.problems.push(format!(
                    "the archive of {name} ({url}) cannot be opened: {e}"
                ));
                continue;
            }
        };
        let bytes = match target.get(&path).await {
            Ok(b) => b,
            Err(e) => {
                archive.problems.push(format!("manifest {e}"));
                continue;
            }
        };
        if Sha256::digest(&bytes)[..] != recorded[..] {
            archive.problems.push(format!(
                "manifest {path} is not the one recorded for {name} (edited or swapped)"
            ));
        }
        let manifest = match Manifest::open(&bytes, verifier) {
            Ok(m) => m,
            Err(e) => {
                archive.problems.push(format!("manifest {path}: {e}"));
                continue;
            }
        };
        let line = r.get::<_, Option<String>>(3);
        match line
            .as_deref()
            .map(|line| (Seal::open(line, verifier), line))
        {
            Some((Ok(seal), line)) => archive
                .problems
                .extend(check_against_seal(&manifest, &seal, line)),
            Some((Err(e), _)) => archive.problems.push(format!("the seal of {name}: {e}")),
            None => archive
                .problems
                .push(format!("{name} was dropped without a seal")),
        }
        if manifest.partition != name {
            archive.problems.push(format!(
                "manifest {path} is of {}, not {name} (swapped)",
                manifest.partition
            ));
            continue;
        }
        // Unchained entries have no chain to follow: their files are
        // checked whole (present, the same SHA-256 and rows) here.
        for file in manifest.files.iter().filter(|f| f.chain.is_none()) {
            let (entries, problems) = crate::trail::archive::read_file(&target, file).await;
            archive.entries += entries.map_or(0, |e| e.len() as u64);
            archive.problems.extend(problems);
        }
        archive.periods.push(Period {
            partition: name,
            target: Some(target),
            files: manifest.files,
            deleted: None,
        });
    }
    Ok(archive)
}
