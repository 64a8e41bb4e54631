//! The archived periods `audit verify` reads before the live partitions:
//! each dropped partition's latest manifest, checked against its record in
//! `audit_archives` (a swapped or edited manifest), its signature and its
//! seal, and then its files, chain by chain (see `archive::read_file`).

use sha2::{Digest, Sha256};
use tokio_postgres::Client;

use crate::trail::archive::check_against_seal;
use crate::trail::archive::manifest::{FileRecord, Manifest};
use crate::trail::archive::target::Target;
use crate::trail::checkpoint::Verifier;
use crate::trail::seal::Seal;

/// The archive as `audit verify` reads it.
#[derive(Debug)]
pub struct Archive {
    /// `None`: the store could not be opened (a problem says why).
    pub target: Option<Target>,
    /// Dropped partitions, oldest first, with the files their manifest lists.
    pub periods: Vec<(String, Vec<FileRecord>)>,
    /// What is wrong with the manifests and seals.
    pub problems: Vec<String>,
}

impl Archive {
    /// The files of the chain named `chain`, oldest first.
    pub fn files_of(&self, chain: &str) -> Vec<FileRecord> {
        self.periods
            .iter()
            .flat_map(|(_, files)| files.iter())
            .filter(|f| f.chain.as_deref() == Some(chain))
            .cloned()
            .collect()
    }
}

/// Reads the manifests of every dropped partition.
pub async fn load(
    client: &Client,
    target: Target,
    verifier: Option<&Verifier>,
) -> Result<Archive, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT p.name, a.manifest_path, a.manifest_sha256, s.line FROM audit_partitions p \
             LEFT JOIN LATERAL (SELECT manifest_path, manifest_sha256 FROM audit_archives \
                 WHERE partition_name = p.name ORDER BY id DESC LIMIT 1) a ON true \
             LEFT JOIN audit_seals s ON s.partition_name = p.name \
             WHERE p.dropped_at IS NOT NULL ORDER BY p.to_time",
            &[],
        )
        .await?;
    let mut archive = Archive {
        target: Some(target.clone()),
        periods: Vec::new(),
        problems: Vec::new(),
    };
    for r in &rows {
        let name: String = r.get(0);
        let (Some(path), Some(recorded)) = (
            r.get::<_, Option<String>>(1),
            r.get::<_, Option<Vec<u8>>>(2),
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
        match r
            .get::<_, Option<String>>(3)
            .map(|line| Seal::open(&line, verifier))
        {
            Some(Ok(seal)) => archive
                .problems
                .extend(check_against_seal(&manifest, &seal)),
            Some(Err(e)) => archive.problems.push(format!("the seal of {name}: {e}")),
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
        archive.periods.push((name, manifest.files));
    }
    Ok(archive)
}
