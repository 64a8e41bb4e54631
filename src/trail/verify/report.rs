//! What `audit verify` answers: per chain, how far it holds and its first
//! break, and the summary.

use serde::Serialize;

/// What kind of break.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BreakKind {
    Edited,
    Deleted,
    Inserted,
    Reordered,
    CheckpointMismatch,
}

impl std::fmt::Display for BreakKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            BreakKind::Edited => "edited",
            BreakKind::Deleted => "deleted",
            BreakKind::Inserted => "inserted",
            BreakKind::Reordered => "reordered",
            BreakKind::CheckpointMismatch => "checkpoint mismatch",
        })
    }
}

/// What kind of row outside the chains custodian did not write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StrayKind {
    /// An `audit_log` row without a chain, written while chaining was on.
    UnchainedAfterChaining,
    /// A row of a legacy table newer than the migration that froze it.
    LegacyAfterFreeze,
    /// An `audit_log` row naming a chain `audit_chains` does not hold.
    UnknownChain,
}

impl std::fmt::Display for StrayKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            StrayKind::UnchainedAfterChaining => "unchained after chaining",
            StrayKind::LegacyAfterFreeze => "legacy after freeze",
            StrayKind::UnknownChain => "unknown chain",
        })
    }
}

/// A row no chain covers that custodian did not write (see `strays.rs`).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Stray {
    pub kind: StrayKind,
    /// `audit_log`, `message_audit_v1` or `message_payloads_v1`.
    pub table: &'static str,
    /// The row's id (null for `message_payloads_v1`, and for rows only
    /// counted).
    pub id: Option<i64>,
    pub message_id: Option<uuid::Uuid>,
    pub status: Option<String>,
    pub detail: String,
}

impl std::fmt::Display for Stray {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.kind, self.table)?;
        if let Some(id) = self.id {
            write!(f, " id {id}")?;
        }
        if let Some(message_id) = self.message_id {
            write!(f, " message {message_id}")?;
        }
        if let Some(status) = &self.status {
            write!(f, " {status}")?;
        }
        write!(f, " ({})", self.detail)
    }
}

/// The first break of a chain.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Break {
    /// The sequence number where the chain stops holding.
    pub seq: i64,
    pub kind: BreakKind,
    pub detail: String,
}

/// One chain's result.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ChainReport {
    pub chain: String,
    /// Entries read (after a break too: they are counted, not trusted).
    pub entries: u64,
    /// Verification started after this sequence number (a trusted
    /// checkpoint's), 0 from the start.
    pub started_after: i64,
    /// The last sequence number read.
    pub last_seq: i64,
    /// Checkpoints whose sequence was reached and whose hash matched.
    pub checkpoints_matched: u64,
    #[serde(rename = "break")]
    pub breach: Option<Break>,
}

/// The whole result.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[schema(as = VerifyReport)]
pub struct Report {
    /// Every chain and checkpoint holds, and every chain was reached.
    pub holds: bool,
    /// False when the time budget ran out first (HTTP); the chains not
    /// reached are missing from `chains`.
    pub complete: bool,
    pub entries_checked: u64,
    pub seconds: f64,
    pub entries_per_second: f64,
    pub chains: Vec<ChainReport>,
    /// Rows of `audit_log` without a chain (written with audit.chain =
    /// false, or inserted by hand): not covered by any hash.
    pub unchained_entries: i64,
    /// Rows of the legacy `message_audit_v1` table, written before chaining
    /// existed: not covered by any hash.
    pub legacy_entries: i64,
    /// Checkpoints the verifier key refused (rows of `audit_checkpoints`,
    /// lines of the checkpoint file).
    pub refused_checkpoints: Vec<String>,
    /// Rows outside the chains that custodian did not write: unchained
    /// rows from while chaining was on, legacy rows newer than their
    /// freeze. The first 20 of each kind are named; `stray_entries`
    /// counts them all.
    pub strays: Vec<Stray>,
    pub stray_entries: i64,
    /// Why this instance's checkpointer cannot append to
    /// `audit.checkpoint_file` now (checkpoints still go to
    /// `audit_checkpoints`, where a superuser can delete them with the
    /// tail): a truncated trail may go unnoticed.
    pub checkpoint_file_error: Option<String>,
    /// Archived periods (dropped from PostgreSQL) read from the archive
    /// store, and the entries read from their files.
    pub archived_periods: usize,
    pub archived_entries: u64,
    /// Chained entries whose personal fields and payload were erased
    /// (`custodian audit erase`): verified by the digest they keep, not
    /// tampering.
    pub erased_entries: u64,
    /// Archived periods deleted by `audit.retention`: each chain is carried
    /// across them by their signed seals.
    pub deleted_by_retention: Vec<String>,
    /// Erasures, hold releases and retention deletions done without the
    /// chained entry that records them.
    pub unrecorded: Vec<String>,
    /// What is wrong with the archive: a manifest refused, swapped or
    /// missing, a file missing, edited, truncated or reordered (each
    /// naming the file), a period whose seal it does not match.
    pub archive_problems: Vec<String>,
}

impl Report {
    /// Everything checked holds.
    pub fn holds(&self) -> bool {
        self.complete && self.problems().is_empty()
    }

    /// Every failure found, one line each: breaks, refused checkpoints,
    /// strays, the checkpoint file.
    pub fn problems(&self) -> Vec<String> {
        let breaks = self.chains.iter().filter_map(|c| {
            c.breach
                .as_ref()
                .map(|b| format!("{} seq {}: {}", c.chain, b.seq, b.kind))
        });
        let refused = self
            .refused_checkpoints
            .iter()
            .map(|r| format!("refused checkpoint {r}"));
        let strays = self.strays.iter().map(Stray::to_string);
        let in_all = self.stray_entries != self.strays.len() as i64;
        let file = self
            .checkpoint_file_error
            .iter()
            .map(|e| format!("audit.checkpoint_file: {e}"));
        let archive = self.archive_problems.iter().cloned();
        breaks
            .chain(archive)
            .chain(self.unrecorded.iter().cloned())
            .chain(refused)
            .chain(strays)
            .chain(in_all.then(|| format!("{} stray row(s) in all", self.stray_entries)))
            .chain(file)
            .collect()
    }
}
