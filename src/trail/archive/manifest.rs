//! An archived partition's manifest: each file's path, SHA-256, size, row
//! count and chain run (first and last sequence number and hash), the seal
//! it was checked against, and, after an erasure, the manifest it
//! replaces. Signed by the checkpoint key: the file is
//! `{"manifest": {…}, "signature": "<signed note>"}`, where the note holds
//! the origin, `archive/<partition>` and the SHA-256 of the manifest's
//! canonical JSON, so reformatting the file does not break it and any
//! change to a value does.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::store::chain::canonical_json;
use crate::text::hex;
use crate::trail::checkpoint::{Signer, Verifier};

pub const FORMAT: &str = "custodian-archive/v1";
const NOTE_PREFIX: &str = "archive/";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub origin: String,
    pub partition: String,
    pub from: Option<DateTime<Utc>>,
    pub to: DateTime<Utc>,
    /// SHA-256 (hex) of the seal's signed line.
    pub seal_sha256: String,
    pub entries: i64,
    pub files: Vec<FileRecord>,
    /// SHA-256 (hex) of the manifest file this one replaces.
    pub supersedes: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// One Parquet file of the archive.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileRecord {
    /// Within the store, from its root.
    pub path: String,
    /// The chain its entries belong to (`None`: unchained entries).
    pub chain: Option<String>,
    pub rows: i64,
    pub bytes: u64,
    pub sha256: String,
    pub first_seq: Option<i64>,
    pub first_hash: Option<String>,
    pub last_seq: Option<i64>,
    pub last_hash: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("not a manifest: {0}")]
    Malformed(String),
    #[error("its signature does not hold: {0}")]
    Signature(String),
}

#[derive(Serialize, Deserialize)]
struct Signed {
    manifest: serde_json::Value,
    signature: String,
}

fn digest(value: &serde_json::Value) -> String {
    let mut text = String::new();
    canonical_json(value, &mut text);
    hex(&Sha256::digest(text.as_bytes()))
}

impl Manifest {
    /// The signed file.
    pub fn sign(&self, signer: &Signer) -> Result<Vec<u8>, ManifestError> {
        let value =
            serde_json::to_value(self).map_err(|e| ManifestError::Malformed(e.to_string()))?;
        let note = format!(
            "{}\n{NOTE_PREFIX}{}\n{}\n",
            self.origin,
            self.partition,
            digest(&value)
        );
        let signed = Signed {
            manifest: value,
            signature: signer.sign_note(&note),
        };
        serde_json::to_vec_pretty(&signed).map_err(|e| ManifestError::Malformed(e.to_string()))
    }

    /// Reads a signed manifest file, refusing it unless `verifier` signed
    /// exactly this content.
    pub fn open(bytes: &[u8], verifier: &Verifier) -> Result<Manifest, ManifestError> {
        let signed: Signed =
            serde_json::from_slice(bytes).map_err(|e| ManifestError::Malformed(e.to_string()))?;
        let lines = verifier
            .open_note(&signed.signature)
            .map_err(|e| ManifestError::Signature(e.to_string()))?;
        let manifest: Manifest = serde_json::from_value(signed.manifest.clone())
            .map_err(|e| ManifestError::Malformed(e.to_string()))?;
        let expected = [
            manifest.origin.clone(),
            format!("{NOTE_PREFIX}{}", manifest.partition),
            digest(&signed.manifest),
        ];
        if lines[..] != expected[..] {
            return Err(ManifestError::Signature(
                "the signed digest is not this manifest's".into(),
            ));
        }
        if manifest.format != FORMAT {
            return Err(ManifestError::Malformed(format!(
                "format {} is not {FORMAT}",
                manifest.format
            )));
        }
        Ok(manifest)
    }
}
